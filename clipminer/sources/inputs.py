"""What ``fetch-videos`` reads: a candidates CSV, a Kinetics annotation CSV, or a URL list.

Each input becomes a list of :class:`FetchItem`: where to download from, which label
folder the file goes to, the file's stem, and for Kinetics rows the time range to keep.
Ids, labels and URLs are data: they are quoted into URLs and made safe for the file
system (:func:`clipminer.fsutil.safe_component`), never interpreted.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from clipminer.errors import UsageError
from clipminer.fsutil import safe_component
from clipminer.sources.youtube import ACTION_SEPARATOR

InputKind = Literal["candidates", "kinetics", "urls"]
YOUTUBE_WATCH_TEMPLATE = "https://www.youtube.com/watch?v={id}"
"""The default ``--url-template``: ``{id}`` is replaced by the (URL-quoted) video id."""
UNLABELLED = "unlabelled"
"""The folder of URLs given without a label."""
_URL_SCHEMES = ("http://", "https://")


@dataclass(frozen=True)
class FetchItem:
    """One video (or one time range of a video) to fetch."""

    key: str
    """Register key: the id, ``<id>_<start>_<end>`` for a range, or the URL of a URL list."""
    url: str
    label: str
    """The label (action) as written in the input; its folder name is made safe."""
    video_id: str = ""
    """The YouTube id; empty for a URL list (the file is then named by yt-dlp's id)."""
    time_start_seconds: float | None = None
    time_end_seconds: float | None = None
    split: str = ""

    def __post_init__(self) -> None:
        if (self.time_start_seconds is None) != (self.time_end_seconds is None):
            raise ValueError(f"{self.key}: give both ends of a time range, or neither")
        if self.time_start_seconds is not None and not (
            0 <= self.time_start_seconds < self.time_end_seconds  # type: ignore[operator]
        ):
            raise ValueError(
                f"{self.key}: need 0 <= time_start < time_end, got "
                f"{self.time_start_seconds}, {self.time_end_seconds}"
            )

    @property
    def has_range(self) -> bool:
        """Whether only ``[time_start_seconds, time_end_seconds]`` is fetched."""
        return self.time_start_seconds is not None

    def stem(self, fallback_id: str = "") -> str:
        """The file name without suffix: ``<id>`` or ``<id>_<start>_<end>`` (Kinetics style).

        ``fallback_id`` (yt-dlp's id) names the files of a URL list.
        """
        name = self.video_id or fallback_id or "video"
        if self.has_range:
            name += f"_{seconds_tag(self.time_start_seconds)}_{seconds_tag(self.time_end_seconds)}"  # type: ignore[arg-type]
        return safe_component(name)


def seconds_tag(seconds: float) -> str:
    """``10`` -> ``000010``; ``10.5`` -> ``000010.500`` (the Kinetics downloaders' names)."""
    if float(seconds).is_integer():
        return f"{int(seconds):06d}"
    return f"{seconds:010.3f}"


def range_key(video_id: str, start: float | None, end: float | None) -> str:
    """The register key of a video id and an optional time range."""
    if start is None or end is None:
        return video_id
    return f"{video_id}_{seconds_tag(start)}_{seconds_tag(end)}"


def video_url(template: str, video_id: str) -> str:
    """``template`` with ``{id}`` replaced by ``video_id``, quoted (no other expansion)."""
    if "{id}" not in template:
        raise UsageError(f"--url-template must contain {{id}}, got {template!r}")
    return template.replace("{id}", quote(video_id, safe=""))


def detect_kind(path: Path, header: list[str] | None) -> InputKind:
    """Which input ``path`` is, from its CSV header (None: not a CSV with a header)."""
    columns = {c.strip().lower() for c in header or []}
    if {"youtube_id", "time_start", "time_end"} <= columns:
        return "kinetics"
    if {"action", "youtube_id"} <= columns:
        return "candidates"
    if "youtube_id" in columns:
        raise UsageError(
            f"{path}: a CSV with youtube_id needs either time_start,time_end (Kinetics "
            "annotations) or action (a search-videos candidates file)"
        )
    return "urls"


def read_items(
    path: str | os.PathLike[str], *, url_template: str, label: str = UNLABELLED
) -> tuple[InputKind, list[FetchItem]]:
    """The items of ``path``, de-duplicated by key (the first row wins).

    Raises:
        UsageError: the file is missing or unreadable, or a row is malformed (the
            message names the file and the line).
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    header = next(csv.reader([first])) if "," in first else None
    kind = detect_kind(path, header)
    if kind == "urls":
        items = _url_items(path, lines, label)
    else:
        rows = csv.DictReader(lines)
        rows.fieldnames = [f.strip().lower() for f in rows.fieldnames or []]
        parse = _kinetics_item if kind == "kinetics" else _candidate_item
        items = [
            parse(path, number, row, url_template)
            for number, row in enumerate(rows, start=2)
            if any((v or "").strip() for v in row.values() if isinstance(v, str))
        ]
    unique: dict[str, FetchItem] = {}
    for item in items:
        unique.setdefault(item.key, item)
    return kind, list(unique.values())


def _field(path: Path, number: int, row: dict[str, str], name: str) -> str:
    value = (row.get(name) or "").strip()
    if not value:
        raise UsageError(f"{path}:{number}: empty {name}")
    return value


def _seconds(path: Path, number: int, row: dict[str, str], name: str) -> float:
    text = _field(path, number, row, name)
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{path}:{number}: {name} must be seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise UsageError(f"{path}:{number}: {name} must be >= 0 seconds, got {text!r}")
    return value


def _kinetics_item(path: Path, number: int, row: dict[str, str], template: str) -> FetchItem:
    video_id = _field(path, number, row, "youtube_id")
    start = _seconds(path, number, row, "time_start")
    end = _seconds(path, number, row, "time_end")
    if end <= start:
        raise UsageError(f"{path}:{number}: time_end {end:g} is not after time_start {start:g}")
    return FetchItem(
        key=range_key(video_id, start, end),
        url=video_url(template, video_id),
        label=(row.get("label") or "").strip() or UNLABELLED,
        video_id=video_id,
        time_start_seconds=start,
        time_end_seconds=end,
        split=(row.get("split") or "").strip(),
    )


def _candidate_item(path: Path, number: int, row: dict[str, str], template: str) -> FetchItem:
    video_id = _field(path, number, row, "youtube_id")
    actions = _field(path, number, row, "action").split(ACTION_SEPARATOR)
    return FetchItem(
        key=video_id,
        url=video_url(template, video_id),
        label=actions[0].strip() or UNLABELLED,
        video_id=video_id,
    )


def _url_items(path: Path, lines: list[str], label: str) -> list[FetchItem]:
    """``URL`` or ``LABEL<TAB>URL`` per line; blank lines and ``#`` comments are skipped."""
    items = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, url = line.rpartition("\t")
        url = url.strip()
        if not url.lower().startswith(_URL_SCHEMES):
            raise UsageError(
                f"{path}:{number}: expected an http(s) URL, optionally after a label and a "
                f"tab, got {line[:80]!r}"
            )
        items.append(FetchItem(key=url, url=url, label=name.strip() or label))
    return items
