"""Nightly-batch throughput: videos/hour over a folder of generated videos, with the local
engine and with Ray on this machine (Ray's start-up is part of its figure).

The models are trained first (resnet18 at 64 px and small3d at 48 px, on synthetic data
of the same six classes; trained once per ``--work`` folder and reused), so find-clips
does its real work: every input holds actions of 3-5 s, and the segments found are
re-labelled and cut (the JSON line counts them beside the true actions). One untimed run on
a single video warms up the process (imports, model load, first inference) before the
timed runs. Durations come from the files.

Prints one JSON line per engine.

Usage: python benchmarks/batch.py [--videos 12] [--seconds 20] [--workers 2]
       [--work bench-out/batch] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchutil import train_small_models, video_facts

from clipminer import synth
from clipminer.batch import BatchConfig, run_batch
from clipminer.findclips import FindClipsConfig
from clipminer.segments import SegmentConfig

SHORT_PLAN = {"action_seconds": (3.0, 5.0), "gap_seconds": (1.0, 3.0)}
"""Actions of 3-5 s with 1-3 s of background between them: every input, even a short
one, holds actions to find, re-label and cut."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("bench-out/batch"))
    parser.add_argument(
        "--quick", action="store_true", help="2 videos of 12 s: checks that it runs"
    )
    args = parser.parse_args()
    if args.quick:
        args.videos, args.seconds = 2, 12.0
    models = train_small_models(args.work / "models", image_size=64, frame_rate=10.0)
    find = FindClipsConfig(segment=SegmentConfig(segment_on="action"), device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs = [
            synth.make_long_video(
                work / "in" / f"clip{k:03d}.mp4",
                duration_seconds=args.seconds,
                size=(240, 320),
                fps=25,
                seed=k,
                **SHORT_PLAN,
            )
            for k in range(args.videos)
        ]
        for video in inputs:
            video.truth_csv.unlink()  # the batch would list it as a skipped non-video
        facts = [video_facts(video.path) for video in inputs]
        total_seconds = sum(f.duration_seconds for f in facts)
        warm = synth.make_long_video(
            work / "warm" / "warm.mp4",
            duration_seconds=8.0,
            size=(240, 320),
            fps=25,
            seed=99,
            **SHORT_PLAN,
        )
        warm.truth_csv.unlink()
        for engine in ("local", "ray"):
            config = BatchConfig(
                image_model=str(models.image),
                video_models=(str(models.video),),
                findclips=find,
                engine=engine,
                workers=args.workers,
            )
            if engine == "local":  # warm-up: the same code path, one short video, untimed
                run_batch(work / "warm", work / "out_warm", config=config)
            started = time.perf_counter()
            summary = run_batch(work / "in", work / f"out_{engine}", config=config)
            seconds = time.perf_counter() - started
            segments = sum(o.segments for o in summary.outcomes)
            clips = sum(sum(o.clips.values()) for o in summary.outcomes)
            print(
                json.dumps(
                    {
                        "benchmark": "batch",
                        "engine": engine,
                        "workers": args.workers,
                        "videos": summary.done,
                        "failed": summary.failed,
                        "true_actions": sum(len(v.segments) for v in inputs),
                        "segments_found": segments,
                        "clips_cut": clips,
                        "seconds": round(seconds, 1),
                        "videos_per_hour": round(summary.done / seconds * 3600),
                        "video_seconds": round(total_seconds, 1),
                        "realtime_factor": round(total_seconds / seconds, 2),
                        "video": facts[0].describe(),
                        "image_model": f"resnet18 64 px, validation top-1 {models.image_top1:.2f}",
                        "video_model": f"small3d 48 px, validation top-1 {models.video_top1:.2f}",
                        "cpus": os.cpu_count(),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
