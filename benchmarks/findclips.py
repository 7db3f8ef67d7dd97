"""find-clips speed and memory on generated H.264 videos, CPU, densenet121.

Prints one JSON line per case, all measured in this run:
(a) ``overhead``: end-to-end wall time of find-clips (no video model, no cutting)
    against decode alone (the same decode: one pass, the same sampled frames at the
    model's size) and the model alone (the same number of frames, already in memory,
    in batches), each alone on all cores. Target: end_to_end <= 1.10 x (decode + model).
(b) ``memory``: peak RSS of find-clips in a fresh process on 1-minute and 10-minute
    720p files (target: within 10 %) and on a 1080p file (target: <= 1 GiB).
(c) the overhead case again with --sample-fps 15 --image-size 128.

Usage: python benchmarks/findclips.py [--work bench-out] [--skip-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from clipminer import synth
from clipminer.decode import VideoReader, probe
from clipminer.findclips import ClipMiner, FindClipsConfig
from clipminer.models import image
from clipminer.models.bundle import Bundle, InputSpec, save_bundle
from clipminer.transforms import IMAGENET_MEAN, IMAGENET_STD


def make_model(path: Path) -> Path:
    """densenet121 at 224 px with random weights: speed does not depend on training."""
    if not path.exists():
        torch.manual_seed(0)
        model = image.build("densenet121", num_classes=len(synth.LABELS))
        save_bundle(
            Bundle(
                kind="image",
                arch="densenet121",
                labels=tuple(sorted(synth.LABELS)),
                input=InputSpec((224, 224), IMAGENET_MEAN, IMAGENET_STD),
                state_dict=model.state_dict(),
            ),
            path,
        )
    return path


def make_videos(work: Path) -> dict[str, Path]:
    videos = {
        "720p_1min": work / "bench_720p_60s.mp4",
        "720p_10min": work / "bench_720p_600s.mp4",
        "1080p_30s": work / "bench_1080p_30s.mp4",
    }
    if not videos["720p_1min"].exists():
        synth.make_long_video(
            videos["720p_1min"], duration_seconds=60, size=(720, 1280), fps=30, seed=0
        )
    if not videos["720p_10min"].exists():
        synth.repeat_video(videos["720p_1min"], videos["720p_10min"], times=10)
    if not videos["1080p_30s"].exists():
        synth.make_long_video(
            videos["1080p_30s"], duration_seconds=30, size=(1080, 1920), fps=30, seed=1
        )
    return videos


def overhead(
    video: Path, model: Path, work: Path, *, sample_fps: float, image_size: int | None
) -> dict:
    config = FindClipsConfig(sample_fps=sample_fps, image_size=image_size, cut="none", device="cpu")
    miner = ClipMiner(model, [], config=config)
    assert miner.scorer is not None
    tap = miner._image_tap(probe(video))
    # Decode alone: the pipeline's decode, nothing else.
    started = time.perf_counter()
    frames = [frame.pixels for _, frame in VideoReader(video, taps=[tap]).iter_taps()]
    decode_seconds = time.perf_counter() - started
    # Model alone: the same frames, in memory, in the pipeline's batches.
    started = time.perf_counter()
    for k in range(0, len(frames), miner.batch_size):
        miner.scorer(np.stack(frames[k : k + miner.batch_size]))
    model_seconds = time.perf_counter() - started
    del frames
    started = time.perf_counter()
    result = miner.run(video, work / "findclips_out")
    end_to_end = time.perf_counter() - started
    return {
        "frames_scored": result.frames_scored,
        "decode_seconds": round(decode_seconds, 2),
        "model_seconds": round(model_seconds, 2),
        "end_to_end_seconds": round(end_to_end, 2),
        "ratio_to_sum": round(end_to_end / (decode_seconds + model_seconds), 3),
        "realtime_factor": round(60.0 / end_to_end, 2) if "60s" in video.name else None,
    }


def peak_rss_mib(video: Path, model: Path, work: Path) -> float:
    # VmHWM of the child itself: ru_maxrss would carry the parent's size across exec.
    code = (
        "def PEAK():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1])\n"
        "import sys\n"
        "from clipminer.findclips import ClipMiner, FindClipsConfig\n"
        "miner = ClipMiner(sys.argv[2], [], config=FindClipsConfig(cut='none', device='cpu'))\n"
        "miner.run(sys.argv[1], sys.argv[3])\n"
        "print(PEAK())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(video), str(model), str(work / "rss_out")],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out"))
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = make_model(args.work / "bench_densenet121.pt")
    videos = make_videos(args.work)
    common = {
        "benchmark": "findclips",
        "cpus": os.cpu_count(),
        "device": "cpu",
        "model": "densenet121",
    }
    for case, fps, size in (("a_overhead", 2.0, None), ("c_overhead_15fps_128px", 15.0, 128)):
        row = overhead(videos["720p_1min"], model, args.work, sample_fps=fps, image_size=size)
        print(
            json.dumps(
                {
                    **common,
                    "case": case,
                    "video": "720p 60 s H.264 30 fps",
                    "sample_fps": fps,
                    "image_size": size or 224,
                    **row,
                }
            ),
            flush=True,
        )
    if not args.skip_memory:
        rss = {
            name: round(peak_rss_mib(path, model, args.work), 1) for name, path in videos.items()
        }
        print(
            json.dumps(
                {
                    **common,
                    "case": "b_memory",
                    "peak_rss_mib": rss,
                    "rss_10min_vs_1min": round(rss["720p_10min"] / rss["720p_1min"], 3),
                }
            )
        )


if __name__ == "__main__":
    main()
