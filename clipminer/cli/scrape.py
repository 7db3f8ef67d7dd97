"""``clipminer scrape``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import MofNCompleteColumn, Progress
from rich.table import Table

from clipminer.cli.common import app, columns, console, err_console, settings_options
from scrapers.config import ScrapeConfig


@app.command()
@settings_options(ScrapeConfig, into="config")
def scrape(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Output folder: OUT/<action>/<sha256-prefix>.<ext> and OUT/manifest.csv.",
        ),
    ],
    actions: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="File with one action per line (blank lines and # comments ignored), e.g. "
            "the Kinetics-400 names.",
        ),
    ] = None,
    action: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="An action to search for; repeat for several."),
    ] = None,
    *,
    config: ScrapeConfig,
) -> None:
    """Build a Kinetics-style image dataset: search each action in headless Chromium.

    The full-size images are downloaded outside the browser, checked and deduplicated.
    Re-running resumes: URLs already in the manifest are not fetched again. With
    --background, a background class of everyday scenes without an action is added, from
    generic queries (docs/background-scrape.md). Respect the search engines' terms of use;
    --engine local works offline.
    """
    from scrapers.scrape import class_plans, read_actions
    from scrapers.scrape import scrape as run_scrape

    names = (read_actions(actions) if actions else []) + list(action or [])
    total = sum(plan.target for plan in class_plans(names, config))  # bad input: no bar
    with Progress(*columns(MofNCompleteColumn()), console=err_console) as bar:
        update = _action_bars(bar, total)
        summaries = run_scrape(names, out, config=config, progress=update)
    console.print(_table(summaries))
    console.print(f"manifest: {out / 'manifest.csv'}")


def _action_bars(bar: Progress, total: int) -> Callable[[str, int, int], None]:
    """A bar per class and one over all of them; the callback the scraper reports to."""
    tasks: dict[str, Any] = {}
    saved_by_action: dict[str, int] = {}
    overall = bar.add_task("all classes", total=total)

    def update(name: str, saved: int, target: int) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(name[:30], total=target)
        bar.update(tasks[name], completed=min(saved, target))
        saved_by_action[name] = min(saved, target)
        bar.update(overall, completed=sum(saved_by_action.values()))

    return update


def _table(summaries: Sequence[Any]) -> Table:
    table = Table("action", "found", "saved", "duplicates", "failures", "note", title="scrape")
    for row in summaries:
        counts = (row.found, row.saved, row.duplicates, row.failures)
        table.add_row(row.action, *map(str, counts), row.note)
    return table
