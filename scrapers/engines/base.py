"""What every engine is made of: the :class:`Engine` value, result links and the
helpers that parse them (the engine modules import these; nothing here imports them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from scrapers.hits import ImageHit

FETCHED_SCHEMES = ("http", "https", "data")
"""The only URL schemes the downloader fetches."""


def scheme_refusal(url: str) -> str | None:
    """Why ``url`` is never fetched (a scheme other than http(s) or ``data:``), or None."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return f"refused: not a valid URL: {url[:200]!r}"
    if scheme in FETCHED_SCHEMES:
        return None
    if not scheme:
        return f"refused: not an absolute http(s) URL: {url[:200]!r}"
    return f"refused: only http(s) and data: URLs, not {scheme}: ({url[:200]!r})"


@dataclass(frozen=True)
class RefusedLink:
    """A result link whose scheme the downloader refuses; recorded, never fetched."""

    url: str
    """The link as the page gave it."""
    page_url: str | None = None
    """The page the result points to, if the engine gave one."""
    title: str | None = None

    def __post_init__(self) -> None:
        if scheme_refusal(self.url) is None:
            raise ValueError(f"{self.url[:80]!r} would be fetched; make it an ImageHit")

    @property
    def reason(self) -> str:
        """Why it is not fetched, for the manifest's ``error`` column."""
        return scheme_refusal(self.url) or ""


Link: TypeAlias = ImageHit | RefusedLink
"""One result link of a search page."""


def link(
    url: str,
    page_url: str | None = None,
    title: str | None = None,
    width: int | None = None,
    height: int | None = None,
) -> Link:
    """An :class:`ImageHit` for a URL the downloader fetches, else a :class:`RefusedLink`."""
    if scheme_refusal(url) is not None:
        return RefusedLink(url, page_url, title)
    return ImageHit(url, page_url, title, width, height)


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
    parse: Callable[[str], list[Link]]
    """A page's result links in page order (refused ones included)."""
    blocked: Callable[[str], str | None]
    """Reason the page is a consent wall or captcha, or None."""
    scroll_pages: bool = False
    """Whether more results come by scrolling the same page instead of new URLs."""
