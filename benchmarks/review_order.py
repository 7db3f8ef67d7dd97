"""How many votes ``clipminer review --order uncertain`` saves over ``--order score``.

Mines generated long videos with known actions for recall (small models trained
briefly, ``--open-set off``, ``--threshold 0.3``: the candidates hold mistakes to find,
wrong labels and stretches that are no action),
then walks each review order with a reviewer who votes the truth: accept when the truth
has the clip's label there, relabel when it has another action, reject when it has none.
After every vote the dataset is what ``export --include all`` would write (reviewed clips
under their verdict, rejected ones left out, the rest under their mined label); its
accuracy is the share of its clips whose label is the truth's.

Prints, per order, the votes needed to reach a dataset accuracy of 0.95, 0.98 and 1.0,
and the accuracy after 10, 25 and 50 % of the clips were reviewed. The orders are
clipminer's own (:func:`clipminer.curate.review.ordered`), beside catalogue order (video
by video, in time). Each seed is another video; the last line sums them.

Usage: python benchmarks/review_order.py [--minutes 5] [--seeds 3]
       [--work bench-out/review_order]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchutil import cpu_model, train_small_models

from clipminer import synth
from clipminer.config import findclips_config
from clipminer.curate import catalog, review, verdicts
from clipminer.curate.catalog import Clip
from clipminer.findclips import ClipMiner

TARGETS = (0.95, 0.98, 1.0)
SHARES = (0.10, 0.25, 0.50)


def truth_label(clip: Clip, truth: Sequence[synth.TruthSegment]) -> str | None:
    """The action the truth has over most of the clip; None when no action covers half."""
    return truth_at(clip.time_start, clip.time_end, truth)


def truth_at(start: float, end: float, truth: Sequence[synth.TruthSegment]) -> str | None:
    """The action the truth has over most of ``start``-``end``; None when none covers half."""
    best, covered = None, 0.0
    for s in truth:
        overlap = min(end, s.time_end_seconds) - max(start, s.time_start_seconds)
        if overlap > covered:
            best, covered = s.label, overlap
    return best if covered >= 0.5 * (end - start) else None


def vote_the_truth(out: Path, truth: dict[str, str | None]) -> None:
    """A reviewer who knows the truth decides every clip of ``out``: accept where the
    truth (``truth`` by clip key) has the clip's label, relabel where another action,
    reject where none."""
    with verdicts.connect(out) as con:
        for clip in catalog.all_clips(out):
            actual = truth[clip.key]
            if actual is None:
                verdicts.cast(con, clip, "truth", "reject")
            elif actual == clip.label:
                verdicts.cast(con, clip, "truth", "accept")
            else:
                verdicts.cast(con, clip, "truth", "relabel", actual)


def curve(clips: Sequence[Clip], truth: dict[str, str | None]) -> list[float]:
    """The dataset's accuracy after 0, 1, ... votes in the order of ``clips``."""
    reviewed: set[str] = set()
    points = []
    for k in range(len(clips) + 1):
        right = total = 0
        for clip in clips:
            actual = truth[clip.key]
            if clip.key in reviewed:  # the verdict: the truth's label, or rejected
                right += actual is not None
                total += actual is not None
            else:
                right += actual == clip.label
                total += 1
        points.append(right / total if total else 1.0)
        if k < len(clips):
            reviewed.add(clips[k].key)
    return points


def summary(points: Sequence[float]) -> dict[str, object]:
    n = len(points) - 1
    votes = {
        f"votes_to_{t:g}": next((k for k, a in enumerate(points) if a >= t - 1e-9), None)
        for t in TARGETS
    }
    after = {f"accuracy_after_{s:.0%}": round(points[round(s * n)], 3) for s in SHARES}
    return {**votes, **after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out/review_order"))
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.3, help="find-clips --threshold")
    args = parser.parse_args()
    models = train_small_models(args.work, image_arch="resnet18", image_epochs=1, video_epochs=2)
    # mined for recall, as a team that reviews every candidate would: no open-set
    # rejection and a low threshold, so the candidates hold the miner's mistakes
    settings = {"cut": "none", "open_set": "off", "threshold": args.threshold}
    miner = ClipMiner(
        models.image, [models.video], config=findclips_config(settings, where="benchmark")
    )
    every: dict[str, list[Clip]] = {}
    truth: dict[str, str | None] = {}  # by clip key: the videos' names differ per seed
    for seed in range(args.seeds):
        video = synth.make_long_video(
            args.work / f"long_{seed}.mp4", duration_seconds=args.minutes * 60,
            size=(240, 320), fps=25, seed=100 + seed,
        )  # fmt: skip
        out = args.work / f"out_{seed}"
        miner.run(video.path, out)
        every[video.path.stem] = catalog.all_clips(out)
        truth.update({c.key: truth_label(c, video.segments) for c in every[video.path.stem]})
    every["all"] = [c for clips in every.values() for c in clips]  # one review over all
    for name, clips in every.items():
        orders = {
            "catalogue": clips,
            "score": review.ordered(clips, "score"),
            "uncertain": review.ordered(clips, "uncertain"),
        }
        print(json.dumps({
            "benchmark": "review_order", "cpu": cpu_model(), "video": name,
            "clips": len(clips), "wrong_before_review": sum(truth[c.key] != c.label for c in clips),
            "not_actions": sum(truth[c.key] is None for c in clips),
            **{order: summary(curve(ranked, truth)) for order, ranked in orders.items()},
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
