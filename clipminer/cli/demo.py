"""``clipminer demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from clipminer.cli.common import Seed, app, console, flag, progress_bar


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (created if missing).")
    ] = Path("demo-out"),
    seed: Seed = 0,
    small: Annotated[bool, flag("A quick, tiny run (what the test suite does).")] = False,
) -> None:
    """Run the whole pipeline on generated data, offline.

    Scrapes the local engine, trains the image and video models, mines long videos with
    the nightly batch, scores the clips against the ground truth, and makes a dataset of
    them (dedup, a stand-in reviewer that knows the truth, a leak-free export).
    """
    from clipminer.cli.demo_pipeline import run_demo

    with progress_bar("demo") as update:
        summary = run_demo(out, seed=seed, small=small, progress=update)
    clips = summary.pop("clips", "")
    table = Table("step", "result", title="clipminer demo")
    for step, result in summary.items():
        table.add_row(step, result)
    console.print(table)
    if clips:
        console.print("clips:\n" + clips)
    card = out / "dataset" / "dataset.json"
    if card.is_file():
        from clipminer.cli.export import dataset_table

        console.print(dataset_table(json.loads(card.read_text())["counts"]["per_split"]))
