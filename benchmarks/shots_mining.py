"""Mining with and without shot boundaries, scored against per-shot and whole-action truth.

Uses what ``make demo`` left (its trained models, its long videos with cuts and fades and
their truth): mines each demo video with ``--shots`` and ``--no-shots`` (no cutting) and
prints one JSON line per video and mode with the segment-detection F1 (tIoU 0.5) against
the true actions cut at the true shot boundaries (what a shot-aware miner should find:
an action with a cut inside is two clips) and against the whole true actions.

Usage: python benchmarks/shots_mining.py [--demo-out demo-out]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import clipminer  # noqa: F401 - first: sets the thread environment

# isort: split
from clipminer import synth
from clipminer.cli.demo_pipeline import _truth_per_shot
from clipminer.config import FindClipsConfig
from clipminer.findclips import ClipMiner, VideoResult, find_clips
from clipminer.metrics import segment_detection
from clipminer.segments import SegmentConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-out", type=Path, default=Path("demo-out"))
    parser.add_argument("--work", type=Path, default=Path("bench-out/shots_mining"))
    args = parser.parse_args()
    demo = args.demo_out
    videos = sorted(p for p in (demo / "videos").glob("demo_*.mp4") if "reupload" not in p.stem)
    if not videos or not (demo / "models" / "image.pt").is_file():
        raise SystemExit(f"{demo}: run `make demo` first")
    for shots in (True, False):
        config = FindClipsConfig(
            segment=SegmentConfig(segment_on="action"), shots=shots, cut="none"
        )
        miner = ClipMiner(demo / "models/image.pt", [demo / "models/video.pt"], config=config)
        for video in videos:
            (result,) = [r for _, r in find_clips(miner, [video], args.work / str(shots))]
            assert isinstance(result, VideoResult), result
            truth = synth.read_truth_csv(demo / "truth" / f"{video.stem}.truth.csv")
            per_shot = _truth_per_shot(truth, demo / "truth" / f"{video.stem}.shots.csv")
            whole = [(s.label, s.time_start_seconds, s.time_end_seconds) for s in truth]
            found = [
                (c.final_label, c.segment.time_start_seconds, c.segment.time_end_seconds)
                for c in result.candidates
            ]
            a, b = segment_detection(found, per_shot), segment_detection(found, whole)
            print(json.dumps({
                "video": video.name, "shots": shots, "clips": len(found),
                "f1_per_shot_truth": round(a.f1, 3), "per_shot_truth": len(per_shot),
                "f1_whole_action_truth": round(b.f1, 3), "whole_actions": len(whole),
            }))  # fmt: skip


if __name__ == "__main__":
    main()
