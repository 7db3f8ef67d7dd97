"""One round of the loop that built Kinetics, measured: votes -> a better re-labeller.

Trains small models briefly on the generated world, mines ``--videos`` generated long
videos for recall (``--open-set off --threshold 0.3``: the candidates hold the miner's
mistakes), lets a reviewer who knows the truth decide every candidate (accept, relabel to
the true action, reject where there is none), then runs one round of
:func:`clipminer.curate.retrain.retrain_video` (export with the rejected clips as the
background class, fine-tune, keep the better model) and mines ``--test-videos`` new
videos with the video model before and after.

Prints the re-labeller's accuracy on the new videos' candidates before and after the
round: the share whose video-model label is the truth's (``background`` where the truth
has no action), and the segment F1 of the clips against the truth (temporal IoU >= 0.5,
right label), with the round's own report.

Usage: python benchmarks/loop.py [--minutes 1.5] [--videos 8] [--test-videos 2]
       [--work bench-out/loop]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchutil import cpu_model, score_segments, train_small_models
from review_order import truth_label, vote_the_truth

from clipminer import synth
from clipminer.config import findclips_config
from clipminer.curate import catalog
from clipminer.curate.retrain import RetrainConfig, retrain_video
from clipminer.findclips import ClipMiner


def videos(work: Path, count: int, minutes: float, first_seed: int) -> list[synth.LongVideo]:
    made = []
    for seed in range(first_seed, first_seed + count):
        path = work / f"long_{seed}.mp4"
        made.append(
            synth.make_long_video(
                path, duration_seconds=minutes * 60, size=(240, 320), fps=25, seed=seed
            )
        )
    return made


def relabel_accuracy(out: Path, truth: dict[str, tuple]) -> dict[str, float]:
    """The re-labeller's share of right labels on ``out``'s candidates, and segment F1."""
    right = total = 0
    for clip in catalog.all_clips(out):
        actual = truth_label(clip, truth[clip.video])
        said = clip.video_label or clip.label
        right += said == (actual or synth.BACKGROUND)
        total += 1
    return {"candidates": total, "relabel_accuracy": round(right / max(total, 1), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out/loop"))
    parser.add_argument("--minutes", type=float, default=1.5)
    # a round splits the verified clips 70/15/15 by source video: 8 leave one to test on
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--test-videos", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    models = train_small_models(args.work, image_arch="resnet18", image_epochs=1, video_epochs=2)
    video_model = args.work / "video-loop.pt"
    shutil.copy(models.video, video_model)
    settings = {"cut": "reencode", "open_set": "off", "threshold": 0.3, "device": "cpu"}
    config = findclips_config(settings, where="benchmark")
    mined = args.work / "mined"
    shutil.rmtree(mined, ignore_errors=True)
    train = videos(args.work, args.videos, args.minutes, 200)
    test = videos(args.work, args.test_videos, args.minutes, 300)
    truth = {v.path.stem: v.segments for v in [*train, *test]}
    miner = ClipMiner(models.image, [video_model], config=config)
    for video in train:
        miner.run(video.path, mined)
    vote_the_truth(mined, {c.key: truth_label(c, truth[c.video]) for c in catalog.all_clips(mined)})
    before_model = args.work / "video-before.pt"
    shutil.copy(video_model, before_model)
    round_ = retrain_video(
        mined, video_model,
        RetrainConfig(dataset=args.work / "verified", every_clips=1, epochs=args.epochs,
                      device="cpu", min_val_clips=1),  # promote on any split: what it buys
    )  # fmt: skip
    results = {}
    for name, model in (("before", before_model), ("after", video_model)):
        out = args.work / f"test_{name}"
        shutil.rmtree(out, ignore_errors=True)
        test_miner = ClipMiner(models.image, [model], config=findclips_config(
            {**settings, "cut": "none"}, where="benchmark"))  # fmt: skip
        f1 = []
        for video in test:
            result = test_miner.run(video.path, out)
            expected = [(s.label, s.time_start_seconds, s.time_end_seconds) for s in video.segments]
            f1.append(score_segments(result, expected, relabelled=True)["f1"])
        results[name] = {**relabel_accuracy(out, truth), "segment_f1": round(sum(f1) / len(f1), 3)}
    print(json.dumps({
        "benchmark": "loop", "cpu": cpu_model(),
        "train_videos": len(train), "test_videos": len(test), "minutes_each": args.minutes,
        "reviewed_candidates": len(catalog.all_clips(mined)),
        "round": {"status": round_.status, "detail": round_.detail},
        "before": results["before"], "after": results["after"],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
