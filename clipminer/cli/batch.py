"""``clipminer batch``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clipminer import store
from clipminer.cli.common import (
    ImageModel,
    VideoModels,
    app,
    console,
    print_error,
    settings_options,
)
from clipminer.config import BatchConfig

if TYPE_CHECKING:
    from clipminer.batch import BatchSummary, Outcome


@app.command()
@settings_options(BatchConfig, into="config")
def batch(
    folder: Annotated[
        str,
        typer.Argument(
            help="Folder to mine, recursively (files without a video suffix are probed); or "
            "a bucket prefix or one video as an s3://, gs:// (fsspec) URL, or one video as "
            "an http(s):// URL (objects are chosen by suffix, not probed)."
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Output folder: videos/<name>/ per video, state.sqlite, summary.csv, "
            "kinetics.csv, report.html. May be a bucket URL (s3://bucket/prefix): each "
            "video's folder is uploaded whole, run.json last; the state and reports are "
            "kept in --work-dir and uploaded after each change.",
        ),
    ],
    image_model: ImageModel,
    video_model: VideoModels = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            help="With --out in a bucket: the folder on this machine for the run's own files "
            "(state.sqlite, reports, copies of each done video's small files). Default: "
            "~/.cache/clipminer/runs/<bucket_prefix>-<hash> ($CLIPMINER_CACHE moves it).",
        ),
    ] = None,
    *,
    config: BatchConfig,
) -> None:
    """Run find-clips over a folder, resumably; every find-clips option applies.

    What is done is skipped, one bad video never stops the run, and a second run on the
    same OUT exits at once (code 3). State in OUT/state.sqlite; reports in
    OUT/summary.csv, OUT/kinetics.csv and OUT/report.html (open it from disk). Exit code
    1 if any video failed.
    """
    from clipminer.batch import run_batch

    config = replace(
        config,
        image_model=image_model,
        video_models=tuple(video_model or []),
    )
    summary = run_batch(folder, out, config=config, on_outcome=_report, work_dir=work_dir)
    _print_summary(summary, out)
    if summary.failed:
        raise typer.Exit(code=1)


def _report(outcome: Outcome) -> None:
    if outcome.ok:
        console.print(f"done: {outcome.path} ({outcome.segments} clips, {outcome.seconds:.1f} s)")
    else:
        print_error(outcome.error, label="failed:")


def _print_summary(summary: BatchSummary, out: str) -> None:
    report = store.within(out, "report.html")
    console.print(
        f"{summary.done} done, {summary.failed} failed, {summary.already_done} already done, "
        f"{summary.skipped} skipped; report: {report}"
    )
    if summary.stale:
        print_error(
            f"{summary.stale} done videos were mined with other options or models and were "
            "left as they are; --force mines them again",
            label="note:",
            style="yellow",
        )
