"""Training-step throughput per video architecture, and the clip loader with and without
the prepare-videos cache, in one run.

Prints one JSON line per case:
- ``{"case": "step", "arch": ..., "clips_per_s": ...}``: forward + backward + AdamW step on
  a batch already in memory (CPU unless --device says otherwise);
- ``{"case": "loader", "cache": false|true, "clips_per_s": ...}``: the training DataLoader
  alone (decode, random window and crop), ``--workers`` processes, on UCF-101-like
  320x240 25 fps clips; and the one-off cost of building the cache, which is deleted
  first so that every run builds it from the source files.

Warm-up, untimed: one training step per architecture, and for each loader the batches
that pay for starting its workers (one per worker). Every timed loader batch is decoded
(from the sources, or read from the cache) by the workers during the timed pass.

Usage: python benchmarks/train_video.py [--archs small3d,r2plus1d_18] [--clip-len 16]
       [--size 112] [--batch-size 4] [--steps 2] [--workers 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch.utils.data import DataLoader

from clipminer import synth
from clipminer.data.videos import (
    ClipDataset,
    ClipSpec,
    VideoCache,
    check_readable,
    prepare_videos,
    scan_video_folder,
)
from clipminer.devices import to_channels_last
from clipminer.models import video
from clipminer.train import loader_kwargs


def step_rate(arch: str, args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    model = video.build(arch, num_classes=101).train()
    model = to_channels_last(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch_size, 3, args.clip_len, args.size, args.size)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, 101, (args.batch_size,))
    timings = []
    for _ in range(args.steps + 1):  # the first step warms up allocators
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - started)
    return args.batch_size / (sum(timings[1:]) / args.steps)


def loader_rate(dataset: ClipDataset, args: argparse.Namespace) -> float:
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        **loader_kwargs(args.workers, torch.device("cpu")),
    )
    iterator = iter(loader)
    for _ in range(max(1, args.workers)):  # worker start-up is not throughput
        next(iterator)
    started, clips = time.perf_counter(), 0
    for batch, _ in iterator:
        clips += len(batch)
    if clips == 0:
        raise SystemExit("too few clips to time the loader after its warm-up")
    return clips / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out"))
    parser.add_argument("--archs", default=",".join(video.BUILDERS))
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--quick", action="store_true", help="small3d only, 8 frames at 64 px, 1 step"
    )
    args = parser.parse_args()
    if args.quick:
        args.archs, args.clip_len, args.size, args.steps = "small3d", 8, 64, 1
    common = {
        "cpus": os.cpu_count(),
        "clip_len": args.clip_len,
        "size": args.size,
        "batch_size": args.batch_size,
    }
    for arch in args.archs.split(","):
        rate = step_rate(arch, args)
        print(
            json.dumps(
                {
                    "benchmark": "train_video",
                    "case": "step",
                    "arch": arch,
                    "clips_per_s": round(rate, 2),
                    **common,
                }
            ),
            flush=True,
        )
    root = args.work / "train_video_clips"
    if not root.exists():
        synth.make_clips(root, per_class=6, seconds=5.0, fps=25, size=(240, 320), seed=0)
    _, items, _ = scan_video_folder(root)
    items = check_readable(items, [])
    spec = ClipSpec(clip_len=args.clip_len, frame_rate=15.0, size=args.size)
    plain = loader_rate(ClipDataset(items, spec), args)
    cache_dir = args.work / "train_video_cache"
    shutil.rmtree(cache_dir, ignore_errors=True)  # a cache left by an earlier run is no build
    started = time.perf_counter()
    written, kept, failed = prepare_videos(items, cache_dir, spec)
    build_seconds = time.perf_counter() - started
    if kept or failed or written != len(items):
        raise SystemExit(f"the cache was not built from scratch: {written=} {kept=} {failed=}")
    cached = loader_rate(ClipDataset(items, spec, cache=VideoCache.open(cache_dir, spec)), args)
    source = f"{len(items)} clips of 5 s, 320x240, 25 fps"
    for cache, rate in ((False, plain), (True, cached)):
        print(
            json.dumps(
                {
                    "benchmark": "train_video",
                    "case": "loader",
                    "cache": cache,
                    "clips_per_s": round(rate, 2),
                    "workers": args.workers,
                    "source": source,
                    **common,
                }
            )
        )
    print(
        json.dumps(
            {
                "benchmark": "train_video",
                "case": "cache",
                "build_seconds": round(build_seconds, 2),
                "clips_written": written,
                "loader_speedup": round(cached / plain, 2),
                "source": source,
            }
        )
    )


if __name__ == "__main__":
    main()
