"""The scraper's settings: plain dataclasses, importable without the scrape extra.

Each user setting is declared once (:func:`clipminer.settings.setting`); the
``scrape`` command's options are generated from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from clipminer.errors import UsageError
from clipminer.labels import label_key
from clipminer.settings import check_declared, setting
from scrapers.engines import engines

SaveAs = Literal["original", "jpeg"]


@dataclass(frozen=True)
class DownloadConfig:
    """Limits and manners of the downloader."""

    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = setting(
        15.0,
        "Longest wait for any one read from an image host (seconds).",
        min=0.1,
        flag="timeout",
    )
    deadline_seconds: float = setting(
        60.0,
        "Longest time one image download may take, redirects, retries and waits included, "
        "however slowly the host sends (seconds).",
        min=0.1,
        flag="deadline",
    )
    max_retry_after_seconds: float = setting(
        30.0,
        "Longest Retry-After of an HTTP 429 that is waited out; a host asking for more is "
        "recorded as blocked (seconds).",
        min=0.0,
        flag="max_retry_after",
    )
    max_bytes: int = setting(20_000_000, "Largest accepted download in bytes.", min=1)
    max_pixels: int = setting(
        40_000_000, "Largest accepted image in pixels (decompression-bomb guard).", min=1
    )
    min_size: int = setting(0, "Smallest accepted shorter side in pixels.", min=0)
    retries: int = 2
    max_redirects: int = 5
    per_host: int = 2
    """Simultaneous requests to one host."""
    polite_seconds: float = setting(
        0.5, "Least time between two requests to one host (seconds).", min=0.0
    )
    save_as: SaveAs = setting(
        "original",
        "original: keep JPEG, PNG, GIF and WebP bytes as downloaded (other formats become "
        "JPEG); jpeg: re-encode everything as JPEG.",
    )
    phash_distance: int = setting(
        4,
        "Perceptual-hash distance at or below which an image is a near-duplicate of one "
        "already kept (any action).",
        min=0,
    )
    allowed_hosts: frozenset[str] = frozenset()
    """Host names that may resolve to loopback or private addresses (the scraper adds
    the engine's own host)."""
    allow_private_addresses: bool = setting(
        False,
        "Let image URLs and redirects reach loopback, private and link-local addresses (the "
        "engine's own host always may).",
    )
    decode_slots: int = 1
    """Threads that decode images, one image each at a time; each takes up to about 8
    bytes per pixel of ``max_pixels`` while it checks one."""

    def __post_init__(self) -> None:
        check_declared(self)  # the settings; below, the fields that are not options
        positive = {
            "connect_timeout_seconds": self.connect_timeout_seconds,
            "per_host": self.per_host,
            "decode_slots": self.decode_slots,
        }
        not_negative = {"retries": self.retries, "max_redirects": self.max_redirects}
        for name, value in positive.items():
            if not value > 0:
                raise UsageError(f"download {name} must be more than 0, got {value!r}")
        for name, value in not_negative.items():
            if not value >= 0:
                raise UsageError(f"download {name} must be 0 or more, got {value!r}")
        hosts = frozenset(h.strip().strip("[]").rstrip(".").lower() for h in self.allowed_hosts)
        object.__setattr__(self, "allowed_hosts", hosts)


@dataclass(frozen=True)
class ScrapeConfig:
    """Everything ``scrape`` was asked to do."""

    engine: str = setting(
        "bing",
        "bing, google, duckduckgo, or local: an offline engine clipminer starts itself, "
        "serving generated images of the toy actions (and of generic scenes for "
        "--background).",
        metavar="ENGINE",
    )
    engine_url: str | None = setting(
        None,
        "Replace the engine's scheme and host (keeping its paths and parameters), e.g. a "
        "local mirror.",
        metavar="URL",
    )
    per_action: int = setting(
        100, "Images to keep per action (a re-run continues to this count).", min=1
    )
    workers: int = setting(1, "Headless browsers in parallel, one action each at a time.", min=1)
    download_workers: int = setting(4, "Parallel image downloads.", min=1)
    query_template: str = setting(
        "{action}", "Search query; {action} is replaced by the action.", metavar="TEMPLATE"
    )
    max_pages: int = setting(
        20,
        "Result pages (or scrolls) read per action (per query of the background class) at most.",
        min=1,
    )
    retry_failed: bool = setting(
        False, "Fetch again URLs that failed with an HTTP error or a timeout before."
    )
    background: bool = setting(
        False,
        "Add a background class for open-set mining: images of everyday scenes without an "
        "action (people talking to a camera, streets, rooms, landscapes...) from generic "
        "queries, as in the negative sets of Kinetics. Implied by --background-queries and "
        "--background-images.",
    )
    background_label: str = setting(
        "background",
        "The background class's name: its folder under OUT and its action in the manifest. "
        "No action may have this name.",
        metavar="LABEL",
    )
    background_queries: Path | None = setting(
        None,
        "File of generic queries for the background class, one per line (blank lines and # "
        "comments ignored), instead of the built-in list; searched as written, without "
        "--query-template. Implies --background.",
        metavar="FILE",
    )
    background_images: int | None = setting(
        None,
        "Images of the background class in all, dealt round-robin over its queries so that "
        "every query contributes (default: 2 x --per-action). Implies --background.",
        min=1,
        metavar="N",
    )
    download: DownloadConfig = field(default_factory=DownloadConfig)
    page_load_timeout_seconds: float = 30.0

    @property
    def background_target(self) -> int:
        """Images of the background class in all (``background_images`` or 2 × per action)."""
        return self.background_images or 2 * self.per_action

    def __post_init__(self) -> None:
        check_declared(self)
        if self.engine not in engines():
            raise UsageError(f"--engine must be one of {sorted(engines())}, got {self.engine!r}")
        if "{action}" not in self.query_template:
            raise UsageError(
                f"--query-template must contain {{action}}, got {self.query_template!r}"
            )
        if self.engine_url is not None and not self.engine_url.startswith(("http://", "https://")):
            raise UsageError(f"--engine-url must be an http(s) URL, got {self.engine_url!r}")
        if not label_key(self.background_label):
            raise UsageError(
                "--background-label must contain a letter or a digit, "
                f"got {self.background_label!r}"
            )
        if self.background_queries is not None or self.background_images is not None:
            object.__setattr__(self, "background", True)
