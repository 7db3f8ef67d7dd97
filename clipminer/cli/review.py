"""``clipminer review``: see :mod:`clipminer.curate.review`."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer

from clipminer.cli.common import app, console, flag, settings_options
from clipminer.curate.review import Filters
from clipminer.curate.verdicts import Rule


def _default_reviewer() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"


@app.command("review")
@settings_options(Rule, into="rule")
@settings_options(Filters, into="filters")
def review(
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="A mined OUT folder (find-clips or batch).")
    ],
    host: Annotated[
        str,
        typer.Option(
            metavar="ADDR",
            help="Address to listen on; one that is not loopback needs --allow-remote.",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(min=0, max=65535, metavar="N", help="Port to listen on (0: any free port)."),
    ] = 8765,
    reviewer: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Your name, stored with every vote (default: $USER)."),
    ] = None,
    allow_remote: Annotated[
        bool, flag("Allow a --host that other machines can reach (they can vote).")
    ] = False,
    *,
    rule: Rule,
    filters: Filters,
) -> None:
    """Review mined clips in the browser: one key accepts, rejects or relabels.

    Votes go to OUT/review.sqlite with your name and the time. A clip is decided when
    --agree votes agree; with --votes votes and no such majority it is disputed. Keys:
    a accept, r reject, 1-9 relabel, u undo, n or space skip. Ctrl-C stops the server.
    """
    from clipminer.curate.review import serve

    name = reviewer or _default_reviewer()

    def ready(url: str) -> None:
        console.print(f"reviewing {out} as {name}: open {url}")
        console.print("Ctrl-C stops the server.")

    serve(
        out,
        reviewer=name,
        rule=rule,
        filters=filters,
        host=host,
        port=port,
        allow_remote=allow_remote,
        on_ready=ready,
    )
