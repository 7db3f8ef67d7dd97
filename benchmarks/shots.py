"""How well the shot detector finds cuts and fades in real footage.

Splices the real sample videos of ../shared/data (actions/ and nonaction/: UCF-101,
Kinetics, ActivityNet and NASA footage, each one continuous take or an edited clip as
published) into one H.264 video: up to ``--seconds`` of each, joined alternately by a
hard cut and by a fade through black (0.5 s down, 0.3 s black, 0.5 s up), in several
orders. The splice points are the ground truth. The detector then watches the frames
the find-clips pass decodes: the image model's tap (2 fps) and the video model's tap
(15 fps, short side 112), and the script prints one JSON line per tap with recall,
precision, the median and largest time error of the found boundaries, and every
boundary it found away from a splice (these may be cuts inside an edited source clip:
their times and source are listed so a person can look).

Usage: python benchmarks/shots.py [--data ../shared/data] [--seconds 6] [--orders 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import clipminer  # noqa: F401 - first: sets the thread environment

# isort: split
import numpy as np

from clipminer.curate.shots import ShotBoundary, ShotConfig, ShotDetector
from clipminer.decode import Tap, VideoReader, iter_frames
from clipminer.encode import VideoWriter

SIZE = (240, 320)
FPS = 25
FADE, BLACK = 0.5, 0.3


def _source_frames(path: Path, seconds: float) -> list[np.ndarray]:
    frames = []
    for frame in iter_frames(path, sample_fps=FPS, size=SIZE):
        if frame.pts_seconds >= seconds:
            break
        frames.append(frame.pixels)
    return frames


def splice(sources: list[Path], out: Path, *, seconds: float, seed: int) -> list[dict]:
    """Write the spliced video; returns the truth: one dict per splice point."""
    order = np.random.default_rng(seed).permutation(len(sources))
    truth: list[dict] = []
    t = 0
    with VideoWriter(out, fps=FPS, size=SIZE, crf=23) as writer:
        for k, index in enumerate(order):
            frames = _source_frames(sources[index], seconds)
            if not frames:
                continue
            fade = k % 2 == 1 and t > 0
            if k > 0:
                if fade:
                    black_start = t / FPS
                    for _ in range(round(BLACK * FPS)):
                        writer.write(np.zeros((*SIZE, 3), np.uint8))
                        t += 1
                    truth.append(
                        {"kind": "fade", "start": black_start, "end": t / FPS, "source": ""}
                    )
                else:
                    truth.append({"kind": "cut", "start": t / FPS, "end": t / FPS, "source": ""})
                truth[-1]["source"] = sources[index].name
            ramp = round(FADE * FPS)
            for j, pixels in enumerate(frames):
                gain = 1.0
                if fade and j < ramp:
                    gain = j / ramp
                next_fades = k + 1 < len(order) and (k + 1) % 2 == 1
                if next_fades and j >= len(frames) - ramp:
                    gain = min(gain, (len(frames) - 1 - j) / ramp)
                writer.write((pixels * gain).astype(np.uint8) if gain < 1 else pixels)
                t += 1
    return truth


def evaluate(video: Path, truth: list[dict], tap: Tap) -> dict:
    detector = ShotDetector(ShotConfig(), frame_seconds=1 / FPS)
    for _, frame in VideoReader(video, taps=[tap]).iter_taps():
        detector.push(frame.pts_seconds, frame.pixels)
    found = detector.finish()
    period = 1 / (tap.sample_fps or FPS)

    def matches(b: ShotBoundary, item: dict) -> bool:
        slack = period + 0.05
        return b.gap_start - slack <= item["end"] and b.gap_end + slack >= item["start"]

    hits = [next((b for b in found if matches(b, item)), None) for item in truth]
    errors = [
        abs(b.time - (item["start"] + item["end"]) / 2)
        for b, item in zip(hits, truth, strict=True)
        if b is not None
    ]
    extra = [b for b in found if not any(matches(b, item) for item in truth)]
    return {
        "found": len(found),
        "truth": len(truth),
        "recall": round(sum(h is not None for h in hits) / max(len(truth), 1), 3),
        "precision": round((len(found) - len(extra)) / max(len(found), 1), 3),
        "median_error_s": round(statistics.median(errors), 3) if errors else None,
        "max_error_s": round(max(errors), 3) if errors else None,
        "missed": [item for item, h in zip(truth, hits, strict=True) if h is None],
        "extra": [{"kind": b.kind, "time": round(b.time, 2), "score": b.score} for b in extra],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    parser.add_argument("--work", type=Path, default=Path("bench-out/shots"))
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--orders", type=int, default=3, help="Splices in different orders.")
    args = parser.parse_args()
    sources = sorted(
        p for folder in ("actions", "nonaction") for p in (args.data / folder).glob("*")
        if p.suffix in {".mp4", ".mkv", ".avi", ".mov"}
    )  # fmt: skip
    if not sources:
        raise SystemExit(f"{args.data}: no sample videos (actions/, nonaction/)")
    args.work.mkdir(parents=True, exist_ok=True)
    taps = {
        "image_tap_2fps": Tap(sample_fps=2.0, size=(224, 224)),
        "video_tap_15fps": Tap(sample_fps=15.0, short_side=112),
    }
    for seed in range(args.orders):
        video = args.work / f"splice-{seed}.mp4"
        truth = splice(sources, video, seconds=args.seconds, seed=seed)
        for name, tap in taps.items():
            result = evaluate(video, truth, tap)
            print(
                json.dumps({"splice": video.name, "tap": name, "sources": len(sources), **result})
            )


if __name__ == "__main__":
    main()
