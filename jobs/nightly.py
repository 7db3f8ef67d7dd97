"""The nightly cron entry: read ``nightly.toml``, run the batch, log to a rotating file.

Exit codes for monitoring: 0 all mined (or nothing to do), 1 some videos failed (the
others are done), 2 bad configuration, 3 another run holds the output folder,
4 an unexpected error (see the log).

Usage: python -m jobs.nightly --config jobs/nightly.toml
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

from clipminer.config import BatchConfig, findclips_config
from clipminer.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXIT_OK, EXIT_FAILED_VIDEOS, EXIT_CONFIG, EXIT_LOCKED, EXIT_CRASH = 0, 1, 2, 3, 4
log = logging.getLogger("clipminer.nightly")


BATCH_KEYS = {
    "input": "folder that fills up with long videos (required)",
    "output_root": "state, per-video outputs and reports (required)",
    "image_model": "image model bundle (required)",
    "video_models": "list of video model bundles",
    "engine": "local or ray",
    "ray_address": "Ray cluster address; empty: start a local Ray",
    "workers": "videos mined at once",
    "retry_failed": "try failed videos again",
    "force": "redo videos done with other options or models",
}
LOG_KEYS = {"file", "max_bytes", "backups"}


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
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    _check_keys(data, ("batch", "findclips", "log"), str(path))
    batch, find, log_cfg = data.get("batch", {}), data.get("findclips", {}), data.get("log", {})
    _check_keys(batch, BATCH_KEYS, f"{path} [batch]")
    _check_keys(log_cfg, LOG_KEYS, f"{path} [log]")
    missing = [key for key in ("input", "output_root", "image_model") if key not in batch]
    if missing:
        raise UsageError(f"{path} [batch]: missing setting {', '.join(missing)}")
    base = path.parent
    try:
        config = BatchConfig(
            image_model=_path(base, batch["image_model"]),
            video_models=tuple(_path(base, p) for p in batch.get("video_models", [])),
            findclips=findclips_config(find, where=f"{path} [findclips]"),
            engine=batch.get("engine", "local"),
            ray_address=batch.get("ray_address") or None,
            workers=int(batch.get("workers", 1)),
            retry_failed=bool(batch.get("retry_failed", False)),
            force=bool(batch.get("force", False)),
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path} [batch]: {exc}") from None
    input_dir = Path(_path(base, batch["input"]))
    return config, input_dir, Path(_path(base, batch["output_root"])), log_cfg


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
    parser = argparse.ArgumentParser(description="clipminer nightly batch")
    parser.add_argument("--config", type=Path, default=Path(__file__).with_name("nightly.toml"))
    args = parser.parse_args(argv)
    from clipminer.batch import BatchLocked, run_batch
    from clipminer.errors import ClipminerError

    try:
        config, folder, out, log_settings = load_config(args.config)
        setup_logging(log_settings, args.config.parent)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:  # the log file or its folder cannot be written
        print(f"error: {exc.filename or args.config}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
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
        return EXIT_LOCKED
    except UsageError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    except ClipminerError as exc:
        log.error("%s", exc)
        return EXIT_CRASH
    except Exception:
        log.exception("the nightly batch crashed")
        return EXIT_CRASH
    log.info(
        "%d done, %d failed, %d already done, %d skipped; report %s",
        summary.done,
        summary.failed,
        summary.already_done,
        summary.skipped,
        out / "report.html",
    )
    if summary.stale:
        log.warning(
            "%d done videos were mined with other options or models and were left as they "
            "are; run clipminer batch --force to mine them again",
            summary.stale,
        )
    return EXIT_FAILED_VIDEOS if summary.failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
