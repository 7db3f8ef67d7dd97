"""Shared fixtures: the real sample files beside the project, generated videos, CUDA skips."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from .helpers import TrainedModels

# Ray in tests stays on loopback: without this it addresses its nodes (even the one it
# starts here) by the machine's own network address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(image.pt, video.pt): untrained tiny bundles, see :func:`helpers.save_tiny_models`."""
    from .helpers import save_tiny_models

    return save_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that use it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data not found at {SHARED_DATA}")
    return SHARED_DATA


def known_frame(k: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Frame ``k`` of the lossless test video: every pixel encodes k and its position."""
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = (k * 7) % 256
    frame[..., 1] = (yy * 5 + k) % 256
    frame[..., 2] = (xx * 3 + 2 * k) % 256
    return frame


@pytest.fixture(scope="session")
def lossless_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 frames at 10 fps, 64×48, losslessly encoded: decoded pixels equal known_frame(k)."""
    from clipminer.encode import VideoWriter

    path = tmp_path_factory.mktemp("lossless") / "known.mkv"
    with VideoWriter(path, fps=10, size=(48, 64), codec="lossless") as writer:
        for k in range(40):
            writer.write(known_frame(k))
    return path


@pytest.fixture(scope="session")
def tiny_h264(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-second synthetic H.264 mp4 (30 fps, 96×128)."""
    from clipminer import synth

    path = tmp_path_factory.mktemp("h264") / "tiny.mp4"
    synth.make_long_video(
        path,
        duration_seconds=4.0,
        size=(96, 128),
        fps=30,
        seed=3,
        action_seconds=(1.0, 2.0),
        gap_seconds=(0.5, 1.0),
    )
    return path


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> TrainedModels:
    """:class:`helpers.TrainedModels` (image.pt, video.pt, and their training results):
    the suite's small models trained once on synthetic data, see
    :func:`helpers.train_small_models`. Read-only: copy a bundle before changing it."""
    from .helpers import train_small_models

    return train_small_models(tmp_path_factory.mktemp("trained-models"))
