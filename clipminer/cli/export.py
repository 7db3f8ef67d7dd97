"""``clipminer export``: see :mod:`clipminer.curate.export`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from clipminer.cli.common import app, console, print_error, progress_bar, settings_options
from clipminer.config import ExportConfig
from clipminer.curate.verdicts import Rule

if TYPE_CHECKING:
    from clipminer.curate.export import ExportReport


@app.command("export")
@settings_options(Rule, into="rule")
@settings_options(ExportConfig, into="settings")
def export_command(
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="A mined OUT folder (find-clips or batch).")
    ],
    dataset: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="DATASET",
            help="The dataset folder to write: <split>/<label>/*.mp4, <split>.csv, dataset.json.",
        ),
    ],
    *,
    settings: ExportConfig,
    rule: Rule,
) -> None:
    """Write the final dataset: reviewed clips in a folder per split and label.

    train-video --videos DATASET/train --val-dir DATASET/val and eval-video MODEL --videos
    DATASET/test --val-fraction 0 read it directly. Beside the folders: a Kinetics annotation
    CSV per split and dataset.json (counts, sources, models, settings, dates). No source
    video or duplicate group is in two splits. OUT is never changed.
    """
    from clipminer.curate.export import export, parse_splits

    ratios = parse_splits(settings.splits)
    with progress_bar("export", lazy=True) as update:
        report = export(
            out,
            dataset,
            splits=ratios,
            rule=rule,
            include=settings.include,
            webdataset=settings.webdataset,
            shard_size=settings.shard_size,
            seed=settings.seed,
            link="hardlink" if settings.hardlink else "copy",
            force=settings.force,
            progress=update,
        )
    console.print(dataset_table(report.counts))
    _notes(report)


def dataset_table(counts: Mapping[str, Mapping[str, int]]) -> Table:
    """Clips per label (rows) and split (columns)."""
    splits = list(counts)
    total = sum(sum(per.values()) for per in counts.values())
    table = Table("label", title=f"{total} clips")
    for name in (*splits, "total"):
        table.add_column(name, justify="right")
    labels = sorted({label for per in counts.values() for label in per})
    for label in labels:
        row = [counts[s].get(label, 0) for s in splits]
        table.add_row(Text(label), *(str(n) for n in row), str(sum(row)))
    sums = [sum(counts[s].values()) for s in splits]
    table.add_row(Text("total", style="bold"), *(str(n) for n in sums), str(sum(sums)))
    return table


def _notes(report: ExportReport) -> None:
    console.print(Text.assemble("dataset: ", str(report.dataset)))
    for split, labels in report.counts.items():
        if not labels:
            print_error(
                f"the {split} split is empty (too few source videos to split)",
                label="note:",
                style="yellow",
            )
    if report.copied_instead_of_linked:
        print_error(
            f"{report.copied_instead_of_linked} files copied: a hard link was impossible",
            label="note:",
            style="yellow",
        )
