"""I3D inflation (Carreira and Zisserman 2017): a 2D image network becomes a 3D one.

Every k×k kernel becomes t×k×k, its weights repeated over time and divided by t, so
a clip of one repeated frame gives the 2D network's activations at every layer and
its logits. Time is padded by repeating the edge frames (never zeros) and pooled by
averaging, which keeps that property exact; BatchNorm, the classifier and every
other tensor carry over unchanged. State-dict names are those of the 2D network, so
a 2D state dict maps onto its 3D network name by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from clipminer.labels import label_key


class TimeConv3d(nn.Conv3d):
    """A Conv3d whose time axis is padded by repeating the first and last frames."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: tuple[int, int, int],
        *,
        stride: tuple[int, int, int],
        space_padding: tuple[int, int],
        bias: bool,
    ) -> None:
        super().__init__(cin, cout, kernel, stride=stride, padding=(0, *space_padding), bias=bias)
        self.time_padding = kernel[0] // 2

    def forward(self, x: Tensor) -> Tensor:
        p = self.time_padding
        if p:
            x = F.pad(x, (0, 0, 0, 0, p, p), mode="replicate")
        return super().forward(x)


class TimeAvgPool3d(nn.AvgPool3d):
    """Average pooling that pads an odd time axis by repeating the last frame, so any
    clip length pools (a one-frame clip stays one frame)."""

    def forward(self, x: Tensor) -> Tensor:
        stride = self.stride if isinstance(self.stride, int) else self.stride[0]
        if stride > 1 and x.shape[2] % stride:
            x = F.pad(x, (0, 0, 0, 0, 0, stride - x.shape[2] % stride), mode="replicate")
        return super().forward(x)


@dataclass(frozen=True)
class TimePlan:
    """How one 2D layer extends over time."""

    kernel: int = 1
    """Frames the kernel spans (convolutions; pools always span ``stride`` frames)."""
    stride: int = 1
    """Time stride (time is downsampled where this is above 1)."""


Planner = Callable[[str, nn.Module], TimePlan]
"""Gives the :class:`TimePlan` of a 2D layer from its qualified name and the layer."""


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _inflate_layer(layer: nn.Module, plan: TimePlan) -> nn.Module | None:
    """The 3D counterpart of a 2D layer, or None when ``layer`` has no spatial axes."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1 or layer.dilation not in ((1, 1), 1):
            raise ValueError(f"cannot inflate a grouped or dilated convolution: {layer}")
        return TimeConv3d(
            layer.in_channels,
            layer.out_channels,
            (plan.kernel, *_pair(layer.kernel_size)),
            stride=(plan.stride, *_pair(layer.stride)),
            space_padding=_pair(layer.padding),  # type: ignore[arg-type]
            bias=layer.bias is not None,
        )
    if isinstance(layer, nn.BatchNorm2d):
        return nn.BatchNorm3d(layer.num_features, layer.eps, layer.momentum, layer.affine)
    if isinstance(layer, nn.MaxPool2d):
        if plan.stride != 1:
            raise ValueError("max pools keep time (their time stride must be 1)")
        return nn.MaxPool3d(
            (1, *_pair(layer.kernel_size)),
            (1, *_pair(layer.stride)),
            (0, *_pair(layer.padding)),
            ceil_mode=layer.ceil_mode,
        )
    if isinstance(layer, nn.AvgPool2d):
        return TimeAvgPool3d(
            (plan.stride, *_pair(layer.kernel_size)),
            (plan.stride, *_pair(layer.stride)),
            (0, *_pair(layer.padding)),
            ceil_mode=layer.ceil_mode,
            count_include_pad=layer.count_include_pad,
        )
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool3d(1)
    return None


def inflate_modules(model: nn.Module, planner: Planner, prefix: str = "") -> nn.Module:
    """Replace every 2D layer of ``model`` by its 3D counterpart, in place.

    Convolutions, BatchNorm, max, average and global pools are replaced; the new
    layers are freshly initialised (load weights with :func:`inflate_state_dict`).

    Args:
        model: a 2D network whose forward uses modules (not functional 2D pools).
        planner: time kernel and stride of each layer, by qualified name.
    """
    for name, child in model.named_children():
        qualified = f"{prefix}{name}"
        inflated = _inflate_layer(child, planner(qualified, child))
        if inflated is None:
            inflate_modules(child, planner, f"{qualified}.")
        else:
            model.register_module(name, inflated)
    return model


def inflate_state_dict(
    state: dict[str, Tensor], target: dict[str, Tensor], *, skip: tuple[str, ...] = ()
) -> dict[str, Tensor]:
    """The 2D ``state`` reshaped for a 3D network whose state dict is ``target``.

    A 4D kernel whose 3D counterpart spans t frames is repeated over time and divided
    by t; every other tensor is copied. Names under ``skip`` (the head) and names the
    target does not have are left out.

    Raises:
        ValueError: a tensor that neither matches nor inflates to the target's shape.
    """
    out: dict[str, Tensor] = {}
    for name, value in state.items():
        if name not in target or name.startswith(skip):
            continue
        want = target[name].shape
        if value.ndim == 4 and len(want) == 5 and value.shape == want[:2] + want[3:]:
            frames = want[2]
            value = value.unsqueeze(2).repeat(1, 1, frames, 1, 1) / frames
        elif value.shape != want:
            raise ValueError(f"{name}: {tuple(value.shape)} does not inflate to {tuple(want)}")
        out[name] = value
    return out


def match_labels(
    image_labels: tuple[str, ...], video_labels: tuple[str, ...]
) -> list[tuple[int, int]]:
    """(image row, video row) pairs of the classes both models have, matched by
    :func:`~clipminer.labels.label_key` ("SlidingLeft" meets "sliding_left")."""
    image_rows = {label_key(label): row for row, label in enumerate(image_labels)}
    return [
        (image_rows[label_key(label)], row)
        for row, label in enumerate(video_labels)
        if label_key(label) in image_rows
    ]


@torch.no_grad()
def copy_head_rows(
    head: nn.Linear, state: dict[str, Tensor], prefix: str, rows: list[tuple[int, int]]
) -> None:
    """Copy the 2D classifier's rows into ``head`` for the matched classes.

    Args:
        head: the 3D network's classifier (its other rows keep their fresh init).
        state: the 2D state dict holding ``{prefix}weight`` and ``{prefix}bias``.
        rows: (2D row, 3D row) pairs from :func:`match_labels`.
    """
    weight, bias = state[f"{prefix}weight"], state[f"{prefix}bias"]
    if weight.shape[1] != head.in_features:
        raise ValueError(
            f"the image classifier takes {weight.shape[1]} features, this one {head.in_features}"
        )
    for source, target in rows:
        head.weight[target] = weight[source]
        head.bias[target] = bias[source]
