"""Pure timestamp arithmetic: which frames to keep.

Times are presentation timestamps in seconds, never frame index times a nominal
frame rate, so that variable-frame-rate video is sampled correctly.
"""

from __future__ import annotations

import math

import numpy as np

# Timestamps come from rational time bases; allow for rounding in float seconds.
_EPS_SECONDS = 1e-6


class TimestampSampler:
    """Keeps the first frame at or after each point of a regular time grid.

    The grid is ``0, 1/sample_fps, 2/sample_fps, ...`` seconds. Each grid point takes
    at most one frame; when the source has a gap longer than a grid step (variable
    frame rate, dropped frames) the skipped grid points take none, frames are never
    repeated. ``sample_fps=None`` keeps every frame.

    Args:
        sample_fps: grid points per second, or None for every frame.
    """

    def __init__(self, sample_fps: float | None) -> None:
        if sample_fps is not None and not (sample_fps > 0 and math.isfinite(sample_fps)):
            raise ValueError(f"sample_fps must be a positive number or None, got {sample_fps!r}")
        self.sample_fps = sample_fps
        self._next_slot = 0

    def keep(self, pts_seconds: float) -> bool:
        """Whether the frame shown at ``pts_seconds`` is kept; call in presentation order."""
        if self.sample_fps is None:
            return True
        if pts_seconds < self._next_slot / self.sample_fps - _EPS_SECONDS:
            return False
        self._next_slot = math.floor(pts_seconds * self.sample_fps + _EPS_SECONDS) + 1
        return True


def window_indices(num_frames: int, clip_len: int, start: int = 0) -> np.ndarray:
    """Indices of a window of ``clip_len`` consecutive frames starting at ``start``.

    A source shorter than the window is stretched over it by repeating frames
    (each frame in order, none skipped), so short videos never crash and keep their
    direction of motion.

    Returns:
        int64 array of length ``clip_len``, values in ``[0, num_frames)``.
    """
    if num_frames < 1 or clip_len < 1:
        raise ValueError(f"need num_frames >= 1 and clip_len >= 1, got {num_frames}, {clip_len}")
    if num_frames < clip_len:
        return (np.arange(clip_len) * num_frames // clip_len).astype(np.int64)
    if not 0 <= start <= num_frames - clip_len:
        raise ValueError(f"start {start} out of range for {num_frames} frames, window {clip_len}")
    return np.arange(start, start + clip_len, dtype=np.int64)


def uniform_window_starts(num_frames: int, clip_len: int, count: int) -> list[int]:
    """``count`` window starts spread evenly from the first to the last full window."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    last = max(0, num_frames - clip_len)
    if count == 1:
        return [last // 2]
    return [round(k * last / (count - 1)) for k in range(count)]


def random_window_start(num_frames: int, clip_len: int, rng: np.random.Generator) -> int:
    """A uniformly random start of a full window (0 when the source is shorter)."""
    return int(rng.integers(0, max(0, num_frames - clip_len) + 1))
