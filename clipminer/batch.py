"""``clipminer batch``: find-clips over a folder, every night, resumable.

State lives in ``OUT/state.sqlite`` (WAL): one row per video, keyed by its resolved
path, with its size, mtime and a content fingerprint (so a re-spelt, moved or
re-mounted input is recognised, not mined again), its output folder
``videos/<name>`` (:mod:`clipminer.layout`), status (queued, done, failed, skipped),
the error, times, counts, the clipminer version and a hash of the options and models.
A row becomes ``done`` only after the video's outputs are in place (they are written
to a staging folder and swapped in), so a run killed at any moment, even with
SIGKILL, is simply run again; worker processes die with the run. A lock file keeps
two runs off one OUT. One bad video never stops the batch. Engines: ``local`` (this
machine, ``--workers`` processes) and ``ray`` (one Ray actor per worker, one task
per video path).
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from clipminer import THREAD_ENV, __version__, store
from clipminer.config import BatchConfig
from clipminer.data.videos import VIDEO_SUFFIXES
from clipminer.errors import ClipminerError, OutputDiskError, UsageError, sqlite_disk_error
from clipminer.findclips import ClipMiner, VideoResult
from clipminer.fsutil import atomic_path, remove_leftover_stages, safe_component, short_hash
from clipminer.layout import (
    CLIPS_DIR,
    EMBEDDINGS_NPY,
    KINETICS_CSV,
    RUN_JSON,
    SCORES_PARQUET,
    VIDEOS_DIR,
    SourceId,
    check_out_folder,
    fingerprint,
    folder_name,
    videos_root,
)
from clipminer.mining import outputs
from clipminer.report import write_batch_reports
from clipminer.sources.register import REGISTER_NAME
from clipminer.store import as_video

log = logging.getLogger(__name__)

EXIT_LOCKED = 3


class BatchLocked(ClipminerError):  # noqa: N818
    """Another batch run holds the output folder."""

    exit_code = EXIT_LOCKED


# -- finding videos ---------------------------------------------------------------------------

NOT_VIDEO_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".csv", ".json",
     ".txt", ".parquet", ".html", ".sqlite", ".npy", ".pt", ".toml", ".log", ".md"}
)  # fmt: skip
"""Never probed: FFmpeg opens still images (and some text) as one-frame videos."""
_BOOKKEEPING = frozenset(f"{REGISTER_NAME}{end}" for end in ("", "-wal", "-shm", "-journal"))
"""fetch-videos' register beside the videos it fetched: not listed as a skipped file."""
_STILL_FORMATS = ("image2", "_pipe", "png", "gif", "webp", "tiff")


def find_videos(root: Path, *, exclude: Sequence[Path] = ()) -> tuple[list[Path], list[Path]]:
    """Video files under ``root`` (recursively): by suffix, and by probing the others.

    Hidden files and folders, and everything under ``exclude`` (the output folder when
    it lies inside the input), are left out, so a run never mines its own outputs.

    Returns:
        (videos, other files that are not videos). Files with a video suffix are videos
        even when they turn out unreadable (they then fail with their error).
    """
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    skip = {p.resolve() for p in exclude}
    videos: list[Path] = []
    others: list[Path] = []

    def unreadable(exc: OSError) -> None:
        log.warning("%s: cannot list (%s): the videos in it are not mined", exc.filename,
                    exc.strerror or exc)  # fmt: skip

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (here / d).resolve() not in skip
        )
        for filename in sorted(filenames):
            path = here / filename
            if filename.startswith(".") or filename in _BOOKKEEPING or not path.is_file():
                continue
            suffix = path.suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                videos.append(path)
            elif suffix in NOT_VIDEO_SUFFIXES or not _probes_as_video(path):
                others.append(path)
            else:
                videos.append(path)
    return videos, others


def _probes_as_video(path: Path) -> bool:
    import av

    try:
        with av.open(str(path)) as container:
            still = any(name in container.format.name for name in _STILL_FORMATS)
            return bool(container.streams.video) and not still
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return False


# -- state --------------------------------------------------------------------------------

Status = Literal["queued", "done", "failed", "skipped"]
SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of ``state.sqlite``: 2 keys rows by resolved path and keeps
outputs under ``videos/``; older files are refused with a one-line message."""


@dataclass
class VideoRow:
    """One row of ``state.sqlite``; the table's columns are these fields, in order."""

    path: str
    """The resolved path of the video (the primary key)."""
    size: int
    mtime: float
    fingerprint: str
    status: Status = "queued"
    error: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    duration_seconds: float | None = None
    segments: int = 0
    clips_json: str = "{}"
    """Clips per label."""
    seconds: float | None = None
    fps: float | None = None
    """Video seconds mined per wall-clock second."""
    output: str = ""
    """The video's folder relative to OUT: ``videos/<name>``."""
    version: str = __version__
    options_hash: str = ""
    attempts: int = 0


_COLUMNS = [f.name for f in fields(VideoRow)]
_SQL_TYPES = {"str": "TEXT", "Status": "TEXT", "int": "INTEGER", "float": "REAL"}


def _schema() -> str:
    """``CREATE TABLE`` derived from :class:`VideoRow`, so the two cannot drift."""
    columns = []
    for f in fields(VideoRow):
        base = str(f.type).split("|")[0].strip()
        columns.append(
            f"{f.name} {_SQL_TYPES[base]}" + (" PRIMARY KEY" if f.name == "path" else "")
        )
    return f"CREATE TABLE IF NOT EXISTS videos ({', '.join(columns)})"


LOCK_WAIT_SECONDS = 30.0
"""How long a statement waits for another process's lock on ``state.sqlite``."""
_ESCAPED = "bytes:"
"""Prefix of a text stored escaped: a name that is not UTF-8 (surrogate-escaped)."""


def _to_db(value: object) -> object:
    """Text as SQLite stores it: UTF-8 as it is, other names escaped (reversibly)."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogateescape")
        return _ESCAPED + codecs.escape_encode(raw)[0].decode("ascii")
    return value


def _from_db(value: object) -> object:
    if isinstance(value, str) and value.startswith(_ESCAPED):
        raw = codecs.escape_decode(value[len(_ESCAPED) :].encode("ascii"))[0]
        return raw.decode("utf-8", "surrogateescape")
    return value


def _row(values: Sequence[object]) -> VideoRow:
    return VideoRow(*(_from_db(v) for v in values))  # type: ignore[arg-type]


class StateStore:
    """``OUT/state.sqlite`` in WAL mode; every change is its own transaction. Names that
    are not UTF-8 are stored escaped and given back as they were."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, timeout=LOCK_WAIT_SECONDS, isolation_level=None)
        except sqlite3.Error as exc:
            raise UsageError(f"{path}: cannot open the state database ({exc})") from None
        version = self._run("PRAGMA user_version").fetchone()[0]
        exists = self._run(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'videos'"
        ).fetchone()
        if exists and version != SCHEMA_VERSION:
            self.db.close()
            raise UsageError(
                f"{path}: written by an older clipminer (state schema {version}, this one reads "
                f"{SCHEMA_VERSION}); mine into a new --out, or move state.sqlite aside to "
                "mine everything again"
            )
        self._run("PRAGMA journal_mode=WAL")
        self._run("PRAGMA synchronous=FULL")
        self._run(_schema())
        self._run(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _run(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        """One statement; a locked or broken database is one line naming the file."""
        try:
            return self.db.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise BatchLocked(
                    f"{self.path}: locked by another process for over {LOCK_WAIT_SECONDS:g} s; "
                    "run again when it is done"
                ) from None
            raise sqlite_disk_error(exc, self.path) or ClipminerError(
                f"{self.path}: {exc}"
            ) from None
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{self.path}: not a clipminer state database ({exc})") from None

    def get(self, path: str) -> VideoRow | None:
        cursor = self._run(
            f"SELECT {', '.join(_COLUMNS)} FROM videos WHERE path = ?", (_to_db(path),)
        )
        row = cursor.fetchone()
        return _row(row) if row else None

    def find_moved(self, size: int, fingerprint: str) -> VideoRow | None:
        """A row with this content whose file is no longer where it was (moved, re-mounted)."""
        cursor = self._run(
            f"SELECT {', '.join(_COLUMNS)} FROM videos WHERE size = ? AND fingerprint = ?",
            (size, fingerprint),
        )
        for values in cursor.fetchall():
            row = _row(values)
            if not Path(row.path).exists():
                return row
        return None

    def all(self) -> list[VideoRow]:
        cursor = self._run(f"SELECT {', '.join(_COLUMNS)} FROM videos ORDER BY path")
        return [_row(row) for row in cursor.fetchall()]

    def put(self, row: VideoRow) -> None:
        values = asdict(row)
        self._run(
            f"INSERT OR REPLACE INTO videos ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)})",
            [_to_db(values[c]) for c in _COLUMNS],
        )

    def delete(self, path: str) -> None:
        self._run("DELETE FROM videos WHERE path = ?", (_to_db(path),))

    def close(self) -> None:
        self.db.close()


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on ``OUT/.batch.lock`` for the whole run."""
    handle = (out / ".batch.lock").open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchLocked(f"{out}: another clipminer batch is running on this folder") from None
        yield
    finally:
        handle.close()


# -- running ------------------------------------------------------------------------------

RAY_CONNECT_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class Outcome:
    """What mining one video gave (a plain value: it crosses process and Ray boundaries)."""

    path: str
    ok: bool
    error: str = ""
    duration_seconds: float | None = None
    segments: int = 0
    clips: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    output: str = ""
    output_disk: bool = False
    """The failure was OUT's disk refusing a write (full, read-only), not the video's."""


def _outcome(
    path: str, result: VideoResult | ClipminerError, output: str, seconds: float
) -> Outcome:
    if isinstance(result, ClipminerError):
        disk = isinstance(result, OutputDiskError)
        error = store.scrub(str(result))  # a library's message may hold a signed URL
        return Outcome(path, False, error, seconds=seconds, output_disk=disk)
    clips: dict[str, int] = {}
    for c in result.candidates:
        clips[c.final_label] = clips.get(c.final_label, 0) + 1
    return Outcome(
        path,
        True,
        "",
        result.info.duration_seconds,
        len(result.candidates),
        clips,
        seconds,
        output,
    )


class VideoWorker:
    """Loads the models once and mines one video at a time (local process or Ray actor)."""

    def __init__(self, config: BatchConfig) -> None:
        self.miner = ClipMiner(
            config.image_model, list(config.video_models), config=config.findclips
        )

    def mine(self, video: str, out: str, name: str) -> Outcome:
        """Mine ``video`` (a path or a URL) into ``out/videos/<name>``; every failure
        becomes a failed Outcome. With ``out`` a bucket URL, the folder is made in a
        temporary folder on this machine and uploaded whole, its ``run.json`` last."""
        started = time.perf_counter()
        shown = str(as_video(video))
        try:
            if store.is_url(out):
                with tempfile.TemporaryDirectory(prefix="clipminer-video-") as local:
                    mined = self.miner.run(video, local, name=name)
                    try:
                        outputs.upload(mined.out_dir, out, thumbnails=True)
                    except store.StoreError as exc:  # OUT's fault, not the video's
                        raise OutputDiskError(f"{exc} (uploading the results)") from None
                    result: VideoResult | ClipminerError = mined
            else:
                result = self.miner.run(video, out, name=name)
        except ClipminerError as exc:
            result = exc
        except Exception as exc:  # the batch loop: one video's failure is recorded, not raised
            log.debug("%s: unexpected failure", shown, exc_info=True)
            result = ClipminerError(f"{shown}: {type(exc).__name__}: {exc}")
        return _outcome(shown, result, f"{VIDEOS_DIR}/{name}", time.perf_counter() - started)


_WORKER: VideoWorker | None = None


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker process end the moment the batch process does, even on SIGKILL.

    On Linux the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``); a
    watchdog thread that polls the parent's pid covers other systems. Either way a
    worker never writes into OUT after its run is gone, and a new run that takes the
    lock does not race it.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # died before the line above
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent watchdog").start()


def _init_process(config: BatchConfig, parent_pid: int) -> None:
    global _WORKER
    _die_with_parent(parent_pid)
    _WORKER = VideoWorker(config)


BATCH_FILES = ("state.sqlite", "summary.csv", "report.html", "kinetics.csv")
"""batch's own files in OUT."""
Job = tuple[str, str]
"""A video to mine: where to read it (a resolved path or a URL) and its folder name."""
INFLIGHT_DIR = ".inflight"
"""Under OUT: one file per video a worker process is mining right now (its pid)."""


def _mine_in_process(video: str, out: str, local: str, name: str) -> Outcome:
    """One video in a worker process; ``local`` is this machine's OUT (or work folder),
    where its in-flight marker goes."""
    assert _WORKER is not None
    marker = Path(local) / INFLIGHT_DIR / name
    with contextlib.suppress(OSError):
        marker.write_text(f"{os.getpid()}\n")
    try:
        return _WORKER.mine(video, out, name)
    finally:
        marker.unlink(missing_ok=True)


@dataclass
class BatchSummary:
    """Counts of one run."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    already_done: int = 0
    stale: int = 0
    """Of ``already_done``: done with other options or models (``--force`` redoes them)."""
    outcomes: list[Outcome] = field(default_factory=list)


def run_batch(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: BatchConfig,
    on_outcome: Callable[[Outcome], None] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> BatchSummary:
    """Mine every video under ``root`` that is not done yet; write state and reports.

    ``root`` and ``out`` may be bucket URLs. With ``out`` in a bucket, the run's own
    files (``state.sqlite``, the reports) are kept in ``work_dir`` on this machine
    (default: :func:`work_folder`), uploaded after each change, and taken from the
    bucket at the start; a video's folder counts as done only when its ``run.json`` is
    in the bucket, and only this process writes the state and the reports.
    """
    out, root = store.local_or_url(out), store.local_or_url(root)
    out_url = out if isinstance(out, str) else None
    local = check_out_folder(work_dir or (work_folder(out_url) if out_url else out))
    remote_root = isinstance(root, str)
    if not remote_root and not out_url:
        _check_not_inside_out(Path(root), local)
    if remote_root and out_url:
        _check_not_inside_stored_out(str(root), out_url)
    for name in BATCH_FILES:
        if (local / name).exists() and not (local / name).is_file():
            raise UsageError(f"{local / name}: is a folder, not the run's {name}; move it away")
    stored: tuple[list[store.ObjectInfo], list[str]] = ([], [])
    found: tuple[list[Path], list[Path]] = ([], [])
    if remote_root:
        stored = _list_stored(str(root), exclude=out_url)
    else:
        found = find_videos(Path(root), exclude=[local, videos_root(local)])
    options = config.options_hash()
    summary = BatchSummary()
    with output_lock(local):
        _clean_leftovers(local)
        if out_url:
            _pull_state(out_url, local)
        state = StateStore(local / "state.sqlite")
        try:
            state_file = _identity(local / "state.sqlite")
            done = _stored_done(out_url) if out_url else None
            plan = _Plan(state, local, options, config, summary, done, out_url)
            plan.skip_others([*found[1], *stored[1]])
            todo = plan.stored(stored[0]) if remote_root else plan.local(found[0])
            for outcome in _execute(todo, out_url or str(local), local, config):
                if _identity(local / "state.sqlite") != state_file:
                    raise ClipminerError(
                        f"{local}: the output folder was deleted or replaced during the run "
                        f"(its state.sqlite is gone); stopped after {summary.done} done, "
                        "so that nothing is mined into a folder without its state"
                    )
                if outcome.output_disk:  # not the video's fault: it stays queued
                    raise OutputDiskError(
                        f"{outcome.error}; stopped after {summary.done} done, the rest stay "
                        "queued: run again once it takes writes"
                    )
                _record(state, outcome, options)
                if out_url and done is not None:
                    _after_change(state, local, out_url, outcome, done)
                summary.outcomes.append(outcome)
                if outcome.ok:
                    summary.done += 1
                else:
                    summary.failed += 1
                if on_outcome:
                    on_outcome(outcome)
            rows = state.all()
            if out_url and done is not None:
                _mirror_done(rows, local, out_url, done)
            write_batch_reports(local, rows)
            if out_url:
                _push_run_files(state, local, out_url)
        finally:
            state.close()
    return summary


# -- OUT in a bucket ---------------------------------------------------------------------

_NOT_MIRRORED = (CLIPS_DIR, SCORES_PARQUET, EMBEDDINGS_NPY)
"""What the driver does not copy of a done video's folder: its small files (run.json,
segments.csv, shots, timeline, thumbnails) are enough for the reports."""


def work_folder(out_url: str) -> Path:
    """This machine's folder for the run-level files of OUT in a bucket."""
    label = safe_component(store.redact(out_url).split("://", 1)[-1].replace("/", "_"))[:80]
    return store.cache_root() / "runs" / f"{label}-{short_hash(store.redact(out_url), 10)}"


def _stored_done(out_url: str) -> dict[str, str]:
    """The video folders in the bucket that are done (have ``run.json``), by name, with
    the fingerprint of their ``run.json``: one listing, whatever the number of videos."""
    root = store.join(out_url, VIDEOS_DIR)
    names = {}
    for found in store.list_objects(root) if store.exists(root) else []:
        relative = found.url[len(root) :].strip("/").split("/")
        if len(relative) == 2 and relative[1] == RUN_JSON:
            names[relative[0]] = found.fingerprint
    return names


def _pull_state(out_url: str, local: Path) -> None:
    """The bucket's ``state.sqlite`` (when there is one) replaces this machine's copy,
    unless this machine's is newer (an upload that failed last time)."""
    url = store.join(out_url, "state.sqlite")
    if not store.exists(url):
        return
    mine = [local / "state.sqlite", local / "state.sqlite-wal"]
    newest = max((p.stat().st_mtime for p in mine if p.is_file()), default=None)
    if newest is not None and newest > store.stat(url).mtime + 1:
        log.warning("%s: kept this machine's newer state.sqlite", local)
        return
    for end in ("-wal", "-shm", "-journal"):
        (local / f"state.sqlite{end}").unlink(missing_ok=True)
    with atomic_path(local / "state.sqlite") as tmp:
        tmp.write_bytes(store.read_bytes(url))


def _push_state(state: StateStore, local: Path, out_url: str) -> None:
    """A consistent copy of ``state.sqlite`` (SQLite's backup) uploaded whole."""
    copy = local / ".state-upload.sqlite"
    copy.unlink(missing_ok=True)
    target = sqlite3.connect(copy)
    try:
        state.db.backup(target)
    finally:
        target.close()
    try:
        store.put_file(copy, store.join(out_url, "state.sqlite"))
    finally:
        copy.unlink(missing_ok=True)


def _after_change(
    state: StateStore, local: Path, out_url: str, outcome: Outcome, done: dict[str, str]
) -> None:
    """After a video: its small files into this machine's copy, the state into the bucket.
    The store failing here costs nothing mined (the next upload carries it)."""
    try:
        if outcome.ok:
            name = Path(outcome.output).name
            done[name] = store.stat(store.join(out_url, outcome.output, RUN_JSON)).fingerprint
            _mirror(out_url, local, outcome.output, done[name])
        _push_state(state, local, out_url)
    except ClipminerError as exc:
        log.warning("%s (the next change uploads the state again)", exc)


_MIRRORED_FROM = ".mirrored-from"
"""In a copied folder: the fingerprint of the ``run.json`` it was copied with."""


def _mirror(out_url: str, local: Path, output: str, fingerprint: str) -> None:
    """This machine's copy of a done folder's small files (:data:`_NOT_MIRRORED` aside)."""
    store.download_folder(store.join(out_url, output), local / output, skip=_NOT_MIRRORED)
    (local / output / _MIRRORED_FROM).write_text(fingerprint)


def _mirror_done(rows: Sequence[VideoRow], local: Path, out_url: str, done: dict[str, str]) -> None:
    """Copies of the done folders this machine lacks, or has from an earlier result (a
    video mined again from another machine)."""
    for row in rows:
        name = Path(row.output).name
        if row.status != "done" or not row.output or name not in done:
            continue
        with contextlib.suppress(OSError):
            if (local / row.output / _MIRRORED_FROM).read_text() == done[name]:
                continue
        with contextlib.suppress(ClipminerError):
            _mirror(out_url, local, row.output, done[name])


def _push_run_files(state: StateStore, local: Path, out_url: str) -> None:
    """The reports and the state into the bucket (the report's links are relative)."""
    for name in ("summary.csv", KINETICS_CSV, "report.html"):
        store.put_file(local / name, store.join(out_url, name))
    _push_state(state, local, out_url)


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``, None when it is gone."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _check_not_inside_out(root: Path, out: Path) -> None:
    """OUT is never an input: an input folder inside OUT's videos is refused (the input
    may contain OUT, or be OUT itself: its videos folder is then left out of the walk)."""
    try:
        inside = root.resolve().is_relative_to(videos_root(out).resolve())
    except OSError:
        return
    if inside:
        raise UsageError(
            f"{root}: the input folder is inside the output folder {out} (its mined clips); "
            "give the folder of the long videos"
        )


def _clean_leftovers(out: Path) -> None:
    """Staging folders of a killed run (find-clips swaps complete folders in)."""
    import shutil

    for folder in (out, videos_root(out)):
        remove_leftover_stages(folder)
    shutil.rmtree(out / INFLIGHT_DIR, ignore_errors=True)


class _Plan:
    """Rows for new and changed videos, and the jobs (where to read, folder name) to mine.

    A file is one video however many names lead to it (symlinks, hard links: by device
    and inode); a done row counts only while its folder is complete (``run.json``,
    written last; with OUT in a bucket, there), else the video is mined again; a file
    that cannot be read is a failed row with the reason, and the rest goes on.
    """

    def __init__(
        self,
        state: StateStore,
        out: Path,
        options: str,
        config: BatchConfig,
        summary: BatchSummary,
        done: dict[str, str] | None,
        out_url: str | None,
    ) -> None:
        self.state, self.out, self.options, self.config = state, out, options, config
        self.summary, self.done, self.out_url = summary, done, out_url
        self.owners = {Path(row.output).name: row.path for row in state.all() if row.output}
        """Folder name -> the source it belongs to."""

    def skip_others(self, others: Sequence[Path | str]) -> None:
        """Rows for the files that are not videos (skipped, with the reason)."""
        for other in others:
            with contextlib.suppress(OSError, ClipminerError):
                if isinstance(other, str):  # an object in the store, by its name
                    key, size, mtime = store.redact(other), 0, 0.0
                    error = f"{key}: not a video file (objects are chosen by suffix)"
                else:
                    key, info = str(other.resolve()), other.stat()
                    size, mtime, error = info.st_size, info.st_mtime, f"{other}: not a video file"
                if self.state.get(key) is None:
                    self.state.put(VideoRow(key, size, mtime, "", "skipped", error))
            self.summary.skipped += 1

    def local(self, videos: Sequence[Path]) -> list[Job]:
        todo = []
        seen: dict[tuple[int, int], Path] = {}
        for path in videos:
            try:
                resolved = path.resolve()
                info = resolved.stat()
                key = (info.st_dev, info.st_ino)
                if key in seen:
                    log.info("%s: the same file as %s (a link): mined once", path, seen[key])
                    self.summary.skipped += 1
                    continue
                seen[key] = path
                row = self.state.get(str(resolved))
                changed = row is None or row.size != info.st_size or row.mtime != info.st_mtime
                print_ = fingerprint(resolved) if changed else row.fingerprint  # type: ignore[union-attr]
            except OSError as exc:
                self.summary.outcomes.append(_unreadable(path, exc, self.state))
                self.summary.failed += 1
                continue
            if row is None:
                row = self.state.find_moved(info.st_size, print_)
                if row is not None:  # the same content, moved or re-mounted: keep its outputs
                    log.info("%s: moved from %s", path, row.path)
                    self.state.delete(row.path)
                    row.path, row.mtime = str(resolved), info.st_mtime
                    self.state.put(row)
                    self.owners[Path(row.output).name] = row.path
                    changed = False
            elif changed and row.fingerprint == print_:
                changed = False  # touched, not modified
            source = SourceId(str(resolved), info.st_size, info.st_mtime, print_)
            job = self._queue(path, str(resolved), source, row, changed)
            todo += [job] if job else []
        return todo

    def stored(self, objects: Sequence[store.ObjectInfo]) -> list[Job]:
        """Jobs for videos in the store: keyed by their URL without secrets; the
        fingerprint comes from the listing (size and ETag), so nothing is read here."""
        todo = []
        for found in objects:
            key = store.redact(found.url)
            row = self.state.get(key)
            changed = row is None or row.fingerprint != found.fingerprint
            source = SourceId(key, found.size, found.mtime, found.fingerprint)
            job = self._queue(store.RemoteVideo(found.url), found.url, source, row, changed)
            todo += [job] if job else []
        return todo

    def _queue(
        self,
        video: Path | store.RemoteVideo,
        location: str,
        source: SourceId,
        row: VideoRow | None,
        changed: bool,
    ) -> Job | None:
        """A queued row and the job of a video that needs mining; None when it does not."""
        if row is not None and not changed and self._settled(video, row):
            return None
        name = (
            Path(row.output).name
            if row is not None and row.output
            else folder_name(video, source, self.out, owners=self.owners, out_url=self.out_url)
        )
        self.owners[name] = source.path
        self.state.put(
            VideoRow(
                source.path,
                source.size,
                source.mtime,
                source.fingerprint,
                status="queued",
                options_hash=self.options,
                attempts=row.attempts if row else 0,
                output=f"{VIDEOS_DIR}/{name}",
            )
        )
        return location, name

    def _settled(self, video: object, row: VideoRow) -> bool:
        """Whether an unchanged video needs nothing tonight: done (and its folder
        complete; with other options only under ``--force`` is it redone), or failed
        before (unless ``--retry-failed``). Counts it in the summary."""
        if row.status == "done" and not self._complete(row):
            log.warning(
                "%s: marked done but %s is not complete: mining it again", video, row.output
            )
            row.status = "queued"
        if row.status == "done" and (row.options_hash == self.options or not self.config.force):
            if row.options_hash != self.options:
                self.summary.stale += 1
            self.summary.already_done += 1
            return True
        if row.status == "failed" and not self.config.retry_failed:
            self.summary.skipped += 1
            return True
        return False

    def _complete(self, row: VideoRow) -> bool:
        """Whether a done video's folder is all there (``run.json`` is written last)."""
        if not row.output:
            return False
        if self.done is not None:
            return Path(row.output).name in self.done
        return (self.out / row.output / RUN_JSON).is_file()


def _check_not_inside_stored_out(root: str, out_url: str) -> None:
    """:func:`_check_not_inside_out` for a bucket: the input may hold OUT (its objects
    are then left out), never lie inside OUT's videos."""
    inside = store.join(out_url, VIDEOS_DIR).rstrip("/") + "/"
    if (root.rstrip("/") + "/").startswith(inside):
        raise UsageError(
            f"{store.redact(root)}: the input is inside the output {store.redact(out_url)} "
            "(its mined clips); give the prefix of the long videos"
        )


def _list_stored(
    root: str, *, exclude: str | None = None
) -> tuple[list[store.ObjectInfo], list[str]]:
    """The videos under a bucket prefix (or the one object ``root`` names), by suffix:
    objects are not probed (each probe would be a read); and the other objects.
    Everything under ``exclude`` (OUT, when the input prefix holds it) is left out."""
    videos: list[store.ObjectInfo] = []
    others: list[store.ObjectInfo] = []
    skip = exclude.rstrip("/") + "/" if exclude else None
    for found in store.list_objects(root):
        if skip and found.url.startswith(skip):
            continue
        suffix = store.RemoteVideo(found.url).suffix.lower()
        (videos if suffix in VIDEO_SUFFIXES else others).append(found)
    return videos, [o.url for o in others if not o.url.endswith(tuple(_BOOKKEEPING))]


def _unreadable(path: Path, exc: OSError, state: StateStore) -> Outcome:
    """A video that cannot even be looked at: a failed row with the reason, one line."""
    error = f"{path}: cannot read ({exc.strerror or exc})"
    log.error("%s", error)
    with contextlib.suppress(OSError):
        key = str(path.absolute())
        row = state.get(key) or VideoRow(key, 0, 0.0, "", "failed")
        row.status, row.error = "failed", error
        state.put(row)
    return Outcome(str(path), False, error)


def _record(state: StateStore, outcome: Outcome, options: str) -> None:
    row = state.get(outcome.path)
    assert row is not None
    row.status = "done" if outcome.ok else "failed"
    row.error = outcome.error
    row.finished_at = time.time()
    row.started_at = row.finished_at - outcome.seconds
    row.duration_seconds = outcome.duration_seconds
    row.segments = outcome.segments
    row.clips_json = json.dumps(outcome.clips, sort_keys=True)
    row.seconds = round(outcome.seconds, 3)
    row.fps = (
        round(outcome.duration_seconds / outcome.seconds, 2)
        if outcome.duration_seconds and outcome.seconds
        else None
    )
    row.version = __version__
    row.options_hash = options
    row.attempts += 1
    state.put(row)


def _execute(todo: list[Job], out: str, local: Path, config: BatchConfig) -> Iterator[Outcome]:
    """Outcomes of the jobs, as they finish: results go to ``out`` (a folder or a bucket
    URL); ``local`` is this machine's folder for the run's own files."""
    if not todo:
        return
    if config.engine == "ray":
        yield from _execute_ray(todo, out, config)
    elif config.workers == 1:
        worker = VideoWorker(config)
        for path, name in todo:
            yield worker.mine(path, out, name)
    else:
        yield from _execute_pool(todo, out, local, config)


def _execute_pool(todo: list[Job], out: str, local: Path, config: BatchConfig) -> Iterator[Outcome]:
    """``--workers`` processes. A worker killed by a signal (the out-of-memory killer's
    SIGKILL) breaks the pool and takes the videos then in flight with it (their markers
    in ``OUT/.inflight`` say which). Each of those is mined again alone, in a pool of its
    own: if that worker dies too, the video is failed with the reason; the videos not
    started go on in a new pool. A killed worker costs only its own video."""
    pending = list(todo)
    while pending:
        unfinished: list[Job] = []
        yield from _pool_run(pending, out, local, config, config.workers, unfinished)
        if not unfinished:
            return
        running = _inflight(local)
        suspects = [item for item in unfinished if item[1] in running]
        log.warning(
            "a worker process died; %d videos it may have taken are mined again one by one",
            len(suspects),
        )
        for path, name in suspects:
            again: list[Job] = []
            yield from _pool_run([(path, name)], out, local, config, 1, again)
            _inflight(local)
            if again:
                error = (
                    f"{as_video(path)}: its worker process died while mining it, twice "
                    "(killed by a signal, such as the out-of-memory killer's SIGKILL)"
                )
                log.error("%s", error)
                yield Outcome(str(as_video(path)), False, error)
        pending = [item for item in unfinished if item[1] not in running]


def _inflight(out: Path) -> set[str]:
    """The videos whose markers say they were being mined; the markers are cleared."""
    folder = out / INFLIGHT_DIR
    names = set()
    with contextlib.suppress(OSError):
        for marker in folder.iterdir():
            names.add(marker.name)
            marker.unlink(missing_ok=True)
    return names


def _pool_run(
    items: list[Job],
    out: str,
    local: Path,
    config: BatchConfig,
    workers: int,
    unfinished: list[Job],
) -> Iterator[Outcome]:
    """Outcomes of one process pool; what a broken pool did not finish goes to ``unfinished``."""
    import concurrent.futures as cf
    import multiprocessing

    (local / INFLIGHT_DIR).mkdir(exist_ok=True)
    pool = cf.ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_process,
        initargs=(config, os.getpid()),
    )
    try:
        futures = {pool.submit(_mine_in_process, p, out, str(local), n): (p, n) for p, n in items}
        for future in cf.as_completed(futures):
            try:
                outcome = future.result()
            except cf.process.BrokenProcessPool:
                unfinished.append(futures[future])
                continue
            yield outcome
    finally:  # a run that stops early does not wait for the videos not started
        pool.shutdown(wait=True, cancel_futures=True)


def check_reachable(address: str, timeout_seconds: float = RAY_CONNECT_TIMEOUT_SECONDS) -> None:
    """Fail at once, with one line, when nothing listens at a Ray ``host:port`` address.

    ``ray.init`` itself retries an unreachable address for minutes. ``auto`` and
    addresses without a port are left to Ray.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_seconds).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(
            f"--ray-address {address}: cannot reach the Ray cluster ({reason})"
        ) from None


RAY_RETRIES = 2
"""How often a video is tried again after its Ray worker died (a node lost mid-video).
The video goes back to the queue for any live worker, and a new worker is started in
place of the dead one, wherever the cluster has room."""
STORE_ENV = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_MAX_ATTEMPTS",
             "AWS_RETRY_MODE", "AWS_PROFILE")  # fmt: skip
"""The store's settings that Ray workers get from the driver. Never credentials: each
node takes those from its own chain (environment, profile files, instance role)."""


def _execute_ray(todo: list[Job], out: str, config: BatchConfig) -> Iterator[Outcome]:
    """One actor per worker, each loading the models once. Only paths and URLs travel:
    each actor reads its video from the store (or a shared filesystem) and, with OUT in
    a bucket, uploads its folder from its own node. A video whose actor died (its node
    lost) goes back to the queue, up to :data:`RAY_RETRIES` times, and is then failed
    with the reason; a partial upload never counts, as its ``run.json`` goes last."""
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'clipminer[ray]'") from None

    started_here = not ray.is_initialized()
    if started_here:
        forwarded = {k: os.environ[k] for k in STORE_ENV if k in os.environ}
        env = {"env_vars": {**THREAD_ENV, **forwarded}}
        if config.ray_address:
            check_reachable(config.ray_address)
            ray.init(address=config.ray_address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(
                num_cpus=config.workers,
                runtime_env=env,
                log_to_driver=False,
                include_dashboard=False,
            )
    try:
        yield from _RayPool(ray, config).run(todo, out)
    finally:
        if started_here:
            ray.shutdown()


class _RayPool:
    """The Ray actors of one run and the videos they are mining."""

    def __init__(self, ray: Any, config: BatchConfig) -> None:
        self.ray, self.config = ray, config
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= config.workers else 0
        self.actor = ray.remote(num_cpus=1, num_gpus=gpus)(VideoWorker)
        self.idle: list[Any] = []
        self.failed_starts = 0
        self.starting: dict[Any, Any] = {}
        """Readiness call -> actor, for actors not yet up (placed where there is room)."""
        for _ in range(config.workers):
            self._start()

    def _start(self) -> None:
        worker = self.actor.remote(self.config)
        self.starting[worker.__ray_ready__.remote()] = worker

    def _start_failed(self, exc: Exception) -> None:
        """Start another worker, unless as many as the run has failed in a row: then
        they would fail forever (a model the nodes cannot read, a package missing)."""
        reason = store.scrub((str(exc).strip().splitlines() or [type(exc).__name__])[-1])
        self.failed_starts += 1
        if self.failed_starts > self.config.workers + RAY_RETRIES:
            raise ClipminerError(
                f"{self.failed_starts} Ray workers in a row did not start; the last: {reason}"
            )
        log.warning("a Ray worker did not start (%s); starting another", reason)
        self._start()

    def run(self, todo: list[Job], out: str) -> Iterator[Outcome]:
        from ray.exceptions import RayError

        queue = list(todo)
        tries = dict.fromkeys(todo, 0)
        running: dict[Any, tuple[Job, Any]] = {}
        while queue or running:
            while self.idle and queue:
                job, worker = queue.pop(0), self.idle.pop()
                running[worker.mine.remote(job[0], out, job[1])] = (job, worker)
            ready, _ = self.ray.wait([*running, *self.starting], num_returns=1)
            if ready[0] in self.starting:
                worker = self.starting.pop(ready[0])
                try:
                    self.ray.get(ready[0])
                    self.idle.append(worker)
                    self.failed_starts = 0
                except RayError as exc:  # its models would not load there, or its node died
                    self._start_failed(exc)
                continue
            job, worker = running.pop(ready[0])
            try:
                outcome = self.ray.get(ready[0])
            except RayError as exc:
                self.ray.kill(worker, no_restart=True)
                self._start()
                tries[job] += 1
                shown = as_video(job[0])
                if tries[job] <= RAY_RETRIES:
                    reason = (str(exc).splitlines() or [type(exc).__name__])[0]
                    log.warning("%s: its Ray worker died (%s); trying it again", shown, reason)
                    queue.insert(0, job)
                    continue
                error = (
                    f"{shown}: its Ray worker died while mining it, {tries[job]} times "
                    f"({type(exc).__name__})"
                )
                log.error("%s", error)
                outcome = Outcome(str(shown), False, error)
            else:
                self.idle.append(worker)
            yield outcome
