"""Search engines: one module each, with a pure ``parse(html)`` and a URL builder.

An engine is a :class:`Engine` value: how to build the URL of page N of a query on a
base (``--engine-url`` replaces the scheme and host and keeps the engine's paths and
parameters), how to parse a page, and how to recognise a block. A page's result
links are :class:`~scrapers.hits.ImageHit` values, or :class:`RefusedLink` values for
links the downloader never fetches (``javascript:``, ``file:``...), which the manifest
still records.
"""

from __future__ import annotations

from scrapers.engines.base import (
    FETCHED_SCHEMES,
    Engine,
    Link,
    RefusedLink,
    attr,
    link,
    scheme_refusal,
)

__all__ = [
    "FETCHED_SCHEMES",
    "Engine",
    "Link",
    "RefusedLink",
    "attr",
    "engines",
    "link",
    "scheme_refusal",
]


def engines() -> dict[str, Engine]:
    """All engines by name."""
    from scrapers.engines import bing, duckduckgo, google, local

    return {e.name: e for e in (bing.ENGINE, google.ENGINE, duckduckgo.ENGINE, local.ENGINE)}
