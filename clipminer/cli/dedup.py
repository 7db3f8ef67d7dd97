"""``clipminer dedup``: see :mod:`clipminer.curate.dedup`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from clipminer.cli.common import app, console, flag, print_error, progress_bar

if TYPE_CHECKING:
    from clipminer.curate.dedup import DedupReport


class SpaceChoice(str, Enum):
    image = "image"
    video = "video"


@app.command("dedup")
def dedup(
    out: Annotated[
        Path, typer.Argument(help="A mined output folder (OUT/videos/<name>/ per video).")
    ],
    threshold: Annotated[
        float,
        typer.Option(
            metavar="COS", help="Clips whose embeddings have cosine >= this are near-duplicates."
        ),
    ] = 0.97,  # clipminer.curate.dedup.DEFAULT_THRESHOLD
    video_threshold: Annotated[
        float,
        typer.Option(
            metavar="COS",
            help="Source videos whose mean frame embeddings have cosine >= this are "
            "near-duplicates (every clip of a dropped video is dropped).",
        ),
    ] = 0.97,  # clipminer.curate.dedup.DEFAULT_VIDEO_THRESHOLD
    space: Annotated[
        SpaceChoice,
        typer.Option(help="Compare the image model's embeddings or the video model's."),
    ] = SpaceChoice.image,
    delete: Annotated[
        bool,
        flag(
            "Also delete the clip files of dropped clips and dropped videos (only under "
            "OUT/videos/*/clips/; source videos are never touched). Without it, nothing is "
            "deleted."
        ),
    ] = False,
    within_videos: Annotated[
        bool,
        flag(
            "Also group near-duplicate clips of the same video (replays, repeated footage). "
            "Off by default: consecutive moments of one scene look alike."
        ),
    ] = False,
) -> None:
    """Find near-duplicate clips and source videos across everything mined into OUT.

    Writes OUT/duplicates.csv (group_id, kind, member, kept, similarity): one kept member
    per group, the others marked dropped; review and export skip them. Reruns compare only
    new or re-mined videos with the rest and keep earlier decisions.
    """
    from clipminer.curate.dedup import check_arguments
    from clipminer.curate.dedup import dedup as run_dedup

    check_arguments(out, threshold=threshold, video_threshold=video_threshold, space=space.value)
    with progress_bar("dedup") as update:
        report = run_dedup(
            out,
            threshold=threshold,
            video_threshold=video_threshold,
            space=space.value,
            delete=delete,
            within_videos=within_videos,
            progress=update,
        )
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
