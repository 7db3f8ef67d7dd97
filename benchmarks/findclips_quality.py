"""Quality of find-clips on a synthetic long video with known actions.

Trains a small image model and a small video model on separate synthetic data,
generates a long video (background between actions of every class, the motion-only
pair included), runs find-clips, and prints one JSON line per segmentation mode with
segment precision, recall and F1 at temporal IoU >= 0.5 with the correct label,
before re-labelling (the image model's labels) and after (the video model's).

The timing of each mode follows an untimed warm-up run of the same miner on a short
video; the video's length is read from the file.

Usage: python benchmarks/findclips_quality.py [--minutes 5] [--work bench-out/quality]
       [--quick]
  --quick: a 1-minute video and models trained for 1 and 3 epochs (in their own work
  folder): checks that it runs; its figures are not the benchmark's.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchutil import video_facts

from clipminer import synth
from clipminer.data.videos import ClipSpec
from clipminer.findclips import ClipMiner, FindClipsConfig
from clipminer.metrics import segment_detection
from clipminer.segments import SegmentConfig
from clipminer.train import FitConfig
from clipminer.train_image import ImageTrainConfig, train_image
from clipminer.train_video import VideoSource, VideoTrainConfig, train_video


def train_models(
    work: Path, *, seed: int, image_epochs: int = 5, video_epochs: int = 20
) -> tuple[Path, Path]:
    """A densenet121 image model and a small3d video model, on their own synthetic data."""
    image_model, video_model = work / "image.pt", work / "video.pt"
    if not image_model.exists():
        synth.make_images(work / "images", per_class=60, size=(96, 96), seed=seed)
        train_image(
            work / "images",
            image_model,
            config=ImageTrainConfig(
                arch="densenet121",
                weights="none",
                image_size=64,
                batch_size=16,
                val_fraction=0.2,
                workers=2,
                device="cpu",
                fit=FitConfig(epochs=image_epochs, lr=1e-3, seed=seed),
            ),
        )
    if not video_model.exists():
        synth.make_clips(
            work / "clips", per_class=16, seconds=2.0, fps=25, size=(64, 80), seed=seed
        )
        train_video(
            VideoSource(videos=work / "clips", val_fraction=0.2),
            video_model,
            config=VideoTrainConfig(
                arch="small3d",
                clip=ClipSpec(clip_len=8, frame_rate=12.5, size=48),
                batch_size=8,
                workers=2,
                device="cpu",
                fit=FitConfig(epochs=video_epochs, lr=3e-3, seed=seed),
            ),
        )
    return image_model, video_model


def score(result, truth, *, relabelled: bool) -> dict[str, float]:
    predicted = [
        (
            (c.final_label if relabelled else c.segment.label),
            c.segment.time_start_seconds,
            c.segment.time_end_seconds,
        )
        for c in result.candidates
    ]
    expected = [(s.label, s.time_start_seconds, s.time_end_seconds) for s in truth]
    d = segment_detection(predicted, expected, min_tiou=0.5)
    pair = [t for t in expected if t[0] in synth.MOTION_ONLY_PAIR]
    pair_hits = segment_detection(
        [p for p in predicted if p[0] in synth.MOTION_ONLY_PAIR], pair, min_tiou=0.5
    ).matched
    return {
        "precision": round(d.precision, 3),
        "recall": round(d.recall, 3),
        "f1": round(d.f1, 3),
        "matched": d.matched,
        "predicted": d.predicted,
        "truth": d.truth,
        "motion_pair_found": f"{pair_hits}/{len(pair)}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out/quality"))
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    epochs = {}
    if args.quick:
        args.minutes = 1.0
        args.work = args.work.with_name(args.work.name + "-quick")
        epochs = {"image_epochs": 1, "video_epochs": 3}
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    image_model, video_model = train_models(args.work, seed=args.seed, **epochs)
    trained = time.perf_counter() - started
    video = synth.make_long_video(
        args.work / f"long_{args.minutes:g}min.mp4",
        duration_seconds=args.minutes * 60,
        size=(240, 320),
        fps=25,
        seed=args.seed + 1,
    )
    warm = synth.make_long_video(  # holds actions: the warm-up re-labels too
        args.work / "warmup.mp4",
        duration_seconds=12.0,
        size=(240, 320),
        fps=25,
        seed=99,
        action_seconds=(3.0, 5.0),
        gap_seconds=(1.0, 3.0),
    )
    minutes = video_facts(video.path).duration_seconds / 60
    for mode in ("class", "action"):
        config = FindClipsConfig(segment=SegmentConfig(segment_on=mode), cut="none", device="cpu")
        miner = ClipMiner(image_model, [video_model], config=config)
        miner.run(warm.path, args.work / f"warm_{mode}")  # untimed warm-up
        run_started = time.perf_counter()
        result = miner.run(video.path, args.work / f"out_{mode}")
        print(
            json.dumps(
                {
                    "benchmark": "findclips_quality",
                    "segment_on": mode,
                    "video": f"{minutes:.2f} min, {len(video.segments)} actions of "
                    f"{len({s.label for s in video.segments})} classes",
                    "before_relabel": score(result, video.segments, relabelled=False),
                    "after_relabel": score(result, video.segments, relabelled=True),
                    "find_clips_seconds": round(time.perf_counter() - run_started, 1),
                    "training_seconds": round(trained, 1),
                    "quick": args.quick,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
