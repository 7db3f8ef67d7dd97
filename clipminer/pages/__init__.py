"""The pages clipminer writes or serves, as files: Jinja2 templates (autoescaped) and
the review page's static CSS and JavaScript.

:func:`render` fills a template; :func:`static` gives a static file's bytes and media
type. Nothing here is built from strings in Python code.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
"""The static files a page may load, by suffix, with their media types."""


@functools.cache
def _environment() -> Any:
    from urllib.parse import quote

    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("clipminer", "pages"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["urlpath"] = quote  # a relative link: each part percent-encoded
    return environment


def render(name: str, **context: Any) -> str:
    """The template ``name`` (a file of this package) filled with ``context``."""
    return str(_environment().get_template(name).render(**context))


def static(name: str) -> tuple[bytes, str] | None:
    """(bytes, media type) of the static file ``name``; None for anything else."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        return None
    try:
        return resources.files(__package__).joinpath(name).read_bytes(), STATIC_TYPES[suffix]
    except (FileNotFoundError, IsADirectoryError):
        return None
