"""Shared test helpers: tiny untrained models, short synthetic videos, a batch config."""

from __future__ import annotations

from pathlib import Path

import torch

from clipminer import synth
from clipminer.batch import BatchConfig
from clipminer.findclips import FindClipsConfig
from clipminer.models import image, video
from clipminer.models.bundle import Bundle, InputSpec, save_bundle
from clipminer.segments import SegmentConfig
from clipminer.transforms import IMAGENET_MEAN, IMAGENET_STD

LABELS = tuple(sorted(synth.LABELS))


def save_tiny_models(root: Path) -> tuple[Path, Path]:
    """Untrained tiny image and video bundles (32 px): bookkeeping tests do not depend on
    accuracy, and in action mode their near-uniform scores give segments to cut."""
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    image_model = image.build("resnet18", num_classes=len(LABELS))
    save_bundle(
        Bundle(
            "image",
            "resnet18",
            LABELS,
            InputSpec((32, 32), IMAGENET_MEAN, IMAGENET_STD),
            image_model.state_dict(),
        ),
        root / "image.pt",
    )
    video_model = video.build("small3d", num_classes=len(LABELS))
    save_bundle(
        Bundle(
            "video",
            "small3d",
            LABELS,
            InputSpec(
                (32, 32), video.KINETICS_MEAN, video.KINETICS_STD, clip_len=4, frame_rate=8.0
            ),
            video_model.state_dict(),
        ),
        root / "video.pt",
    )
    return root / "image.pt", root / "video.pt"


def tiny_findclips_config(**kw: object) -> FindClipsConfig:
    """Action mode with short segments: the tiny models give clips to cut."""
    segment = SegmentConfig(segment_on="action", min_seconds=1.0, max_seconds=4.0)
    return FindClipsConfig(segment=segment, **{"device": "cpu", **kw})  # type: ignore[arg-type]


def batch_config(models: tuple[Path, Path], **kw: object) -> BatchConfig:
    return BatchConfig(
        image_model=str(models[0]),
        video_models=(str(models[1]),),
        findclips=tiny_findclips_config(),
        **kw,  # type: ignore[arg-type]
    )


def make_videos(
    root: Path, count: int = 0, seconds: float = 8.0, *, names: list[str] | None = None
) -> list[Path]:
    """Short synthetic videos (64x48, 10 fps) under ``root``: ``v0.mp4`` ... or ``names``
    (relative paths, any characters; the container follows each name's suffix)."""
    names = names or [f"v{k}.mp4" for k in range(count)]
    made = []
    for k, name in enumerate(names):
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        long = synth.make_long_video(
            root / f"_making{k}{Path(name).suffix or '.mp4'}",
            duration_seconds=seconds,
            size=(48, 64),
            fps=10,
            seed=k,
            action_seconds=(2, 3),
            gap_seconds=(1, 2),
        )
        long.truth_csv.unlink()  # the batch would list it as a skipped non-video
        long.path.rename(target)
        made.append(target)
    return made
