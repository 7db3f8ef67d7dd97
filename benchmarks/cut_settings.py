"""x264 settings for ``--cut reencode``: time, size and fidelity per preset and CRF.

Cuts the same clips with each setting and prints one JSON line per (source, preset, crf):
CPU seconds of the cut (user + system of this process), output bytes per second of clip,
and the PSNR of the cut's luma against the source's frames (decoded at the same times).
Sources: a generated 1080p30 minute with actions (moving objects over textured
backdrops) and the real sample clips of ../shared/data (UCF-101, Kinetics, ActivityNet;
their own resolutions), 8 s from each. The rounds of one setting are interleaved with
the others; the median is printed.

Usage: python benchmarks/cut_settings.py [--presets ultrafast,superfast,veryfast,faster]
       [--crfs 18,23] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
from pathlib import Path

import clipminer  # noqa: F401 - first: sets the thread environment

# isort: split
import numpy as np

from clipminer import synth
from clipminer.cut import cut_clip
from clipminer.decode import iter_frames, probe


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _luma(pixels: np.ndarray) -> np.ndarray:
    rgb = pixels.astype(np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def psnr(source: Path, start: float, clip: Path) -> float:
    """Mean luma PSNR of the clip's frames against the source's frames at the same times."""
    reference = {
        round(f.pts_seconds - start, 2): _luma(f.pixels)
        for f in iter_frames(source)
        if start - 1e-3 <= f.pts_seconds < start + 8.0
    }
    values = []
    for frame in iter_frames(clip):
        ref = reference.get(round(frame.pts_seconds, 2))
        if ref is None or ref.shape != frame.pixels.shape[:2]:
            continue
        mse = float(np.mean((ref - _luma(frame.pixels)) ** 2))
        values.append(99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse))
    return round(float(np.mean(values)), 2) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    parser.add_argument("--work", type=Path, default=Path("bench-out/cut_settings"))
    parser.add_argument("--presets", default="ultrafast,superfast,veryfast,faster")
    parser.add_argument("--crfs", default="18,23")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    generated = args.work / "generated-1080p.mp4"
    if not generated.exists():
        synth.make_long_video(generated, duration_seconds=20, size=(1080, 1920), fps=30, seed=7)
    sources = [(generated, 6.0)]
    sources += [
        (p, 0.0)
        for p in sorted((args.data / "actions").glob("*"))
        if p.suffix in {".mp4", ".mkv", ".avi"} and (probe(p).duration_seconds or 0) >= 8.0
    ]
    settings = [(p, int(c)) for p in args.presets.split(",") for c in args.crfs.split(",")]
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for source, start in sources:
            info = probe(source)
            times: dict[tuple[str, int], list[float]] = {s: [] for s in settings}
            for _ in range(args.rounds):
                for preset, crf in settings:
                    dest = Path(tmp) / f"{preset}-{crf}.mp4"
                    before = _cpu()
                    cut_clip(source, dest, start, start + 8.0, crf=crf, preset=preset)
                    times[(preset, crf)].append(_cpu() - before)
            for preset, crf in settings:
                dest = Path(tmp) / f"{preset}-{crf}.mp4"
                print(json.dumps({
                    "source": source.name, "size": f"{info.width}x{info.height}",
                    "preset": preset, "crf": crf,
                    "cpu_seconds": round(statistics.median(times[(preset, crf)]), 3),
                    "kbytes_per_second": round(dest.stat().st_size / 8.0 / 1024, 1),
                    "psnr_db": psnr(source, start, dest),
                }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
