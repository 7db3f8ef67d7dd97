"""Quality of find-clips on a synthetic long video with known actions.

Trains a small image model and a small video model on separate synthetic data,
generates a long video (background between actions of every class, the motion-only
pair included), runs find-clips, and prints one JSON line per segmentation mode with
segment precision, recall and F1 at temporal IoU >= 0.5 with the correct label,
before re-labelling (the image model's labels) and after (the video model's).

The timing of each mode follows an untimed warm-up run of the same miner on a short
video; the video's length is read from the file.

With ``--precision fp32,int8`` the trained models are also quantized to int8
(``clipminer quantize``, calibrated on their own training data, torch-fx or OpenVINO as
installed) and each mode is run at each precision: the accuracy guard's second half,
F1 unchanged within 0.01, is ``f1_change_vs_first``.

``--settings score_stride=3,relabel_agree=2`` (repeatable) runs each mode with other
find-clips settings too; each line carries its model work (frames the image model ran
on, re-label windows) and stage times, and ``f1_change_vs_first``.

Usage: python benchmarks/findclips_quality.py [--minutes 5] [--work bench-out/quality]
       [--quick] [--precision fp32,int8] [--settings NAME=VALUE,...]...
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

from benchutil import cpu_model, parse_settings, score_segments, train_small_models, video_facts

from clipminer import synth
from clipminer.config import findclips_config
from clipminer.findclips import ClipMiner
from clipminer.quantize import quantize_bundle


def score(result, truth, *, relabelled: bool) -> dict:
    expected = [(s.label, s.time_start_seconds, s.time_end_seconds) for s in truth]
    return score_segments(
        result, expected, relabelled=relabelled, pair_labels=tuple(synth.MOTION_ONLY_PAIR)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out/quality"))
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32,int8")
    parser.add_argument(
        "--settings",
        action="append",
        help="find-clips settings of one run as name=value pairs, comma-separated "
        "(score_stride=3,relabel_agree=2); repeat to compare several, the first is the "
        "reference of f1_change (default: the defaults)",
    )
    args = parser.parse_args()
    variants = [parse_settings(text) for text in args.settings or [""]]
    image_epochs, video_epochs = 5, 20
    if args.quick:
        args.minutes = 1.0
        args.work = args.work.with_name(args.work.name + "-quick")
        image_epochs, video_epochs = 1, 3
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    models = train_small_models(
        args.work,
        image_arch="densenet121",
        images_per_class=60,
        seed=args.seed,
        image_epochs=image_epochs,
        video_epochs=video_epochs,
    )
    image_model, video_model = models.image, models.video
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
    precisions = args.precision.split(",")
    models = {"fp32": (image_model, video_model)}
    guard = {}
    if "int8" in precisions:
        models["int8"], guard = quantize(args.work, image_model, video_model)
    f1_fp32: dict[str, float] = {}
    for mode in ("class", "action"):
        for precision in precisions:
            for settings in variants:
                config = findclips_config(
                    {"segment_on": mode, "cut": "none", "device": "cpu", **settings},
                    where="--settings",
                )
                image, video_m = models[precision]
                miner = ClipMiner(image, [video_m], config=config)
                miner.run(warm.path, args.work / f"warm_{mode}")  # untimed warm-up
                run_started = time.perf_counter()
                result = miner.run(video.path, args.work / f"out_{mode}_{precision}")
                after = score(result, video.segments, relabelled=True)
                f1_fp32.setdefault(mode, after["f1"])
                print(
                    json.dumps(
                        {
                            "benchmark": "findclips_quality",
                            "cpu": cpu_model(),
                            "segment_on": mode,
                            "precision": miner.precision,
                            "settings": settings,
                            "video": f"{minutes:.2f} min, {len(video.segments)} actions of "
                            f"{len({s.label for s in video.segments})} classes",
                            "before_relabel": score(result, video.segments, relabelled=False),
                            "after_relabel": after,
                            "f1_change_vs_first": round(after["f1"] - f1_fp32[mode], 3),
                            "find_clips_seconds": round(time.perf_counter() - run_started, 1),
                            "stages": result.stages.rounded(),
                            "frames_scored": len(result.times),
                            "model_work": result.model_work,
                            "training_seconds": round(trained, 1),
                            **({"int8_guard": guard} if precision == "int8" else {}),
                            "quick": args.quick,
                        }
                    ),
                    flush=True,
                )


def quantize(work: Path, image: Path, video: Path) -> tuple[tuple[Path, Path], dict]:
    """int8 copies of both models, calibrated on their training data; the agreement and
    speed-up each measured on its held-out half."""
    made = []
    guard = {}
    for model, data in ((image, work / "images"), (video, work / "clips")):
        out = model.with_name(model.stem + "-int8.pt")
        result = quantize_bundle(model, [data], out, precision="int8", min_agreement=0.5)
        guard[model.stem] = result.summary()
        made.append(out)
    return (made[0], made[1]), guard


if __name__ == "__main__":
    main()
