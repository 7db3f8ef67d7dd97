"""The ``clipminer`` command: a thin typer shell over the library.

One module per command or command group; each command parses its options, calls one
library entry point and prints. Errors that users can cause
(:class:`~clipminer.errors.ClipminerError`) are printed as one line on stderr with a
non-zero exit; ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from clipminer import __version__
from clipminer.cli import (  # noqa: F401
    batch,
    dedup,
    demo,
    export,
    findclips,
    probe,
    quantize,
    review,
    scrape,
    synth,
    train,
    videos,
)
from clipminer.cli.common import DEBUG_KEY, app, console, err_console

__all__ = ["app"]


def _version(value: bool) -> None:
    if value:
        console.print(f"clipminer {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """clipminer: scrape, train, find clips, run nightly."""
    from rich.logging import RichHandler

    ctx.meta[DEBUG_KEY] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )
