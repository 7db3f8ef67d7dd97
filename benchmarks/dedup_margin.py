"""How far apart re-uploads and different videos are in the image model's embedding space.

For every real sample video of ../shared/data (actions/ and nonaction/), makes a
"re-upload": decoded, scaled to 3/4 and encoded again at a low quality (x264 CRF 32), as
a site re-encodes an upload. Embeds the first ``--seconds`` of each original and copy the
way find-clips does (frames at 2 fps, the image model's pooled features, averaged,
L2-normalised) and prints one JSON line: the cosine of each copy to its original (the
lowest and the median) and of different videos to each other (the highest and the
median), for the dedup thresholds.

Usage: python benchmarks/dedup_margin.py --image-model demo-out/models/image.pt
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import clipminer  # noqa: F401 - first: sets the thread environment

# isort: split
import numpy as np

from clipminer import synth
from clipminer.decode import iter_frames
from clipminer.models.image import ImageScorer


def embed(scorer: ImageScorer, video: Path, seconds: float) -> np.ndarray:
    frames = [
        f.pixels
        for f in iter_frames(video, sample_fps=2, short_side=256)
        if f.pts_seconds < seconds
    ]
    features = []
    for first in range(0, len(frames), 8):
        scorer(np.stack(frames[first : first + 8]))
        features.append(scorer.features.take())
    vector = np.concatenate(features).mean(0)
    return vector / np.linalg.norm(vector)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    parser.add_argument("--work", type=Path, default=Path("bench-out/dedup_margin"))
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sources = sorted(
        p for folder in ("actions", "nonaction") for p in (args.data / folder).glob("*")
        if p.suffix in {".mp4", ".mkv", ".avi", ".mov"}
    )  # fmt: skip
    scorer = ImageScorer(args.image_model, device="cpu", precision="fp32")
    originals, copies = [], []
    for source in sources:
        copy = synth.reupload(
            source, args.work / f"{source.stem}.reupload.mp4", crf=32, scale=0.75,
            seconds=args.seconds,
        )  # fmt: skip
        originals.append(embed(scorer, source, args.seconds))
        copies.append(embed(scorer, copy, args.seconds))
    a, b = np.stack(originals), np.stack(copies)
    same = np.sum(a * b, axis=1)
    cross = a @ a.T
    different = cross[np.triu_indices(len(a), k=1)]
    print(json.dumps({
        "videos": len(sources), "image_model": str(args.image_model),
        "copy_to_original_min": round(float(same.min()), 4),
        "copy_to_original_median": round(float(statistics.median(same)), 4),
        "different_videos_max": round(float(different.max()), 4),
        "different_videos_median": round(float(statistics.median(different)), 4),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
