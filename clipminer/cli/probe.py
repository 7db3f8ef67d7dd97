"""``clipminer probe``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from clipminer import store
from clipminer.cli.common import app, cell, console, print_error
from clipminer.errors import ClipminerError

_COLUMNS = ("file", "size", "rot", "fps", "seconds", "frames", "codec", "audio")


@app.command()
def probe(
    videos: Annotated[
        list[str],
        typer.Argument(help="Video files to inspect: paths, or URLs (s3://, gs://, http(s)://)."),
    ],
    sample_fps: Annotated[
        float | None,
        typer.Option(min=0.001, help="Also decode the whole file, keeping this many frames/s."),
    ] = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per file instead of a table.")
    ] = False,
) -> None:
    """Print what clipminer reads from video files (size, rate, rotation, duration).

    A file that cannot be read gets a one-line error; the others are still shown,
    and the exit code is 1 if any failed.
    """
    from clipminer.decode import describe

    rows: list[dict[str, Any]] = []
    for path in videos:
        try:
            rows.append(describe(path, sample_fps=sample_fps))
        except ClipminerError as exc:
            print_error(exc)
    if json_lines:
        for row in rows:
            typer.echo(json.dumps(row))
    elif rows:
        console.print(_table(rows, sampled=bool(sample_fps)))
    if len(rows) < len(videos):
        raise typer.Exit(code=1)


def _table(rows: list[dict[str, Any]], *, sampled: bool) -> Table:
    table = Table(*_COLUMNS, *(["sampled"] if sampled else []))
    for row in rows:
        table.add_row(
            store.RemoteVideo(row["path"]).name
            if store.is_url(row["path"])
            else Path(row["path"]).name,
            f"{row['width']}x{row['height']}",
            str(row["rotation_degrees"]),
            cell(row["average_fps"]),
            cell(row["duration_seconds"]),
            cell(row["num_frames"]),
            f"{row['codec']}#{row['stream_index']}",
            "yes" if row["has_audio"] else "no",
            *([str(row["sampled_frames"])] if sampled else []),
        )
    return table
