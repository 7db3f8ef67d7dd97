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
from clipminer.curate.verdicts import RuleChoice

if TYPE_CHECKING:
    from clipminer.curate.export import ExportReport


@app.command("export")
@settings_options(RuleChoice, into="rule")
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
    rule: RuleChoice,
    override_rule: Annotated[
        bool,
        typer.Option(
            "--override-rule",
            help="Use the given --votes/--agree for this export even though OUT/review.sqlite "
            "stores another rule; the dataset records it.",
            show_default=False,
        ),
    ] = False,
    require_complete: Annotated[
        bool,
        typer.Option(
            "--require-complete",
            help="Refuse to export (writing nothing) while any clip is pending or disputed; "
            "clipminer review OUT shows them.",
            show_default=False,
        ),
    ] = False,
) -> None:
    """Write the final dataset: reviewed clips in a folder per split and label.

    train-video --videos DATASET/train --val-dir DATASET/val and eval-video MODEL --videos
    DATASET/test --val-fraction 0 read it directly. Beside the folders: a Kinetics annotation
    CSV per split and dataset.json (counts, sources, models, settings, the review rule and
    verdicts, dates). No source video or duplicate group is in two splits. OUT is never
    changed. Verdicts follow the rule stored in OUT/review.sqlite (one vote decides where
    none is); --votes/--agree that differ from it need --override-rule.
    """
    from clipminer.curate.export import export, parse_splits

    ratios = parse_splits(settings.splits)
    with progress_bar("export", lazy=True) as update:
        report = export(
            out,
            dataset,
            splits=ratios,
            rule=rule,
            override_rule=override_rule,
            require_complete=require_complete,
            include=settings.include,
            rejected_as=settings.rejected_as,
            webdataset=settings.webdataset,
            shard_size=settings.shard_size,
            seed=settings.seed,
            link="hardlink" if settings.hardlink else "copy",
            force=settings.force,
            progress=update,
        )
    console.print(dataset_table(report.counts))
    _review_lines(report)
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


def _review_lines(report: ExportReport) -> None:
    """The rule, what the verdicts made of the clips, and how far the reviewers agree."""
    console.print(Text(f"rule: {report.rule.describe()} ({report.rule_source})"))
    n, s = report.selection.review_counts(), report.selection
    console.print(
        f"verdicts: {n['accepted']} accepted, {n['relabelled']} relabelled, "
        f"{n['rejected']} rejected, {n['pending']} pending, {n['disputed']} disputed"
    )
    rejected = (
        f"{s.rejected} rejected (exported as {report.rejected_as})"
        if report.rejected_as else f"{s.rejected} rejected"
    )  # fmt: skip
    console.print(
        Text(
            f"left out: {rejected}, {s.unreviewed} pending or disputed, "
            f"{s.duplicates} dropped duplicates, {s.missing_file} without a clip file"
        )
    )
    overall = report.agreement.get("all")
    if overall is not None and overall.percent is not None:
        kappa = "undefined" if overall.kappa is None else f"{overall.kappa:.2f}"
        console.print(
            f"agreement: {overall.percent:.0%} over {overall.clips} clips with 2+ votes "
            f"(Fleiss' kappa {kappa})"
        )


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
