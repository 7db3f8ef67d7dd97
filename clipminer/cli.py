"""The ``clipminer`` command: a thin typer shell over the library.

Each command parses its options and calls one library function. Errors that users
can cause (:class:`~clipminer.errors.ClipminerError`) are printed as one line on
stderr with a non-zero exit; ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import os

# Decoding and torch in one process: with OpenMP threads spinning while PyAV decodes,
# a 720p minute took 77.8 s instead of 9.1 s on 2 cores. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from typer.core import TyperGroup

from clipminer import __version__
from clipminer.errors import ClipminerError

_DEBUG_KEY = "clipminer.debug"
console = Console()
err_console = Console(stderr=True)


class _Group(TyperGroup):
    """Maps clipminer errors to one line on stderr and an exit code."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ClipminerError as exc:
            if ctx.meta.get(_DEBUG_KEY):
                raise
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/red]")
            raise typer.Exit(code=130) from None


app = typer.Typer(
    cls=_Group,
    help="Mine labelled action clips out of long videos.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
synth_app = typer.Typer(
    cls=_Group,
    help="Generate deterministic synthetic data (images, clips, long videos).",
    no_args_is_help=True,
)
app.add_typer(synth_app, name="synth")


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
    ctx.meta[_DEBUG_KEY] = debug
    import logging

    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Any]:
    """A rich progress bar; yields a ``(done, total)`` callback for the library."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def parse_size(text: str, *, even: bool = False) -> tuple[int, int]:
    """Parse ``HxW`` (or a single number for a square) into (height, width).

    ``even`` demands even sides, as H.264 in yuv420p does.
    """
    try:
        parts = [int(p) for p in text.lower().replace("×", "x").split("x")]
    except ValueError:
        raise typer.BadParameter(f"expected HEIGHTxWIDTH such as 240x320, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 16:
        raise typer.BadParameter(f"expected HEIGHTxWIDTH, each at least 16, got {text!r}")
    if even and (parts[0] % 2 or parts[1] % 2):
        raise typer.BadParameter(f"video sides must be even (H.264 yuv420p), got {text!r}")
    return parts[0], parts[1]


SizeOption = typer.Option(metavar="HxW", help="Frame size as HEIGHTxWIDTH.")
OutOption = typer.Option("--out", "-o", help="Output folder (created if missing).")
SeedOption = typer.Option(help="Random seed; the same seed gives the same bytes.")


@app.command()
def probe(
    videos: Annotated[list[Path], typer.Argument(help="Video files to inspect.")],
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
    import dataclasses
    import json

    from clipminer.decode import VideoReader
    from clipminer.decode import probe as probe_video

    rows: list[dict[str, Any]] = []
    failed = 0
    for path in videos:
        try:
            row = dataclasses.asdict(probe_video(path))
            row["path"] = str(path)
            if sample_fps:
                with VideoReader(path, sample_fps=sample_fps) as reader:
                    row["sampled_frames"] = sum(1 for _ in reader)
                row["problems"] = reader.stats.errors
            rows.append(row)
        except ClipminerError as exc:
            failed += 1
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
    if json_lines:
        for row in rows:
            typer.echo(json.dumps(row))
    elif rows:
        table = Table("file", "size", "rot", "fps", "seconds", "frames", "codec", "audio")
        if sample_fps:
            table.add_column("sampled")
        for row in rows:
            cells = [
                Path(row["path"]).name,
                f"{row['width']}x{row['height']}",
                str(row["rotation_degrees"]),
                _cell(row["average_fps"]),
                _cell(row["duration_seconds"]),
                _cell(row["num_frames"]),
                f"{row['codec']}#{row['stream_index']}",
                "yes" if row["has_audio"] else "no",
            ]
            if sample_fps:
                cells.append(str(row["sampled_frames"]))
            table.add_row(*cells)
        console.print(table)
    if failed:
        raise typer.Exit(code=1)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "?" if value is None else str(value)


@synth_app.command("images")
def synth_images(
    out: Annotated[Path, OutOption],
    per_class: Annotated[int, typer.Option(min=1, help="Images per class.")] = 40,
    size: Annotated[str, SizeOption] = "128x128",
    seed: Annotated[int, SeedOption] = 0,
) -> None:
    """An ImageFolder tree OUT/<label>/*.jpg of the toy action world (background included)."""
    from clipminer import synth

    with progress_bar("images") as update:
        written = synth.make_images(
            out, per_class=per_class, size=parse_size(size), seed=seed, progress=update
        )
    console.print(
        f"wrote {sum(map(len, written.values()))} images in {len(written)} classes to {out}"
    )


class Layout(str, Enum):
    """Folder layouts of generated clips."""

    folders = "folders"
    ucf101 = "ucf101"


@synth_app.command("clips")
def synth_clips(
    out: Annotated[Path, OutOption],
    per_class: Annotated[int, typer.Option(min=1, help="Clips per class.")] = 12,
    seconds: Annotated[float, typer.Option(min=0.1, help="Length of each clip.")] = 3.0,
    fps: Annotated[int, typer.Option(min=1, help="Frame rate.")] = 25,
    size: Annotated[str, SizeOption] = "120x160",
    layout: Annotated[
        Layout,
        typer.Option(
            help="folders: OUT/<label>/*.mp4; ucf101: OUT/videos/<Class>/v_*.avi plus "
            "OUT/splits/{classInd,trainlist01,testlist01}.txt.",
        ),
    ] = Layout.folders,
    seed: Annotated[int, SeedOption] = 0,
) -> None:
    """Short H.264 action clips, as a folder-per-class tree or a UCF-101 style tree."""
    from clipminer import synth

    with progress_bar("clips") as update:
        if layout is Layout.ucf101:
            tree = synth.make_ucf101(
                out,
                per_class=per_class,
                seconds=seconds,
                fps=fps,
                size=parse_size(size, even=True),
                seed=seed,
                progress=update,
            )
            message = f"wrote {tree.train} train and {tree.test} test clips under {tree.root}"
        else:
            written = synth.make_clips(
                out,
                per_class=per_class,
                seconds=seconds,
                fps=fps,
                size=parse_size(size, even=True),
                seed=seed,
                progress=update,
            )
            message = f"wrote {sum(map(len, written.values()))} clips to {out}"
    console.print(message)


@synth_app.command("long")
def synth_long(
    out: Annotated[Path, OutOption],
    seconds: Annotated[float, typer.Option(min=1.0, help="Length of the video.")] = 300.0,
    fps: Annotated[int, typer.Option(min=1, help="Nominal frame rate.")] = 30,
    size: Annotated[str, SizeOption] = "240x320",
    variable_frame_rate: Annotated[
        bool, typer.Option(help="Mix 1/fps and 2/fps frame intervals.")
    ] = False,
    name: Annotated[str, typer.Option(help="File name of the video inside OUT.")] = "long.mp4",
    seed: Annotated[int, SeedOption] = 0,
) -> None:
    """A long video with actions at known times; ground truth in <name>.truth.csv."""
    from clipminer import synth

    with progress_bar("frames") as update:
        video = synth.make_long_video(
            out / name,
            duration_seconds=seconds,
            fps=fps,
            size=parse_size(size, even=True),
            seed=seed,
            variable_frame_rate=variable_frame_rate,
            progress=update,
        )
    console.print(
        f"wrote {video.path} ({video.frames} frames, {len(video.segments)} actions); "
        f"ground truth in {video.truth_csv}"
    )


@app.command()
def demo(
    out: Annotated[Path, OutOption] = Path("demo-out"),
    seed: Annotated[int, SeedOption] = 0,
) -> None:
    """Run what clipminer has so far on generated data, offline."""
    from clipminer.demo import run_demo

    with progress_bar("demo") as update:
        summary = run_demo(out, seed=seed, progress=update)
    table = Table("step", "result", title="clipminer demo")
    for step, result in summary.items():
        table.add_row(step, result)
    console.print(table)
