"""Where mined outputs live, and which input they belong to.

One rule, used by find-clips, batch and the nightly job::

    OUT/
      kinetics.csv  summary.csv  report.html  state.sqlite  .batch.lock   (OUT's own files)
      videos/<name>/segments.csv  scores.parquet  timeline.png  run.json  clips/<label>/...

Every input gets its own folder ``OUT/videos/<name>/``. ``<name>`` is the file's stem
when that is already a safe name and no other input holds it; otherwise it is the
stem made safe (:func:`~clipminer.fsutil.safe_component`) with ``-`` and a short hash
of the source's resolved path. So ``..mp4``, ``state.sqlite.mp4``, ``x.mp4`` beside
``x.mkv``, and ``a/b.mp4`` beside ``a__b.mp4`` can never share a folder, reach OUT's
own files, or resolve outside ``OUT/videos``. Each folder's ``run.json`` records its
source (:class:`SourceId`), so a later run knows whose folder a name is; ``name`` is
also the ``youtube_id`` of the video's rows in ``kinetics.csv``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from clipminer.errors import UsageError
from clipminer.fsutil import COMPONENT_MAX_BYTES, safe_component, short_hash

VIDEOS_DIR = "videos"
"""The sub-folder of OUT that holds one folder per input video."""
RESERVED_NAMES = frozenset(
    {"kinetics.csv", "summary.csv", "report.html", "state.sqlite", "state.sqlite-wal",
     "state.sqlite-shm", "state.sqlite-journal", ".batch.lock", VIDEOS_DIR, "clips",
     "duplicates.csv", "review.sqlite", "review.sqlite-wal", "review.sqlite-shm",
     "review.sqlite-journal"}
)  # fmt: skip
"""OUT's own files: no per-video name may be one of these (even under ``videos/``)."""
RUN_JSON = "run.json"


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
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: --out must be a folder, but it is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    return out


def plain_name(video: str | os.PathLike[str]) -> str | None:
    """The file's stem when it can serve as a folder name unchanged, else None."""
    stem = Path(video).stem
    safe = safe_component(stem, reserved=RESERVED_NAMES)
    return stem if safe == stem else None


def hashed_name(video: str | os.PathLike[str], key: str) -> str:
    """The stem made safe, then ``-`` and a hash of ``key``: unique whatever the stem."""
    base = safe_component(
        Path(video).stem, reserved=RESERVED_NAMES, max_bytes=COMPONENT_MAX_BYTES - 11
    )
    return f"{base}-{short_hash(key, 10)}"


def read_source(folder: Path) -> SourceId | None:
    """The source recorded in ``folder/run.json``; None when there is none."""
    try:
        data = json.loads((folder / RUN_JSON).read_text())
        return SourceId(**data["source"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def folder_name(
    video: str | os.PathLike[str],
    source: SourceId,
    out: str | os.PathLike[str],
    *,
    owners: Mapping[str, str] | None = None,
) -> str:
    """The name of ``video``'s folder under ``OUT/videos``.

    The plain stem when it is safe, not held by another source in ``owners`` (folder
    name -> resolved source path, from this run or the state store), and not a folder
    on disk that belongs to another source; else the hashed name, which is the same
    on every run for the same resolved path.
    """
    plain = plain_name(video)
    owner_path = (owners or {}).get(plain or "", source.path)
    if plain is not None and owner_path == source.path:
        existing = videos_root(out) / plain
        owner = read_source(existing) if existing.exists() else None
        if not existing.exists() or (owner is not None and owner.same_file(source)):
            return plain
    return hashed_name(video, source.path)


def run_json(source: SourceId, **extra: object) -> dict[str, object]:
    """What ``run.json`` holds: the source, then ``extra`` (settings, times)."""
    return {"source": asdict(source), **extra}
