"""Nightly-batch throughput: videos/hour over a folder of short generated videos,
with the local engine and with Ray on this machine (the fixed cost of Ray).

Prints one JSON line per engine. The models are untrained resnet18 / small3d at small
sizes: what is measured is the batch machinery around find-clips, not the models.

Usage: python benchmarks/batch.py [--videos 12] [--seconds 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from clipminer import synth
from clipminer.batch import BatchConfig, run_batch
from clipminer.findclips import FindClipsConfig
from clipminer.models import image, video
from clipminer.models.bundle import Bundle, InputSpec, save_bundle
from clipminer.segments import SegmentConfig
from clipminer.transforms import IMAGENET_MEAN, IMAGENET_STD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    labels = tuple(sorted(synth.LABELS))
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        torch.manual_seed(0)
        save_bundle(
            Bundle(
                "image",
                "resnet18",
                labels,
                InputSpec((64, 64), IMAGENET_MEAN, IMAGENET_STD),
                image.build("resnet18", num_classes=len(labels)).state_dict(),
            ),
            work / "i.pt",
        )
        save_bundle(
            Bundle(
                "video",
                "small3d",
                labels,
                InputSpec(
                    (48, 48), video.KINETICS_MEAN, video.KINETICS_STD, clip_len=8, frame_rate=10.0
                ),
                video.build("small3d", num_classes=len(labels)).state_dict(),
            ),
            work / "v.pt",
        )
        for k in range(args.videos):
            synth.make_long_video(
                work / "in" / f"clip{k:03d}.mp4",
                duration_seconds=args.seconds,
                size=(240, 320),
                fps=25,
                seed=k,
            ).truth_csv.unlink()
        find = FindClipsConfig(segment=SegmentConfig(segment_on="action"), device="cpu")
        for engine in ("local", "ray"):
            config = BatchConfig(
                image_model=str(work / "i.pt"),
                video_models=(str(work / "v.pt"),),
                findclips=find,
                engine=engine,
                workers=args.workers,
            )
            started = time.perf_counter()
            summary = run_batch(work / "in", work / f"out_{engine}", config=config)
            seconds = time.perf_counter() - started
            print(
                json.dumps(
                    {
                        "benchmark": "batch",
                        "engine": engine,
                        "workers": args.workers,
                        "videos": summary.done,
                        "failed": summary.failed,
                        "seconds": round(seconds, 1),
                        "videos_per_hour": round(summary.done / seconds * 3600),
                        "video": f"{args.seconds:g} s 320x240 25 fps H.264",
                        "cpus": os.cpu_count(),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
