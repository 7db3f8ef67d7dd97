"""Video models from few real clips: small3d from scratch against densenet121_3d inflated
from an image model, mean and spread over seeds.

The real action clips in ``../shared/data/actions`` (those of at least 10 s: 8 actions)
are cut into 2-second chunks at the models' frame rate and size; within each clip the
earlier chunks train and the later ones test, so no frame is in both. Per seed:

- ``small3d``: train-video's default recipe from scratch on the training chunks;
- ``image``: a densenet121 trained from scratch on the frames of the training chunks,
  scored on the test chunks with its probabilities averaged over each chunk's frames;
- ``densenet121_3d``: train-video --init-from that image model.

With ``--ablate``, small3d alone: the recipe, the recipe with each of its choices
turned off in turn, and none of them (train-video's settings before the recipe).

Training uses every training chunk (``--val-fraction 0``: the last epoch is kept), and
the test chunks are scored like eval-video (``--clips-per-video`` windows per chunk).
Prints one JSON line per model and seed, then one per model with the mean and the
spread (max - min) of video top-1 over the seeds.

Usage: nice -n 10 python benchmarks/small_data.py [--seeds 3] [--work bench-out/small_data]
       [--ablate] [--quick]
  --quick: one seed and one epoch each: checks that it runs; its figures are not the
  benchmark's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
from PIL import Image

from clipminer.config import VideoFitConfig
from clipminer.data.videos import (
    ClipSpec,
    VideoSet,
    check_readable,
    decode_frames,
    scan_video_folder,
)
from clipminer.decode import probe
from clipminer.devices import resolve_device
from clipminer.encode import VideoWriter
from clipminer.models.bundle import load_bundle
from clipminer.train import FitConfig
from clipminer.train_image import ImageTrainConfig, train_image
from clipminer.train_video import (
    VideoSource,
    VideoTrainConfig,
    evaluate_video_bundle,
    image_model_video_probs,
    train_video,
)

CHUNK_SECONDS = 2.0
MIN_SECONDS = 10.0
TRAIN_SHARE = 0.6
SPEC = ClipSpec(clip_len=8, frame_rate=8.0, size=64)


def action_name(path: Path) -> str:
    """``kinetics_arm_wrestling__mmaction2_demo.mp4`` -> ``arm_wrestling``."""
    name = path.name.split("__")[0]
    for prefix in ("kinetics_", "activitynet_", "ucf101_"):
        name = name.removeprefix(prefix)
    return name


def make_chunks(actions: Path, out: Path) -> None:
    """``out/{train,test}/<action>/<k>.mp4`` and the training frames as PNG images."""
    for path in sorted(actions.iterdir()):
        if probe(path).duration_seconds < MIN_SECONDS:
            continue
        frames = decode_frames(path, SPEC)
        per_chunk = round(CHUNK_SECONDS * SPEC.frame_rate)
        chunks = [
            frames[k : k + per_chunk] for k in range(0, len(frames) - per_chunk + 1, per_chunk)
        ]
        cut = round(len(chunks) * TRAIN_SHARE)
        action = action_name(path)
        for k, chunk in enumerate(chunks):
            part = "train" if k < cut else "test"
            target = out / part / action / f"{k:02d}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            _, h, w, _ = chunk.shape
            with VideoWriter(target, fps=SPEC.frame_rate, size=(h, w), crf=12) as writer:
                for pixels in chunk:
                    writer.write(pixels)
            if part == "train":
                folder = out / "frames" / action
                folder.mkdir(parents=True, exist_ok=True)
                for i, pixels in enumerate(chunk):
                    Image.fromarray(pixels).save(folder / f"{k:02d}_{i:02d}.png")


def test_set(root: Path, labels: tuple[str, ...]) -> VideoSet:
    _, items, _ = scan_video_folder(root / "test", labels=labels)
    return VideoSet(labels=labels, train=[], val=check_readable(items, []))


def score_video_model(model: Path, root: Path, clips_per_video: int) -> dict[str, float]:
    bundle = load_bundle(model, kind="video")
    evaluation = evaluate_video_bundle(
        bundle,
        test_set(root, bundle.labels),
        device=resolve_device("cpu"),
        clips_per_video=clips_per_video,
        workers=0,
    )
    return {"video_top1": evaluation.video.top1, "clip_top1": evaluation.clip_top1}


def score_image_model(model: Path, root: Path, labels: tuple[str, ...]) -> dict[str, float]:
    videos = test_set(root, labels)
    probs = image_model_video_probs(
        load_bundle(model, kind="image"), videos, labels, device="cpu", sample_fps=SPEC.frame_rate
    )
    targets = np.array([item.label for item in videos.val])
    return {"video_top1": float((probs.argmax(axis=1) == targets).mean())}


def image_config(seed: int, epochs: int) -> ImageTrainConfig:
    """The densenet121 trained on frames of the training chunks."""
    return ImageTrainConfig(
        arch="densenet121",
        weights="none",
        image_size=SPEC.size,
        batch_size=16,
        val_fraction=0.1,
        workers=2,
        device="cpu",
        fit=FitConfig(epochs=epochs, lr=1e-3, seed=seed),
    )


def video_config(arch: str, seed: int, epochs: int, lr: float, **more: object) -> VideoTrainConfig:
    return VideoTrainConfig(
        arch=arch,
        clip=SPEC,
        batch_size=8,
        workers=2,
        device="cpu",
        fit=VideoFitConfig(epochs=epochs, lr=lr, seed=seed),
        **more,  # type: ignore[arg-type]
    )


ABLATIONS: dict[str, dict[str, object]] = {
    "recipe": {},
    "one_clip_per_video": {"train_clips_per_video": 1},
    "no_resized_crop": {"crop_scale": 1.0},
    "no_colour_jitter": {"color_jitter": 0.0},
    "no_label_smoothing": {"label_smoothing": 0.0},
    "no_weight_average": {"ema_decay": 0.0},
    "none": {
        "train_clips_per_video": 1,
        "crop_scale": 1.0,
        "color_jitter": 0.0,
        "label_smoothing": 0.0,
        "ema_decay": 0.0,
    },
}
"""small3d variants: settings that differ from the recipe (fit settings among them)."""
FIT_KEYS = ("label_smoothing", "ema_decay")


def run_ablations(root: Path, work: Path, seed: int, args: argparse.Namespace) -> dict[str, dict]:
    """small3d with each variant of :data:`ABLATIONS`, scored on the test chunks."""
    source = VideoSource(videos=root / "train", val_fraction=0)
    results = {}
    for name, changes in ABLATIONS.items():
        fit = {k: v for k, v in changes.items() if k in FIT_KEYS}
        rest = {k: v for k, v in changes.items() if k not in FIT_KEYS}
        config = VideoTrainConfig(
            arch="small3d",
            clip=SPEC,
            batch_size=8,
            workers=2,
            device="cpu",
            fit=VideoFitConfig(epochs=args.scratch_epochs, lr=args.scratch_lr, seed=seed, **fit),  # type: ignore[arg-type]
            **rest,  # type: ignore[arg-type]
        )
        model = work / f"ablate_{name}_{seed}.pt"
        started = time.perf_counter()
        train_video(source, model, config=config)
        figures = score_video_model(model, root, args.clips_per_video)
        results[name] = figures | {"seconds": round(time.perf_counter() - started, 1)}
    return results


def run_seed(root: Path, work: Path, seed: int, args: argparse.Namespace) -> dict[str, dict]:
    """Train and score the three models of one seed; each result carries its seconds."""
    source = VideoSource(videos=root / "train", val_fraction=0)
    results: dict[str, dict] = {}

    def timed(name: str, run: Callable[[], dict[str, float]]) -> None:
        started = time.perf_counter()
        figures = run()
        results[name] = figures | {"seconds": round(time.perf_counter() - started, 1)}

    scratch = work / f"small3d_{seed}.pt"

    def small3d() -> dict[str, float]:
        config = video_config("small3d", seed, args.scratch_epochs, args.scratch_lr)
        train_video(source, scratch, config=config)
        return score_video_model(scratch, root, args.clips_per_video)

    timed("small3d", small3d)
    image = work / f"image_{seed}.pt"
    labels = load_bundle(scratch, kind="video").labels

    def image_model() -> dict[str, float]:
        train_image(root / "frames", image, config=image_config(seed, args.image_epochs))
        return score_image_model(image, root, labels)

    timed("image", image_model)
    inflated = work / f"densenet121_3d_{seed}.pt"

    def densenet121_3d() -> dict[str, float]:
        config = video_config(
            "densenet121_3d", seed, args.inflated_epochs, args.inflated_lr, init_from=image
        )
        train_video(source, inflated, config=config)
        return score_video_model(inflated, root, args.clips_per_video)

    timed("densenet121_3d", densenet121_3d)
    return results


def parse_args(description: str, work: str, *, ablate: bool = True) -> argparse.Namespace | None:
    """The options of this benchmark and of ``small_data_findclips.py``; None (after a
    message) when the real clips are absent."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/actions"))
    parser.add_argument("--work", type=Path, default=Path(work))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scratch-epochs", type=int, default=VideoFitConfig().epochs)
    parser.add_argument("--scratch-lr", type=float, default=3e-3)
    parser.add_argument("--image-epochs", type=int, default=8)
    parser.add_argument("--inflated-epochs", type=int, default=4)
    parser.add_argument("--inflated-lr", type=float, default=2e-4)
    parser.add_argument("--clips-per-video", type=int, default=3)
    if ablate:
        parser.add_argument("--ablate", action="store_true", help="small3d recipe ablations only")
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch each")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: {args.data} is absent (the real action clips, see PROVENANCE.md)")
        return None
    if args.quick:
        args.seeds = 1
        args.scratch_epochs = args.image_epochs = args.inflated_epochs = 1
        args.work = args.work.with_name(args.work.name + "_quick")
    return args


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "bench-out/small_data")
    if args is None:
        return
    root = args.work / "chunks"
    if not (root / "test").is_dir():
        make_chunks(args.data, root)
    common = {
        "benchmark": "small_data",
        "train_chunks": len(list((root / "train").rglob("*.mp4"))),
        "test_chunks": len(list((root / "test").rglob("*.mp4"))),
        "clip": f"{SPEC.clip_len} frames at {SPEC.frame_rate:g} fps, {SPEC.size} px",
        "cpus": os.cpu_count(),
    }
    by_model: dict[str, list[float]] = {}
    run = run_ablations if args.ablate else run_seed
    for seed in range(args.seeds):
        for model, figures in run(root, args.work, seed, args).items():
            by_model.setdefault(model, []).append(figures["video_top1"])
            print(json.dumps(common | {"model": model, "seed": seed} | figures), flush=True)
    for model, scores in by_model.items():
        summary = {
            "model": model,
            "seeds": len(scores),
            "video_top1_mean": round(statistics.fmean(scores), 4),
            "video_top1_spread": round(max(scores) - min(scores), 4),
        }
        print(json.dumps(common | summary), flush=True)


if __name__ == "__main__":
    main()
