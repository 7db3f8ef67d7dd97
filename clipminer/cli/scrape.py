"""``clipminer scrape``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import MofNCompleteColumn, Progress
from rich.table import Table

from clipminer.cli.common import app, columns, console, err_console


class EngineChoice(str, Enum):
    """Image search engines."""

    bing = "bing"
    google = "google"
    duckduckgo = "duckduckgo"
    local = "local"


class SaveAsChoice(str, Enum):
    """How scraped images are stored."""

    original = "original"
    jpeg = "jpeg"


@app.command()
def scrape(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output folder: OUT/<action>/<sha256-prefix>.<ext> and OUT/manifest.csv.",
        ),
    ],
    actions: Annotated[
        Path | None,
        typer.Option(
            help="File with one action per line (blank lines and # comments ignored), e.g. the Kinetics-400 names."
        ),
    ] = None,
    action: Annotated[
        list[str] | None, typer.Option(help="An action to search for; repeat for several.")
    ] = None,
    per_action: Annotated[
        int,
        typer.Option(min=1, help="Images to keep per action (a re-run continues to this count)."),
    ] = 100,
    engine: Annotated[
        EngineChoice,
        typer.Option(
            help="bing, google, duckduckgo, or local: an offline engine clipminer starts itself, serving generated images of the toy actions."
        ),
    ] = EngineChoice.bing,
    engine_url: Annotated[
        str | None,
        typer.Option(
            help="Replace the engine's scheme and host (keeping its paths and parameters), e.g. a local mirror."
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Headless browsers in parallel, one action each at a time.")
    ] = 1,
    download_workers: Annotated[int, typer.Option(min=1, help="Parallel image downloads.")] = 4,
    query_template: Annotated[
        str, typer.Option(help="Search query; {action} is replaced by the action.")
    ] = "{action}",
    min_size: Annotated[
        int, typer.Option(min=0, help="Smallest accepted shorter side in pixels.")
    ] = 0,
    max_bytes: Annotated[
        int, typer.Option(min=1, help="Largest accepted download in bytes.")
    ] = 20_000_000,
    max_pixels: Annotated[
        int,
        typer.Option(min=1, help="Largest accepted image in pixels (decompression-bomb guard)."),
    ] = 40_000_000,
    phash_distance: Annotated[
        int,
        typer.Option(
            min=0,
            help="Perceptual-hash distance at or below which an image is a near-duplicate of one already kept (any action).",
        ),
    ] = 4,
    save_as: Annotated[
        SaveAsChoice,
        typer.Option(
            help="original: keep JPEG, PNG, GIF and WebP bytes as downloaded (other formats become JPEG); jpeg: re-encode everything as JPEG."
        ),
    ] = SaveAsChoice.original,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Read timeout of a download, seconds.")
    ] = 15.0,
    polite_seconds: Annotated[
        float, typer.Option(min=0.0, help="Least time between two requests to one host.")
    ] = 0.5,
    max_pages: Annotated[
        int, typer.Option(min=1, help="Result pages (or scrolls) read per action at most.")
    ] = 20,
    retry_failed: Annotated[
        bool,
        typer.Option(help="Fetch again URLs that failed with an HTTP error or a timeout before."),
    ] = False,
) -> None:
    """Build a Kinetics-style image dataset by searching each action in headless Chromium.

    The full-size images are downloaded outside the browser, checked and deduplicated.

    Re-running resumes: URLs already in the manifest are not fetched again. Respect the
    search engines' terms of use; --engine local works offline.
    """
    from scrapers.download import DownloadConfig
    from scrapers.scrape import ScrapeConfig, read_actions
    from scrapers.scrape import scrape as run_scrape

    names = (read_actions(actions) if actions else []) + list(action or [])
    config = ScrapeConfig(
        engine=engine.value,
        engine_url=engine_url,
        per_action=per_action,
        workers=workers,
        download_workers=download_workers,
        query_template=query_template,
        max_pages=max_pages,
        retry_failed=retry_failed,
        download=DownloadConfig(
            read_timeout_seconds=timeout,
            max_bytes=max_bytes,
            max_pixels=max_pixels,
            min_size=min_size,
            polite_seconds=polite_seconds,
            save_as=save_as.value,
            phash_distance=phash_distance,
        ),
    )
    with Progress(*columns(MofNCompleteColumn()), console=err_console) as bar:
        tasks: dict[str, Any] = {}
        saved_by_action: dict[str, int] = {}
        overall = bar.add_task("all actions", total=per_action * len(names))

        def update(name: str, saved: int, target: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name[:30], total=target)
            bar.update(tasks[name], completed=min(saved, target))
            saved_by_action[name] = min(saved, target)
            bar.update(overall, completed=sum(saved_by_action.values()))

        summaries = run_scrape(names, out, config=config, progress=update)
    table = Table("action", "found", "saved", "duplicates", "failures", "note", title="scrape")
    for row in summaries:
        table.add_row(
            row.action,
            str(row.found),
            str(row.saved),
            str(row.duplicates),
            str(row.failures),
            row.note,
        )
    console.print(table)
    console.print(f"manifest: {out / 'manifest.csv'}")
