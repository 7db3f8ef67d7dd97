"""find-clips on a long video spliced from the real clips' test parts: the image model's
labels against re-labelling by small3d (from scratch) and by densenet121_3d inflated
from the image model (issue 14's last point).

Uses ``small_data.py``'s chunks and split (the real clips of at least 10 s, 2-second
chunks at 8 fps and 64 px short side, the earlier 60 % of each clip's chunks train).
The long video holds, for each clip, its test chunks in one piece (the later 40 % of
the clip, 4-8 s, frames decoded exactly as ``make_chunks`` decodes them and cropped to
the centre 64 x 84), in a random order per seed, with 3-6 s of ``clipminer.synth``
background between them and at both ends; no frame of the video was trained on.

find-clips needs a background label to separate the actions: small_data.py's image
model has none, so here the image model (densenet121 from scratch on the frames of
the training chunks, as in small_data.py) gets a ninth class, ``background``, made of
synthetic background frames rendered with another seed than the video's gaps. The
video models are trained exactly as in small_data.py (8 actions, no background);
densenet121_3d is ``--init-from`` this 9-class image model (its 8 action rows carried
over).

Per seed and per ``segment_on`` (class, action) it prints one JSON line per re-labeller
(none, small3d, densenet121_3d) with segment precision, recall and F1 at temporal IoU
>= 0.5 with the correct label, before re-labelling (the image model's labels) and
after; then one line per mode and re-labeller with the mean F1 over the seeds.

Usage: nice -n 10 python benchmarks/small_data_findclips.py [--seeds 3]
       [--work bench-out/small_data_findclips] [--quick]
  --quick: one seed and one epoch each: checks that it runs; its figures are not the
  benchmark's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from benchutil import score_segments
from small_data import (
    CHUNK_SECONDS,
    MIN_SECONDS,
    SPEC,
    TRAIN_SHARE,
    action_name,
    image_config,
    make_chunks,
    parse_args,
    score_video_model,
    video_config,
)

from clipminer import synth
from clipminer.data.videos import decode_frames
from clipminer.decode import probe
from clipminer.encode import VideoWriter
from clipminer.findclips import ClipMiner, FindClipsConfig
from clipminer.models.bundle import load_bundle
from clipminer.segments import SegmentConfig
from clipminer.train_image import train_image
from clipminer.train_video import VideoSource, train_video

SIZE = (64, 84)
"""Height x width of the spliced video: every clip at 64 px short side is at least 85 wide."""
GAP_SECONDS = (3.0, 6.0)
BACKGROUND = "background"


def test_parts(actions: Path, *, seen: bool = False) -> dict[str, np.ndarray]:
    """Each clip's test chunks in one piece, centre-cropped to :data:`SIZE` (with ``seen``,
    its training chunks instead)."""
    parts = {}
    per_chunk = round(CHUNK_SECONDS * SPEC.frame_rate)
    for path in sorted(actions.iterdir()):
        if probe(path).duration_seconds < MIN_SECONDS:
            continue
        frames = decode_frames(path, SPEC)
        chunks = len(frames) // per_chunk
        cut = round(chunks * TRAIN_SHARE)  # as make_chunks: chunks [cut, chunks) test
        part = frames[: cut * per_chunk] if seen else frames[cut * per_chunk : chunks * per_chunk]
        _, h, w, _ = part.shape
        top, left = (h - SIZE[0]) // 2, (w - SIZE[1]) // 2
        parts[action_name(path)] = part[:, top : top + SIZE[0], left : left + SIZE[1]]
    return parts


def splice(parts: dict[str, np.ndarray], path: Path, seed: int) -> list[tuple[str, float, float]]:
    """Write the long video; return the truth as (label, start, end) in seconds."""
    rng = np.random.default_rng(1000 + seed)
    fps = SPEC.frame_rate
    truth = []
    k = 0  # frames written
    with VideoWriter(path, fps=fps, size=SIZE, crf=12) as writer:

        def gap(index: int) -> None:
            nonlocal k
            scene = synth.scene(BACKGROUND, seed=5000 + seed, index=index, size=SIZE)
            for i in range(round(rng.uniform(*GAP_SECONDS) * fps)):
                writer.write(scene.render(i / fps), pts_seconds=k / fps)
                k += 1

        order = list(rng.permutation(sorted(parts)))
        gap(0)
        for n, label in enumerate(order):
            start = k
            for pixels in parts[label]:
                writer.write(np.ascontiguousarray(pixels), pts_seconds=k / fps)
                k += 1
            truth.append((str(label), start / fps, k / fps))
            gap(n + 1)
    return truth


def image_frames(root: Path, out: Path, seed: int) -> Path:
    """The training chunks' frames plus a ``background`` class of synthetic frames (as
    many as the mean action has, another seed than the video's gaps)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(root / "frames", out)
    per_class = round(statistics.fmean(len(list(d.iterdir())) for d in out.iterdir()))
    synth.make_images(out, per_class=per_class, size=SIZE, seed=9000 + seed, labels=(BACKGROUND,))
    return out


def train_models(root: Path, work: Path, seed: int, args: argparse.Namespace) -> dict[str, Path]:
    source = VideoSource(videos=root / "train", val_fraction=0)
    scratch = work / f"small3d_{seed}.pt"
    train_video(
        source, scratch, config=video_config("small3d", seed, args.scratch_epochs, args.scratch_lr)
    )
    image = work / f"image_bg_{seed}.pt"
    frames = image_frames(root, work / f"frames_bg_{seed}", seed)
    train_image(frames, image, config=image_config(seed, args.image_epochs))
    inflated = work / f"densenet121_3d_{seed}.pt"
    config_3d = video_config(
        "densenet121_3d", seed, args.inflated_epochs, args.inflated_lr, init_from=image
    )
    train_video(source, inflated, config=config_3d)
    return {"image": image, "small3d": scratch, "densenet121_3d": inflated}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "bench-out/small_data_findclips", ablate=False)
    if args is None:
        return
    args.work.mkdir(parents=True, exist_ok=True)
    root = args.work / "chunks"
    if not (root / "test").is_dir():
        make_chunks(args.data, root)
    parts = test_parts(args.data)
    f1s: dict[tuple[str, str], list[float]] = {}
    for seed in range(args.seeds):
        started = time.perf_counter()
        models = train_models(root, args.work, seed, args)
        trained = round(time.perf_counter() - started, 1)
        chunk_top1 = {
            name: score_video_model(models[name], root, args.clips_per_video)["video_top1"]
            for name in ("small3d", "densenet121_3d")
        }
        video = args.work / f"spliced_{seed}.mp4"
        truth = splice(parts, video, seed)
        common = {
            "benchmark": "small_data_findclips",
            "seed": seed,
            "video": f"{probe(video).duration_seconds:.1f} s, {len(truth)} actions "
            f"(test parts of the real clips) with synthetic background between",
            "image_labels": len(load_bundle(models["image"], kind="image").labels),
            "training_seconds": trained,
            "quick": args.quick,
        }
        for mode in ("class", "action"):
            config = FindClipsConfig(
                segment=SegmentConfig(segment_on=mode), cut="none", device="cpu"
            )
            for relabeller in ("none", "small3d", "densenet121_3d"):
                video_models = [] if relabeller == "none" else [models[relabeller]]
                miner = ClipMiner(models["image"], video_models, config=config)
                run_started = time.perf_counter()
                result = miner.run(video, args.work / f"out_{seed}_{mode}_{relabeller}")
                after = score_segments(result, truth, relabelled=True)
                f1s.setdefault((mode, relabeller), []).append(after["f1"])
                line = common | {
                    "segment_on": mode,
                    "relabeller": relabeller,
                    "relabeller_chunk_top1": chunk_top1.get(relabeller),
                    "before_relabel": score_segments(result, truth, relabelled=False),
                    "after_relabel": after,
                    "find_clips_seconds": round(time.perf_counter() - run_started, 1),
                }
                print(json.dumps(line), flush=True)
    for (mode, relabeller), scores in f1s.items():
        summary = {
            "benchmark": "small_data_findclips",
            "segment_on": mode,
            "relabeller": relabeller,
            "seeds": len(scores),
            "f1_after_per_seed": scores,
            "f1_after_mean": round(statistics.fmean(scores), 3),
            "quick": args.quick,
        }
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
