"""``fetch-videos``: download candidates, Kinetics ranges or URLs with yt-dlp's Python API.

Every item is downloaded into its own hidden staging folder ``DIR/.fetching/<hash>/``
and, once it probes as a video, renamed to ``DIR/<label>/<id>[_<start>_<end>].mp4``;
so a run killed at any moment (even with SIGKILL) never leaves a file that looks
whole, and the next run resumes the partial download. Kinetics rows fetch only their
time range (yt-dlp's ``download_ranges``, re-encoded at the cuts so they are exact).

``DIR/fetch.sqlite`` (:mod:`clipminer.sources.register`) records every item's status;
reruns skip what is done or permanently gone and retry transient failures. An HTTP
429 is waited out a few times (doubling the wait) and then stops the run cleanly:
nothing new starts, what is running finishes, and the rest waits for the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from clipminer.decode import probe
from clipminer.errors import (
    DISK_ERRNOS,
    ClipminerError,
    DecodeError,
    OutputDiskError,
    UsageError,
    output_error,
)
from clipminer.fsutil import safe_component
from clipminer.settings import setting
from clipminer.sources.inputs import (
    UNLABELLED,
    YOUTUBE_WATCH_TEMPLATE,
    FetchItem,
    InputKind,
    read_items,
    video_url,
)
from clipminer.sources.register import PERMANENT, REGISTER_NAME, FetchRow, Register, Status

log = logging.getLogger(__name__)

STAGING_NAME = ".fetching"
LOCK_NAME = ".fetch.lock"
_RESERVED = (REGISTER_NAME, f"{REGISTER_NAME}-wal", f"{REGISTER_NAME}-shm")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CAUSED_BY = re.compile(r" \(caused by <[^>]*>\)$")
MESSAGE_MAX_CHARS = 300


class FetchLocked(ClipminerError):  # noqa: N818
    """Another ``fetch-videos`` run is writing into the same folder."""

    exit_code = 3


def parse_rate(text: str, name: str = "rate_limit") -> int:
    """Bytes (per second, for a rate) from ``500K``, ``2M``, ``1.5G`` or a plain number.

    Raises:
        ValueError: not a size.
    """
    match = _RATE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{name} must be a number of bytes such as 500K or 2M, got {text!r}")
    power = " kmg".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * 1024**power)


@dataclass(frozen=True)
class FetchConfig:
    """How ``fetch-videos`` downloads (also the ``[fetch]`` table of ``jobs/nightly.toml``)."""

    url_template: str = setting(
        YOUTUBE_WATCH_TEMPLATE,
        "Where an id is fetched from; {id} is replaced by the video id (tests point it at "
        "a local server).",
        metavar="URL",
    )
    max_height: int = setting(
        720, "Tallest video format to fetch, in pixels.", min=1, metavar="PIXELS"
    )
    workers: int = setting(2, "Downloads at once.", min=1, max=32)
    rate_limit: str | None = setting(
        None,
        "Speed cap per download in bytes per second, e.g. 500K or 2M (default: none).",
        metavar="RATE",
    )
    cookies: Path | None = setting(
        None,
        "Netscape-format cookies file for yt-dlp (a copy is used; the file is not changed).",
        metavar="FILE",
    )
    max_duration_seconds: float | None = setting(
        None,
        "Skip whole videos longer than this (status too_long); Kinetics ranges are always fetched.",
        min=1,
        metavar="SECONDS",
        flag="max_duration",
    )
    max_bytes: str = setting(
        "8G",
        "Largest download, e.g. 800M or 8G (8G fits three hours of 1080p): checked against "
        "the size the server announces and while the bytes arrive (status too_big).",
        metavar="SIZE",
    )
    max_download_seconds: float = setting(
        4 * 3600.0,
        "Give a download up to this long, then stop it (status error; it is tried again next run).",
        min=1,
        metavar="SECONDS",
    )
    max_videos: int = setting(
        0, "Download at most N items this run (0: all); the rest wait for the next run.", min=0
    )
    label: str = setting(
        UNLABELLED, "Folder for the URLs of a URL list that have no label.", metavar="NAME"
    )
    retries: int = setting(
        3, "yt-dlp's retries of a failed connection or short read.", min=0, max=20
    )
    timeout_seconds: float = setting(
        30.0, "Network timeout in seconds.", min=1, metavar="SECONDS", flag="timeout"
    )
    backoff_retries: int = setting(
        2,
        "How often an HTTP 429 (rate limited) is waited out before the run stops.",
        min=0,
        max=10,
    )
    backoff_seconds: float = setting(
        60.0, "First wait after an HTTP 429, doubled each time.", min=0, metavar="SECONDS"
    )

    def __post_init__(self) -> None:
        if "{id}" not in self.url_template:
            raise ValueError(f"url_template must contain {{id}}, got {self.url_template!r}")
        if self.rate_limit is not None:
            parse_rate(self.rate_limit)
        parse_rate(self.max_bytes, "max_bytes")
        if not self.label.strip():
            raise ValueError("label cannot be empty")


@dataclass(frozen=True)
class FetchResult:
    """What became of one item in this run."""

    item: FetchItem
    status: Status
    message: str = ""
    path: Path | None = None
    """The file in its label folder (``status`` ok)."""
    duration_seconds: float | None = None


@dataclass(frozen=True)
class FetchEvent:
    """Progress news for a bar: ``planned`` (total), ``start``, ``bytes``, ``done``."""

    kind: Literal["planned", "start", "bytes", "done"]
    key: str = ""
    label: str = ""
    done_bytes: float = 0.0
    total_bytes: float | None = None
    total_items: int = 0
    result: FetchResult | None = None


@dataclass
class FetchSummary:
    """One run of :func:`fetch_videos`."""

    kind: InputKind
    items: int
    """Distinct items in the input."""
    results: list[FetchResult] = field(default_factory=list)
    """Items attempted in this run."""
    already_done: int = 0
    known_failures: int = 0
    """Items skipped because an earlier run found them permanently unavailable."""
    not_attempted: int = 0
    """Items left for a later run (``max_videos``, or the run stopped)."""
    stopped: str = ""
    """Why the run stopped early (rate limited); empty when it did not."""

    def count(self, status: Status) -> int:
        """Items of this run with ``status``."""
        return sum(r.status == status for r in self.results)

    @property
    def transient_failures(self) -> int:
        """Items of this run that a rerun will try again."""
        return sum(r.status in ("error", "rate_limited") for r in self.results)


# -- classifying failures -------------------------------------------------------------------

_PATTERNS: tuple[tuple[Status, tuple[str, ...]], ...] = (
    ("too_long", ("larger than max-filesize",)),
    ("rate_limited", ("http error 429", "too many requests")),
    ("private", ("private video", "video is private")),
    (
        "age_restricted",
        ("confirm your age", "age-restricted", "age restricted", "inappropriate for some users"),
    ),
    (
        "geo_blocked",
        ("not available in your country", "geo restrict", "geo-restrict", "in your country"),
    ),
    (
        "removed",
        ("has been removed", "been terminated", "copyright claim", "violating youtube"),
    ),
    (
        "unavailable",
        (
            "video unavailable",
            "video is unavailable",
            "not available",
            "http error 404",
            "http error 410",
            "unsupported url",
            "does not exist",
        ),
    ),
)


def classify(message: str) -> Status:
    """The register status of a yt-dlp error message (``error`` when none fits)."""
    text = message.lower()
    for status, needles in _PATTERNS:
        if any(needle in text for needle in needles):
            return status
    return "error"


def clean_message(message: str) -> str:
    """One line, without colour codes or yt-dlp's ``ERROR:`` prefix, at most 300 chars."""
    text = " ".join(_ANSI.sub("", message).split()).removeprefix("ERROR: ")
    text = _CAUSED_BY.sub("", text)
    return text if len(text) <= MESSAGE_MAX_CHARS else text[: MESSAGE_MAX_CHARS - 1] + "…"


# -- yt-dlp --------------------------------------------------------------------------------------


class _QuietLogger:
    """yt-dlp's logger: nothing on the terminal; errors become the item's message."""

    def __init__(self) -> None:
        self.too_large = ""
        """yt-dlp's note that the announced size is over ``max_filesize`` (it then skips
        the download without an error)."""

    def debug(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)
        if "larger than max-filesize" in message:
            self.too_large = clean_message(message.removeprefix("[download]").strip())

    def info(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    def warning(self, message: str) -> None:
        log.debug("yt-dlp warning: %s", message)

    def error(self, message: str) -> None:
        log.debug("yt-dlp error: %s", message)


def ydl_options(
    item: FetchItem,
    staging: Path,
    config: FetchConfig,
    *,
    hooks: list[Callable[[dict[str, Any]], None]] = (),  # type: ignore[assignment]
    match_filter: Callable[..., str | None] | None = None,
) -> dict[str, Any]:
    """yt-dlp's options for one item: the best format up to ``max_height`` (H.264/AAC mp4
    preferred, else merged or remuxed into mp4), written inside ``staging``, quietly.

    A time range is fetched with ``download_ranges`` and re-encoded at the cuts
    (``force_keyframes_at_cuts``), so the clip starts and ends where asked.
    """
    height = config.max_height
    options: dict[str, Any] = {
        "format": f"bv*[height<=?{height}]+ba/b[height<=?{height}]",
        "format_sort": [f"res:{height}", "vcodec:h264", "acodec:aac", "ext:mp4:m4a"],
        "merge_output_format": "mp4",
        "paths": {"home": str(staging)},  # temporary files too (a relative temp nests)
        "outtmpl": {"default": "video.%(ext)s"},
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "color": {"stdout": "no_color", "stderr": "no_color"},
        "logger": _QuietLogger(),
        "progress_hooks": list(hooks),
        "retries": config.retries,
        "fragment_retries": config.retries,
        "extractor_retries": config.retries,
        "socket_timeout": config.timeout_seconds,
        "continuedl": True,
        "updatetime": False,
        "max_filesize": parse_rate(config.max_bytes, "max_bytes"),
    }
    if shutil.which("ffmpeg"):  # without it yt-dlp keeps single-file formats as they are
        options["postprocessors"] = [{"key": "FFmpegVideoRemuxer", "preferedformat": "mp4"}]
    if match_filter is not None:
        options["match_filter"] = match_filter
    if config.rate_limit:
        options["ratelimit"] = parse_rate(config.rate_limit)
    if config.cookies is not None:
        options["cookiefile"] = str(staging / "cookies.txt")
    if item.has_range:
        section = {"start_time": item.time_start_seconds, "end_time": item.time_end_seconds}
        options["download_ranges"] = lambda info, ydl: [section]
        options["force_keyframes_at_cuts"] = True
    return options


def staging_dir(out: Path, key: str) -> Path:
    """The hidden folder one item downloads into (stable, so a killed download resumes)."""
    return out / STAGING_NAME / hashlib.sha256(key.encode()).hexdigest()[:16]


def destination(out: Path, item: FetchItem, suffix: str = ".mp4", fallback_id: str = "") -> Path:
    """``out/<label>/<stem><suffix>``, every component made safe."""
    folder = safe_component(item.label, reserved=_RESERVED)
    return out / folder / f"{item.stem(fallback_id)}{suffix}"


def _import_ytdlp() -> Any:
    try:
        import yt_dlp
    except ImportError:
        raise ClipminerError("fetch-videos needs yt-dlp: pip install 'clipminer[videos]'") from None
    return yt_dlp


@dataclass
class _Filtered:
    """Why yt-dlp's match filter turned an item down (filled in by the filter)."""

    status: Status | None = None
    message: str = ""
    duration_seconds: float | None = None


def _match_filter(item: FetchItem, config: FetchConfig, seen: _Filtered) -> Callable[..., Any]:
    """Refuse live streams, and whole videos longer than ``max_duration_seconds``."""

    def check(info: dict[str, Any], *, incomplete: bool = False) -> str | None:
        duration = info.get("duration")
        if info.get("live_status") in ("is_live", "is_upcoming"):
            seen.status, seen.message = "unavailable", "a live or upcoming stream"
        elif (
            not item.has_range
            and config.max_duration_seconds is not None
            and isinstance(duration, (int, float))
            and duration > config.max_duration_seconds
        ):
            seen.status, seen.duration_seconds = "too_long", float(duration)
            seen.message = (
                f"{duration:.0f} s is longer than --max-duration {config.max_duration_seconds:g} s"
            )
        else:
            return None
        return seen.message

    return check


def download_item(
    item: FetchItem,
    out: Path,
    config: FetchConfig,
    *,
    on_bytes: Callable[[float, float | None], None] | None = None,
    stop: threading.Event | None = None,
) -> FetchResult:
    """Download one item into its label folder; HTTP 429s are waited out ``backoff_retries``
    times unless ``stop`` is set. A failed download is a status, not an exception.

    Raises:
        OutputDiskError: DIR's disk is full or read-only (not the item's fault: the
            item is not recorded, and a later run fetches it).
    """
    stop = stop or threading.Event()
    staging = staging_dir(out, item.key)
    try:
        staging.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, out) from None
    wait_seconds = config.backoff_seconds
    for attempt in range(config.backoff_retries + 1):
        try:
            result = _attempt(item, out, staging, config, on_bytes, stop)
        except OutputDiskError:
            shutil.rmtree(staging, ignore_errors=True)  # what it holds is of no use; frees space
            raise
        except OSError as exc:  # the output folder: full, read-only, ...
            if exc.errno in DISK_ERRNOS:
                shutil.rmtree(staging, ignore_errors=True)
                raise output_error(OSError(exc.errno, exc.strerror, str(out)), out) from None
            result = FetchResult(item, "error", f"{exc.filename or out}: {exc.strerror or exc}")
        if result.status != "rate_limited" or attempt == config.backoff_retries:
            break
        log.info("%s: rate limited, waiting %.0f s", item.key, wait_seconds)
        if stop.wait(wait_seconds):
            break
        wait_seconds *= 2
    keep_partial = result.status == "rate_limited" or (
        result.status == "error" and result.path is None and "not a playable" not in result.message
    )
    if not keep_partial:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _attempt(
    item: FetchItem,
    out: Path,
    staging: Path,
    config: FetchConfig,
    on_bytes: Callable[[float, float | None], None] | None,
    stop: threading.Event | None = None,
) -> FetchResult:
    yt_dlp = _import_ytdlp()
    filtered = _Filtered()
    cap = parse_rate(config.max_bytes, "max_bytes")
    deadline = time.monotonic() + config.max_download_seconds

    def hook(status: dict[str, Any]) -> None:
        done = float(status.get("downloaded_bytes") or 0)
        if on_bytes and status.get("status") in ("downloading", "finished"):
            total = status.get("total_bytes") or status.get("total_bytes_estimate")
            on_bytes(done, total)
        # the server may announce nothing, or less than it sends: count what arrives
        if done > cap:
            raise yt_dlp.utils.DownloadCancelled(f"File is larger than max-filesize ({cap} bytes)")
        if time.monotonic() > deadline:
            raise yt_dlp.utils.DownloadCancelled(
                f"took longer than --max-download-seconds {config.max_download_seconds:g}"
            )
        if stop is not None and stop.is_set():
            raise yt_dlp.utils.DownloadCancelled("stopped (interrupted)")

    options = ydl_options(
        item, staging, config, hooks=[hook], match_filter=_match_filter(item, config, filtered)
    )
    if config.cookies is not None:
        shutil.copyfile(config.cookies, staging / "cookies.txt")
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(item.url, download=True)
    except yt_dlp.utils.YoutubeDLError as exc:
        cause = _disk_cause(exc)
        if cause is not None:  # yt-dlp met a full or read-only disk while writing
            raise output_error(OSError(cause.errno, cause.strerror, str(out)), out) from exc
        message = clean_message(str(exc))
        return FetchResult(item, classify(message), f"{item.url}: {message}")
    if options["logger"].too_large:
        return FetchResult(item, "too_long", f"{item.url}: {options['logger'].too_large}")
    if filtered.status is not None:
        return FetchResult(item, filtered.status, filtered.message, None, filtered.duration_seconds)
    return _file_away(item, out, info or {})


def _disk_cause(exc: BaseException) -> OSError | None:
    """The full or read-only disk behind a yt-dlp error, if that is what it was."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, OSError) and current.errno in DISK_ERRNOS:
            return current
        info = getattr(current, "exc_info", None)
        pending += [current.__cause__, current.__context__, info[1] if info else None]
    return None


def _file_away(item: FetchItem, out: Path, info: dict[str, Any]) -> FetchResult:
    """Check the downloaded file is a video and rename it into its label folder."""
    files = [d.get("filepath") for d in info.get("requested_downloads") or []]
    source = Path(files[-1]) if files and files[-1] else None
    if source is None or not source.is_file():
        return FetchResult(item, "error", f"{item.url}: yt-dlp reported no file")
    try:
        facts = probe(source)
    except DecodeError as exc:
        reason = str(exc).removeprefix(f"{source}: ")
        message = f"{item.url}: the download is not a playable video ({reason})"
        return FetchResult(item, "error", message)
    dest = destination(out, item, source.suffix.lower() or ".mp4", str(info.get("id") or ""))
    dest.parent.mkdir(parents=True, exist_ok=True)
    source.replace(dest)
    return FetchResult(item, "ok", "", dest, facts.duration_seconds)


# -- the run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def fetch_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.fetch.lock``; a second run on the same folder fails at once."""
    with (out / LOCK_NAME).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FetchLocked(f"{out}: another fetch-videos run is writing here") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _adopt(item: FetchItem, out: Path) -> FetchResult | None:
    """An item's file already in place (a run killed before its register row was written,
    or files from another Kinetics downloader with the same names) that probes as a video."""
    if not item.video_id:
        return None
    dest = destination(out, item)
    if not dest.is_file():
        return None
    try:
        facts = probe(dest)
    except DecodeError:
        return None
    return FetchResult(item, "ok", "found in place", dest, facts.duration_seconds)


def plan(
    items: list[FetchItem], register: Register, out: Path, config: FetchConfig
) -> tuple[list[FetchItem], list[FetchResult], int, int]:
    """(to download, found in place, already done, known permanent failures)."""
    todo: list[FetchItem] = []
    adopted: list[FetchResult] = []
    done = failed = 0
    for item in items:
        row = register.get(item.key)
        if row is not None and row.status == "ok" and (out / row.path).is_file():
            done += 1
        elif row is not None and row.status in PERMANENT and not _retry_now(row, config):
            failed += 1
        elif (found := _adopt(item, out)) is not None:
            adopted.append(found)
        else:
            todo.append(item)
    return todo, adopted, done, failed


def _retry_now(row: FetchRow, config: FetchConfig) -> bool:
    """Whether a permanent failure is worth another try: only a video once too long that
    fits under the current ``max_duration_seconds``."""
    if row.status != "too_long":
        return False
    limit = config.max_duration_seconds
    return limit is None or (row.duration_seconds is not None and row.duration_seconds <= limit)


def _record(register: Register, out: Path, result: FetchResult) -> None:
    path = result.path.relative_to(out).as_posix() if result.path else ""
    item = result.item
    register.put(
        FetchRow(
            item.key, item.url, item.label, result.status, result.message, path,
            result.duration_seconds,
        )
    )  # fmt: skip


def fetch_videos(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: FetchConfig,
    on_event: Callable[[FetchEvent], None] | None = None,
) -> FetchSummary:
    """Fetch every item of ``source`` (candidates CSV, Kinetics CSV or URL list) into ``out``.

    Raises:
        UsageError: the input is missing or malformed.
        FetchLocked: another run holds ``out``.
    """
    kind, items = read_items(source, url_template=config.url_template, label=config.label)
    for item in items:
        if item.video_id:
            video_url(config.url_template, item.video_id)  # refuse a bad template early
    if any(item.has_range for item in items) and not shutil.which("ffmpeg"):
        raise UsageError(f"{source}: fetching time ranges needs the ffmpeg program on PATH")
    if config.cookies is not None and not config.cookies.is_file():
        raise UsageError(f"{config.cookies}: cookies file not found")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create the output folder ({exc.strerror})") from None
    emit = on_event or (lambda event: None)
    summary = FetchSummary(kind, len(items))
    with fetch_lock(out), Register(out / REGISTER_NAME) as register:
        todo, adopted, summary.already_done, summary.known_failures = plan(
            items, register, out, config
        )
        for result in adopted:
            _record(register, out, result)
            summary.results.append(result)
        if config.max_videos and len(todo) > config.max_videos:
            summary.not_attempted = len(todo) - config.max_videos
            todo = todo[: config.max_videos]
        emit(FetchEvent("planned", total_items=len(todo)))
        left = _run(todo, out, config, register, summary, emit)
        summary.not_attempted += left
    return summary


def _run(
    todo: list[FetchItem],
    out: Path,
    config: FetchConfig,
    register: Register,
    summary: FetchSummary,
    emit: Callable[[FetchEvent], None],
) -> int:
    """Download ``todo`` with ``config.workers`` threads; returns how many were not started."""
    stop = threading.Event()
    queue = iter(todo)
    started = 0

    def submit(pool: ThreadPoolExecutor, pending: set[Future[FetchResult]]) -> None:
        nonlocal started
        item = None if stop.is_set() else next(queue, None)
        if item is None:
            return
        started += 1
        emit(FetchEvent("start", item.key, item.label))

        def on_bytes(done: float, total: float | None, key: str = item.key) -> None:
            emit(FetchEvent("bytes", key, done_bytes=done, total_bytes=total))

        pending.add(pool.submit(download_item, item, out, config, on_bytes=on_bytes, stop=stop))

    with ThreadPoolExecutor(config.workers, thread_name_prefix="fetch") as pool:
        pending: set[Future[FetchResult]] = set()
        try:
            for _ in range(config.workers):
                submit(pool, pending)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    result = future.result()
                    _record(register, out, result)
                    summary.results.append(result)
                    emit(FetchEvent("done", result.item.key, result.item.label, result=result))
                    if result.status == "rate_limited" and not stop.is_set():
                        stop.set()
                        summary.stopped = (
                            f"rate limited (HTTP 429) at {result.item.key} after "
                            f"{config.backoff_retries} waits; run again later"
                        )
                    submit(pool, pending)
        except BaseException:
            stop.set()
            raise
    return len(todo) - started
