"""``clipminer find-clips``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress, TextColumn

from clipminer import store
from clipminer.cli.common import (
    VideoModels,
    app,
    columns,
    console,
    err_console,
    print_error,
    settings_options,
)
from clipminer.config import FindClipsConfig
from clipminer.errors import ClipminerError
from clipminer.store import VideoPath

if TYPE_CHECKING:
    from clipminer.findclips import VideoResult


@app.command("find-clips")
@settings_options(FindClipsConfig, into="settings")
def find_clips_command(
    videos: Annotated[
        list[str],
        typer.Argument(
            help="Long videos to mine: paths, or s3://, gs:// (fsspec) and http(s):// URLs, "
            "read as streams."
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Output folder: OUT/videos/<name>/ per video (the file stem, with a short "
            "hash when it is unsafe or taken), OUT/kinetics.csv. May be a bucket URL "
            "(s3://bucket/prefix): each video's folder is uploaded whole, run.json last.",
        ),
    ],
    image_model: Annotated[
        str | None,
        typer.Option(
            help="Image model bundle that scores sampled frames (not with --rescore); a path "
            "or a URL (fetched once, cached by content hash)."
        ),
    ] = None,
    video_model: VideoModels = None,
    rescore: Annotated[
        Path | None,
        typer.Option(
            help="Segment, re-label and cut again from this scores.parquet of an earlier run "
            "(one VIDEO), without scoring.",
        ),
    ] = None,
    *,
    settings: FindClipsConfig,
) -> None:
    """Mine candidate action clips from long videos in one streaming pass.

    Each video is decoded once: sampled frames are scored by the image model, score
    curves become segments (smoothing, hysteresis, merge, split), each segment is
    re-labelled by the video model(s) from a ring buffer of recent frames, and clips are
    cut. Writes OUT/videos/<name>/segments.csv, scores.parquet, timeline.png, run.json,
    clips/<label>/*.mp4, and OUT/kinetics.csv. A video that fails gets a one-line error
    and the others go on; the exit code is 1 if any failed.
    """
    from clipminer.findclips import ClipMiner, find_clips

    if image_model is None and rescore is None:
        raise typer.BadParameter("--image-model is required (unless --rescore)")
    miner = ClipMiner(image_model, video_model or [], config=settings)
    fields = TextColumn("{task.fields[where]}"), TextColumn("{task.fields[speed]}")
    with Progress(*columns(*fields), console=err_console) as bar:
        results = find_clips(
            miner,
            videos,
            out,
            rescore=rescore,
            progress_for=lambda video: _video_task(bar, video),
            on_result=lambda video, outcome: _report(bar, video, outcome),
        )
    console.print(f"manifest: {store.within(out, 'kinetics.csv')}")
    if any(isinstance(outcome, ClipminerError) for _, outcome in results):
        raise typer.Exit(code=1)


def _video_task(bar: Progress, video: VideoPath) -> Callable[[float, float], None]:
    """A progress line for one video: seconds done, source frames/s and realtime factor."""
    from clipminer.decode import probe

    task = bar.add_task(video.name, total=None, speed="", where="")
    started = time.perf_counter()
    try:
        source_fps = probe(video).average_fps or 0.0
    except ClipminerError:
        source_fps = 0.0  # find-clips reports the error itself

    def update(done: float, total: float) -> None:
        elapsed = max(time.perf_counter() - started, 1e-6)
        frames = f"{done * source_fps / elapsed:.0f} frames/s, " if source_fps else ""
        speed = f"{frames}{done / elapsed:.1f}x realtime"
        where = f"{done:.0f}/{total:.0f} s"
        bar.update(task, completed=done, total=total or None, speed=speed, where=where)

    return update


def _report(bar: Progress, video: VideoPath, outcome: VideoResult | ClipminerError) -> None:
    if isinstance(outcome, ClipminerError):
        print_error(outcome)
        return
    labels = sorted({c.final_label for c in outcome.candidates})
    where = outcome.out_dir if outcome.out_dir.is_dir() else f"videos/{outcome.out_dir.name}"
    bar.console.print(
        f"{video}: {len(outcome.candidates)} clips ({', '.join(labels) or 'none'}) "
        f"in {outcome.seconds:.1f} s -> {where}"
    )
