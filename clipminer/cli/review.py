"""``clipminer review``: see :mod:`clipminer.curate.review`."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from clipminer.cli.common import app, console, settings_options
from clipminer.curate.review import Filters, ServeConfig
from clipminer.curate.verdicts import RuleChoice


def _default_reviewer() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"


def _names(given: tuple[str, ...]) -> list[str]:
    """``--reviewers ann,bob --reviewers cat``: every name, in order."""
    return [name.strip() for item in given for name in item.split(",") if name.strip()]


@app.command("review")
@settings_options(RuleChoice, into="rule")
@settings_options(Filters, into="filters")
@settings_options(ServeConfig, into="serve")
def review(
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="A mined OUT folder (find-clips or batch).")
    ],
    *,
    change_rule: Annotated[
        bool,
        typer.Option(
            "--change-rule",
            help="Store the given --votes/--agree as OUT's rule for everyone (the old one "
            "stays in the history, with who changed it and when).",
        ),
    ] = False,
    serve: ServeConfig,
    filters: Filters,
    rule: RuleChoice,
) -> None:
    """Review mined clips in the browser: one key accepts, rejects or relabels.

    Votes go to OUT/review.sqlite with the reviewer's name and the time. The verdict
    rule is stored there too: the first reviewer's --votes/--agree (default: one vote
    decides) hold for everyone, export included, until --change-rule. A clip is decided
    when --agree votes agree; with --votes votes and no such majority it is disputed.
    Keys: a accept, r reject, l relabel (type to search the labels), u undo, n skip,
    space play/pause, , and . step a frame, p replay. Ctrl-C stops the server.
    """
    from clipminer.curate.catalog import check_mined
    from clipminer.curate.review import allowed_hosts, check_database, read_labels_file
    from clipminer.curate.review import serve as serve_review
    from clipminer.curate.verdicts import settle_rule

    team = _names(serve.reviewers)
    name = serve.reviewer or (team[0] if team else _default_reviewer())
    labels = read_labels_file(serve.labels_file) if serve.labels_file else ()
    allowed_hosts(serve.host, allow_remote=serve.allow_remote, team=bool(team))
    check_database(check_mined(out))  # before the rule is read or stored
    settled = settle_rule(out, rule, who=name, change=change_rule)

    def ready(url: str, links: dict[str, str]) -> None:
        console.print(Text(f"reviewing {out}; rule: {settled.describe()}"))
        if links:
            console.print("one private link per reviewer (votes are recorded under its name):")
            for who, link in links.items():
                console.print(Text(f"  {who}: {link}"))
        else:
            console.print(Text(f"reviewing as {name}: open {url}"))
        console.print("Ctrl-C stops the server.")

    serve_review(
        out,
        reviewer=name,
        rule=settled.rule,
        filters=filters,
        host=serve.host,
        port=serve.port,
        allow_remote=serve.allow_remote,
        reviewers=team,
        order=serve.order,
        labels=labels,
        rule_note=settled.describe(),
        on_ready=ready,
    )
