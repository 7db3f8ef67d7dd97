"""What engines return, and how they fail."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from clipminer.errors import ClipminerError


@dataclass(frozen=True)
class ImageHit:
    """One image result of a search page."""

    image_url: str
    """Full-size image URL (``data:`` only for a flagged thumbnail fallback)."""
    page_url: str | None = None
    """The page the image appears on."""
    title: str | None = None
    width: int | None = None
    height: int | None = None
    thumbnail: bool = False
    """True when only a thumbnail could be had (a last resort, flagged in the manifest)."""

    def __post_init__(self) -> None:
        scheme = urlsplit(self.image_url).scheme.lower()
        if scheme not in ("http", "https", "data"):
            raise ValueError(f"image URL must be http(s) or data:, got {self.image_url[:80]!r}")


class EngineBlocked(ClipminerError):  # noqa: N818 - the name the issue and the manifest use
    """The engine showed a consent wall or a captcha instead of results."""


class NoResults(ClipminerError):  # noqa: N818
    """The engine's page holds no image results for the query."""
