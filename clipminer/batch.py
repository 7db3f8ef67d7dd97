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
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from clipminer import THREAD_ENV, __version__
from clipminer.config import BatchConfig
from clipminer.data.videos import VIDEO_SUFFIXES
from clipminer.errors import ClipminerError, OutputDiskError, UsageError, sqlite_disk_error
from clipminer.findclips import ClipMiner, VideoResult
from clipminer.fsutil import remove_leftover_stages
from clipminer.layout import (
    RUN_JSON,
    VIDEOS_DIR,
    SourceId,
    check_out_folder,
    fingerprint,
    folder_name,
    videos_root,
)
from clipminer.report import write_batch_reports
from clipminer.sources.register import REGISTER_NAME

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
    path: Path, result: VideoResult | ClipminerError, output: str, seconds: float
) -> Outcome:
    if isinstance(result, ClipminerError):
        disk = isinstance(result, OutputDiskError)
        return Outcome(str(path), False, str(result), seconds=seconds, output_disk=disk)
    clips: dict[str, int] = {}
    for c in result.candidates:
        clips[c.final_label] = clips.get(c.final_label, 0) + 1
    return Outcome(
        str(path),
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
        """Mine ``video`` into ``out/videos/<name>``; every failure becomes a failed Outcome."""
        started = time.perf_counter()
        try:
            result: VideoResult | ClipminerError = self.miner.run(Path(video), Path(out), name=name)
        except ClipminerError as exc:
            result = exc
        except Exception as exc:  # the batch loop: one video's failure is recorded, not raised
            log.debug("%s: unexpected failure", video, exc_info=True)
            result = ClipminerError(f"{video}: {type(exc).__name__}: {exc}")
        return _outcome(Path(video), result, f"{VIDEOS_DIR}/{name}", time.perf_counter() - started)


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
INFLIGHT_DIR = ".inflight"
"""Under OUT: one file per video a worker process is mining right now (its pid)."""


def _mine_in_process(video: str, out: str, name: str) -> Outcome:
    assert _WORKER is not None
    marker = Path(out) / INFLIGHT_DIR / name
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
) -> BatchSummary:
    """Mine every video under ``root`` that is not done yet; write state and reports."""
    root, out = Path(root), check_out_folder(out)
    _check_not_inside_out(root, out)
    for name in BATCH_FILES:
        if (out / name).exists() and not (out / name).is_file():
            raise UsageError(f"{out / name}: is a folder, not the run's {name}; move it away")
    videos, others = find_videos(root, exclude=[out, videos_root(out)])
    options = config.options_hash()
    summary = BatchSummary()
    with output_lock(out):
        _clean_leftovers(out)
        state = StateStore(out / "state.sqlite")
        try:
            state_file = _identity(out / "state.sqlite")
            todo = _plan(state, out, videos, others, options, config, summary)
            for outcome in _execute(todo, out, config):
                if _identity(out / "state.sqlite") != state_file:
                    raise ClipminerError(
                        f"{out}: the output folder was deleted or replaced during the run "
                        f"(its state.sqlite is gone); stopped after {summary.done} done, "
                        "so that nothing is mined into a folder without its state"
                    )
                if outcome.output_disk:  # not the video's fault: it stays queued
                    raise OutputDiskError(
                        f"{outcome.error}; stopped after {summary.done} done, the rest stay "
                        "queued: run again once the disk takes writes"
                    )
                _record(state, outcome, options)
                summary.outcomes.append(outcome)
                if outcome.ok:
                    summary.done += 1
                else:
                    summary.failed += 1
                if on_outcome:
                    on_outcome(outcome)
            write_batch_reports(out, state.all())
        finally:
            state.close()
    return summary


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


def _plan(
    state: StateStore,
    out: Path,
    videos: Sequence[Path],
    others: Sequence[Path],
    options: str,
    config: BatchConfig,
    summary: BatchSummary,
) -> list[tuple[Path, str]]:
    """Rows for new and changed videos; the (path, folder name) pairs to mine.

    A file is one video however many names lead to it (symlinks, hard links: by device
    and inode); a done row counts only while its folder is complete (``run.json``, written
    last), else the video is mined again; a file that cannot be read is a failed row with
    the reason, and the rest goes on.
    """
    _skip_others(state, others, summary)
    owners = {Path(row.output).name: row.path for row in state.all() if row.output}
    todo = []
    seen: dict[tuple[int, int], Path] = {}
    for path in videos:
        try:
            resolved = path.resolve()
            stat = resolved.stat()
            key = (stat.st_dev, stat.st_ino)
            if key in seen:
                log.info("%s: the same file as %s (a link): mined once", path, seen[key])
                summary.skipped += 1
                continue
            seen[key] = path
            row = state.get(str(resolved))
            changed = row is None or row.size != stat.st_size or row.mtime != stat.st_mtime
            print_ = fingerprint(resolved) if changed else row.fingerprint  # type: ignore[union-attr]
        except OSError as exc:
            summary.outcomes.append(_unreadable(path, exc, state))
            summary.failed += 1
            continue
        if row is None:
            row = state.find_moved(stat.st_size, print_)
            if row is not None:  # the same content, moved or re-mounted: keep its outputs
                log.info("%s: moved from %s", path, row.path)
                state.delete(row.path)
                row.path, row.mtime = str(resolved), stat.st_mtime
                state.put(row)
                owners[Path(row.output).name] = row.path
                changed = False
        elif changed and row.fingerprint == print_:
            changed = False  # touched, not modified
        if row is not None and not changed and _settled(path, row, out, options, config, summary):
            continue
        source = SourceId(str(resolved), stat.st_size, stat.st_mtime, print_)
        name = (
            Path(row.output).name
            if row is not None and row.output
            else folder_name(path, source, out, owners=owners)
        )
        owners[name] = source.path
        state.put(
            VideoRow(
                source.path,
                stat.st_size,
                stat.st_mtime,
                print_,
                status="queued",
                options_hash=options,
                attempts=row.attempts if row else 0,
                output=f"{VIDEOS_DIR}/{name}",
            )
        )
        todo.append((resolved, name))
    return todo


def _skip_others(state: StateStore, others: Sequence[Path], summary: BatchSummary) -> None:
    """Rows for the files that are not videos (skipped, with the reason)."""
    for path in others:
        with contextlib.suppress(OSError):
            if state.get(str(path.resolve())) is None:
                stat = path.stat()
                error = f"{path}: not a video file"
                state.put(
                    VideoRow(str(path.resolve()), stat.st_size, stat.st_mtime, "", "skipped", error)
                )
        summary.skipped += 1


def _settled(
    path: Path, row: VideoRow, out: Path, options: str, config: BatchConfig, summary: BatchSummary
) -> bool:
    """Whether an unchanged video needs nothing tonight: done (and its folder complete;
    with other options only under ``--force`` is it redone), or failed before (unless
    ``--retry-failed``). Counts it in ``summary``."""
    if row.status == "done" and not _complete(out, row):
        log.warning("%s: marked done but %s is not complete: mining it again", path, row.output)
        row.status = "queued"
    if row.status == "done" and (row.options_hash == options or not config.force):
        if row.options_hash != options:
            summary.stale += 1
        summary.already_done += 1
        return True
    if row.status == "failed" and not config.retry_failed:
        summary.skipped += 1
        return True
    return False


def _complete(out: Path, row: VideoRow) -> bool:
    """Whether a done video's folder is all there (``run.json`` is written last)."""
    return bool(row.output) and (out / row.output / RUN_JSON).is_file()


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


def _execute(todo: list[tuple[Path, str]], out: Path, config: BatchConfig) -> Iterator[Outcome]:
    if not todo:
        return
    if config.engine == "ray":
        yield from _execute_ray(todo, out, config)
    elif config.workers == 1:
        worker = VideoWorker(config)
        for path, name in todo:
            yield worker.mine(str(path), str(out), name)
    else:
        yield from _execute_pool(todo, out, config)


def _execute_pool(
    todo: list[tuple[Path, str]], out: Path, config: BatchConfig
) -> Iterator[Outcome]:
    """``--workers`` processes. A worker killed by a signal (the out-of-memory killer's
    SIGKILL) breaks the pool and takes the videos then in flight with it (their markers
    in ``OUT/.inflight`` say which). Each of those is mined again alone, in a pool of its
    own: if that worker dies too, the video is failed with the reason; the videos not
    started go on in a new pool. A killed worker costs only its own video."""
    pending = list(todo)
    while pending:
        unfinished: list[tuple[Path, str]] = []
        yield from _pool_run(pending, out, config, config.workers, unfinished)
        if not unfinished:
            return
        running = _inflight(out)
        suspects = [item for item in unfinished if item[1] in running]
        log.warning(
            "a worker process died; %d videos it may have taken are mined again one by one",
            len(suspects),
        )
        for path, name in suspects:
            again: list[tuple[Path, str]] = []
            yield from _pool_run([(path, name)], out, config, 1, again)
            _inflight(out)
            if again:
                error = (
                    f"{path}: its worker process died while mining it, twice (killed by a "
                    "signal, such as the out-of-memory killer's SIGKILL)"
                )
                log.error("%s", error)
                yield Outcome(str(path), False, error)
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
    items: list[tuple[Path, str]],
    out: Path,
    config: BatchConfig,
    workers: int,
    unfinished: list[tuple[Path, str]],
) -> Iterator[Outcome]:
    """Outcomes of one process pool; what a broken pool did not finish goes to ``unfinished``."""
    import concurrent.futures as cf
    import multiprocessing

    (out / INFLIGHT_DIR).mkdir(exist_ok=True)
    pool = cf.ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_process,
        initargs=(config, os.getpid()),
    )
    try:
        futures = {pool.submit(_mine_in_process, str(p), str(out), n): (p, n) for p, n in items}
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


def _execute_ray(todo: list[tuple[Path, str]], out: Path, config: BatchConfig) -> Iterator[Outcome]:
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'clipminer[ray]'") from None
    from ray.util import ActorPool

    started_here = not ray.is_initialized()
    if started_here:
        env = {"env_vars": dict(THREAD_ENV)}
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
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= config.workers else 0
        actor = ray.remote(num_cpus=1, num_gpus=gpus)(VideoWorker)
        pool = ActorPool([actor.remote(config) for _ in range(config.workers)])
        # Only paths travel: each actor reads its video from the shared filesystem.
        yield from pool.map_unordered(
            lambda a, job: a.mine.remote(str(job[0]), str(out), job[1]), todo
        )
    finally:
        if started_here:
            ray.shutdown()
