"""``clipminer review``: see :mod:`clipminer.curate.review`."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer

from clipminer.cli.common import app, console, settings_options
from clipminer.curate.review import Filters, ServeConfig
from clipminer.curate.verdicts import Rule


def _default_reviewer() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"


@app.command("review")
@settings_options(Rule, into="rule")
@settings_options(Filters, into="filters")
@settings_options(ServeConfig, into="serve")
def review(
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="A mined OUT folder (find-clips or batch).")
    ],
    *,
    serve: ServeConfig,
    filters: Filters,
    rule: Rule,
) -> None:
    """Review mined clips in the browser: one key accepts, rejects or relabels.

    Votes go to OUT/review.sqlite with your name and the time. A clip is decided when
    --agree votes agree; with --votes votes and no such majority it is disputed. Keys:
    a accept, r reject, 1-9 relabel, u undo, n or space skip. Ctrl-C stops the server.
    """
    from clipminer.curate.review import serve as serve_review

    name = serve.reviewer or _default_reviewer()

    def ready(url: str) -> None:
        console.print(f"reviewing {out} as {name}: open {url}")
        console.print("Ctrl-C stops the server.")

    serve_review(
        out,
        reviewer=name,
        rule=rule,
        filters=filters,
        host=serve.host,
        port=serve.port,
        allow_remote=serve.allow_remote,
        on_ready=ready,
    )
