"""Shared test helpers: tiny untrained models, short synthetic videos, a batch config."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from clipminer import synth
from clipminer.batch import BatchConfig
from clipminer.config import VideoFitConfig
from clipminer.data.videos import ClipSpec
from clipminer.findclips import FindClipsConfig
from clipminer.models import image, video
from clipminer.models.bundle import Bundle, InputSpec, save_bundle
from clipminer.segments import SegmentConfig
from clipminer.train import FitConfig
from clipminer.train_image import ImageTrainConfig, ImageTrainResult, train_image
from clipminer.train_video import VideoSource, VideoTrainConfig, VideoTrainResult, train_video
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


TINY_FLAGS = (
    "--segment-on",
    "action",
    "--min-seconds",
    "1",
    "--max-seconds",
    "4",
    "--device",
    "cpu",
)
"""The command-line twin of :func:`tiny_findclips_config`."""


def model_flags(models: tuple[Path, Path]) -> list[str]:
    """``--image-model`` and ``--video-model`` for the tiny bundles."""
    return ["--image-model", str(models[0]), "--video-model", str(models[1])]


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


class TrainedModels(NamedTuple):
    """Small trained bundles and what they were trained on (``models[0]``/``models[1]``
    are the two bundle paths, as with ``tiny_models``)."""

    image: Path
    """resnet18 image bundle (48 px)."""
    video: Path
    """small3d video bundle (8 frames at 12.5 fps, 48 px)."""
    image_result: ImageTrainResult
    video_result: VideoTrainResult
    images: Path
    """The image model's ImageFolder tree (40 images per class, 80×80)."""
    clips: Path
    """The video model's folder-per-class clips (16 per class, 2 s, 80×64, 25 fps)."""


def train_small_models(
    root: Path,
    *,
    labels: tuple[str, ...] = synth.LABELS,
    val_fraction: float = 0.2,
    image_epochs: int = 4,
    video_epochs: int = 12,
    seed: int = 0,
) -> TrainedModels:
    """Train the suite's small image and video models, each on its own synthetic data.

    The image model sees single frames; the video model sees 2-second clips, so it can
    tell the motion-only pair apart. With the defaults (all six classes) about a minute
    and a half on two idle CPU cores; the find-clips quality figures depend on them.
    """
    root.mkdir(parents=True, exist_ok=True)
    images, clips = root / "images", root / "clips"
    synth.make_images(images, per_class=40, size=(80, 80), seed=seed, labels=labels)
    image_result = train_image(
        images,
        root / "image.pt",
        config=ImageTrainConfig(
            arch="resnet18",
            weights="none",
            image_size=48,
            batch_size=16,
            val_fraction=val_fraction,
            workers=2,
            device="cpu",
            fit=FitConfig(epochs=image_epochs, seed=seed),
        ),
    )
    synth.make_clips(
        clips, per_class=16, seconds=2.0, fps=25, size=(64, 80), seed=seed, labels=labels
    )
    video_result = train_video(
        VideoSource(videos=clips, val_fraction=val_fraction),
        root / "video.pt",
        config=VideoTrainConfig(
            arch="small3d",
            clip=ClipSpec(clip_len=8, frame_rate=12.5, size=48),
            batch_size=8,
            workers=2,
            device="cpu",
            fit=VideoFitConfig(
                epochs=video_epochs, lr=3e-3, seed=seed, label_smoothing=0, ema_decay=0
            ),
            # the synthetic clips need no augmentation; one clip per video keeps it quick
            train_clips_per_video=1,
            crop_scale=1.0,
            color_jitter=0.0,
        ),
    )
    return TrainedModels(
        image_result.model_path,
        video_result.model_path,
        image_result,
        video_result,
        images,
        clips,
    )
