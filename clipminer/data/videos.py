"""Video datasets: UCF-101 official splits and folder-per-class trees.

Videos are decoded on the fly by clipminer's PyAV decoder inside DataLoader
workers, at the model's frame rate and a short side slightly above the crop size;
no pre-extraction to JPEG. :func:`prepare_videos` optionally writes a cache of
every video re-encoded at that frame rate and size, so epochs do not re-decode
full-resolution files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from clipminer.config import ClipSpec
from clipminer.decode import VideoReader, probe
from clipminer.encode import VideoWriter
from clipminer.errors import ClipminerError, DecodeError, UsageError
from clipminer.sampling import (
    random_window_start,
    uniform_window_starts,
    window_indices,
)
from clipminer.transforms import jitter_colour, normalize, random_resized_crop_box

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
     ".ts", ".mts", ".m2ts", ".ogv"}
)  # fmt: skip
"""File suffixes taken for videos without probing (every part of clipminer uses this)."""


@dataclass(frozen=True)
class VideoItem:
    """One labelled video file."""

    path: Path
    label: int
    relative: str
    """Path relative to the dataset root (the UCF-101 list entry); names the cache file."""
    duration_seconds: float | None = None


@dataclass
class VideoSet:
    """Labelled videos split into training and validation (or test) parts."""

    labels: tuple[str, ...]
    train: list[VideoItem]
    val: list[VideoItem]
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    """Videos skipped because they could not be opened, with the reason."""
    missing: list[Path] = field(default_factory=list)
    """Videos named by a split file that do not exist."""


# -- UCF-101 --------------------------------------------------------------------------

_UCF_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)\.\w+$")


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise UsageError(f"{path}: split file not found")
    text = path.read_bytes().decode("utf-8-sig")
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_class_index(path: Path) -> tuple[str, ...]:
    """``classInd.txt``: lines ``<1-based index> <ClassName>`` in index order."""
    names: dict[int, str] = {}
    for number, line in enumerate(_lines(path), start=1):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise UsageError(f"{path}:{number}: expected '<index> <ClassName>', got {line!r}")
        names[int(parts[0])] = parts[1]
    if sorted(names) != list(range(1, len(names) + 1)):
        raise UsageError(f"{path}: class indices must run 1..{len(names)} without gaps")
    return tuple(names[i] for i in range(1, len(names) + 1))


def _read_list(path: Path, labels: tuple[str, ...], *, with_index: bool) -> list[tuple[str, int]]:
    entries = []
    for number, line in enumerate(_lines(path), start=1):
        parts = line.replace("\\", "/").split()
        relative = parts[0]
        folder = relative.split("/")[0]
        if folder not in labels:
            raise UsageError(f"{path}:{number}: class {folder!r} is not in classInd.txt")
        label = labels.index(folder)
        if with_index and len(parts) > 1:
            given = int(parts[1])
            if given != label + 1:
                raise UsageError(
                    f"{path}:{number}: {relative} is listed as class {given} "
                    f"({labels[given - 1] if 0 < given <= len(labels) else '?'}) but classInd.txt "
                    f"says {folder} is {label + 1}: split file mismatch"
                )
        entries.append((relative, label))
    return entries


def read_ucf101(
    root: str | os.PathLike[str], splits: str | os.PathLike[str], split: int
) -> VideoSet:
    """The official UCF-101 split ``split`` (1, 2 or 3).

    Args:
        root: folder with ``<Class>/v_<Class>_gXX_cYY.avi``.
        splits: folder with ``classInd.txt``, ``trainlistNN.txt``, ``testlistNN.txt``
            (1-based indices; CRLF line endings are fine).
        split: which of the three splits.

    Raises:
        UsageError: a split file is missing or malformed, disagrees with classInd,
            or a class folder is missing under ``root``.
    """
    root, splits_dir = Path(root), Path(splits)
    if split not in (1, 2, 3):
        raise UsageError(f"--split must be 1, 2 or 3, got {split}")
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    labels = read_class_index(splits_dir / "classInd.txt")
    train = _read_list(splits_dir / f"trainlist{split:02d}.txt", labels, with_index=True)
    test = _read_list(splits_dir / f"testlist{split:02d}.txt", labels, with_index=False)
    used = {labels[label] for _, label in train + test}
    absent = sorted(name for name in used if not (root / name).is_dir())
    if absent:
        raise UsageError(
            f"{root}: class folder(s) missing: {absent[:5]}{' ...' if len(absent) > 5 else ''} "
            f"({len(absent)} of {len(used)})"
        )
    result = VideoSet(labels=labels, train=[], val=[])
    for entries, target in ((train, result.train), (test, result.val)):
        for relative, label in entries:
            path = root / relative
            if path.is_file():
                target.append(VideoItem(path, label, relative))
            else:
                result.missing.append(path)
    if result.missing:
        log.warning("%s: %d videos named in the split files are missing", root, len(result.missing))
    return result


# -- folder-per-class trees -------------------------------------------------------------


def scan_video_folder(
    root: str | os.PathLike[str], *, labels: tuple[str, ...] | None = None
) -> tuple[tuple[str, ...], list[VideoItem], dict[str, int]]:
    """Videos under ``root/<class>/`` (recursively, by suffix).

    Returns:
        The labels (sorted folder names unless given), the items, and the counts of
        class folders not in ``labels``.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UsageError(f"{root}: no class folders (expected {root}/<class>/<video>)")
    labels = tuple(p.name for p in folders) if labels is None else labels
    items, unknown = [], {}
    for folder in folders:
        files = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".")
        )
        if folder.name not in labels:
            unknown[folder.name] = len(files)
            continue
        label = labels.index(folder.name)
        items += [VideoItem(p, label, p.relative_to(root).as_posix()) for p in files]
    return labels, items, unknown


def split_by_name(
    items: list[VideoItem], val_fraction: float
) -> tuple[list[VideoItem], list[VideoItem]]:
    """Deterministic stratified split keyed on each file's relative path."""
    if not 0 < val_fraction < 1:
        raise UsageError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    train, val = [], []
    groups: dict[int, list[VideoItem]] = {}
    for item in items:
        groups.setdefault(item.label, []).append(item)
    for group in groups.values():
        keyed = sorted(group, key=lambda i: hashlib.sha256(i.relative.encode()).hexdigest())
        cut = min(len(keyed) - 1, max(1, round(len(keyed) * val_fraction))) if len(keyed) > 1 else 0
        val += keyed[:cut]
        train += keyed[cut:]
    return train, val


def check_readable(items: list[VideoItem], unreadable: list[tuple[Path, str]]) -> list[VideoItem]:
    """Probe every video; drop (and record) those that cannot be opened."""
    kept = []
    for item in items:
        try:
            info = probe(item.path)
        except DecodeError as exc:
            unreadable.append((item.path, str(exc)))
            log.warning("skipped: %s", exc)
            continue
        kept.append(VideoItem(item.path, item.label, item.relative, info.duration_seconds))
    return kept


# -- clips ----------------------------------------------------------------------------


def decode_frames(
    path: Path, spec: ClipSpec, *, limit: int | None = None, short_side: int | None = None
) -> np.ndarray:
    """uint8 T×H×W×3 frames at ``spec.frame_rate`` (the first ``limit`` when given)."""
    frames = []
    with VideoReader(
        path, sample_fps=spec.frame_rate, short_side=short_side or spec.short_side
    ) as reader:
        for frame in reader:
            frames.append(frame.pixels)
            if limit is not None and len(frames) >= limit:
                break
    if not frames:
        raise DecodeError(f"{path}: no frames")
    return np.stack(frames)


def to_clip_tensor(frames: np.ndarray, spec: ClipSpec) -> torch.Tensor:
    """uint8 RGB T×H×W×3 (already cropped) -> float C×T×H×W, as ``spec``'s model takes it
    (channel order, value scale, mean and std)."""
    return _normalise(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2), spec)


def _normalise(frames: torch.Tensor, spec: ClipSpec) -> torch.Tensor:
    """uint8 RGB T×C×H×W -> float C×T×H×W, normalised as ``spec`` says."""
    pixels = normalize(frames, spec.mean, spec.std, channels=spec.channels, scale=spec.scale)
    return pixels.transpose(0, 1).contiguous()


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Crop the centre ``size``×``size`` of T×H×W×C frames."""
    _, h, w, _ = frames.shape
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return frames[:, top : top + size, left : left + size]


@dataclass(frozen=True)
class ClipAugment:
    """Random changes applied to each training clip (one draw shared by its frames)."""

    clips_per_video: int = 1
    """Randomly placed windows taken from each video per epoch."""
    crop_scale: float = 1.0
    """Smallest share of the frame's area a random resized crop covers; 1: a plain
    random crop of the model's size."""
    hflip: bool = False
    color_jitter: float = 0.0
    """Brightness, contrast and saturation factors drawn from 1 ± this."""

    def __post_init__(self) -> None:
        if self.clips_per_video < 1 or not 0 < self.crop_scale <= 1 or self.color_jitter < 0:
            raise UsageError(f"bad clip augmentation: {self}")

    def apply(self, frames: np.ndarray, size: int, rng: np.random.Generator) -> torch.Tensor:
        """uint8 T×H×W×3 -> uint8 T×C×``size``×``size``, augmented."""
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        _, _, h, w = video.shape
        if self.crop_scale < 1:
            top, left, ch, cw = random_resized_crop_box(h, w, scale=(self.crop_scale, 1.0), rng=rng)
            video = TF.resized_crop(video, top, left, ch, cw, [size, size], antialias=True)
        else:
            top = int(rng.integers(0, max(0, h - size) + 1))
            left = int(rng.integers(0, max(0, w - size) + 1))
            video = video[:, :, top : top + size, left : left + size]
        if self.hflip and rng.random() < 0.5:
            video = video.flip(-1)
        return jitter_colour(video, self.color_jitter, rng)


class ClipDataset(Dataset[tuple[torch.Tensor, int]]):
    """Clips of labelled videos.

    Training (``clips_per_video=None``): ``augment.clips_per_video`` items per video,
    each one random window of ``clip_len`` frames at ``frame_rate`` with one random
    crop (and flip, colour change) shared by every frame. Evaluation:
    ``clips_per_video`` windows spread uniformly, centre crop; items are K×C×T×H×W.
    Videos shorter than a window are padded by repeating frames. A video that fails
    to decode is logged and replaced by the next one.
    """

    def __init__(
        self,
        items: list[VideoItem],
        spec: ClipSpec,
        *,
        clips_per_video: int | None = None,
        augment: ClipAugment | None = None,
        cache: VideoCache | None = None,
        seed: int = 0,
    ) -> None:
        self.items = items
        self.spec = spec
        self.clips_per_video = clips_per_video
        self.augment = augment or ClipAugment()
        self.cache = cache
        self.seed = seed

    def __len__(self) -> int:
        if self.clips_per_video is None:
            return len(self.items) * self.augment.clips_per_video
        return len(self.items)

    def _source(self, item: VideoItem) -> Path:
        if self.cache is not None:
            return self.cache.lookup(item) or item.path
        return item.path

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.clips_per_video is None:
            index //= self.augment.clips_per_video
        for attempt in range(len(self.items)):
            item = self.items[(index + attempt) % len(self.items)]
            try:
                return self._load(item), item.label
            except DecodeError as exc:
                log.warning("skipped at load time: %s", exc)
        raise ClipminerError("no video of the dataset could be decoded")

    def _load(self, item: VideoItem) -> torch.Tensor:
        spec = self.spec
        if self.clips_per_video is None:
            rng = np.random.default_rng([self.seed, int(torch.randint(0, 2**31, ()).item())])
            estimate = round((item.duration_seconds or 0) * spec.frame_rate)
            start = random_window_start(estimate, spec.clip_len, rng) if estimate else 0
            frames = decode_frames(self._source(item), spec, limit=start + spec.clip_len)
            start = min(start, max(0, len(frames) - spec.clip_len))
            frames = frames[window_indices(len(frames), spec.clip_len, start)]
            return _normalise(self.augment.apply(frames, spec.size, rng), spec)
        frames = center_crop(decode_frames(self._source(item), spec), spec.size)
        starts = uniform_window_starts(len(frames), spec.clip_len, self.clips_per_video)
        clips = [
            to_clip_tensor(frames[window_indices(len(frames), spec.clip_len, s)], spec)
            for s in starts
        ]
        return torch.stack(clips)


# -- cache ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoCache:
    """Videos re-encoded once at a training frame rate and short side."""

    root: Path
    frame_rate: float
    short_side: int

    def path_for(self, item: VideoItem) -> Path:
        return self.root / "videos" / f"{item.relative}.mp4"

    def lookup(self, item: VideoItem) -> Path | None:
        path = self.path_for(item)
        return path if path.is_file() else None

    @classmethod
    def open(cls, root: str | os.PathLike[str], spec: ClipSpec) -> VideoCache:
        """Open a cache made by :func:`prepare_videos`; it must match ``spec``."""
        root = Path(root)
        meta_path = root / "cache.json"
        if not meta_path.is_file():
            raise UsageError(
                f"{root}: not a clipminer video cache (no cache.json); run prepare-videos"
            )
        meta = json.loads(meta_path.read_text())
        cache = cls(root, float(meta["frame_rate"]), int(meta["short_side"]))
        if cache.frame_rate != spec.frame_rate or cache.short_side != spec.short_side:
            raise UsageError(
                f"{root}: cache holds {cache.frame_rate:g} fps, short side {cache.short_side}; "
                f"training wants {spec.frame_rate:g} fps, short side {spec.short_side}"
            )
        return cache


def prepare_videos(
    items: list[VideoItem],
    out: str | os.PathLike[str],
    spec: ClipSpec,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int, list[tuple[Path, str]]]:
    """Re-encode each video once at ``spec``'s frame rate and short side.

    Existing cache files are kept (re-running resumes). Returns (written, kept,
    failed with reasons).
    """
    from clipminer.report import write_json

    out = Path(out)
    cache = VideoCache(out, spec.frame_rate, spec.short_side)
    meta_path = out / "cache.json"
    if meta_path.is_file():
        VideoCache.open(out, spec)  # refuses a cache made with other settings
    else:
        write_json(meta_path, {"frame_rate": spec.frame_rate, "short_side": spec.short_side})
    written = kept = 0
    failed: list[tuple[Path, str]] = []
    for done, item in enumerate(items, start=1):
        target = cache.path_for(item)
        if target.is_file():
            kept += 1
        else:
            try:
                frames = decode_frames(item.path, spec)
                _, h, w, _ = frames.shape
                with VideoWriter(
                    target, fps=spec.frame_rate, size=(h, w), crf=18, preset="veryfast"
                ) as writer:
                    for pixels in frames:
                        writer.write(pixels)
                written += 1
            except DecodeError as exc:
                failed.append((item.path, str(exc)))
                log.warning("not cached: %s", exc)
        if progress:
            progress(done, len(items))
    return written, kept, failed
