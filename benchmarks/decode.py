"""Decode throughput and memory of clipminer.decode, beside ffmpeg, in one run.

Prints one JSON line:
- ``ffmpeg_fps``: source frames/s of ``ffmpeg -threads 2 -i FILE -f null -`` (the floor:
  every frame must be decoded); null when ffmpeg is not installed.
- ``sampled_fps``: source frames/s of ``iter_frames(sample_fps=2, size=(224, 224))``.
- ``full_fps``: frames/s of ``iter_frames()`` converting every frame to RGB.
- ``sampled_vs_ffmpeg``: the ratio (target >= 0.9).
- ``peak_rss_mib_1min`` / ``peak_rss_mib_10min``: peak RSS of a process that runs the
  sampled decode over a 1-minute and a 10-minute 720p file (target: within 10 %).

Usage: python benchmarks/decode.py [--work DIR] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av

from clipminer import synth
from clipminer.decode import VideoReader


def make_inputs(work: Path) -> tuple[Path, Path]:
    """A 60 s 1280x720 30 fps H.264 file and a 10-minute one made by repeating it."""
    one = work / "bench_720p_60s.mp4"
    if not one.exists():
        synth.make_long_video(one, duration_seconds=60.0, size=(720, 1280), fps=30, seed=0)
    ten = work / "bench_720p_600s.mp4"
    if not ten.exists():
        synth.repeat_video(one, ten, times=10)
    return one, ten


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return container.streams.video[0].frames


def time_ffmpeg(path: Path) -> float | None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None
    started = time.perf_counter()
    subprocess.run(
        [exe, "-v", "error", "-threads", "2", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
        check=True,
    )
    return time.perf_counter() - started


def time_clipminer(path: Path, **kwargs: object) -> float:
    started = time.perf_counter()
    with VideoReader(path, **kwargs) as reader:  # type: ignore[arg-type]
        for _ in reader:
            pass
    return time.perf_counter() - started


def peak_rss_mib(path: Path) -> float:
    """Run the sampled decode in a fresh process and return its peak RSS."""
    # VmHWM of the child itself: ru_maxrss would carry the parent's size across exec.
    code = (
        "def PEAK():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1])\n"
        "import sys\n"
        "from clipminer.decode import iter_frames\n"
        "for _ in iter_frames(sys.argv[1], sample_fps=2, size=(224, 224)): pass\n"
        "print(PEAK())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out"))
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each timing")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    one, ten = make_inputs(args.work)
    frames = frame_count(one)
    best: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved, so drift hits every case alike
        for name, run in (
            ("ffmpeg", lambda: time_ffmpeg(one)),
            ("sampled", lambda: time_clipminer(one, sample_fps=2, size=(224, 224))),
            ("full", lambda: time_clipminer(one)),
        ):
            seconds = run()
            if seconds is not None:
                best[name] = min(best.get(name, float("inf")), seconds)
    fps = {name: frames / seconds for name, seconds in best.items()}
    rss_1 = peak_rss_mib(one)
    rss_10 = peak_rss_mib(ten)
    result = {
        "benchmark": "decode",
        "input": f"{one.name}: 1280x720 30 fps H.264, {frames} frames",
        "cpus": os.cpu_count(),
        "ffmpeg_fps": round(fps["ffmpeg"], 1) if "ffmpeg" in fps else None,
        "sampled_fps": round(fps["sampled"], 1),
        "full_fps": round(fps["full"], 1),
        "sampled_vs_ffmpeg": round(fps["sampled"] / fps["ffmpeg"], 3) if "ffmpeg" in fps else None,
        "peak_rss_mib_1min": round(rss_1, 1),
        "peak_rss_mib_10min": round(rss_10, 1),
        "rss_10min_vs_1min": round(rss_10 / rss_1, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
