"""The output folder OUT: where mined outputs live, what their files hold, and which
input each belongs to. Every other module asks this one.

One rule, used by find-clips, batch and the nightly job::

    OUT/
      kinetics.csv  summary.csv  report.html  state.sqlite  .batch.lock   (OUT's own files)
      videos/<name>/segments.csv  shots.csv  scores.parquet  timeline.png  embeddings.npy
                    run.json  clips/<label>/...

Every input gets its own folder ``OUT/videos/<name>/``. ``<name>`` is the file's stem
when that is already a safe name and no other input holds it; otherwise it is the
stem made safe (:func:`~clipminer.fsutil.safe_component`) with ``-`` and a short hash
of the source's resolved path. So ``..mp4``, ``state.sqlite.mp4``, ``x.mp4`` beside
``x.mkv``, and ``a/b.mp4`` beside ``a__b.mp4`` can never share a folder, reach OUT's
own files, or resolve outside ``OUT/videos``. Each folder's ``run.json`` records its
source (:class:`SourceId`), so a later run knows whose folder a name is; ``name`` is
also the ``youtube_id`` of the video's rows in ``kinetics.csv``.

A video's folder is prepared whole under :func:`staging_folder` and swapped in
(:func:`~clipminer.fsutil.swap_folder_in`); ``segments.csv`` is read and written only
here, as :class:`SegmentRow` values.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import math
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clipminer.errors import UsageError
from clipminer.fsutil import COMPONENT_MAX_BYTES, atomic_path, safe_component, short_hash
from clipminer.store import RemoteVideo

VIDEOS_DIR = "videos"
"""The sub-folder of OUT that holds one folder per input video."""
RESERVED_NAMES = frozenset(
    {"kinetics.csv", "summary.csv", "report.html", "state.sqlite", "state.sqlite-wal",
     "state.sqlite-shm", "state.sqlite-journal", ".batch.lock", VIDEOS_DIR, "clips",
     "duplicates.csv", "review.sqlite", "review.sqlite-wal", "review.sqlite-shm",
     "review.sqlite-journal", "review.key", "retrain.json"}
)  # fmt: skip
"""OUT's own files: no per-video name may be one of these (even under ``videos/``)."""
RUN_JSON = "run.json"
"""A video folder's record of its source, settings and times: written last."""
SEGMENTS_CSV = "segments.csv"
SHOTS_CSV = "shots.csv"
SCORES_PARQUET = "scores.parquet"
TIMELINE_PNG = "timeline.png"
EMBEDDINGS_NPY = "embeddings.npy"
CLIPS_DIR = "clips"
KINETICS_CSV = "kinetics.csv"
"""OUT's manifest of every clip, Kinetics-style."""


def fingerprint(path: Path) -> str:
    """Size and the first and last MiB: cheap, and changes when the file does.

    Raises:
        OSError: unreadable, or not a regular file (reading a FIFO would wait forever).
    """
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)", str(path))
    size = info.st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        if size > 2 << 20:
            handle.seek(-(1 << 20), os.SEEK_END)
            digest.update(handle.read())
    return digest.hexdigest()[:24]


@dataclass(frozen=True)
class SourceId:
    """Which file a video is, whatever it was called on the command line."""

    path: str
    """The resolved absolute path (symlinks, ``..`` and trailing slashes undone)."""
    size: int
    mtime: float
    fingerprint: str
    """:func:`fingerprint` of the content: recognises a moved or re-mounted file."""

    @classmethod
    def of(cls, video: str | os.PathLike[str]) -> SourceId:
        path = Path(video).resolve()
        info = path.stat()
        return cls(str(path), info.st_size, info.st_mtime, fingerprint(path))

    def same_file(self, other: SourceId) -> bool:
        """The same path, or the same content that has moved."""
        return self.path == other.path or (
            self.size == other.size and self.fingerprint == other.fingerprint
        )


def videos_root(out: str | os.PathLike[str]) -> Path:
    """``OUT/videos``."""
    return Path(out) / VIDEOS_DIR


def check_out_folder(out: str | os.PathLike[str]) -> Path:
    """``out`` as a folder that exists (created when missing); a one-line error otherwise."""
    from clipminer import store

    if store.names_url(out):  # a URL that lost its // on its way here (Path("s3://b/o"))
        raise UsageError(f"{out}: a URL cannot be a local folder; give it as text, not a Path")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: --out must be a folder, but it is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    return out


def _stem(video: str | os.PathLike[str] | RemoteVideo) -> str:
    return video.stem if isinstance(video, RemoteVideo) else Path(video).stem


def plain_name(video: str | os.PathLike[str] | RemoteVideo) -> str | None:
    """The file's stem when it can serve as a folder name unchanged, else None."""
    stem = _stem(video)
    safe = safe_component(stem, reserved=RESERVED_NAMES)
    return stem if safe == stem else None


def hashed_name(video: str | os.PathLike[str] | RemoteVideo, key: str) -> str:
    """The stem made safe, then ``-`` and a hash of ``key``: unique whatever the stem."""
    base = safe_component(_stem(video), reserved=RESERVED_NAMES, max_bytes=COMPONENT_MAX_BYTES - 11)
    return f"{base}-{short_hash(key, 10)}"


def read_run(folder: Path) -> dict[str, Any]:
    """``folder/run.json`` (:func:`run_json` wrote it); empty when it is missing or not
    a JSON object. The one reader: what each key holds is said where it is written."""
    try:
        data = json.loads((folder / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_source(folder: Path) -> SourceId | None:
    """The source recorded in ``folder/run.json``; None when there is none."""
    try:
        return SourceId(**read_run(folder)["source"])
    except (KeyError, TypeError):
        return None


def folder_name(
    video: str | os.PathLike[str] | RemoteVideo,
    source: SourceId,
    out: str | os.PathLike[str],
    *,
    owners: Mapping[str, str] | None = None,
    out_url: str | None = None,
) -> str:
    """The name of ``video``'s folder under ``OUT/videos``.

    The plain stem when it is safe, not held by another source in ``owners`` (folder
    name -> resolved source path, from this run or the state store), and not a folder
    on disk (or, with ``out_url``, a done folder in the store) that belongs to another
    source; else the hashed name, which is the same on every run for the same resolved
    path.
    """
    plain = plain_name(video)
    owner_path = (owners or {}).get(plain or "", source.path)
    if plain is not None and owner_path == source.path:
        existing = videos_root(out) / plain
        taken, owner = existing.exists(), read_source(existing) if existing.exists() else None
        if not taken and out_url is not None:
            taken, owner = _stored_source(out_url, plain)
        if not taken or (owner is not None and owner.same_file(source)):
            return plain
    return hashed_name(video, source.path)


def _stored_source(out_url: str, name: str) -> tuple[bool, SourceId | None]:
    """Whether OUT in the store has a done folder ``name``, and whose it is."""
    from clipminer import store

    marker = store.join(out_url, VIDEOS_DIR, name, RUN_JSON)
    if not store.exists(marker):
        return False, None
    try:
        return True, SourceId(**json.loads(store.read_bytes(marker))["source"])
    except (ValueError, KeyError, TypeError):
        return True, None


def run_json(source: SourceId, **extra: object) -> dict[str, object]:
    """What ``run.json`` holds: the source, then ``extra`` (settings, times)."""
    return {"source": asdict(source), **extra}


def staging_folder(folder: Path) -> Path:
    """Where a video folder is prepared before it is swapped in (hidden, beside it)."""
    return folder.parent / f".{folder.name}.partial"


# -- segments.csv -----------------------------------------------------------------------------

SEGMENT_COLUMNS = (
    "video",
    "clip_id",
    "label",
    "score",
    "time_start",
    "time_end",
    "video_label",
    "video_score",
    "clip_path",
)
"""The contract's columns, in order; :data:`EXTRA_SEGMENT_COLUMNS` follow them."""
EXTRA_SEGMENT_COLUMNS = (
    "video_top5",
    "clip_start",
    "clip_end",
    "open_set_score",
    "open_set_similarity",
)


@dataclass(frozen=True)
class SegmentRow:
    """One row of a video's ``segments.csv``: a candidate clip."""

    video: str
    """The source video's path as find-clips saw it."""
    clip_id: int
    label: str
    """The image model's label of the segment."""
    score: float
    time_start: float
    time_end: float
    video_label: str | None = None
    """The video model's label (None without a video model)."""
    video_score: float | None = None
    clip_path: str | None = None
    """Relative to OUT; None when no clip was cut."""
    video_top5: tuple[tuple[str, float], ...] = ()
    clip_start: float | None = None
    """Where the cut clip file really starts (keyframe-aligned cuts start earlier)."""
    clip_end: float | None = None
    open_set_score: float | None = None
    open_set_similarity: float | None = None

    @property
    def final_label(self) -> str:
        """The video model's label when there is one, else the image model's."""
        return self.video_label or self.label


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_segments(folder: Path, rows: Iterable[SegmentRow]) -> Path:
    """``folder/segments.csv``, written whole under a temporary name."""
    path = folder / SEGMENTS_CSV
    with (
        atomic_path(path) as tmp,
        tmp.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle,
    ):
        writer = csv.writer(handle)
        writer.writerow([*SEGMENT_COLUMNS, *EXTRA_SEGMENT_COLUMNS])
        for r in rows:
            writer.writerow([
                r.video, r.clip_id, r.label, f"{r.score:.4f}", _fmt(r.time_start),
                _fmt(r.time_end), r.video_label or "", _fmt(r.video_score, 4), r.clip_path or "",
                ";".join(f"{label}:{p:.4f}" for label, p in r.video_top5),
                _fmt(r.clip_start), _fmt(r.clip_end), _fmt(r.open_set_score, 4),
                _fmt(r.open_set_similarity, 4),
            ])  # fmt: skip
    return path


def read_segments(folder: Path) -> list[SegmentRow]:
    """The rows of ``folder/segments.csv`` (files from before the extra columns too).

    Raises:
        UsageError: the file cannot be read or is not a find-clips ``segments.csv``;
            the message names it.
    """
    path = folder / SEGMENTS_CSV
    try:
        with path.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
            return [_segment_row(row) for row in csv.DictReader(handle)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: not a find-clips segments.csv ({exc!r})") from None


def _segment_row(row: dict[str, str]) -> SegmentRow:
    return SegmentRow(
        video=row["video"],
        clip_id=int(row["clip_id"]),
        label=row["label"],
        score=float(row["score"]),
        time_start=float(row["time_start"]),
        time_end=float(row["time_end"]),
        video_label=row["video_label"] or None,
        video_score=_optional(row["video_score"]),
        clip_path=row["clip_path"] or None,
        video_top5=parse_top5(row.get("video_top5") or ""),
        clip_start=_optional(row.get("clip_start")),
        clip_end=_optional(row.get("clip_end")),
        open_set_score=_optional(row.get("open_set_score")),
        open_set_similarity=_optional(row.get("open_set_similarity")),
    )


def _optional(text: str | None) -> float | None:
    """An optional number: empty is None, and so is one that is not finite."""
    value = float(text) if text else None
    return value if value is not None and math.isfinite(value) else None


def parse_top5(text: str) -> tuple[tuple[str, float], ...]:
    """``label:p;label:p`` (``video_top5``); parts that do not parse are left out.

    A label may hold ``:`` (the probability is after the last one).
    """
    out = []
    for part in (text or "").split(";"):
        label, sep, value = part.rpartition(":")
        if not sep or not label:
            continue
        try:
            prob = float(value)
        except ValueError:
            continue
        if math.isfinite(prob):
            out.append((label, prob))
    return tuple(out)
