"""``clipminer batch``: find-clips over a folder, every night, resumable.

State lives in ``OUT/state.sqlite`` (WAL): one row per video, keyed by its path, with
its size, mtime and a content fingerprint, status (queued, running, done, failed,
skipped), the error, times, counts, the clipminer version and a hash of the options
and models. A row becomes ``done`` only after the video's outputs are in place (they
are written to a staging folder and swapped in), so a run killed at any moment, even
with SIGKILL, is simply run again. A lock file keeps two runs off one OUT. One bad
video never stops the batch. Engines: ``local`` (this machine, ``--workers``
processes) and ``ray`` (one Ray actor per worker, one task per video path).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from clipminer import __version__
from clipminer.errors import ClipminerError, UsageError
from clipminer.findclips import ClipMiner, FindClipsConfig, VideoResult
from clipminer.fsutil import atomic_path, safe_name

log = logging.getLogger(__name__)

Engine = Literal["local", "ray"]
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
     ".ts", ".mts", ".m2ts", ".ogv"}
)  # fmt: skip
EXIT_LOCKED = 3


class BatchLocked(ClipminerError):  # noqa: N818
    """Another batch run holds the output folder."""

    exit_code = EXIT_LOCKED


@dataclass(frozen=True)
class BatchConfig:
    """What ``batch`` was asked to do."""

    image_model: str
    video_models: tuple[str, ...] = ()
    findclips: FindClipsConfig = field(default_factory=FindClipsConfig)
    engine: Engine = "local"
    ray_address: str | None = None
    workers: int = 1
    retry_failed: bool = False
    force: bool = False

    def __post_init__(self) -> None:
        if self.engine not in ("local", "ray"):
            raise UsageError(f"--engine must be local or ray, got {self.engine!r}")
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")

    def options_hash(self) -> str:
        """Changes when anything that shapes the outputs changes (options or models)."""
        models = [_file_digest(Path(p)) for p in (self.image_model, *self.video_models)]
        settings = json.dumps(asdict(self.findclips), sort_keys=True, default=str)
        return hashlib.sha256(f"{settings}|{models}".encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    if not path.is_file():
        raise UsageError(f"{path}: no such model file")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def fingerprint(path: Path) -> str:
    """Size and the first and last MiB: cheap, and changes when the file does."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        if size > 2 << 20:
            handle.seek(-(1 << 20), os.SEEK_END)
            digest.update(handle.read())
    return digest.hexdigest()[:24]


# -- finding videos ---------------------------------------------------------------------------


def find_videos(root: Path) -> tuple[list[Path], list[Path]]:
    """Video files under ``root`` (recursively): by suffix, and by probing the others.

    Returns:
        (videos, other files that are not videos). Files with a video suffix are videos
        even when they turn out unreadable (they then fail with their error).
    """
    import av

    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    videos: list[Path] = []
    others: list[Path] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(path)
            continue
        try:
            with av.open(str(path)) as container:
                (videos if container.streams.video else others).append(path)
        except (av.error.FFmpegError, OSError, UnicodeDecodeError):
            others.append(path)
    return videos, others


def output_name(root: Path, video: Path) -> str:
    """The per-video folder under OUT: the path relative to the input, made safe."""
    relative = video.relative_to(root).with_suffix("")
    return safe_name("__".join(relative.parts))


# -- state --------------------------------------------------------------------------------


@dataclass
class VideoRow:
    """One row of ``state.sqlite``."""

    path: str
    size: int
    mtime: float
    fingerprint: str
    status: str = "queued"
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
    version: str = __version__
    options_hash: str = ""
    attempts: int = 0


_COLUMNS = [f for f in VideoRow.__dataclass_fields__]


class StateStore:
    """``OUT/state.sqlite`` in WAL mode; every change is its own transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS videos (path TEXT PRIMARY KEY, size INTEGER, mtime REAL, "
            "fingerprint TEXT, status TEXT, error TEXT, started_at REAL, finished_at REAL, "
            "duration_seconds REAL, segments INTEGER, clips_json TEXT, seconds REAL, fps REAL, "
            "output TEXT, version TEXT, options_hash TEXT, attempts INTEGER)"
        )

    def get(self, path: str) -> VideoRow | None:
        cursor = self.db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM videos WHERE path = ?", (path,)
        )
        row = cursor.fetchone()
        return VideoRow(*row) if row else None

    def all(self) -> list[VideoRow]:
        cursor = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM videos ORDER BY path")
        return [VideoRow(*row) for row in cursor.fetchall()]

    def put(self, row: VideoRow) -> None:
        values = asdict(row)
        self.db.execute(
            f"INSERT OR REPLACE INTO videos ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)})",
            [values[c] for c in _COLUMNS],
        )

    def close(self) -> None:
        self.db.close()


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on ``OUT/.batch.lock`` for the whole run."""
    out.mkdir(parents=True, exist_ok=True)
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


def _outcome(
    path: Path, result: VideoResult | ClipminerError, output: str, seconds: float
) -> Outcome:
    if isinstance(result, ClipminerError):
        return Outcome(str(path), False, str(result), seconds=seconds)
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
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.miner = ClipMiner(
            config.image_model, list(config.video_models), config=config.findclips
        )

    def mine(self, video: str, out: str, name: str) -> Outcome:
        started = time.perf_counter()
        try:
            result: VideoResult | ClipminerError = self.miner.run(Path(video), Path(out), name=name)
        except ClipminerError as exc:
            result = exc
        except Exception as exc:
            log.exception("%s: unexpected failure", video)
            result = ClipminerError(f"{video}: {type(exc).__name__}: {exc}")
        return _outcome(Path(video), result, name, time.perf_counter() - started)


_WORKER: VideoWorker | None = None


def _init_process(config: BatchConfig) -> None:
    global _WORKER
    _WORKER = VideoWorker(config)


def _mine_in_process(video: str, out: str, name: str) -> Outcome:
    assert _WORKER is not None
    return _WORKER.mine(video, out, name)


@dataclass
class BatchSummary:
    """Counts of one run."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    already_done: int = 0
    outcomes: list[Outcome] = field(default_factory=list)


def run_batch(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: BatchConfig,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> BatchSummary:
    """Mine every video under ``root`` that is not done yet; write state and reports."""
    root, out = Path(root), Path(out)
    videos, others = find_videos(root)
    options = config.options_hash()
    summary = BatchSummary()
    with output_lock(out):
        _clean_leftovers(out)
        state = StateStore(out / "state.sqlite")
        try:
            todo = _plan(state, root, videos, others, options, config, summary)
            for outcome in _execute(todo, out, config):
                _record(state, outcome, options)
                summary.outcomes.append(outcome)
                if outcome.ok:
                    summary.done += 1
                else:
                    summary.failed += 1
                if on_outcome:
                    on_outcome(outcome)
            write_reports(out, state.all())
        finally:
            state.close()
    return summary


def _clean_leftovers(out: Path) -> None:
    """Staging folders of a killed run (find-clips swaps complete folders in)."""
    import shutil

    for path in out.glob(".*.partial"):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
    for path in out.glob(".*.old"):
        shutil.rmtree(path, ignore_errors=True)


def _plan(
    state: StateStore,
    root: Path,
    videos: Sequence[Path],
    others: Sequence[Path],
    options: str,
    config: BatchConfig,
    summary: BatchSummary,
) -> list[tuple[Path, str]]:
    todo = []
    for path in others:
        if state.get(str(path)) is None:
            stat = path.stat()
            state.put(
                VideoRow(
                    str(path),
                    stat.st_size,
                    stat.st_mtime,
                    "",
                    status="skipped",
                    error=f"{path}: not a video file",
                )
            )
        summary.skipped += 1
    for path in videos:
        stat = path.stat()
        row = state.get(str(path))
        changed = row is None or row.size != stat.st_size or row.mtime != stat.st_mtime
        print_ = fingerprint(path) if changed else row.fingerprint  # type: ignore[union-attr]
        if row is not None and changed and row.fingerprint == print_:
            changed = False  # touched, not modified
        if row is not None and not changed:
            if row.status == "done" and (row.options_hash == options or not config.force):
                if row.options_hash != options:
                    log.info("%s: done with other options or models; --force redoes it", path)
                summary.already_done += 1
                continue
            if row.status == "failed" and not config.retry_failed:
                summary.skipped += 1
                continue
        new = VideoRow(
            str(path),
            stat.st_size,
            stat.st_mtime,
            print_,
            status="queued",
            options_hash=options,
            attempts=row.attempts if row else 0,
            output=output_name(root, path),
        )
        state.put(new)
        todo.append((path, new.output))
    return todo


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
        import concurrent.futures as cf
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(
            config.workers, mp_context=context, initializer=_init_process, initargs=(config,)
        ) as pool:
            futures = [pool.submit(_mine_in_process, str(p), str(out), name) for p, name in todo]
            for future in cf.as_completed(futures):
                yield future.result()


def _execute_ray(todo: list[tuple[Path, str]], out: Path, config: BatchConfig) -> Iterator[Outcome]:
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'clipminer[ray]'") from None
    from ray.util import ActorPool

    started_here = not ray.is_initialized()
    if started_here:
        env = {"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}}
        if config.ray_address:
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


# -- reports ------------------------------------------------------------------------------

SUMMARY_COLUMNS = (
    "video",
    "status",
    "duration_seconds",
    "segments",
    "clips_per_label",
    "realtime_factor",
    "seconds",
    "output",
    "error",
)


def write_reports(out: Path, rows: Sequence[VideoRow]) -> None:
    """``summary.csv``, ``kinetics.csv`` over every done video, and ``report.html``."""
    from clipminer.report import write_batch_html, write_kinetics_csv

    with atomic_path(out / "summary.csv") as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUMMARY_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row.path,
                    row.status,
                    _num(row.duration_seconds),
                    row.segments,
                    row.clips_json if row.status == "done" else "",
                    _num(row.fps),
                    _num(row.seconds),
                    row.output,
                    row.error,
                ]
            )
    kinetics: list[tuple[str, str, float, float]] = []
    cards = []
    for row in rows:
        if row.status != "done":
            continue
        segments_csv = out / row.output / "segments.csv"
        clips = _read_segments(segments_csv) if segments_csv.is_file() else []
        kinetics += [
            (c["final_label"], Path(row.path).stem, float(c["time_start"]), float(c["time_end"]))
            for c in clips
        ]
        cards.append((row, clips))
    write_kinetics_csv(out / "kinetics.csv", kinetics)
    write_batch_html(out / "report.html", out, rows, cards)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _read_segments(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["final_label"] = row["video_label"] or row["label"]
    return rows
