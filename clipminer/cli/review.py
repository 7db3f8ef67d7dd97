"""``clipminer review``: see :mod:`clipminer.curate.review`."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer

from clipminer.cli.common import app, console, flag


def _default_reviewer() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"


@app.command("review")
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
    votes: Annotated[
        int,
        typer.Option(min=1, metavar="N", help="Votes a clip needs before it counts as disputed."),
    ] = 1,
    agree: Annotated[
        int,
        typer.Option(
            min=1, metavar="N", help="Votes that must agree (accept as one label, or reject)."
        ),
    ] = 1,
    label: Annotated[
        list[str] | None,
        typer.Option(
            metavar="LABEL", help="Only show clips mined as this label; repeat for several."
        ),
    ] = None,
    min_score: Annotated[
        float | None, typer.Option(metavar="NUM", help="Only clips scoring at least this.")
    ] = None,
    max_score: Annotated[
        float | None, typer.Option(metavar="NUM", help="Only clips scoring at most this.")
    ] = None,
    all_clips: Annotated[
        bool,
        typer.Option(
            "--all", help="Also show clips already decided or voted on by you.", show_default=False
        ),
    ] = False,
    allow_remote: Annotated[
        bool, flag("Allow a --host that other machines can reach (they can vote).")
    ] = False,
) -> None:
    """Review mined clips in the browser: one key accepts, rejects or relabels.

    Votes go to OUT/review.sqlite with your name and the time. A clip is decided when
    --agree votes agree; with --votes votes and no such majority it is disputed. Keys:
    a accept, r reject, 1-9 relabel, u undo, n or space skip. Ctrl-C stops the server.
    """
    from clipminer.curate.review import Filters, serve
    from clipminer.curate.verdicts import Rule

    rule = Rule(votes=votes, agree=agree)
    filters = Filters(
        labels=tuple(label or ()),
        min_score=min_score,
        max_score=max_score,
        include_voted=all_clips,
    )

    def ready(url: str) -> None:
        console.print(f"reviewing {out} as {reviewer or _default_reviewer()}: open {url}")
        console.print("Ctrl-C stops the server.")

    serve(
        out,
        reviewer=reviewer or _default_reviewer(),
        rule=rule,
        filters=filters,
        host=host,
        port=port,
        allow_remote=allow_remote,
        on_ready=ready,
    )
