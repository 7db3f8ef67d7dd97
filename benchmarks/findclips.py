"""find-clips speed and memory on generated H.264 videos, CPU, densenet121.

Prints one JSON line per case, all measured in this run:
(a) ``overhead``: end-to-end wall time of find-clips (no video model, no cutting)
    against decode alone (the same decode: one pass, the same sampled frames at the
    model's size) and the model alone (the same number of frames, already in memory,
    in batches), each alone on all cores. Target: end_to_end <= 1.10 x (decode + model).
(b) ``memory``: peak RSS of find-clips in a fresh process on the 720p file (1 minute by
    default) and on the same file repeated 10 times (target: within 10 %), and on a 1080p
    file of half the length (target: <= 1 GiB).
(c) the overhead case again with --sample-fps 15 --image-size 128.

Every case is warmed up first, untimed: the file is read once (page cache), a short
video of the same size goes through find-clips, and one batch through the model.
Durations (and the realtime factor) are read from the files. Decoding uses the
pipeline's own thread setting (FFmpeg's automatic choice) in every measurement.

Usage: python benchmarks/findclips.py [--work bench-out] [--skip-memory] [--quick]
  --quick: 10-second inputs (memory on 10 s / 100 s / 1080p 5 s): checks that it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from benchutil import child_peak_rss_mib, video_facts

from clipminer import synth
from clipminer.decode import Tap, VideoReader, probe
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


def make_videos(work: Path, seconds: float) -> dict[str, Path]:
    """720p of ``seconds``, the same repeated 10 times, and 1080p of half as long."""
    videos = {
        "720p": work / f"bench_720p_{seconds:g}s.mp4",
        "720p_x10": work / f"bench_720p_{seconds:g}s_x10.mp4",
        "1080p": work / f"bench_1080p_{seconds / 2:g}s.mp4",
    }
    if not videos["720p"].exists():
        synth.make_long_video(
            videos["720p"], duration_seconds=seconds, size=(720, 1280), fps=30, seed=0
        )
    if not videos["720p_x10"].exists():
        synth.repeat_video(videos["720p"], videos["720p_x10"], times=10)
    if not videos["1080p"].exists():
        synth.make_long_video(
            videos["1080p"], duration_seconds=seconds / 2, size=(1080, 1920), fps=30, seed=1
        )
    return videos


def image_tap(miner: ClipMiner, video: Path) -> Tap:
    """The frames the pipeline scores (find-clips' own rule)."""
    return miner.image_tap(probe(video))


def warm_up(miner: ClipMiner, video: Path, short: Path, work: Path) -> None:
    """Untimed: page cache, one find-clips run on a short video, one model batch."""
    with video.open("rb") as handle:
        while handle.read(1 << 24):
            pass
    miner.run(short, work / "warm_out")
    assert miner.scorer is not None
    height, width = image_tap(miner, video).size or miner.scorer.size
    miner.scorer(np.zeros((miner.batch_size, height, width, 3), np.uint8))


def overhead(
    video: Path, short: Path, model: Path, work: Path, *, sample_fps: float, image_size: int | None
) -> dict:
    config = FindClipsConfig(sample_fps=sample_fps, image_size=image_size, cut="none", device="cpu")
    miner = ClipMiner(model, [], config=config)
    assert miner.scorer is not None
    tap = image_tap(miner, video)
    warm_up(miner, video, short, work)
    # Decode alone: the pipeline's decode, nothing else.
    started = time.perf_counter()
    frames = [frame.pixels for _, frame in VideoReader(video, taps=[tap]).iter_taps()]
    decode_seconds = time.perf_counter() - started
    # Model alone: the same frames, in memory, in the pipeline's batches.
    started = time.perf_counter()
    for k in range(0, len(frames), miner.batch_size):
        miner.scorer(np.stack(frames[k : k + miner.batch_size]))
    model_seconds = time.perf_counter() - started
    sampled = len(frames)
    del frames
    started = time.perf_counter()
    result = miner.run(video, work / "findclips_out")
    end_to_end = time.perf_counter() - started
    if result.frames_scored != sampled:
        raise SystemExit(
            f"find-clips scored {result.frames_scored} frames, the decode alone {sampled}: "
            "the tap here no longer matches the pipeline's"
        )
    duration = video_facts(video).duration_seconds
    return {
        "frames_scored": result.frames_scored,
        "batch_size": miner.batch_size,
        "decode_seconds": round(decode_seconds, 2),
        "model_seconds": round(model_seconds, 2),
        "end_to_end_seconds": round(end_to_end, 2),
        "ratio_to_sum": round(end_to_end / (decode_seconds + model_seconds), 3),
        "realtime_factor": round(duration / end_to_end, 2),
    }


def peak_rss_mib(video: Path, model: Path, work: Path) -> float:
    code = (
        "import sys\n"
        "from clipminer.findclips import ClipMiner, FindClipsConfig\n"
        "miner = ClipMiner(sys.argv[2], [], config=FindClipsConfig(cut='none', device='cpu'))\n"
        "miner.run(sys.argv[1], sys.argv[3])\n"
        "print(PEAK())\n"
    )
    return child_peak_rss_mib(code, str(video), str(model), str(work / "rss_out"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out"))
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the 720p input")
    parser.add_argument("--quick", action="store_true", help="10-second inputs")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 10.0
    args.work.mkdir(parents=True, exist_ok=True)
    model = make_model(args.work / "bench_densenet121.pt")
    videos = make_videos(args.work, args.seconds)
    short = args.work / "bench_720p_warmup_3s.mp4"
    if not short.exists():
        synth.make_long_video(short, duration_seconds=3.0, size=(720, 1280), fps=30, seed=2)
    common = {
        "benchmark": "findclips",
        "cpus": os.cpu_count(),
        "device": "cpu",
        "model": "densenet121",
    }
    for case, fps, size in (("a_overhead", 2.0, None), ("c_overhead_15fps_128px", 15.0, 128)):
        row = overhead(videos["720p"], short, model, args.work, sample_fps=fps, image_size=size)
        print(
            json.dumps(
                {
                    **common,
                    "case": case,
                    "video": video_facts(videos["720p"]).describe(),
                    "sample_fps": fps,
                    "image_size": size or 224,
                    **row,
                }
            ),
            flush=True,
        )
    if not args.skip_memory:
        rss = {
            video_facts(path).describe(): round(peak_rss_mib(path, model, args.work), 1)
            for path in videos.values()
        }
        short_rss, long_rss = (rss[video_facts(videos[k]).describe()] for k in ("720p", "720p_x10"))
        print(
            json.dumps(
                {
                    **common,
                    "case": "b_memory",
                    "peak_rss_mib": rss,
                    "rss_long_vs_short": round(long_rss / short_rss, 3),
                }
            )
        )


if __name__ == "__main__":
    main()
