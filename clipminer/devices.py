"""Device selection: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

import re

import torch
from torch import nn

from clipminer.errors import UsageError

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(spec: str) -> torch.device:
    """The torch device for a ``--device`` value; ``auto`` picks CUDA when present.

    Raises:
        UsageError: the value is malformed, or names a GPU that is not there.
    """
    if not _DEVICE.match(spec):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: no CUDA GPU is available here (use cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are present"
            )
    return device


def to_channels_last(model: nn.Module) -> nn.Module:
    """Channels-last weights: 4-D ones for 2D convolutions, 5-D ones for 3D convolutions.

    Works for models that mix both (LRCN runs a 2D CNN on video input).
    """
    for param in model.parameters():
        if param.ndim == 4:
            param.data = param.data.contiguous(memory_format=torch.channels_last)
        elif param.ndim == 5:
            param.data = param.data.contiguous(memory_format=torch.channels_last_3d)
    return model
