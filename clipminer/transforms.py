"""Functional image preprocessing on uint8 tensors, shared by training and inference.

The evaluation transform here is the one the image model is scored with everywhere
(validation, eval-image, find-clips), so that what a model saw in validation is what
it sees in production. Inputs are uint8 ``(..., C, H, W)`` tensors in 0..255.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

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


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (..., C, H, W) in 0..255 -> float32 standardised per channel."""
    if images.dtype != torch.uint8:
        raise ValueError(f"normalize expects uint8 images, got {images.dtype}")
    shape = (-1, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(shape)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(shape)
    return (images.float() / 255.0 - mean_t) / std_t


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
