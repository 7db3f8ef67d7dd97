"""Decode throughput and memory of clipminer.decode, beside ffmpeg, in one run.

Prints one JSON line:
- ``threads``: decoder threads of every case, ffmpeg (``-threads N`` before ``-i``) and
  PyAV (``VideoReader(threads=N)``) alike (``--threads``, default 2).
- ``ffmpeg_fps``: source frames/s of ``ffmpeg -threads N -i FILE -f null -`` (the floor:
  every frame must be decoded); null when ffmpeg is not installed.
- ``sampled_fps``: source frames/s of ``VideoReader(sample_fps=2, size=(224, 224))``.
- ``full_fps``: frames/s of ``VideoReader()`` converting every frame to RGB.
- ``sampled_vs_ffmpeg``: the ratio (target >= 0.9).
- ``peak_rss_mib_short`` / ``peak_rss_mib_long``: peak RSS of a process that runs the
  sampled decode over the file and over the same file repeated ten times (target:
  within 10 %).

Frame counts and durations are read from the files. Before timing, each file is read
once (page cache) and every case decodes its first two seconds (code paths, libraries);
each timing is then the best of ``--repeats`` runs, interleaved.

Usage: python benchmarks/decode.py [--work DIR] [--repeats N] [--threads N]
       [--seconds 60] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from benchutil import child_peak_rss_mib, video_facts

from clipminer import synth
from clipminer.decode import VideoReader

SAMPLED = {"sample_fps": 2, "size": (224, 224)}


def make_inputs(work: Path, seconds: float) -> tuple[Path, Path]:
    """A 1280x720 30 fps H.264 file of ``seconds`` and one made by repeating it 10 times."""
    one = work / f"bench_720p_{seconds:g}s.mp4"
    if not one.exists():
        synth.make_long_video(one, duration_seconds=seconds, size=(720, 1280), fps=30, seed=0)
    ten = work / f"bench_720p_{seconds:g}s_x10.mp4"
    if not ten.exists():
        synth.repeat_video(one, ten, times=10)
    return one, ten


def ffmpeg_command(path: Path, threads: int, *, limit_seconds: float | None = None) -> list[str]:
    exe = shutil.which("ffmpeg")
    assert exe is not None
    limit = ["-t", str(limit_seconds)] if limit_seconds else []
    return [exe, "-v", "error", "-threads", str(threads), *limit, "-i", str(path),
            "-map", "0:v:0", "-f", "null", "-"]  # fmt: skip


def time_ffmpeg(path: Path, threads: int) -> float:
    started = time.perf_counter()
    subprocess.run(ffmpeg_command(path, threads), check=True)
    return time.perf_counter() - started


def time_clipminer(path: Path, **kwargs: object) -> float:
    started = time.perf_counter()
    with VideoReader(path, **kwargs) as reader:  # type: ignore[arg-type]
        for _ in reader:
            pass
    return time.perf_counter() - started


def warm_up(paths: list[Path], threads: int, has_ffmpeg: bool) -> None:
    """Untimed: the files into the page cache, then two seconds of every case."""
    for path in paths:
        with path.open("rb") as handle:
            while handle.read(1 << 24):
                pass
    for options in (SAMPLED, {}):
        time_clipminer(paths[0], threads=threads, end_seconds=2.0, **options)
    if has_ffmpeg:
        subprocess.run(ffmpeg_command(paths[0], threads, limit_seconds=2.0), check=True)


def peak_rss_mib(path: Path, threads: int) -> float:
    """Run the sampled decode in a fresh process and return its peak RSS."""
    code = (
        "import sys\n"
        "from clipminer.decode import iter_frames\n"
        "for _ in iter_frames(sys.argv[1], sample_fps=2, size=(224, 224),"
        " threads=int(sys.argv[2])): pass\n"
        "print(PEAK())\n"
    )
    return child_peak_rss_mib(code, str(path), str(threads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out"))
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each timing")
    parser.add_argument("--threads", type=int, default=2, help="decoder threads, every case")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the input")
    parser.add_argument("--quick", action="store_true", help="a 10 s input, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats = 10.0, 1
    args.work.mkdir(parents=True, exist_ok=True)
    one, ten = make_inputs(args.work, args.seconds)
    facts, facts_ten = video_facts(one), video_facts(ten)
    frames = facts.frames
    if not frames:
        raise SystemExit(f"{one}: the file declares no frame count")
    has_ffmpeg = shutil.which("ffmpeg") is not None
    warm_up([one, ten], args.threads, has_ffmpeg)
    cases: dict[str, Callable[[], float]] = {
        "sampled": lambda: time_clipminer(one, threads=args.threads, **SAMPLED),
        "full": lambda: time_clipminer(one, threads=args.threads),
    }
    if has_ffmpeg:
        cases = {"ffmpeg": lambda: time_ffmpeg(one, args.threads), **cases}
    best: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved, so drift hits every case alike
        for name, run in cases.items():
            best[name] = min(best.get(name, float("inf")), run())
    fps = {name: frames / seconds for name, seconds in best.items()}
    rss_short = peak_rss_mib(one, args.threads)
    rss_long = peak_rss_mib(ten, args.threads)
    result = {
        "benchmark": "decode",
        "input": f"{one.name}: {facts.describe()}",
        "long_input": f"{ten.name}: {facts_ten.describe()}",
        "threads": args.threads,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "ffmpeg_fps": round(fps["ffmpeg"], 1) if "ffmpeg" in fps else None,
        "sampled_fps": round(fps["sampled"], 1),
        "full_fps": round(fps["full"], 1),
        "sampled_vs_ffmpeg": round(fps["sampled"] / fps["ffmpeg"], 3) if "ffmpeg" in fps else None,
        "peak_rss_mib_short": round(rss_short, 1),
        "peak_rss_mib_long": round(rss_long, 1),
        "rss_long_vs_short": round(rss_long / rss_short, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
