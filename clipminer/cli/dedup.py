"""``clipminer dedup``: see :mod:`clipminer.curate.dedup`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from clipminer.cli.common import (
    app,
    console,
    flag,
    print_error,
    progress_bar,
    settings_options,
)
from clipminer.config import DedupConfig

if TYPE_CHECKING:
    from clipminer.curate.dedup import DedupReport


@app.command("dedup")
@settings_options(DedupConfig, into="settings")
def dedup(
    out: Annotated[
        Path, typer.Argument(help="A mined output folder (OUT/videos/<name>/ per video).")
    ],
    delete: Annotated[
        bool,
        flag(
            "Also delete the clip files of dropped clips and dropped videos (only under "
            "OUT/videos/*/clips/; source videos are never touched). Without it, nothing is "
            "deleted."
        ),
    ] = False,
    *,
    settings: DedupConfig,
) -> None:
    """Find near-duplicate clips and source videos across everything mined into OUT.

    Writes OUT/duplicates.csv (group_id, kind, member, kept, similarity): one kept member
    per group, the others marked dropped; review and export skip them. Reruns compare only
    new or re-mined videos with the rest and keep earlier decisions.
    """
    from clipminer.curate.catalog import check_mined
    from clipminer.curate.dedup import dedup as run_dedup

    check_mined(out)  # before the progress bar opens
    with progress_bar("dedup") as update:
        report = run_dedup(out, **asdict(settings), delete=delete, progress=update)
    for note in report.notes:
        print_error(note, label="warning:", style="yellow")
    _print_report(report)


def _print_report(report: DedupReport) -> None:
    table = Table(title=Text(f"duplicates in {report.out}"), title_justify="left")
    table.add_column("", style="bold")
    table.add_column("compared", justify="right")
    table.add_column("groups", justify="right")
    table.add_column("dropped", justify="right")
    table.add_row("clips", str(report.clips), str(report.clip_groups), str(report.dropped_clips))
    table.add_row(
        "videos", str(report.videos), str(report.video_groups), str(report.dropped_videos)
    )
    console.print(table)
    reused = (
        f", {report.reused_videos} videos reused from the last run" if report.reused_videos else ""
    )
    deleted = f"; deleted {report.deleted_files} clip files" if report.deleted_files else ""
    search = "nothing new to search" if report.method == "none" else f"{report.method} search"
    console.print(
        f"{report.space} embeddings, {search}, {report.seconds:.1f} s{reused}"
        f"{deleted}; wrote {report.out / 'duplicates.csv'}"
    )
