"""Functional image preprocessing on uint8 tensors, shared by training and inference.

The evaluation transform here is the one the image model is scored with everywhere
(validation, eval-image, find-clips), so that what a model saw in validation is what
it sees in production. Inputs are uint8 ``(..., C, H, W)`` tensors in 0..255.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from clipminer.config import Channels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_FRACTION = 0.875
"""Evaluation crops the centre 87.5 % of the resized image, as torchvision's references do."""


def eval_resize_shape(
    source_hw: tuple[int, int], size: tuple[int, int], crop_fraction: float = CROP_FRACTION
) -> tuple[int, int]:
    """(height, width) to resize a ``source_hw`` image to before the centre crop.

    The aspect ratio is kept and the image covers ``size / crop_fraction`` on both sides.
    """
    height, width = source_hw
    scale = max(size[0] / height, size[1] / width) / crop_fraction
    return max(size[0], math.ceil(height * scale - 1e-6)), max(
        size[1], math.ceil(width * scale - 1e-6)
    )


def resize_center_crop(
    images: Tensor, size: tuple[int, int], crop_fraction: float = CROP_FRACTION
) -> Tensor:
    """Resize (keeping aspect) then crop the centre: uint8 (..., C, H, W) -> (..., C, *size)."""
    resized_hw = eval_resize_shape((images.shape[-2], images.shape[-1]), size, crop_fraction)
    if resized_hw != tuple(images.shape[-2:]):
        images = F.resize(images, list(resized_hw), antialias=True)
    return F.center_crop(images, list(size))


def normalize(
    images: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    channels: Channels = "RGB",
    scale: float = 1.0,
) -> Tensor:
    """uint8 RGB (..., C, H, W) in 0..255 -> float32 standardised per channel.

    Args:
        images: decoded pixels, always RGB.
        mean: per channel, in ``channels`` order, of pixels scaled to 0..``scale``.
        std: the same for the standard deviation.
        channels: "BGR" reverses the channels first (Caffe-trained weights).
        scale: 1.0 feeds 0..1 values, 255.0 the raw 0..255 ones.
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"normalize expects uint8 images, got {images.dtype}")
    if channels not in ("RGB", "BGR"):
        raise ValueError(f"channels must be RGB or BGR, got {channels!r}")
    if channels == "BGR":
        images = images.flip(-3)
    shape = (-1, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(shape)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(shape)
    return (images.float() / (255.0 / scale) - mean_t) / std_t


@dataclass(frozen=True)
class PixelNorm:
    """What a model's weights expect of its pixels: order, value range, mean and std."""

    mean: tuple[float, float, float]
    """Per channel, in ``channels`` order, of pixels scaled to 0..``scale``."""
    std: tuple[float, float, float]
    channels: Channels = "RGB"
    scale: float = 1.0
    """1.0: values in 0..1; 255.0: the raw 0..255 values (Caffe)."""


class ResizeCenterCrop(torch.nn.Module):
    """Module form of :func:`resize_center_crop` (picklable, for DataLoader workers)."""

    def __init__(self, size: tuple[int, int], crop_fraction: float = CROP_FRACTION) -> None:
        super().__init__()
        self.size = size
        self.crop_fraction = crop_fraction

    def forward(self, images: Tensor) -> Tensor:
        return resize_center_crop(images, self.size, self.crop_fraction)


class Normalize(torch.nn.Module):
    """Module form of :func:`normalize`: uint8 in, standardised float32 out."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.mean = tuple(mean)
        self.std = tuple(std)

    def forward(self, images: Tensor) -> Tensor:
        return normalize(images, self.mean, self.std)


def eval_transform(
    size: tuple[int, int], mean: Sequence[float], std: Sequence[float]
) -> v2.Transform:
    """uint8 C×H×W -> float32 C×size: resize, centre crop, normalise."""
    return v2.Compose([ResizeCenterCrop(size), Normalize(mean, std)])


def train_transform(
    size: tuple[int, int], mean: Sequence[float], std: Sequence[float]
) -> v2.Transform:
    """uint8 C×H×W -> float32 C×size with the usual augmentations.

    Random resized crop, horizontal flip, and a mild colour jitter (hue barely moves:
    colour is class evidence in scene-context data).
    """
    return v2.Compose(
        [
            v2.RandomResizedCrop(list(size), scale=(0.35, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.02),
            Normalize(mean, std),
        ]
    )


def random_resized_crop_box(
    height: int,
    width: int,
    *,
    scale: tuple[float, float],
    rng: np.random.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop covering a ``scale`` share of the area
    with an aspect ratio in ``ratio`` (log-uniform), as torchvision's RandomResizedCrop;
    after 10 misses, the largest centred crop of a ratio in range."""
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    h, w = height, min(width, round(height * ratio[1]))
    if w / h < ratio[0]:
        h = min(height, round(width / ratio[0]))
    return (height - h) // 2, (width - w) // 2, h, w


def jitter_colour(frames: Tensor, strength: float, rng: np.random.Generator) -> Tensor:
    """One random brightness, contrast and saturation change for every frame of a clip.

    Args:
        frames: uint8 T×C×H×W.
        strength: each factor is drawn from [1 - strength, 1 + strength].
    """
    if strength <= 0:
        return frames
    brightness, contrast, saturation = (1 + rng.uniform(-strength, strength, 3)).tolist()
    frames = F.adjust_brightness(frames, brightness)
    frames = F.adjust_contrast(frames, contrast)
    return F.adjust_saturation(frames, saturation)
