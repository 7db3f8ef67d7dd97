"""The nightly cron entry: read ``nightly.toml``, run the night, log to a rotating file.

A night has four stages, each skippable (``[night] stages`` or ``--skip STAGE``):
``search`` (with a ``[watch]`` table: search-videos for new candidates of the watched
actions), ``fetch`` (fetch-videos of the candidates not seen before, capped by
``[fetch] max_videos``, into the mined folder), ``mine`` (the batch, as before) and
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
from typing import Any, Literal

from clipminer.config import BatchConfig, DedupConfig, findclips_config
from clipminer.errors import ClipminerError, UsageError
from clipminer.fsutil import atomic_path
from clipminer.settings import flat_fields, from_flat
from clipminer.sources.fetch import FetchConfig
from clipminer.sources.youtube import API_KEY_ENV, SearchConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXIT_OK, EXIT_FAILED_VIDEOS, EXIT_CONFIG, EXIT_LOCKED, EXIT_CRASH = 0, 1, 2, 3, 4
log = logging.getLogger("clipminer.nightly")


BATCH_OWN = {
    "input": "folder that fills up with long videos (required)",
    "output_root": "state, per-video outputs and reports (required)",
    "image_model": "image model bundle (required)",
    "video_models": "list of video model bundles",
}
"""The ``[batch]`` keys that are not batch settings (those come from
:class:`~clipminer.config.BatchConfig`'s declaration, by field name)."""
BATCH_SETTINGS = [spec.name for spec in flat_fields(BatchConfig) if not spec.path]
LOG_KEYS = {"file", "max_bytes", "backups"}
STAGES = ("search", "fetch", "mine", "dedup")
NIGHT_KEYS = {"stages": "the stages to run, in order: search, fetch, mine, dedup"}
WATCH_KEYS = {
    "actions": "file of watched actions, one a line (needed by search)",
    "candidates": "candidates CSV that search writes and fetch reads (required)",
    "videos": "folder fetched videos land in; default: [batch] input, so they are mined",
    "api_key_env": f"environment variable with the YouTube Data API key ({API_KEY_ENV})",
}
TABLES = ("batch", "findclips", "log", "night", "watch", "search", "fetch", "dedup")
# The type of every key of the tables nightly.py reads itself (the settings of [batch],
# [findclips], [search], [fetch] and [dedup] are checked by their declarations): a string
# is never a number or a boolean, a number never a string.
TYPES: dict[str, dict[str, Any]] = {
    "batch": {"input": str, "output_root": str, "image_model": str, "video_models": list},
    "log": {"file": str, "max_bytes": int, "backups": int},
    "night": {"stages": list},
    "watch": {"actions": str, "candidates": str, "videos": str, "api_key_env": str},
}  # fmt: skip
_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}


def _check_types(data: dict[str, Any], where: Path) -> None:
    """Every table a table, every value of the type its key takes: one line, else."""
    for table, value in data.items():
        if not isinstance(value, dict):
            raise UsageError(f"{where}: [{table}] must be a table, got {value!r}")
    for table, types in TYPES.items():
        for key, value in data.get(table, {}).items():
            expected = types.get(key)
            if expected is None:
                continue  # unknown keys are refused with the valid ones, below
            if isinstance(expected, tuple):
                ok, wanted = value in expected, " or ".join(map(repr, expected))
            elif expected is list:
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
                wanted = "a list of strings"
            elif expected is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                wanted = _TYPE_NAMES[float]
            elif expected is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
                wanted = _TYPE_NAMES[int]
            else:
                ok, wanted = isinstance(value, expected), _TYPE_NAMES[expected]
            if not ok:
                raise UsageError(f"{where} [{table}] {key}: expected {wanted}, got {value!r}")


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


def _path(base: Path, value: str) -> str:
    return str(value if Path(value).is_absolute() else (base / value).resolve())


def _check_keys(table: dict[str, Any], valid: Any, where: str) -> None:
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise UsageError(
            f"{where}: unknown setting {', '.join(unknown)}; valid: {', '.join(valid)}"
        )


def load_config(path: Path) -> tuple[BatchConfig, Path, Path, dict[str, Any]]:
    """(BatchConfig, input folder, output root, log settings) from the TOML file.

    ``[findclips]`` takes every find-clips setting by its snake_case name (the same
    fields as the command line's options); an unknown or misspelt key in any table is
    a one-line error that lists the valid keys.
    """
    data = _read_toml(path)
    batch, find, log_cfg = data.get("batch", {}), data.get("findclips", {}), data.get("log", {})
    _check_keys(batch, [*BATCH_OWN, *BATCH_SETTINGS], f"{path} [batch]")
    _check_keys(log_cfg, LOG_KEYS, f"{path} [log]")
    missing = [key for key in ("input", "output_root", "image_model") if key not in batch]
    if missing:
        raise UsageError(f"{path} [batch]: missing setting {', '.join(missing)}")
    base = path.parent
    settings = {key: batch[key] for key in BATCH_SETTINGS if key in batch}
    config = replace(
        from_flat(BatchConfig, settings, where=f"{path} [batch]"),
        image_model=_path(base, batch["image_model"]),
        video_models=tuple(_path(base, p) for p in batch.get("video_models", [])),
        findclips=findclips_config(find, where=f"{path} [findclips]"),
    )
    input_dir = Path(_path(base, batch["input"]))
    _check_readable(path, config, input_dir)
    return config, input_dir, Path(_path(base, batch["output_root"])), log_cfg


def _check_readable(path: Path, config: BatchConfig, input_dir: Path) -> None:
    """Before any work: the models are files, the input folder can be listed."""
    for model in (config.image_model, *config.video_models):
        if not Path(model).is_file():
            raise UsageError(f"{path} [batch]: {model}: no such model file")
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
    _check_types(data, path)
    return data


def load_stages(path: Path, skip: list[str] | None = None) -> tuple[str, ...]:
    """The stages to run: ``[night] stages`` (default all) less ``skip``."""
    night = _read_toml(path).get("night", {})
    _check_keys(night, NIGHT_KEYS, f"{path} [night]")
    stages = night.get("stages", list(STAGES))
    wrong = [s for s in [*stages, *(skip or [])] if s not in STAGES]
    if not isinstance(stages, list) or wrong:
        raise UsageError(f"{path} [night]: stages must be a list of {', '.join(STAGES)}")
    return tuple(s for s in STAGES if s in stages and s not in (skip or []))


def load_watch(path: Path, input_dir: Path) -> WatchList | None:
    """The watch list, or None when the file has no ``[watch]`` table."""
    data = _read_toml(path)
    watch = data.get("watch")
    if watch is None:
        for table in ("search", "fetch"):
            if table in data:
                raise UsageError(f"{path}: [{table}] needs a [watch] table")
        return None
    _check_keys(watch, WATCH_KEYS, f"{path} [watch]")
    if "candidates" not in watch:
        raise UsageError(f"{path} [watch]: missing setting candidates")
    base = path.parent
    return WatchList(
        candidates=Path(_path(base, watch["candidates"])),
        videos=Path(_path(base, watch["videos"])) if watch.get("videos") else input_dir,
        actions=Path(_path(base, watch["actions"])) if watch.get("actions") else None,
        api_key_env=str(watch.get("api_key_env") or API_KEY_ENV),
        search=from_flat(SearchConfig, data.get("search", {}), where=f"{path} [search]"),
        fetch=from_flat(FetchConfig, data.get("fetch", {}), where=f"{path} [fetch]"),
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


def write_night_report(out: Path, stages: list[StageReport]) -> None:
    """``OUT/night.json``, and ``OUT/report.html`` drawn again with the night's stages
    (the batch's videos, when it ran)."""
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


def setup_logging(settings: dict[str, Any], base: Path) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.get("file"):
        target = Path(_path(base, settings["file"]))
        target.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                target,
                maxBytes=int(settings.get("max_bytes", 10_000_000)),
                backupCount=int(settings.get("backups", 7)),
            )
        )
    logging.basicConfig(
        level=logging.INFO,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="clipminer nightly: search, fetch, mine")
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


def load_dedup(path: Path) -> DedupConfig:
    """The ``[dedup]`` table: :class:`~clipminer.config.DedupConfig` by field name."""
    return from_flat(DedupConfig, _read_toml(path).get("dedup", {}), where=f"{path} [dedup]")


def _dedup(out: Path, settings: DedupConfig) -> StageReport:
    """Near-duplicates among everything mined into ``out`` (the dedup stage)."""
    from clipminer.curate.dedup import dedup

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


def _mine(config: BatchConfig, folder: Path, out: Path) -> tuple[int, StageReport]:
    """The batch over ``folder`` (the mine stage): its exit code and report."""
    from clipminer.batch import BatchLocked, run_batch

    started = time.monotonic()
    log.info(
        "nightly batch: %s -> %s (%s engine, %d workers)",
        folder,
        out,
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
    log.info("%s; report %s", detail, out / "report.html")
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
