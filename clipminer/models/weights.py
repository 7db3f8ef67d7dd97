"""Pretrained and user-supplied weights: torch hub cache, downloads, local files.

An offline machine uses the torch hub cache; when a file is neither cached nor
downloadable the error names the exact file and the folder to put it in.
"""

from __future__ import annotations

import os
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import WeightsEnum

from clipminer.errors import ClipminerError
from clipminer.models.bundle import InputSpec, load_bundle, safe_load


class WeightsUnavailableError(ClipminerError):
    """Pretrained weights are not cached and cannot be downloaded."""


def hub_cache_file(weights: WeightsEnum) -> Path:
    """Where torchvision keeps (or would download) these weights."""
    name = Path(urlparse(weights.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def build_pretrained(
    builder: Callable[..., nn.Module], weights: WeightsEnum, *, option: str, arch: str
) -> nn.Module:
    """``builder(weights=weights)``: from the hub cache, or downloaded when online.

    Raises:
        WeightsUnavailableError: naming the file, the folder and ``--weights none``.
    """
    cached = hub_cache_file(weights)
    try:
        return builder(weights=weights)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        if cached.exists() and isinstance(exc, RuntimeError):
            raise WeightsUnavailableError(
                f"{cached}: cached {option} weights for {arch} do not load ({exc}); "
                "delete the file and download it again"
            ) from None
        reason = getattr(exc, "reason", exc)
        raise WeightsUnavailableError(
            f"{option} weights for {arch} are not in the torch hub cache and could not be "
            f"downloaded ({reason}). Download {weights.url} and put it at {cached} "
            "(the torch hub cache, $TORCH_HOME/hub/checkpoints), "
            "or train from scratch with --weights none"
        ) from None


@dataclass(frozen=True, repr=False)
class WeightsFile:
    """The tensors of a weights file and what is known of where they came from."""

    state_dict: dict[str, torch.Tensor]
    """Names without a ``module.`` (DataParallel) prefix."""
    description: str
    """"state dict", or "clipminer bundle (ARCH, N labels)"."""
    input: InputSpec | None = None
    """The preprocessing a clipminer bundle records; None for a plain state dict."""

    def __repr__(self) -> str:
        return f"WeightsFile({self.description!r}, tensors={len(self.state_dict)})"


def read_weights(path: str | os.PathLike[str]) -> WeightsFile:
    """A clipminer bundle or a plain state dict (bare, or under ``"state_dict"`` as
    training scripts save it), loaded with weights_only.

    Raises:
        ClipminerError: the file holds something else.
    """
    path = Path(path)
    data = safe_load(path)
    if isinstance(data, dict) and str(data.get("format", "")).startswith("clipminer/"):
        bundle = load_bundle(path)
        description = f"clipminer bundle ({bundle.arch}, {len(bundle.labels)} labels)"
        return WeightsFile(bundle.state_dict, description, bundle.input)
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]  # a common training-script layout
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ClipminerError(f"{path}: not a state dict of tensors")
    return WeightsFile({k.removeprefix("module."): v for k, v in data.items()}, "state dict")


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], str]:
    """Tensors of a clipminer bundle or a plain state dict (:func:`read_weights`).

    Returns:
        The state dict and a description of where it came from.
    """
    found = read_weights(path)
    return found.state_dict, found.description


def load_matching(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    source: str,
    head_prefixes: tuple[str, ...],
) -> list[str]:
    """Load every tensor whose name and shape match; the head may differ, nothing else.

    Returns:
        The names of the model's tensors left at their initial values (the head when
        the class count differs).

    Raises:
        ClipminerError: tensors outside the head are missing or of another shape.
    """
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    left = [k for k in own if k not in usable]
    body_left = [k for k in left if not k.startswith(head_prefixes) and "num_batches" not in k]
    if body_left:
        raise ClipminerError(
            f"{source}: does not fit this architecture; {len(body_left)} tensors missing or of "
            f"another shape, e.g. {body_left[:3]}"
        )
    model.load_state_dict(usable, strict=False)
    return left
