"""``clipminer search-videos`` and ``clipminer fetch-videos``: the front of the pipeline."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import DownloadColumn, MofNCompleteColumn, Progress, TransferSpeedColumn
from rich.table import Table

from clipminer.cli.common import app, columns, console, err_console, print_error, settings_options
from clipminer.sources.fetch import FetchConfig
from clipminer.sources.youtube import API_KEY_ENV, SearchConfig

if TYPE_CHECKING:
    from clipminer.sources.fetch import FetchEvent, FetchSummary
    from clipminer.sources.youtube import ActionResult, SearchSummary

EXIT_SOME_FAILED = 1
EXIT_RATE_LIMITED = 4
FAILURES_SHOWN = 20


@app.command("search-videos")
@settings_options(SearchConfig, into="config")
def search_videos_command(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="CSV",
            help="Candidates file (action,query,youtube_id,title,channel,published_at,"
            "duration_seconds,license,url); a rerun adds to it, never duplicates.",
        ),
    ],
    actions: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="File with one action per line (blank lines, # comments ignored)."
        ),
    ] = None,
    action: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="An action to search for; repeat for several."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            show_default=False,
            help=f"YouTube Data API v3 key (default: ${API_KEY_ENV}); never printed or saved.",
        ),
    ] = None,
    more: Annotated[
        bool,
        typer.Option(
            "--more",
            help="Find --per-action more candidates per action than the file already has "
            "(what the nightly watch list does), instead of topping up to --per-action.",
        ),
    ] = False,
    *,
    config: SearchConfig,
) -> None:
    """Search YouTube for candidate videos of every action (YouTube Data API v3).

    One row per video id; a video found for several actions lists them all, joined by
    |. The file is rewritten after every result page, so a quota error or a refused key
    (one-line errors) keeps what was found. Each result page costs 100 quota units of
    the key's daily 10,000; follow YouTube's terms of service. Then: clipminer
    fetch-videos CSV --out DIR.
    """
    from clipminer.sources.youtube import read_actions, resolve_api_key, search_videos

    names = (read_actions(actions) if actions else []) + list(action or [])
    key = resolve_api_key(api_key)
    with _search_bar() as update:
        summary = search_videos(names, out, config=config, api_key=key, more=more, progress=update)
    _print_search_summary(summary)


@contextmanager
def _search_bar() -> Iterator[Callable[[ActionResult, int], None]]:
    """One bar per action: candidates found of those wanted."""
    with Progress(*columns(MofNCompleteColumn()), console=err_console) as bar:
        tasks: dict[str, Any] = {}

        def update(result: ActionResult, target: int) -> None:
            if result.action not in tasks:
                tasks[result.action] = bar.add_task(result.action[:30], total=target)
            bar.update(tasks[result.action], completed=min(result.total, target), total=target)

        yield update


def _print_search_summary(summary: SearchSummary) -> None:
    table = Table("action", "new", "total", "pages", title="search-videos")
    for result in summary.actions:
        table.add_row(result.action, str(result.new), str(result.total), str(result.pages))
    console.print(table)
    console.print(
        f"{summary.candidates} candidates in {summary.path} "
        f"(about {summary.units} quota units used)"
    )


@app.command("fetch-videos")
@settings_options(FetchConfig, into="config")
def fetch_videos_command(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="A search-videos candidates CSV, a Kinetics annotation CSV "
            "(label,youtube_id,time_start,time_end,split: only that range is fetched), or a "
            "text file of URLs, one a line, optionally LABEL<TAB>URL.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Output folder: DIR/<label>/<id>[_<start>_<end>].mp4 and DIR/fetch.sqlite.",
        ),
    ],
    *,
    config: FetchConfig,
) -> None:
    """Download videos with yt-dlp into a folder per label, as train-video reads it.

    The folder DIR/<label>/ works as it is with train-video --videos DIR and batch DIR.
    Files are written under a hidden temporary name and renamed when complete, so an
    interrupted run never leaves a half file that looks whole; run it again to resume.
    DIR/fetch.sqlite records every item (ok, unavailable, private, removed, geo_blocked,
    age_restricted, too_long, rate_limited, error): reruns skip what is done or gone
    for good and retry the rest. Exit code 1 if some downloads failed and can be
    retried, 3 if another run uses DIR, 4 if the site rate-limited the run (HTTP 429;
    it stopped cleanly: run it again later). Respect the sites' terms of service.
    """
    from clipminer.sources.fetch import fetch_videos

    with _fetch_bars() as on_event:
        summary = fetch_videos(source, out, config=config, on_event=on_event)
    _print_fetch_summary(summary, out)
    if summary.stopped:
        print_error(summary.stopped, label="stopped:", style="yellow")
        raise typer.Exit(EXIT_RATE_LIMITED)
    if summary.transient_failures:
        raise typer.Exit(EXIT_SOME_FAILED)


@contextmanager
def _fetch_bars() -> Iterator[Callable[[FetchEvent], None]]:
    """An overall bar (files) and one bar per running download (bytes)."""
    with Progress(
        *columns(MofNCompleteColumn(), DownloadColumn(), TransferSpeedColumn()),
        console=err_console,
        transient=False,
    ) as bar:
        overall = bar.add_task("all videos", total=None)
        files: dict[str, Any] = {}
        finished = 0

        def on_event(event: FetchEvent) -> None:
            nonlocal finished
            if event.kind == "planned":
                bar.update(overall, total=event.total_items)
            elif event.kind == "start":
                files[event.key] = bar.add_task(event.key[-40:], total=None)
            elif event.kind == "bytes" and event.key in files:
                bar.update(files[event.key], completed=event.done_bytes, total=event.total_bytes)
            elif event.kind == "done":
                finished += 1
                bar.update(overall, completed=finished)
                task = files.pop(event.key, None)
                if task is not None:
                    bar.remove_task(task)

        yield on_event


def _print_fetch_summary(summary: FetchSummary, out: Path) -> None:
    """Counts by status, the failures of this run, and where the register is."""
    table = Table("status", "this run", title=f"fetch-videos ({summary.kind})")
    for status in ("ok", "unavailable", "private", "removed", "geo_blocked", "age_restricted",
                   "too_long", "rate_limited", "error"):  # fmt: skip
        if count := summary.count(status):
            table.add_row(status, str(count))
    if table.row_count:
        console.print(table)
    failures = [r for r in summary.results if r.status != "ok"]
    for result in failures[:FAILURES_SHOWN]:
        console.print(f"{result.status}: {result.item.key}: {result.message}")
    if len(failures) > FAILURES_SHOWN:
        console.print(f"... and {len(failures) - FAILURES_SHOWN} more (see the register)")
    console.print(
        f"{summary.items} items: {summary.count('ok')} fetched now, {summary.already_done} "
        f"already done, {summary.known_failures} known unavailable, {summary.not_attempted} "
        "left for a later run"
    )
    console.print(f"videos: {out}{os.sep}<label>{os.sep}   register: {out / 'fetch.sqlite'}")
