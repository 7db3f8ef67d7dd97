"""What the video models' frames cost in the find-clips pass ("decode only what is used").

find-clips converts frames for the re-labeller (its frame rate, small) for the whole
video, although only candidate segments need them. This measures, on one generated
1080p30 H.264 minute with the pipeline's decoder settings, the CPU seconds of:

(a) decoding with the image model's tap only (2 fps, 224 x 224);
(b) the same decode with the video model's tap as well (15 fps, short side 128);
(c) ffmpeg decoding every frame (the floor), same automatic threading.

The extra cost of (b) over (a) bounds what converting on demand could save. Decode
variants run in interleaved rounds; the median round is printed (CPU seconds are
user + system of this process, so other load on the machine moves them little).

Usage: python benchmarks/taps.py [--work bench-out/taps] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import clipminer  # noqa: F401 - first: sets the thread environment

# isort: split
from benchutil import video_facts

from clipminer import synth
from clipminer.decode import Tap, VideoReader

IMAGE = Tap(sample_fps=2.0, size=(224, 224), name="image")
VIDEO = Tap(sample_fps=15.0, short_side=128, name="video")


def cpu_seconds(children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def decode(video: Path, taps: list[Tap]) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, frames yielded) of one pass with ``taps``."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    with VideoReader(video, taps=taps) as reader:
        frames = sum(1 for _ in reader.iter_taps())
    return cpu_seconds() - cpu, time.perf_counter() - wall, frames


def ffmpeg(video: Path) -> tuple[float, float]:
    command = ["ffmpeg", "-v", "error", "-i", str(video), "-map", "0:v:0", "-f", "null", "-"]
    cpu, wall = cpu_seconds(children=True), time.perf_counter()
    subprocess.run(command, check=True)
    return cpu_seconds(children=True) - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out/taps"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    video = args.work / "minute_1080p.mp4"
    if not video.exists():
        synth.make_long_video(video, duration_seconds=60.0, size=(1080, 1920), fps=30, seed=0)
    decode(video, [IMAGE])  # warm-up: file in the page cache, libraries loaded
    rows: dict[str, list[tuple[float, float]]] = {"image_tap": [], "both_taps": [], "ffmpeg": []}
    for _ in range(args.rounds):
        rows["image_tap"].append(decode(video, [IMAGE])[:2])
        rows["both_taps"].append(decode(video, [IMAGE, VIDEO])[:2])
        if shutil.which("ffmpeg"):
            rows["ffmpeg"].append(ffmpeg(video))
    cpu = {k: statistics.median(c for c, _ in v) for k, v in rows.items() if v}
    wall = {k: statistics.median(w for _, w in v) for k, v in rows.items() if v}
    print(
        json.dumps(
            {
                "benchmark": "taps",
                "video": video_facts(video).describe(),
                "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
                "wall_seconds": {k: round(v, 2) for k, v in wall.items()},
                "video_tap_extra_cpu": round(cpu["both_taps"] / cpu["image_tap"] - 1, 3),
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
