"""The clipminer checkpoint: one file, loadable with ``torch.load(weights_only=True)``.

A bundle carries what inference needs besides the weights (labels, input size,
mean and std, clip length and frame rate for video), so that preprocessing is
rebuilt from the checkpoint and never from constants at the call site. On disk it
is a dict of plain types and tensors:

``format`` ("clipminer/1"), ``kind`` ("image" or "video"), ``arch``, ``labels``,
``input`` (size, mean, std, clip_len, frame_rate), ``state_dict``, ``metrics``,
``config``, ``clipminer_version``; optionally ``precision``, a low-precision version of the
weights made by ``clipminer quantize`` (:meth:`clipminer.precision.PreparedModel.state`:
plain dicts and tensors, so it loads weights-only too); optionally ``open_set``, the class
prototypes and calibrated threshold of open-set decisions
(:meth:`clipminer.openset.OpenSet.to_dict`).
"""

from __future__ import annotations

import functools
import itertools
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from clipminer import __version__, store
from clipminer.config import Channels, ClipSpec
from clipminer.devices import to_channels_last
from clipminer.errors import BundleError, UsageError
from clipminer.fsutil import atomic_path

FORMAT = "clipminer/1"
Kind = Literal["image", "video"]
_KEYS = ("format", "kind", "arch", "labels", "input", "state_dict", "metrics", "config")


@dataclass(frozen=True)
class InputSpec:
    """How a model's input must be prepared."""

    size: tuple[int, int]
    """(height, width) in pixels."""
    mean: tuple[float, float, float]
    """Per-channel mean, in ``channels`` order, of pixels scaled to 0..``scale``."""
    std: tuple[float, float, float]
    clip_len: int | None = None
    """Frames per clip (video models only)."""
    frame_rate: float | None = None
    """Frames per second that clips are sampled at (video models only)."""
    crop_fraction: float = 0.875
    """Share of the resized frame the centre crop keeps: images are resized so that
    ``size / crop_fraction`` is covered, video frames to a short side of
    ``size / crop_fraction`` (128 for 112), then cropped. Bundles written before this
    field existed get 0.875, what clipminer always used."""
    channels: Channels = "RGB"
    """Channel order the model takes ("BGR" for Caffe-trained weights such as C3D
    Sports-1M). Bundles written before this field existed get "RGB"."""
    scale: float = 1.0
    """Pixels are scaled to 0..scale before the mean is subtracted: 1.0, or 255.0 for
    Caffe-style weights. Bundles written before this field existed get 1.0."""

    def clip_spec(self) -> ClipSpec:
        """The clip settings a video model was trained with (its clips are made so)."""
        if self.clip_len is None or self.frame_rate is None:
            raise UsageError("not a video model input: clip_len and frame_rate are missing")
        return ClipSpec(
            clip_len=self.clip_len,
            frame_rate=self.frame_rate,
            size=self.size[0],
            mean=self.mean,
            std=self.std,
            crop_fraction=self.crop_fraction,
            channels=self.channels,
            scale=self.scale,
        )

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"size must be (height, width), got {self.size!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values, std > 0: {self.mean!r}, {self.std!r}")
        if not 0 < self.crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction!r}")
        if self.channels not in ("RGB", "BGR"):
            raise ValueError(f"channels must be 'RGB' or 'BGR', got {self.channels!r}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive (1.0 or 255.0), got {self.scale!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "mean": list(self.mean),
            "std": list(self.std),
            "clip_len": self.clip_len,
            "frame_rate": self.frame_rate,
            "crop_fraction": self.crop_fraction,
            "channels": self.channels,
            "scale": self.scale,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        return cls(
            size=(int(data["size"][0]), int(data["size"][1])),
            mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
            clip_len=None if data.get("clip_len") is None else int(data["clip_len"]),
            frame_rate=None if data.get("frame_rate") is None else float(data["frame_rate"]),
            crop_fraction=float(data.get("crop_fraction", 0.875)),
            channels=str(data.get("channels", "RGB")),  # type: ignore[arg-type]
            scale=float(data.get("scale", 1.0)),
        )


@dataclass(frozen=True, repr=False)
class Bundle:
    """A trained model with everything inference needs."""

    kind: Kind
    arch: str
    labels: tuple[str, ...]
    input: InputSpec
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    clipminer_version: str = __version__
    precision: dict[str, Any] | None = None
    """What ``clipminer quantize`` chose and made (mode, backend, quantized weights), or
    None for a plain fp32 bundle."""
    open_set: dict[str, Any] | None = None
    """Class prototypes and the calibrated threshold of open-set decisions
    (:meth:`clipminer.openset.OpenSet.to_dict`), or None (decisions by score alone)."""
    source: str = field(default="", compare=False)
    """Where the bundle was loaded from (for messages; never saved)."""

    def __post_init__(self) -> None:
        if self.kind not in ("image", "video"):
            raise ValueError(f"kind must be 'image' or 'video', got {self.kind!r}")
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be non-empty and unique, got {self.labels!r}")
        if self.kind == "video" and not self.input.clip_len:
            raise ValueError("a video bundle needs input.clip_len")

    def __repr__(self) -> str:
        params = sum(t.numel() for t in self.state_dict.values())
        return (
            f"Bundle(kind={self.kind!r}, arch={self.arch!r}, labels={len(self.labels)}, "
            f"input={self.input}, tensors={len(self.state_dict)}, params={params:,}, "
            f"version={self.clipminer_version!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kind": self.kind,
            "arch": self.arch,
            "labels": list(self.labels),
            "input": self.input.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
            "metrics": self.metrics,
            "config": self.config,
            "clipminer_version": self.clipminer_version,
            **({} if self.precision is None else {"precision": self.precision}),
            **({} if self.open_set is None else {"open_set": self.open_set}),
        }


def build_from_bundle(
    bundle: Bundle,
    builders: Mapping[str, Callable[..., torch.nn.Module]],
    *,
    share_weights: bool = False,
) -> torch.nn.Module:
    """Build ``bundle.arch`` from ``builders`` and load its weights, in eval mode.

    With ``share_weights`` the network is built without initialising weights (on the
    meta device) and takes the bundle's own tensors: one copy of the weights in memory
    instead of two, and no random initialisation to throw away. The model and
    ``bundle.state_dict`` then share storage, so use it only for inference. A network
    with tensors the bundle does not hold (non-persistent buffers) is built normally.

    Raises:
        BundleError: the arch is unknown here, or the tensors do not fit it (for
            example labels that do not match the classifier's size); the message names
            the bundle's path.
    """
    name = f"{bundle.source}: " if bundle.source else ""
    if bundle.arch not in builders:
        raise BundleError(
            f"{name}unknown {bundle.kind} arch {bundle.arch!r} (known: {', '.join(builders)})"
        )
    build = functools.partial(builders[bundle.arch], num_classes=len(bundle.labels))
    try:
        if share_weights:
            with torch.device("meta"):
                model = build()
            model.load_state_dict(bundle.state_dict, assign=True)
            tensors = itertools.chain(model.parameters(), model.buffers())
            if not any(tensor.is_meta for tensor in tensors):
                return model.eval()
        model = build()
        model.load_state_dict(bundle.state_dict)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise BundleError(
            f"{name}weights do not fit {bundle.arch} with {len(bundle.labels)} labels "
            f"({first[0].strip()[:200]})"
        ) from None
    return model.eval()


def inference_network(
    bundle: Bundle,
    builders: Mapping[str, Callable[..., torch.nn.Module]],
    device: torch.device,
) -> torch.nn.Module:
    """The bundle's network on ``device``, channels-last, in eval mode, with the only copy
    of the weights: ``bundle.state_dict`` is re-pointed at the network's tensors.

    Measured on r2plus1d_18: 118 MiB less resident memory than a built network beside
    its loaded bundle. On the CPU the weights stay mapped from the bundle's file
    (:func:`safe_load`) where they were saved channels-last, as training saves them.
    """
    model = build_from_bundle(bundle, builders, share_weights=True)
    model = to_channels_last(model.to(device))
    bundle.state_dict.update(model.state_dict())
    return model


def save_bundle(bundle: Bundle, path: str | os.PathLike[str]) -> Path:
    """Write ``bundle`` to ``path`` atomically and check that it loads back safely."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(bundle.to_dict(), tmp)
        _load_dict(tmp, shown_as=path)  # refuse to publish what could not be loaded
    return path


def _unpickler_detail(message: str) -> str:
    """The one informative sentence of torch's long weights-only refusal."""
    marker = "WeightsUnpickler error:"
    if marker in message:
        message = message.split(marker, 1)[1]
    return message.strip().split(". ")[0].splitlines()[0][:200]


def safe_load(path: str | os.PathLike[str], *, shown_as: str | Path | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, every failure a BundleError.

    The tensors are mapped from the file, not read into memory: until something writes
    to them (a private mapping; the file never changes) their pages are the page
    cache's, shared by every process that loads the same bundle. A network built with
    :func:`inference_network` runs on them as they are (measured: peak anonymous memory
    of the hour's find-clips 669-684 MiB instead of 886-894, at the same speed). Files
    in torch's legacy format, which cannot be mapped, are read.

    Args:
        path: the file to read.
        shown_as: the name to use in messages (defaults to ``path``).
    """
    path = Path(path)
    shown_as = shown_as or path
    if not path.is_file():
        raise BundleError(f"{shown_as}: no such file")
    try:
        # torch's zip format can be mapped; its legacy format only read
        mapped = zipfile.is_zipfile(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mapped)
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(str(exc))
        if "global" in detail.lower():
            raise BundleError(
                f"{shown_as}: refused, it holds Python objects that only arbitrary "
                f"unpickling could load ({detail})"
            ) from None
        raise BundleError(f"{shown_as}: not a PyTorch checkpoint ({detail})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise BundleError(f"{shown_as}: not a PyTorch checkpoint ({exc})") from None


def _load_dict(path: Path, *, shown_as: str | Path) -> dict[str, Any]:
    data = safe_load(path, shown_as=shown_as)
    if not isinstance(data, dict):
        raise BundleError(f"{shown_as}: not a clipminer bundle (holds {type(data).__name__})")
    return data


def _with_article(kind: object) -> str:
    return f"an {kind}" if kind == "image" else f"a {kind}"


def load_bundle(path: str | os.PathLike[str], *, kind: Kind | None = None) -> Bundle:
    """Load a bundle with ``torch.load(weights_only=True)``; tensors land on the CPU.

    Args:
        path: the checkpoint file.
        kind: when given, refuse a bundle of the other kind.

    Raises:
        BundleError: the file is missing, not a checkpoint, needs arbitrary
            unpickling, is not a clipminer bundle, or is of the wrong kind.
    """
    path = store.local_or_url(path)
    if isinstance(path, str):  # a URL: fetched once per machine, kept by content hash
        url = path
        path = store.local_model(url)
        shown: str | Path = store.redact(url)
    else:
        path = shown = Path(path)
    return _bundle_of(_load_dict(path, shown_as=shown), shown, kind)


def _bundle_of(data: dict[str, Any], path: str | Path, kind: Kind | None) -> Bundle:
    """The :class:`Bundle` in a loaded checkpoint; ``path`` names it in messages."""
    if data.get("format") != FORMAT:
        found = data.get("format")
        hint = "a plain state dict?" if found is None else f"format {found!r}"
        raise BundleError(f"{path}: not a clipminer bundle ({hint}; expected {FORMAT!r})")
    missing = [key for key in _KEYS if key not in data]
    if missing:
        raise BundleError(f"{path}: incomplete clipminer bundle, missing {missing}")
    if kind is not None and data["kind"] != kind:
        raise BundleError(
            f"{path}: is {_with_article(data['kind'])} model, expected {_with_article(kind)} model"
        )
    precision = data.get("precision")
    if precision is not None and not isinstance(precision, dict):
        raise BundleError(f"{path}: malformed clipminer bundle (precision is not a table)")
    open_set = data.get("open_set")
    if open_set is not None and not isinstance(open_set, dict):
        raise BundleError(f"{path}: malformed clipminer bundle (open_set is not a table)")
    try:
        return Bundle(
            kind=data["kind"],
            arch=str(data["arch"]),
            labels=tuple(str(label) for label in data["labels"]),
            input=InputSpec.from_dict(data["input"]),
            state_dict=dict(data["state_dict"]),
            metrics=dict(data["metrics"]),
            config=dict(data["config"]),
            clipminer_version=str(data.get("clipminer_version", "unknown")),
            precision=precision,
            open_set=open_set,
            source=str(path),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BundleError(f"{path}: malformed clipminer bundle ({exc})") from None
