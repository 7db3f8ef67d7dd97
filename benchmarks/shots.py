"""Shot boundaries: clipminer's detector in the pass against PySceneDetect standalone.

Splices single takes of the real sample videos of ../shared/data (UCF-101, Kinetics,
ActivityNet and NASA footage) into one 30 fps H.264 video per order, up to ``--seconds``
of each: the NASA clip's two dark stretches (space, mean brightness 10-16 of 255), three
clips darkened to a mean of 14 standing in for night scenes, and the rest as published.
Pieces meet by a hard cut, and every fourth join by a fade through black (0.5 s down,
0.3 s black, 0.5 s up). The joins are the truth. Cuts inside a source clip are left out
of the pieces (``TAKES``: each was looked at frame by frame); two places where
PySceneDetect sees a cut that is camera motion (kid_ball_play at 8.6 s, arm_wrestling's
shaky stretches) stay in, so a detector that fires there pays in precision.

For each order and detector (content, adaptive, histogram) it prints one JSON line for
clipminer (the detector fed the find-clips pass's own frames: a thumbnail of every source
frame picked from the decoded planes, decoded beside the 2 fps image tap) and one for
PySceneDetect run standalone on the file: recall within 0.5 s, precision, median and
largest time error, and CPU seconds. With ``--mine`` (default) it also mines every splice
with small models trained on synthetic data (image model alone, and with a video model;
open-set rejection off and a low threshold, so that segments cover much of the footage),
with and without shots, and counts the clips that cross a true boundary by more than
0.25 s. ``--cost`` prints what the detector adds to the pass on a 1080p video: decode
with the image tap alone, decode with the shot tap and detector too, and the image
model's inference on the 2 fps frames (densenet121, fp32), measured side by side.

Usage: python benchmarks/shots.py [--data ../shared/data] [--orders 3] [--seconds 4]
       [--no-mine] [--no-cost]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import clipminer  # noqa: F401 - first: sets the thread environment

# isort: split
import numpy as np
from benchutil import cpu_model, train_small_models

from clipminer.config import FindClipsConfig
from clipminer.decode import Tap, VideoReader, iter_frames, probe
from clipminer.encode import VideoWriter
from clipminer.findclips import ClipMiner, VideoResult, find_clips
from clipminer.mining.shots import (
    DETECTORS,
    THUMBNAIL,
    ShotBoundary,
    ShotConfig,
    ShotDetector,
    thumbnail_rate,
)
from clipminer.segments import SegmentConfig

SIZE = (360, 640)
FPS = 30
FADE, BLACK = 0.5, 0.3
TOLERANCE = 0.5
CROSSING = 0.25
DARK_MEAN = 14.0
# Single takes (start, end seconds) of the sources with cuts of their own; others are one take.
TAKES = {
    "changing_oil__mmaction2_pr1197_test1.mp4": [(1.9, 10.0)],
    # 0-5 s: Earth from space; 8.1-13 s: a night scene. Between them a cut and a dissolve.
    "nasa_13013__torchcodec.mp4": [(0.0, 5.0), (8.2, 13.0)],
}


@dataclass(frozen=True)
class Piece:
    path: Path
    start: float
    end: float
    dark: bool = False

    @property
    def name(self) -> str:
        return f"{self.path.name}[{self.start:g}-{self.end:g}]" + (" darkened" if self.dark else "")


def pieces(data: Path, seconds: float, seed: int) -> list[Piece]:
    sources = sorted(
        p for folder in ("actions", "nonaction") for p in (data / folder).glob("*")
        if p.suffix in {".mp4", ".mkv", ".avi", ".mov"}
    )  # fmt: skip
    if not sources:
        raise SystemExit(f"{data}: no sample videos (actions/, nonaction/)")
    found = []
    for path in sources:
        for start, end in TAKES.get(path.name, [(0.0, seconds)]):
            found.append(Piece(path, start, min(end, start + seconds)))
    rng = np.random.default_rng(seed)
    bright = [p for p in found if "nasa" not in p.path.name and p.end - p.start >= 2]
    for k in rng.choice(len(bright), 3, replace=False):
        found.append(Piece(bright[k].path, bright[k].start, bright[k].end, dark=True))
    return [found[k] for k in rng.permutation(len(found))]


def _frames(piece: Piece) -> list[np.ndarray]:
    frames = [
        f.pixels
        for f in iter_frames(piece.path, sample_fps=FPS, size=SIZE)
        if piece.start <= f.pts_seconds < piece.end
    ]
    if piece.dark and frames:
        gain = DARK_MEAN / max(1.0, float(np.mean([f.mean() for f in frames])))
        frames = [(f * gain).astype(np.uint8) for f in frames]
    return frames


def splice(order: list[Piece], out: Path) -> list[dict]:
    """Write the spliced video; returns the truth, one dict per join."""
    truth: list[dict] = []
    t = 0
    ramp = round(FADE * FPS)
    with VideoWriter(out, fps=FPS, size=SIZE, crf=23) as writer:
        for k, piece in enumerate(order):
            frames = _frames(piece)
            fade_in = k > 0 and k % 4 == 0
            fade_out = (k + 1) % 4 == 0 and k + 1 < len(order)
            if k > 0:
                if fade_in:
                    start = t / FPS
                    for _ in range(round(BLACK * FPS)):
                        writer.write(np.zeros((*SIZE, 3), np.uint8))
                        t += 1
                    truth.append({"kind": "fade", "start": start, "end": t / FPS})
                else:
                    truth.append({"kind": "cut", "start": t / FPS, "end": t / FPS})
                truth[-1]["into"] = piece.name
            for j, pixels in enumerate(frames):
                gain = 1.0
                if fade_in and j < ramp:
                    gain = j / ramp
                if fade_out and j >= len(frames) - ramp:
                    gain = min(gain, (len(frames) - 1 - j) / ramp)
                writer.write((pixels * gain).astype(np.uint8) if gain < 1 else pixels)
                t += 1
    return truth


def evaluate(found: list[ShotBoundary], truth: list[dict]) -> dict:
    """One-to-one matching: a found boundary whose gap comes within TOLERANCE of a join."""

    def distance(b: ShotBoundary, item: dict) -> float:
        if b.gap_start <= item["end"] and b.gap_end >= item["start"]:
            return 0.0 if item["kind"] == "fade" else abs(b.time - item["start"])
        return min(abs(b.gap_start - item["end"]), abs(b.gap_end - item["start"]))

    unmatched = list(range(len(truth)))
    errors, extra = [], []
    for b in found:
        near = sorted((distance(b, truth[k]), k) for k in unmatched)
        if near and near[0][0] <= TOLERANCE:
            unmatched.remove(near[0][1])
            errors.append(near[0][0])
        else:
            extra.append({"kind": b.kind, "time": round(b.time, 2)})
    return {
        "recall": round((len(truth) - len(unmatched)) / max(len(truth), 1), 3),
        "precision": round(len(errors) / max(len(found), 1), 3),
        "found": len(found),
        "truth": len(truth),
        "median_error_s": round(statistics.median(errors), 3) if errors else None,
        "max_error_s": round(max(errors), 3) if errors else None,
        "missed": [truth[k] for k in unmatched],
        "extra": extra,
    }


def in_the_pass(video: Path, detector: str) -> tuple[list[ShotBoundary], float]:
    """The detector fed as find-clips feeds it: shot tap beside a 2 fps image tap."""
    info = probe(video)
    rate = thumbnail_rate(info.average_fps)
    taps = [Tap(sample_fps=2.0, size=(224, 224)), Tap(sample_fps=rate, thumbnail=THUMBNAIL)]
    shots = ShotDetector(
        ShotConfig(detector),  # type: ignore[arg-type]
        fps=rate,
        frame_seconds=1 / (info.average_fps or FPS),
    )
    cpu = 0.0
    for index, frame in VideoReader(video, taps=taps).iter_taps():
        if index == 1:
            started = time.process_time()
            shots.push(frame)
            cpu += time.process_time() - started
    return shots.finish(), cpu


def standalone(video: Path, detector: str) -> tuple[list[ShotBoundary], float]:
    """PySceneDetect's own pipeline (OpenCV decode, its default downscale)."""
    import scenedetect

    make = {
        "content": scenedetect.ContentDetector,
        "adaptive": scenedetect.AdaptiveDetector,
        "histogram": scenedetect.HistogramDetector,
    }[detector]
    started = time.process_time()
    scenes = scenedetect.detect(str(video), make())
    cpu = time.process_time() - started
    half = 0.5 / FPS
    cuts = [s[0].seconds for s in scenes[1:]]
    return [ShotBoundary("cut", t - half, t - half, t, 1.0) for t in cuts], cpu


def mine(video: Path, truth: list[dict], models: tuple[Path, Path], work: Path) -> list[dict]:
    """Clips mined with and without a video model, with and without shots, and how many
    cross a true boundary by more than CROSSING seconds."""
    lines = []
    segment = SegmentConfig(threshold=0.3, min_seconds=1.0, segment_on="action")
    for video_models in ([], [models[1]]):
        for shots in (True, False):
            config = FindClipsConfig(
                segment=segment, shots=shots, cut="none", device="cpu", open_set="off"
            )
            miner = ClipMiner(models[0], video_models, config=config)
            name = f"{'video' if video_models else 'image'}-{'shots' if shots else 'noshots'}"
            (result,) = [r for _, r in find_clips(miner, [video], work / name)]
            assert isinstance(result, VideoResult), result
            crossing = []
            for c in result.candidates:
                start, end = c.segment.time_start_seconds, c.segment.time_end_seconds
                for item in truth:
                    inside = min(item["start"] - start, end - item["end"])
                    if inside > CROSSING:
                        crossing.append(
                            {"clip": [round(start, 2), round(end, 2)], "join": item["start"]}
                        )
            lines.append({
                "mining": name, "clips": len(result.candidates),
                "crossing_over_0.25s": len(crossing), "crossings": crossing[:5],
            })  # fmt: skip
    return lines


def cost(work: Path, source: Path) -> dict:
    """CPU seconds of the pass's decode on 1080p with and without the shot tap, and of
    the image model's inference on its 2 fps frames."""
    import torch
    import torchvision

    video = work / "cost-1080p.mp4"
    if not video.exists():
        with VideoWriter(video, fps=FPS, size=(1080, 1920), crf=23) as writer:
            for frame in iter_frames(source, size=(1080, 1920)):
                writer.write(frame.pixels)
    info = probe(video)
    rate = thumbnail_rate(info.average_fps)
    image_tap = Tap(sample_fps=2.0, size=(224, 398))

    def decode(with_shots: bool) -> tuple[float, list[np.ndarray]]:
        taps = [image_tap, Tap(sample_fps=rate, thumbnail=THUMBNAIL)] if with_shots else [image_tap]
        shots = ShotDetector(fps=rate, frame_seconds=1 / rate)
        images = []
        started = time.process_time()
        for index, frame in VideoReader(video, taps=taps).iter_taps():
            if index == 1:
                shots.push(frame)
            else:
                images.append(frame.pixels[:, 87:311])
        shots.finish()
        return time.process_time() - started, images

    runs = {"without": [], "with": []}
    images: list[np.ndarray] = []
    for _ in range(3):  # interleaved, the median of three
        for key in runs:
            seconds, images = decode(key == "with")
            runs[key].append(seconds)
    model = torchvision.models.densenet121(weights=None).eval()
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    started = time.process_time()
    with torch.inference_mode():
        for k in range(0, len(batch), 16):
            model(batch[k : k + 16])
    infer = time.process_time() - started
    without, with_shots = statistics.median(runs["without"]), statistics.median(runs["with"])
    added = with_shots - without
    return {
        "cost": "1080p pass", "video": f"{info.width}x{info.height} {info.average_fps:g} fps "
        f"{info.duration_seconds:.1f} s", "cpu": cpu_model(),
        "decode_cpu_s": round(without, 2), "decode_with_shots_cpu_s": round(with_shots, 2),
        "image_model_cpu_s": round(infer, 2), "added_cpu_s": round(added, 2),
        "added_share_of_pass": round(added / (without + infer), 3),
        "added_share_of_decode": round(added / without, 3),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared/data")
    parser.add_argument("--work", type=Path, default=Path("bench-out/shots"))
    parser.add_argument("--seconds", type=float, default=4.0, help="Longest piece of a source.")
    parser.add_argument("--orders", type=int, default=3, help="Splices in different orders.")
    parser.add_argument("--mine", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--cost", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"cpu": cpu_model(), "data": str(args.data)}))
    models = train_small_models(args.work / "models") if args.mine else None
    totals: dict[str, list[dict]] = {}
    videos = []
    for seed in range(args.orders):
        order = pieces(args.data, args.seconds, seed)
        video = args.work / f"splice-{seed}.mp4"
        truth = splice(order, video)
        videos.append(video)
        for detector in DETECTORS:
            for runner, fn in (("clipminer", in_the_pass), ("pyscenedetect", standalone)):
                found, cpu = fn(video, detector)
                result = evaluate(found, truth)
                totals.setdefault(f"{runner} {detector}", []).append(result)
                print(json.dumps({
                    "splice": video.name, "pieces": len(order), "runner": runner,
                    "detector": detector, "cpu_s": round(cpu, 2), **result,
                }))  # fmt: skip
        if models is not None:
            pair = (models.image, models.video)
            for line in mine(video, truth, pair, args.work / f"mine-{seed}"):
                print(json.dumps({"splice": video.name, **line}))
    for name, results in totals.items():
        truth_total = sum(r["truth"] for r in results)
        found_total = sum(r["found"] for r in results)
        hits = sum(round(r["recall"] * r["truth"]) for r in results)
        print(json.dumps({
            "summary": name, "recall": round(hits / truth_total, 3),
            "precision": round(hits / max(found_total, 1), 3), "joins": truth_total,
            "found": found_total,
        }))  # fmt: skip
    if args.cost:
        print(json.dumps(cost(args.work, videos[0])))


if __name__ == "__main__":
    main()
