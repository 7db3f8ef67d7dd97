"""``clipminer synth images|clips|long``: deterministic synthetic data."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from clipminer.cli.common import Out, Seed, Size, console, flag, parse_size, progress_bar, synth_app


@synth_app.command("images")
def synth_images(
    out: Out,
    per_class: Annotated[int, typer.Option(min=1, help="Images per class.")] = 40,
    size: Size = "128x128",
    seed: Seed = 0,
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
    out: Out,
    per_class: Annotated[int, typer.Option(min=1, help="Clips per class.")] = 12,
    seconds: Annotated[float, typer.Option(min=0.1, help="Length of each clip.")] = 3.0,
    fps: Annotated[int, typer.Option(min=1, help="Frame rate.")] = 25,
    size: Size = "120x160",
    layout: Annotated[
        Layout,
        typer.Option(
            help="folders: OUT/<label>/*.mp4; ucf101: OUT/videos/<Class>/v_*.avi plus "
            "OUT/splits/{classInd,trainlist01,testlist01}.txt.",
        ),
    ] = Layout.folders,
    seed: Seed = 0,
) -> None:
    """Short H.264 action clips, as a folder-per-class tree or a UCF-101 style tree."""
    from clipminer import synth

    make = synth.make_ucf101 if layout is Layout.ucf101 else synth.make_clips
    with progress_bar("clips") as update:
        made = make(
            out,
            per_class=per_class,
            seconds=seconds,
            fps=fps,
            size=parse_size(size, even=True),
            seed=seed,
            progress=update,
        )
    if isinstance(made, synth.UcfTree):
        console.print(f"wrote {made.train} train and {made.test} test clips under {made.root}")
    else:
        console.print(f"wrote {sum(map(len, made.values()))} clips to {out}")


@synth_app.command("long")
def synth_long(
    out: Out,
    seconds: Annotated[float, typer.Option(min=1.0, help="Length of the video.")] = 300.0,
    fps: Annotated[int, typer.Option(min=1, help="Nominal frame rate.")] = 30,
    size: Size = "240x320",
    variable_frame_rate: Annotated[bool, flag("Mix 1/fps and 2/fps frame intervals.")] = False,
    cuts: Annotated[
        bool,
        flag(
            "Add cuts inside actions and background stretches and fades through black "
            "(truth in <name>.shots.csv)."
        ),
    ] = False,
    name: Annotated[str, typer.Option(help="File name of the video inside OUT.")] = "long.mp4",
    seed: Seed = 0,
) -> None:
    """A long video with actions at known times; ground truth in <name>.truth.csv (with
    --cuts, its shot boundaries in <name>.shots.csv)."""
    from clipminer import synth

    with progress_bar("frames") as update:
        video = synth.make_long_video(
            Path(out) / name,
            duration_seconds=seconds,
            fps=fps,
            size=parse_size(size, even=True),
            seed=seed,
            variable_frame_rate=variable_frame_rate,
            cuts=cuts,
            progress=update,
        )
    console.print(
        f"wrote {video.path} ({video.frames} frames, {len(video.segments)} actions); "
        f"ground truth in {video.truth_csv}"
    )
