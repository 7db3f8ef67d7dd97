"""Image folders as ``clipminer scrape`` writes them: one folder per class.

``manifest.csv``, hidden files and files that are not images are ignored; images
that cannot be decoded are skipped and counted, never fatal. The train/validation
split is keyed on each file's content hash, so re-runs and added images keep their
assignment, and identical files never straddle the split.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from clipminer.errors import UsageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
# Decompression-bomb guard for training data: refuse images above this many pixels.
Image.MAX_IMAGE_PIXELS = 64_000_000


@dataclass(frozen=True)
class ImageItem:
    """One labelled image file."""

    path: Path
    label: int
    """Index into the dataset's labels."""
    sha256: str
    group: str = ""
    """Images of one group (frames of one video) fall on one side of the split together;
    empty: the image is its own group."""

    @property
    def split_key(self) -> str:
        """What decides the item's side of the train/validation split."""
        return (
            hashlib.sha256(self.group.encode("utf-8", "surrogateescape")).hexdigest()
            if self.group
            else self.sha256
        )


@dataclass
class ImageFolder:
    """The readable images of a folder-per-class tree."""

    root: Path
    labels: tuple[str, ...]
    items: list[ImageItem]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """Files that looked like images but could not be read, with the reason."""
    unknown: dict[str, int] = field(default_factory=dict)
    """Class folders not in the requested labels, with their image counts."""

    def counts(self) -> dict[str, int]:
        """Images per label."""
        counts = dict.fromkeys(self.labels, 0)
        for item in self.items:
            counts[self.labels[item.label]] += 1
        return counts


def _check_image(path: Path, data: bytes) -> str | None:
    """None when ``data`` decodes as an image, else the reason it does not."""
    import io

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (64, 64))  # JPEG: decode at reduced scale, still reads it all
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"not a readable image ({exc})"
    except Image.DecompressionBombError as exc:
        return f"too large ({exc})"
    return None


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_image_folder(
    root: str | os.PathLike[str], *, labels: tuple[str, ...] | None = None
) -> ImageFolder:
    """Find the labelled images under ``root``.

    Args:
        root: a folder with one sub-folder per class.
        labels: the classes to read, in label order; default: every class folder,
            sorted by name. Folders of other classes are counted in ``unknown``.

    Raises:
        UsageError: ``root`` is missing or has no class folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    folders = {p.name: p for p in _class_dirs(root)}
    if not folders:
        raise UsageError(f"{root}: no class folders (expected {root}/<class>/<image>.jpg)")
    labels = tuple(folders) if labels is None else labels
    result = ImageFolder(root=root, labels=labels, items=[])
    for name, folder in folders.items():
        files = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if name not in labels:
            result.unknown[name] = len(files)
            continue
        for path in files:
            data = path.read_bytes()
            problem = _check_image(path, data)
            if problem:
                result.skipped.append((path, problem))
                log.warning("%s: skipped, %s", path, problem)
                continue
            digest = hashlib.sha256(data).hexdigest()
            result.items.append(ImageItem(path, labels.index(name), digest))
    return result


def split_by_hash(
    items: list[ImageItem], val_fraction: float
) -> tuple[list[ImageItem], list[ImageItem]]:
    """Deterministic stratified split: a file (or a group, such as the frames of one
    video) is in validation when its hash is low.

    Each class with at least two files or groups keeps at least one in each part.
    """
    if not 0 <= val_fraction < 1:
        raise UsageError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    train: list[ImageItem] = []
    val: list[ImageItem] = []
    by_label: dict[int, dict[str, list[ImageItem]]] = {}
    for item in items:
        by_label.setdefault(item.label, {}).setdefault(item.split_key, []).append(item)
    for groups in by_label.values():
        keys = sorted(groups)
        # Quantile of the hash, 0..1: stable when files are added or removed.
        in_val = [int(key[:13], 16) / 16**13 < val_fraction for key in keys]
        if val_fraction > 0 and len(keys) >= 2:
            if not any(in_val):
                in_val[0] = True
            if all(in_val):
                in_val[-1] = False
        for key, is_val in zip(keys, in_val, strict=True):
            (val if is_val else train).extend(groups[key])
    return train, val


def load_image(path: Path, *, size_hint: int | None = None) -> torch.Tensor:
    """uint8 3×H×W RGB; JPEGs are decoded at a reduced scale when much larger than needed."""
    with Image.open(path) as image:
        if size_hint:
            image.draft("RGB", (size_hint, size_hint))
        return F.pil_to_tensor(image.convert("RGB"))


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Items as (float C×H×W tensor from ``transform``, label index)."""

    def __init__(self, items: list[ImageItem], transform: v2.Transform, *, size_hint: int) -> None:
        self.items = items
        self.transform = transform
        self.size_hint = size_hint

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.items[index]
        return self.transform(load_image(item.path, size_hint=self.size_hint)), item.label
