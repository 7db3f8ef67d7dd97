"""Pure timestamp arithmetic: which frames to keep.

Times are presentation timestamps in seconds, never frame index times a nominal
frame rate, so that variable-frame-rate video is sampled correctly.
"""

from __future__ import annotations

import math

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
