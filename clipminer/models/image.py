"""Image classifiers (torchvision) and the scorer that find-clips runs on frames.

Every architecture is a keyword-only builder in :data:`BUILDERS`; the head is
replaced for the number of classes. :class:`ImageScorer` rebuilds a model and its
preprocessing from a bundle and scores batches of uint8 frames on a device.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.models as tvm
from torch import nn
from torchvision.models import WeightsEnum

from clipminer.config import TrainLayers
from clipminer.devices import resolve_device
from clipminer.errors import BundleError, UsageError
from clipminer.models.bundle import Bundle, build_from_bundle, inference_network, load_bundle
from clipminer.models.features import HeadInputs
from clipminer.models.weights import build_pretrained, load_matching, read_state_dict
from clipminer.precision import GUARD_ITEMS, Runner, for_bundle
from clipminer.transforms import normalize, resize_center_crop


@dataclass(frozen=True)
class ImageArch:
    """What clipminer needs to know about one torchvision architecture."""

    build: Callable[..., nn.Module]
    imagenet: WeightsEnum
    head: str
    """Attribute path of the final Linear layer."""
    last_block: tuple[str, ...]
    """Parameter-name prefixes of the last feature block (for ``--train-layers last-block``)."""


ARCHS: dict[str, ImageArch] = {
    "densenet121": ImageArch(
        tvm.densenet121,
        tvm.DenseNet121_Weights.IMAGENET1K_V1,
        "classifier",
        ("features.denseblock4", "features.norm5"),
    ),
    "densenet161": ImageArch(
        tvm.densenet161,
        tvm.DenseNet161_Weights.IMAGENET1K_V1,
        "classifier",
        ("features.denseblock4", "features.norm5"),
    ),
    "densenet169": ImageArch(
        tvm.densenet169,
        tvm.DenseNet169_Weights.IMAGENET1K_V1,
        "classifier",
        ("features.denseblock4", "features.norm5"),
    ),
    "densenet201": ImageArch(
        tvm.densenet201,
        tvm.DenseNet201_Weights.IMAGENET1K_V1,
        "classifier",
        ("features.denseblock4", "features.norm5"),
    ),
    "resnet18": ImageArch(tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, "fc", ("layer4",)),
    "resnet50": ImageArch(tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2, "fc", ("layer4",)),
    "mobilenet_v3_large": ImageArch(
        tvm.mobilenet_v3_large,
        tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V2,
        "classifier.3",
        ("features.16",),
    ),
}


def _replace_head(model: nn.Module, head: str, num_classes: int) -> None:
    parent_name, _, leaf = head.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = parent.get_submodule(leaf)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"{head} is a {type(old).__name__}, expected Linear")
    # Works for attributes and for numbered children of a Sequential alike.
    parent.register_module(leaf, nn.Linear(old.in_features, num_classes))


def build(arch: str, *, num_classes: int, weights: str = "none") -> nn.Module:
    """Build ``arch`` with a ``num_classes`` head.

    Args:
        arch: a key of :data:`ARCHS`.
        num_classes: size of the new head.
        weights: "none" (random init), "imagenet" (torchvision weights from the hub
            cache or a download), or a path to a torchvision state dict or a clipminer
            bundle; the head is re-initialised when its class count differs.
    """
    spec = _arch(arch)
    if num_classes < 2:
        raise UsageError(f"an image classifier needs at least 2 classes, got {num_classes}")
    if weights == "imagenet":
        model = build_pretrained(spec.build, spec.imagenet, option="imagenet", arch=arch)
        _replace_head(model, spec.head, num_classes)
    elif weights == "none":
        model = spec.build(weights=None)
        _replace_head(model, spec.head, num_classes)
    else:
        model = spec.build(weights=None)
        _replace_head(model, spec.head, num_classes)
        state, source = read_state_dict(weights)
        load_matching(
            model, state, source=f"{weights} ({source})", head_prefixes=(f"{spec.head}.",)
        )
    return model


def _arch(arch: str) -> ImageArch:
    if arch not in ARCHS:
        raise UsageError(f"unknown image architecture {arch!r}; choose from {sorted(ARCHS)}")
    return ARCHS[arch]


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    name: functools.partial(build, name) for name in ARCHS
}
"""Keyword-only builders by name: ``BUILDERS["densenet121"](num_classes=6)``."""


def set_trainable(model: nn.Module, arch: str, layers: TrainLayers) -> int:
    """Freeze all but the chosen layers; return the number of trainable parameters."""
    spec = _arch(arch)
    if layers not in ("all", "last-block", "head"):
        raise UsageError(f"--train-layers must be all, last-block or head, got {layers!r}")
    prefixes = {"all": ("",), "head": (spec.head,), "last-block": (spec.head, *spec.last_block)}
    trainable = 0
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(prefixes[layers])
        trainable += param.numel() if param.requires_grad else 0
    return trainable


def model_from_bundle(bundle: Bundle) -> nn.Module:
    """Rebuild the network of an image bundle, weights loaded, in eval mode."""
    return build_from_bundle(_image_bundle(bundle), BUILDERS)


def _image_bundle(bundle: Bundle) -> Bundle:
    if bundle.kind != "image":
        raise BundleError(
            f"{bundle.source or 'bundle'}: expected an image model, got a {bundle.kind} model"
        )
    return bundle


class ImageScorer:
    """Scores batches of uint8 frames with an image bundle's model and preprocessing.

    Args:
        bundle: a loaded bundle or the path of one.
        device: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
        precision: "auto", "fp32", "bf16" or "int8" (:func:`clipminer.precision.for_bundle`).
        guard: the least top-1 agreement with fp32 of auto's pick on the first frames.
    """

    def __init__(
        self,
        bundle: Bundle | str | os.PathLike[str],
        *,
        device: str = "auto",
        precision: str = "auto",
        guard: float = 0.98,
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, kind="image")
        self.labels = self.bundle.labels
        self.size = self.bundle.input.size
        self.device = resolve_device(device)
        self.model = inference_network(_image_bundle(self.bundle), BUILDERS, self.device)
        self.run: Runner = for_bundle(
            self.model,
            self.bundle,
            precision,
            device=self.device,
            guard=guard,
            guard_items=GUARD_ITEMS["image"],
        )
        """The model at the precision it runs at (``self.run.precision``)."""
        head = ARCHS[self.bundle.arch].head if self.bundle.arch in ARCHS else "fc"
        self.features = HeadInputs(self.run, head)
        """The pooled features of the last batch scored: ``self.features.take()``."""

    def inputs(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Model inputs (normalised, channels-last floats on the device) of uint8 frames.

        Args:
            frames: uint8 B×H×W×3 RGB (any size; resized and centre-cropped like in
                validation).
        """
        batch = torch.as_tensor(frames)
        if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(
                f"frames must be uint8 B×H×W×3, got {batch.dtype} {tuple(batch.shape)}"
            )
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        images = resize_center_crop(
            batch.permute(0, 3, 1, 2), self.size, self.bundle.input.crop_fraction
        )
        inputs = normalize(images, self.bundle.input.mean, self.bundle.input.std)
        return inputs.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class probabilities of each frame (uint8 B×H×W×3 RGB) as float32 B×K,
        K = len(labels)."""
        logits = self.run(self.inputs(frames))
        return torch.softmax(logits.float(), dim=1).cpu().numpy()
