"""``clipminer demo``: the pipeline on generated data, offline.

For now it generates the toy world (images, clips, a long video with ground
truth) and streams the long video through the decoder; later stages join as they
are built.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from clipminer import synth
from clipminer.decode import VideoReader, probe
from clipminer.synth import Progress


def run_demo(
    out: str | os.PathLike[str], *, seed: int = 0, progress: Progress | None = None
) -> dict[str, str]:
    """Run the demo under ``out``; return a step -> result summary."""
    out = Path(out)
    steps = 4
    summary: dict[str, str] = {}

    def advance(step: int) -> None:
        if progress:
            progress(step, steps)

    advance(0)
    images = synth.make_images(out / "images", per_class=20, size=(128, 128), seed=seed)
    summary["synth images"] = (
        f"{sum(map(len, images.values()))} images, {len(images)} classes in {out / 'images'}"
    )
    advance(1)
    clips = synth.make_clips(out / "clips", per_class=4, seconds=2.0, seed=seed)
    summary["synth clips"] = f"{sum(map(len, clips.values()))} clips in {out / 'clips'}"
    advance(2)
    video = synth.make_long_video(out / "videos" / "long.mp4", duration_seconds=60.0, seed=seed)
    summary["synth long video"] = (
        f"{video.path}: {video.duration_seconds:.0f} s, {len(video.segments)} actions "
        f"(truth in {video.truth_csv.name})"
    )
    advance(3)
    info = probe(video.path)
    started = time.perf_counter()
    with VideoReader(video.path, sample_fps=2, size=(224, 224)) as reader:
        kept = sum(1 for _ in reader)
    seconds = time.perf_counter() - started
    summary["decode"] = (
        f"{info.width}x{info.height} {info.codec} at {info.average_fps:.0f} fps: "
        f"{reader.stats.frames_decoded} frames decoded, {kept} sampled at 2 fps "
        f"in {seconds:.1f} s ({reader.stats.frames_decoded / seconds:.0f} frames/s)"
    )
    advance(4)
    return summary
