"""Shot boundaries found online on the small frames the pass already decodes.

A hard cut changes the colour make-up of the whole picture from one frame to the next;
a moving object or a pan changes where colours are, not how much of each there is. So
the detector compares coarse colour histograms (8 levels per channel, 512 bins) of
consecutive frames: a cut is a histogram distance (1 - intersection, 0..1) at or above
``threshold`` that also stands out from the shot so far (``ratio`` times the median of
the recent distances, which keeps flicker and fast motion from firing). A fade is a run
of dark frames (mean brightness below ``dark_level``): the transition is the dark run.

Why not PySceneDetect: its detectors want OpenCV (another image stack beside PyAV,
with its own thread pool on the same cores as torch) and frame numbers at a constant
rate, while the pass has pts seconds of frames sampled at 2-15 per second. This is the
same idea as its ``HistogramDetector`` plus ``ThresholdDetector`` in ~100 lines of numpy,
validated on cuts and fades spliced into real footage (``benchmarks/shots.py``).

Frames arrive one by one (:meth:`ShotDetector.push`); a boundary is known as soon as the
first frame after it arrives, with no look-ahead, so the segmenter, which closes a
segment seconds after its end, always sees the boundaries inside it.
"""

from __future__ import annotations

import csv
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from clipminer.errors import UsageError
from clipminer.fsutil import atomic_path
from clipminer.segments import Segment

Kind = Literal["cut", "fade"]
SHOT_COLUMNS = ("kind", "time", "gap_start", "gap_end", "score")


@dataclass(frozen=True)
class ShotBoundary:
    """Where one shot ends and the next begins.

    No clip may overlap ``(gap_start, gap_end)`` or contain ``time``: the old shot is
    surely shown until ``gap_start`` and the new one from ``gap_end`` (for a fade, the
    gap is the dark run).
    """

    kind: Kind
    time: float
    """Best estimate of the change, seconds."""
    gap_start: float
    gap_end: float
    score: float
    """Histogram distance for a cut; 1 - darkest brightness / dark_level for a fade."""

    def __post_init__(self) -> None:
        # Milliseconds, so that shots.csv gives back exactly these (rescore segments the
        # same); the gaps keep half a source frame of margin, far more than the rounding.
        for name in ("time", "gap_start", "gap_end"):
            object.__setattr__(self, name, round(float(getattr(self, name)), 3))


@dataclass(frozen=True)
class ShotConfig:
    threshold: float = 0.45
    """Histogram distance (0..1) of a cut. On the spliced real footage of
    ``benchmarks/shots.py`` the true cuts scored 0.53-0.95 and a whip pan 0.36-0.38."""
    ratio: float = 3.0
    """A cut's distance must also be this many times the recent median."""
    dark_level: float = 16.0
    """Mean brightness (0..255) below which a frame is part of a fade."""
    max_fade_seconds: float = 2.0
    """A longer dark run is dark footage (night, space), not a fade."""
    min_shot_seconds: float = 0.5
    """No second cut this soon after one (flashes, the two sides of a dissolve)."""
    history: int = 15
    """Recent distances the median is taken over."""


_MEAN_LEVEL = 110.0


def thumbnail(pixels: np.ndarray, cells: int = 48) -> np.ndarray:
    """At most ``cells`` pixels along the long side, by striding (the frames are small)."""
    step = max(1, max(pixels.shape[:2]) // cells)
    return pixels[::step, ::step]


def colour_histogram(pixels: np.ndarray) -> np.ndarray:
    """512-bin colour histogram (8 levels per RGB channel), summing to 1, of the frame
    brought to one mean brightness (so that fades and exposure changes do not count)."""
    small = thumbnail(pixels).astype(np.float32)
    small *= _MEAN_LEVEL / max(float(small.mean()), 1.0)
    levels = np.clip(small, 0, 255).astype(np.int32) >> 5
    index = (levels[..., 0] << 6) | (levels[..., 1] << 3) | levels[..., 2]
    counts = np.bincount(index.ravel(), minlength=512).astype(np.float32)
    return counts / max(1.0, float(counts.sum()))


class ShotDetector:
    """Finds cuts and fades in frames given in time order (uint8 H×W×3 RGB, pts seconds).

    Args:
        config: thresholds.
        frame_seconds: how long the source shows one frame (1 / its frame rate). A cut
            seen between tap frames at t0 and t1 has the gap (t0 + frame_seconds / 2, t1):
            the last frame of the old shot seen is in the piece before, and the next
            source frame, which may already be the new shot, is not (half a frame keeps
            that true after times are rounded to milliseconds).
    """

    def __init__(self, config: ShotConfig | None = None, *, frame_seconds: float = 0.0) -> None:
        self.config = config or ShotConfig()
        self.frame_seconds = frame_seconds
        self.boundaries: list[ShotBoundary] = []
        self._previous: tuple[float, np.ndarray] | None = None
        self._distances: deque[float] = deque(maxlen=self.config.history)
        self._dark: tuple[float, float, float] | None = None
        """(first dark pts, last dark pts, darkest brightness) of the current dark run."""
        self._last_cut = -np.inf

    def push(self, pts_seconds: float, pixels: np.ndarray) -> ShotBoundary | None:
        """Look at the next frame; returns the boundary it completes, if any."""
        cfg = self.config
        brightness = float(thumbnail(pixels).mean())
        if brightness < cfg.dark_level:
            first, _, darkest = self._dark or (pts_seconds, pts_seconds, brightness)
            self._dark = (first, pts_seconds, min(darkest, brightness))
            return None
        histogram = colour_histogram(pixels)
        if self._dark is not None:
            found = self._after_dark(pts_seconds, histogram)
        elif self._previous is not None:
            found = self._cut(self._previous[0], self._previous[1], pts_seconds, histogram)
        else:
            found = None
        self._previous = (pts_seconds, histogram)
        if found is not None:
            self.boundaries.append(found)
            self._distances.clear()
            self._last_cut = pts_seconds
        return found

    def _after_dark(self, pts_seconds: float, histogram: np.ndarray) -> ShotBoundary | None:
        """The first bright frame after a dark run: a short run between two shots is a fade;
        a long one is dark footage, a cut across it only if the pictures differ."""
        assert self._dark is not None
        first, last, darkest = self._dark
        self._dark = None
        gap_start = first - self.frame_seconds / 2
        if self._previous is None:  # the video starts dark
            return None
        if last - first <= self.config.max_fade_seconds:
            score = round(1.0 - darkest / self.config.dark_level, 4)
            return ShotBoundary("fade", (first + last) / 2, gap_start, pts_seconds, score)
        found = self._cut(self._previous[0], self._previous[1], pts_seconds, histogram)
        return None if found is None else replace(found, gap_start=min(gap_start, found.gap_start))

    def _cut(
        self, before: float, previous: np.ndarray, pts_seconds: float, histogram: np.ndarray
    ) -> ShotBoundary | None:
        """A cut between the frames at ``before`` and ``pts_seconds``, or None."""
        cfg = self.config
        distance = 1.0 - float(np.minimum(previous, histogram).sum())
        usual = statistics.median(self._distances) if self._distances else 0.0
        if (
            distance >= cfg.threshold
            and distance >= cfg.ratio * usual
            and pts_seconds - self._last_cut >= cfg.min_shot_seconds
        ):
            gap_start = min(before + self.frame_seconds / 2, pts_seconds)
            middle = (gap_start + pts_seconds) / 2
            return ShotBoundary("cut", middle, gap_start, pts_seconds, round(distance, 4))
        self._distances.append(distance)
        return None

    def so_far(self) -> list[ShotBoundary]:
        """The boundaries found, and a dark run still going on as a fade that has begun
        (a segment that ends inside it must not reach into the dark)."""
        if self._dark is None or self._previous is None:
            return self.boundaries
        first = self._dark[0]
        start = first - self.frame_seconds / 2  # dark from there until further notice
        return [*self.boundaries, ShotBoundary("fade", first, start, float("inf"), 0.0)]

    def finish(self) -> list[ShotBoundary]:
        """All boundaries; a dark run at the very end is a fade-out with no next shot."""
        if self._dark is not None and self._previous is not None:
            first, last, darkest = self._dark
            score = round(1.0 - darkest / self.config.dark_level, 4)
            start, end = first - self.frame_seconds / 2, last + self.frame_seconds
            self.boundaries.append(ShotBoundary("fade", first, start, end, score))
            self._dark = None
        return self.boundaries


def split_at_shots(
    segment: Segment, boundaries: Sequence[ShotBoundary], *, min_seconds: float = 0.0
) -> list[Segment]:
    """``segment`` cut into the pieces that lie within one shot each.

    A piece ends where a boundary's gap starts and the next begins where it ends; pieces
    shorter than ``min_seconds`` are dropped (the image scores are the segment's).
    """
    pieces = [(segment.time_start_seconds, segment.time_end_seconds)]
    for b in boundaries:
        if b.gap_end < segment.time_start_seconds or b.gap_start > segment.time_end_seconds:
            continue
        next_pieces = []
        for start, end in pieces:
            if (start < b.gap_end and b.gap_start < end) or start < b.time < end:
                next_pieces += [(start, min(end, b.gap_start)), (max(start, b.gap_end), end)]
            else:
                next_pieces.append((start, end))
        pieces = [(s, e) for s, e in next_pieces if e > s]
    if len(pieces) == 1 and pieces[0] == (segment.time_start_seconds, segment.time_end_seconds):
        return [segment]
    return [
        Segment(segment.label, segment.score, start, end)
        for start, end in pieces
        if end - start >= max(min_seconds, 1e-6)
    ]


def write_shots_csv(path: Path, boundaries: Sequence[ShotBoundary]) -> Path:
    """``shots.csv``: one row per boundary, :data:`SHOT_COLUMNS`."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SHOT_COLUMNS)
        for b in boundaries:
            writer.writerow(
                [b.kind, f"{b.time:.3f}", f"{b.gap_start:.3f}", f"{b.gap_end:.3f}", b.score]
            )
    return path


def read_shots_csv(path: Path) -> list[ShotBoundary]:
    """The boundaries a ``shots.csv`` holds (``[]`` when there is none); a one-line error
    naming the file when it is broken."""
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        boundaries = []
        for row in rows:
            if row["kind"] not in ("cut", "fade"):
                raise ValueError(f"unknown kind {row['kind']!r}")
            boundaries.append(
                ShotBoundary(
                    row["kind"],  # type: ignore[arg-type]
                    float(row["time"]),
                    float(row["gap_start"]),
                    float(row["gap_end"]),
                    float(row["score"]),
                )
            )
    except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: not a clipminer shots.csv ({exc})") from None
    return boundaries
