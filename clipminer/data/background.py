"""Non-action ("background") training data taken directly from videos and images.

A closed-set classifier always names one of its classes, so find-clips separates actions
from everything else through a background class. That class generalizes only when it is
broad: frames and chunks of many kinds of non-action footage (people talking, streets,
crowds, animals, rooms, night scenes). ``train-image --background SRC`` and
``train-video --background SRC`` take such sources as they are:

- a folder is searched recursively for videos and images;
- a video gives frames evenly spaced over its length (image model) or itself as a
  training video whose clips are sampled like any other (video model);
- an image is used as it is;
- ``builtin`` names the real photographs that ship with installed packages
  (scikit-image's ``data`` folder, matplotlib's sample data): a small offline default.

Frames are grouped by their source, so that validation holds out whole sources and the
open-set calibration (:mod:`clipminer.openset`) sees non-action footage it was not trained
on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from clipminer.data.images import IMAGE_SUFFIXES, ImageItem
from clipminer.data.videos import VIDEO_SUFFIXES
from clipminer.errors import ClipminerError, UsageError
from clipminer.fsutil import safe_component

log = logging.getLogger(__name__)

BUILTIN = "builtin"
"""The source name of the photographs shipped with installed packages."""
BACKGROUND_LABEL = "background"

_BUILTIN_PHOTOS: dict[str, tuple[str, ...]] = {
    # Real photographs only (no drawings, test charts or single-colour textures).
    "skimage": (
        "data/astronaut.png",
        "data/camera.png",
        "data/chelsea.png",
        "data/coffee.png",
        "data/coins.png",
        "data/motorcycle_left.png",
        "data/rocket.jpg",
        "data/hubble_deep_field.jpg",
        "data/moon.png",
        "data/brick.png",
        "data/grass.png",
        "data/gravel.png",
        "data/page.png",
        "data/text.png",
        "data/retina.jpg",
        "data/ihc.png",
        "data/cell.png",
        "data/clock_motion.png",
    ),
    "matplotlib": ("mpl-data/sample_data/grace_hopper.jpg",),
}


@dataclass(frozen=True)
class BackgroundFiles:
    """The non-action files of some sources."""

    videos: tuple[Path, ...]
    images: tuple[Path, ...]

    def __bool__(self) -> bool:
        return bool(self.videos or self.images)


@dataclass(frozen=True)
class BackgroundImage:
    """One background training image and the source it came from."""

    path: Path
    group: str
    """The video (or the image itself) it comes from: validation holds out whole groups."""


def _digest(text: str) -> str:
    """sha256 of a path's text; names that are not UTF-8 (kept as surrogates) hash too."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def builtin_photos() -> list[Path]:
    """The photographs that ship with the installed packages (found without importing them).

    scikit-image gives 18 (``pip install clipminer[background]``), matplotlib one.
    """
    found = []
    for package, names in _BUILTIN_PHOTOS.items():
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            found += [Path(root) / name for name in names if (Path(root) / name).is_file()]
    return sorted(set(found))


def find_background(sources: Sequence[str | os.PathLike[str]]) -> BackgroundFiles:
    """The videos and images of ``sources`` (files, folders searched recursively, or
    :data:`BUILTIN`), in a stable order.

    Raises:
        UsageError: a source does not exist or holds no video or image.
    """
    videos: list[Path] = []
    images: list[Path] = []
    for source in sources:
        if str(source) == BUILTIN:
            photos = builtin_photos()
            if not photos:
                raise UsageError(
                    "--background builtin: no packaged photographs found "
                    "(pip install scikit-image, or clipminer[background])"
                )
            images += photos
            continue
        path = Path(source)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            files = [path]
        else:
            raise UsageError(f"--background {path}: no such file or folder")
        kept = 0
        for file in files:
            suffix = file.suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                videos.append(file)
            elif suffix in IMAGE_SUFFIXES:
                images.append(file)
            else:
                continue
            kept += 1
        if not kept:
            raise UsageError(f"--background {path}: no videos or images in it")
    return BackgroundFiles(tuple(dict.fromkeys(videos)), tuple(dict.fromkeys(images)))


def frame_budget(files: BackgroundFiles, count: int, *, min_per_video: int = 4) -> tuple[int, int]:
    """(images used, frames per video) for about ``count`` background images in all.

    Images are used up to half of ``count`` when there are videos too (all of it
    otherwise); the videos share the rest evenly, at least ``min_per_video`` each.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    share = count // 2 if files.videos else count
    images = min(len(files.images), share)
    if not files.videos:
        return images, 0
    per_video = -(-(count - images) // len(files.videos))
    return images, max(min_per_video, per_video)


def sample_background(
    files: BackgroundFiles,
    out_dir: str | os.PathLike[str],
    *,
    count: int,
    short_side: int,
    progress: Callable[[int, int], None] | None = None,
    purpose: str = "background",
) -> list[BackgroundImage]:
    """About ``count`` background images: frames evenly spaced over each video (written
    to ``out_dir`` as JPEG, ``short_side`` pixels on the short side) and images as they
    are. A video that cannot be decoded is skipped with a warning.

    Raises:
        UsageError: nothing could be read at all.
    """
    from clipminer.decode import VideoReader, probe

    out_dir = Path(out_dir)
    use_images, per_video = frame_budget(files, count)
    # A stable subset of the images, by content-independent name hash.
    images = sorted(files.images, key=lambda p: _digest(str(p)))
    result = [BackgroundImage(p, f"image:{p}") for p in sorted(images[:use_images])]
    for done, video in enumerate(files.videos):
        try:
            info = probe(video)
            seconds = info.duration_seconds or (info.num_frames or 1) / (info.average_fps or 25)
            folder = out_dir / (
                safe_component(video.stem)[:40] + "-" + _digest(str(video.resolve()))[:8]
            )
            folder.mkdir(parents=True, exist_ok=True)
            taken = 0
            # Evenly spaced by timestamp; a little over the rate so short videos fill up.
            reader = VideoReader(
                video, sample_fps=max(per_video / max(seconds, 1e-3), 0.01), short_side=short_side
            )
            with reader:
                for frame in reader:
                    if taken >= per_video:
                        break
                    path = folder / f"{taken:05d}.jpg"
                    Image.fromarray(frame.pixels).save(path, quality=92)
                    result.append(BackgroundImage(path, f"video:{video}"))
                    taken += 1
            if not taken:
                log.warning("%s: no frames decoded, not used as %s", video, purpose)
        except ClipminerError as exc:
            log.warning("%s: not used as %s (%s)", video, purpose, exc)
        if progress:
            progress(done + 1, len(files.videos))
    if not result:
        raise UsageError("--background: no readable video or image in the sources")
    return result


def hold_out_a_video(
    train: list[ImageItem], val: list[ImageItem], label: int
) -> tuple[list[ImageItem], list[ImageItem]]:
    """(train, val) with the frames of at least one background video in validation, so that
    the open-set calibration sees footage of a source it was not trained on: when the
    split left none there and the class has two videos or more, the one whose name hashes
    lowest moves over whole."""
    videos = {i.group for i in train + val if i.label == label and i.group.startswith("video:")}
    if len(videos) < 2 or any(i.group in videos for i in val):
        return train, val
    moved = min(videos, key=lambda g: _digest(g))
    return [i for i in train if i.group != moved], val + [i for i in train if i.group == moved]
