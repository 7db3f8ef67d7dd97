"""The nightly cron entry: read ``nightly.toml``, run the night, log to a rotating file.

A night has five stages, each skippable (``[night] stages`` or ``--skip STAGE``):
``search`` (with a ``[watch]`` table: search-videos for new candidates of the watched
actions), ``fetch`` (fetch-videos of the candidates not seen before, capped by
``[fetch] max_videos``, into the mined folder), ``retrain`` (with a ``[retrain]`` table:
the video models fine-tuned on the clips reviewers decided, put in place only where they
do no worse: :mod:`clipminer.curate.retrain`), ``mine`` (the batch, as before) and
``dedup`` (near-duplicates of tonight's clips among everything mined, incrementally;
``[dedup]`` takes the command's options; nothing is deleted). A failing stage never
stops the later ones; every stage's outcome and failures are in
``OUT/night.json`` and in a "Video sources" section of ``OUT/report.html``.

Exit codes for monitoring: 0 all done (or nothing to do), 1 some videos or a stage
failed (the rest is done), 2 bad configuration, 3 another run holds the output folder,
4 an unexpected error (see the log).

Usage: python -m jobs.nightly --config jobs/nightly.toml [--skip search]
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from clipminer import store
from clipminer.config import BatchConfig, DedupConfig, findclips_config
from clipminer.curate.retrain import RetrainConfig
from clipminer.errors import ClipminerError, UsageError
from clipminer.fsutil import atomic_path
from clipminer.layout import VIDEOS_DIR
from clipminer.settings import flat_fields, from_flat, setting
from clipminer.sources.fetch import FetchConfig
from clipminer.sources.youtube import API_KEY_ENV, SearchConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXIT_OK, EXIT_FAILED_VIDEOS, EXIT_CONFIG, EXIT_LOCKED, EXIT_CRASH = 0, 1, 2, 3, 4
log = logging.getLogger("clipminer.nightly")


T = TypeVar("T")
STAGES = ("search", "fetch", "retrain", "mine", "dedup")
TABLES = ("batch", "findclips", "log", "night", "watch", "search", "fetch", "dedup", "retrain")


@dataclass(frozen=True)
class BatchTable:
    """The ``[batch]`` keys that are not batch settings (those are
    :class:`~clipminer.config.BatchConfig`'s, by field name). Paths are relative to
    the folder of ``nightly.toml``."""

    input: str | None = setting(None, "Folder that fills up with long videos (required).")
    output_root: str | None = setting(None, "State, per-video outputs and reports (required).")
    image_model: str | None = setting(None, "Image model bundle (required).")
    video_models: tuple[str, ...] = setting((), "Video model bundles.")


@dataclass(frozen=True)
class LogTable:
    """``[log]``: a rotating log file beside the messages on stderr."""

    file: str | None = setting(None, "Log file (relative to nightly.toml's folder).")
    max_bytes: int = setting(10_000_000, "Size at which the log file rotates.", min=1)
    backups: int = setting(7, "Rotated log files kept.", min=0)


@dataclass(frozen=True)
class NightTable:
    """``[night]``: which stages run."""

    stages: tuple[str, ...] = setting(
        STAGES, "The stages to run, in order: search, fetch, retrain, mine, dedup."
    )


@dataclass(frozen=True)
class WatchTable:
    """``[watch]``: finding and fetching new videos (with ``[search]`` and ``[fetch]``)."""

    candidates: str | None = setting(
        None, "Candidates CSV that search writes and fetch reads (required)."
    )
    actions: str | None = setting(None, "File of watched actions, one a line (needed by search).")
    videos: str | None = setting(
        None, "Folder fetched videos land in; default: [batch] input, so they are mined."
    )
    api_key_env: str = setting(API_KEY_ENV, "Environment variable with the YouTube Data API key.")


BATCH_SETTINGS = [spec.name for spec in flat_fields(BatchConfig) if not spec.path]


def _table(cls: type[T], data: dict[str, Any], name: str, where: Path, keys: Any = None) -> T:
    """The table ``name`` of the file as ``cls``: every key by its declaration (type,
    bounds), an unknown key a one-line error listing the valid ones."""
    table = data.get(name, {})
    if keys is not None:
        table = {key: table[key] for key in keys if key in table}
    return from_flat(cls, table, where=f"{where} [{name}]")


def _check_tables(data: dict[str, Any], where: Path) -> None:
    """Every table a table: one line, else."""
    for table, value in data.items():
        if not isinstance(value, dict):
            raise UsageError(f"{where}: [{table}] must be a table, got {value!r}")


@dataclass(frozen=True)
class WatchList:
    """The ``[watch]``, ``[search]`` and ``[fetch]`` tables: finding and fetching new videos."""

    candidates: Path
    videos: Path
    actions: Path | None = None
    api_key_env: str = API_KEY_ENV
    search: SearchConfig = field(default_factory=SearchConfig)
    """``per_action``: new candidates per action each night (searched with ``more``)."""
    fetch: FetchConfig = field(default_factory=FetchConfig)
    """``max_videos``: the nightly cap on downloads."""


@dataclass
class StageReport:
    """What one stage of the night did."""

    name: str
    status: Literal["ok", "failed", "skipped"]
    detail: str = ""
    problems: list[str] = field(default_factory=list)
    """One line per failed item (a fetch that failed, a video that did not mine)."""
    seconds: float = 0.0


IN_A_BUCKET = (
    "OUT or the video models are in a bucket: {stage} works on a local OUT and local "
    "models (copy them here and run it there)"
)


def _path(base: Path, value: str) -> str:
    """A path of the TOML file, relative to its folder; a URL (a bucket) as it is."""
    if store.is_url(value):
        return value
    return str(value if Path(value).is_absolute() else (base / value).resolve())


def _location(base: Path, value: str) -> Path | str:
    """:func:`_path` as a Path, or as the URL it is."""
    found = _path(base, value)
    return found if store.is_url(found) else Path(found)


def _check_keys(table: dict[str, Any], valid: Any, where: str) -> None:
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise UsageError(
            f"{where}: unknown setting {', '.join(unknown)}; valid: {', '.join(valid)}"
        )


def load_config(path: Path) -> tuple[BatchConfig, Path | str, Path | str, LogTable]:
    """(BatchConfig, input folder, output root, log settings) from the TOML file.

    ``[findclips]`` takes every find-clips setting by its snake_case name (the same
    fields as the command line's options); an unknown or misspelt key in any table is
    a one-line error that lists the valid keys.
    """
    data = _read_toml(path)
    batch = data.get("batch", {})
    own = [spec.name for spec in flat_fields(BatchTable)]
    _check_keys(batch, [*own, *BATCH_SETTINGS], f"{path} [batch]")
    paths = _table(BatchTable, data, "batch", path, keys=own)
    missing = [k for k in ("input", "output_root", "image_model") if getattr(paths, k) is None]
    if missing:
        raise UsageError(f"{path} [batch]: missing setting {', '.join(missing)}")
    assert paths.input and paths.output_root and paths.image_model
    base = path.parent
    config = replace(
        _table(BatchConfig, data, "batch", path, keys=BATCH_SETTINGS),
        image_model=_path(base, paths.image_model),
        video_models=tuple(_path(base, p) for p in paths.video_models),
        findclips=findclips_config(data.get("findclips", {}), where=f"{path} [findclips]"),
    )
    input_dir = _location(base, paths.input)
    _check_readable(path, config, input_dir)
    log_settings = _table(LogTable, data, "log", path)
    return config, input_dir, _location(base, paths.output_root), log_settings


def _check_readable(path: Path, config: BatchConfig, input_dir: Path | str) -> None:
    """Before any work: the models are files, the input folder can be listed (what is
    in a bucket is checked when the mine stage reads it)."""
    for model in (config.image_model, *config.video_models):
        if not store.is_url(model) and not Path(model).is_file():
            raise UsageError(f"{path} [batch]: {model}: no such model file")
    if isinstance(input_dir, str):
        return
    try:
        with os.scandir(input_dir):
            pass
    except FileNotFoundError:
        pass  # tonight's fetch may make it; the mine stage says so if it still is not there
    except OSError as exc:
        raise UsageError(
            f"{path} [batch] input: {input_dir}: cannot list ({exc.strerror or exc})"
        ) from None


def _read_toml(path: Path) -> dict[str, Any]:
    """The TOML file, its tables checked against :data:`TABLES`."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    _check_keys(data, TABLES, str(path))
    _check_tables(data, path)
    return data


def load_stages(path: Path, skip: list[str] | None = None) -> tuple[str, ...]:
    """The stages to run: ``[night] stages`` (default all) less ``skip``."""
    stages = _table(NightTable, _read_toml(path), "night", path).stages
    wrong = [s for s in [*stages, *(skip or [])] if s not in STAGES]
    if wrong:
        raise UsageError(f"{path} [night]: stages must be a list of {', '.join(STAGES)}")
    return tuple(s for s in STAGES if s in stages and s not in (skip or []))


def load_watch(path: Path, input_dir: Path | str) -> WatchList | None:
    """The watch list, or None when the file has no ``[watch]`` table."""
    data = _read_toml(path)
    watch = data.get("watch")
    if watch is None:
        for name in ("search", "fetch"):
            if name in data:
                raise UsageError(f"{path}: [{name}] needs a [watch] table")
        return None
    listed = _table(WatchTable, data, "watch", path)
    if listed.candidates is None:
        raise UsageError(f"{path} [watch]: missing setting candidates")
    base = path.parent
    videos = _location(base, listed.videos) if listed.videos else input_dir
    if isinstance(videos, str):
        raise UsageError(
            f"{path} [watch]: videos: fetch-videos writes to a folder on this machine, not "
            f"to {videos}; give [watch] videos as a folder"
        )
    return WatchList(
        candidates=Path(_path(base, listed.candidates)),
        videos=videos,
        actions=Path(_path(base, listed.actions)) if listed.actions else None,
        api_key_env=listed.api_key_env or API_KEY_ENV,
        search=_table(SearchConfig, data, "search", path),
        fetch=_table(FetchConfig, data, "fetch", path),
    )


def run_search(watch: WatchList) -> StageReport:
    """search-videos for the watched actions: ``per_action`` new candidates each."""
    from clipminer.sources.youtube import read_actions, search_videos

    if watch.actions is None:
        return StageReport("search", "failed", "[watch] has no actions file")
    key = os.environ.get(watch.api_key_env, "").strip()
    if not key:
        return StageReport("search", "failed", f"no API key: set {watch.api_key_env}")
    try:
        actions = read_actions(watch.actions)
        summary = search_videos(
            actions, watch.candidates, config=watch.search, api_key=key, more=True
        )
    except ClipminerError as exc:
        return StageReport("search", "failed", str(exc))
    new = sum(a.new for a in summary.actions)
    return StageReport(
        "search",
        "ok",
        f"{new} new candidates for {len(actions)} actions; {summary.candidates} in "
        f"{watch.candidates} (about {summary.units} quota units)",
    )


def run_fetch(watch: WatchList) -> StageReport:
    """fetch-videos of the candidates not fetched yet, at most ``max_videos`` tonight."""
    from clipminer.sources.fetch import fetch_videos

    if not watch.candidates.is_file():
        return StageReport("fetch", "skipped", f"{watch.candidates}: no candidates yet")
    try:
        summary = fetch_videos(watch.candidates, watch.videos, config=watch.fetch)
    except ClipminerError as exc:
        return StageReport("fetch", "failed", str(exc))
    problems = [
        f"{r.item.key}: {r.status}: {r.message}" for r in summary.results if r.status != "ok"
    ]
    detail = (
        f"{summary.count('ok')} fetched into {watch.videos}, {len(problems)} failed, "
        f"{summary.already_done} done before, {summary.not_attempted} left for later nights"
    )
    if summary.stopped:
        detail += f"; stopped: {summary.stopped}"
    failed = bool(summary.stopped or summary.transient_failures)
    return StageReport("fetch", "failed" if failed else "ok", detail, problems)


def write_night_report(target: Path | str, stages: list[StageReport]) -> None:
    """``OUT/night.json``, and ``OUT/report.html`` drawn again with the night's stages
    (the batch's videos, when it ran). With OUT in a bucket, both are made in the
    batch's work folder on this machine and uploaded."""
    from clipminer.batch import work_folder

    out = work_folder(target) if isinstance(target, str) else target
    out.mkdir(parents=True, exist_ok=True)
    night = {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stages": [asdict(s) for s in stages],
    }
    with atomic_path(out / "night.json") as tmp:
        tmp.write_text(json.dumps(night, indent=1))
    from clipminer.batch import StateStore
    from clipminer.report import write_batch_html

    rows: list[Any] = []
    if (out / "state.sqlite").is_file():  # the batch ran: its videos, with the night's stages
        state = StateStore(out / "state.sqlite")
        try:
            rows = state.all()
        finally:
            state.close()
    write_batch_html(out, rows, night=stages)
    if isinstance(target, str):
        for name in ("night.json", "report.html"):
            store.put_file(out / name, store.join(target, name))


def setup_logging(settings: LogTable, base: Path) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.file:
        target = Path(_path(base, settings.file))
        target.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                target, maxBytes=settings.max_bytes, backupCount=settings.backups
            )
        )
    logging.basicConfig(
        level=logging.INFO,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="clipminer nightly: search, fetch, retrain, mine, dedup"
    )
    parser.add_argument("--config", type=Path, default=Path(__file__).with_name("nightly.toml"))
    parser.add_argument(
        "--skip", action="append", choices=STAGES, default=[], help="skip a stage tonight"
    )
    args = parser.parse_args(argv)
    try:
        config, folder, out, log_settings = load_config(args.config)
        stages = load_stages(args.config, args.skip)
        watch = load_watch(args.config, folder)
        dedup_settings = load_dedup(args.config)
        retrain = load_retrain(args.config)
        setup_logging(log_settings, args.config.parent)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:  # the log file or its folder cannot be written
        print(f"error: {exc.filename or args.config}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    reports: list[StageReport] = []
    for name, run in (("search", run_search), ("fetch", run_fetch)):
        if watch is None:
            continue
        if name not in stages:
            reports.append(StageReport(name, "skipped", "skipped by configuration"))
            continue
        started = time.monotonic()
        try:
            report = run(watch)
        except Exception as exc:  # a stage's own bug or a fault it did not expect
            log.exception("%s crashed", name)  # never the later stages, nor night.json
            report = StageReport(name, "failed", f"crashed: {exc!r} (see the log)")
        report.seconds = time.monotonic() - started
        (log.info if report.status != "failed" else log.error)(
            "%s: %s: %s", name, report.status, report.detail
        )
        for problem in report.problems:
            log.warning("%s: %s", name, problem)
        reports.append(report)
    if retrain is not None and "retrain" in stages:
        reports.append(_retrain(out, config, retrain))
    if "mine" in stages:
        code, mined = _mine(config, folder, out)
        reports.append(mined)
    else:
        code = EXIT_OK
        reports.append(StageReport("mine", "skipped", "skipped by configuration"))
    if "dedup" in stages and code not in (EXIT_LOCKED, EXIT_CONFIG):
        reports.append(_dedup(out, dedup_settings))
    if watch is not None:
        write_night_report(out, reports)
    if code == EXIT_OK and any(r.status == "failed" for r in reports):
        code = EXIT_FAILED_VIDEOS
    return code


def load_retrain(path: Path) -> RetrainConfig | None:
    """The ``[retrain]`` table (None without one: no retrain stage); ``dataset`` is
    relative to nightly.toml's folder."""
    data = _read_toml(path)
    if "retrain" not in data:
        return None
    settings = _table(RetrainConfig, data, "retrain", path)
    if settings.dataset is None:
        raise UsageError(f"{path} [retrain]: missing setting dataset")
    return replace(settings, dataset=Path(_path(path.parent, str(settings.dataset))))


def _retrain(out: Path | str, config: BatchConfig, settings: RetrainConfig) -> StageReport:
    """The re-labeller learns from the reviewers' votes (the retrain stage): one round
    per video model when enough new clips were decided; tonight's mining uses the result."""
    from clipminer.curate.retrain import retrain_video

    if isinstance(out, str) or any(store.is_url(m) for m in config.video_models):
        return StageReport("retrain", "skipped", IN_A_BUCKET.format(stage="retrain"))
    started = time.monotonic()
    if not (out / VIDEOS_DIR).is_dir() or not config.video_models:
        return StageReport("retrain", "skipped", "nothing mined yet, or no video model")
    details, problems = [], []
    for model in config.video_models:
        try:
            found = retrain_video(out, Path(model), settings)
            details.append(f"{Path(model).name}: {found.status}, {found.detail}")
        except ClipminerError as exc:
            problems.append(f"{model}: {exc}")
        except Exception as exc:
            log.exception("retrain crashed")
            problems.append(f"{model}: crashed: {exc!r} (see the log)")
    for line in details:
        log.info("retrain: %s", line)
    for problem in problems:
        log.error("retrain: %s", problem)
    status: Literal["ok", "failed"] = "failed" if problems else "ok"
    return StageReport(
        "retrain", status, "; ".join(details or problems), problems, time.monotonic() - started
    )


def load_dedup(path: Path) -> DedupConfig:
    """The ``[dedup]`` table: :class:`~clipminer.config.DedupConfig` by field name."""
    return _table(DedupConfig, _read_toml(path), "dedup", path)


def _dedup(out: Path | str, settings: DedupConfig) -> StageReport:
    """Near-duplicates among everything mined into ``out`` (the dedup stage)."""
    from clipminer.curate.dedup import dedup

    if isinstance(out, str):
        return StageReport("dedup", "skipped", IN_A_BUCKET.format(stage="dedup"))
    started = time.monotonic()
    if not (out / "videos").is_dir():
        return StageReport("dedup", "skipped", "nothing mined yet")
    try:
        found = dedup(out, **asdict(settings))
    except ClipminerError as exc:
        log.error("dedup: %s", exc)
        return StageReport("dedup", "failed", str(exc), seconds=time.monotonic() - started)
    except Exception as exc:
        log.exception("dedup crashed")
        return StageReport("dedup", "failed", f"crashed: {exc!r} (see the log)")
    detail = (
        f"{found.clips} clips: {found.dropped_clips} near-duplicates marked in "
        f"{found.clip_groups} groups, {found.dropped_videos} of {found.videos} videos; "
        f"{found.reused_videos} videos compared before (duplicates.csv)"
    )
    log.info("dedup: %s", detail)
    for note in found.notes:
        log.warning("dedup: %s", note)
    return StageReport("dedup", "ok", detail, list(found.notes), time.monotonic() - started)


def _mine(config: BatchConfig, folder: Path | str, out: Path | str) -> tuple[int, StageReport]:
    """The batch over ``folder`` (the mine stage): its exit code and report."""
    from clipminer.batch import BatchLocked, run_batch

    started = time.monotonic()
    log.info(
        "nightly batch: %s -> %s (%s engine, %d workers)",
        store.redact(str(folder)),
        store.redact(str(out)),
        config.engine,
        config.workers,
    )
    try:
        summary = run_batch(
            folder,
            out,
            config=config,
            on_outcome=lambda o: (log.info if o.ok else log.error)(
                "%s: %s", "done" if o.ok else "failed", o.path if o.ok else o.error
            ),
        )
    except BatchLocked as exc:
        log.error("%s", exc)
        return EXIT_LOCKED, StageReport("mine", "failed", str(exc))
    except UsageError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG, StageReport("mine", "failed", str(exc))
    except ClipminerError as exc:
        log.error("%s", exc)
        return EXIT_CRASH, StageReport("mine", "failed", str(exc))
    except Exception as exc:
        log.exception("the nightly batch crashed")
        return EXIT_CRASH, StageReport("mine", "failed", f"crashed: {exc!r} (see the log)")
    detail = (
        f"{summary.done} done, {summary.failed} failed, {summary.already_done} already done, "
        f"{summary.skipped} skipped"
    )
    log.info("%s; report %s", detail, store.within(out, "report.html"))
    if summary.stale:
        log.warning(
            "%d done videos were mined with other options or models and were left as they "
            "are; run clipminer batch --force to mine them again",
            summary.stale,
        )
    problems = [f"{o.path}: {o.error}" for o in summary.outcomes if not o.ok]
    report = StageReport(
        "mine", "failed" if summary.failed else "ok", detail, problems,
        time.monotonic() - started,
    )  # fmt: skip
    return (EXIT_FAILED_VIDEOS if summary.failed else EXIT_OK), report


if __name__ == "__main__":
    sys.exit(main())
