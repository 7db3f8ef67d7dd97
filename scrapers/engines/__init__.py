"""Search engines: one module each, with a pure ``parse(html)`` and a URL builder.

An engine is a :class:`Engine` value: how to build the URL of page N of a query on a
base (``--engine-url`` replaces the scheme and host and keeps the engine's paths and
parameters), how to parse a page, and how to recognise a block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scrapers.hits import ImageHit


def attr(tag: Any, name: str) -> str | None:
    """A tag attribute as text (bs4 gives lists for multi-valued ones), or None."""
    value = tag.get(name) if tag is not None else None
    if value is None:
        return None
    return " ".join(value) if isinstance(value, list) else str(value)


@dataclass(frozen=True)
class Engine:
    """One image search engine."""

    name: str
    default_base: str
    search_url: Callable[[str, str, int], str]
    """(base, query, page index from 0) -> URL."""
    parse: Callable[[str], list[ImageHit]]
    blocked: Callable[[str], str | None]
    """Reason the page is a consent wall or captcha, or None."""
    scroll_pages: bool = False
    """Whether more results come by scrolling the same page instead of new URLs."""


def engines() -> dict[str, Engine]:
    """All engines by name."""
    from scrapers.engines import bing, duckduckgo, google, local

    return {e.name: e for e in (bing.ENGINE, google.ENGINE, duckduckgo.ENGINE, local.ENGINE)}
