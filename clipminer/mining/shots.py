"""Shot boundaries found online in the pass, on a small tap of every source frame.

Cuts come from PySceneDetect's detectors (``content``: the change of hue, saturation and
brightness between frames; ``adaptive``: that change against its neighbours';
``histogram``: the change of the brightness histogram), fed one frame at a time with
thumbnails that the decode picks straight from the planes it already decoded (a
:class:`~clipminer.decode.Tap` with ``thumbnail``: about 0.2 ms a frame, no scaler).
Watching every source frame places a cut between the two frames where it happens.

A fade is a run of black frames: nearly every pixel near black (``black_share`` of the
pixels at or below ``black_level`` in every channel), not a low mean. Dark footage
(night, space) keeps its stars and lamps, stays footage and gets its cuts like any other;
a fade-out, a fade-in and black leader or tail are one boundary each, whose gap is the
black run (and any cut the detector saw on the ramps next to it).

``benchmarks/shots.py`` measures this against PySceneDetect run standalone on spliced
real footage, dark pieces included; ``adaptive`` is the default by that measurement.

Frames arrive one by one (:meth:`ShotDetector.push`, a decoded
:class:`~clipminer.decode.Frame` as every consumer of the pass gets it); a cut is known
at most ``min_shot_seconds`` after it (the detectors' filters hold it back that long),
well inside the seconds after which the segmenter closes a segment.
"""

from __future__ import annotations

import csv
import functools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from clipminer.errors import UsageError
from clipminer.fsutil import atomic_path
from clipminer.segments import Segment

if TYPE_CHECKING:
    from clipminer.decode import Frame

Kind = Literal["cut", "fade"]
DetectorName = Literal["content", "adaptive", "histogram"]
DETECTORS: tuple[DetectorName, ...] = ("content", "adaptive", "histogram")
SHOT_COLUMNS = ("kind", "time", "gap_start", "gap_end", "score")
THUMBNAIL = 128
"""Long side of the frames the detector watches (PySceneDetect downscales to ~256)."""
MAX_RATE = 60.0
"""The detector watches every source frame up to this rate."""
_RAMP_BLACK, _RAMP_DARK = 3.0, 24.0
"""Mean brightness of a frame next to a black run: under the first it is black, under the
second too dark to compare colours."""
_HISTORY = 20.0
"""Seconds of frame times kept to place a cut the detector reports late."""


@dataclass(frozen=True)
class ShotBoundary:
    """Where one shot ends and the next begins.

    No clip may overlap ``(gap_start, gap_end)`` or contain ``time``: the old shot is
    surely shown until ``gap_start`` and the new one from ``gap_end`` (for a fade, the
    gap is the black run).
    """

    kind: Kind
    time: float
    """Best estimate of the change, seconds."""
    gap_start: float
    gap_end: float
    score: float
    """Mean change of the thumbnail between the two frames (0..1) for a cut; the share of
    near-black pixels in the darkest frame for a fade."""

    def __post_init__(self) -> None:
        # Milliseconds, so that shots.csv gives back exactly these (rescore segments the
        # same); the gaps keep half a source frame of margin, far more than the rounding.
        for name in ("time", "gap_start", "gap_end"):
            object.__setattr__(self, name, round(float(getattr(self, name)), 3))


@dataclass(frozen=True)
class ShotConfig:
    detector: DetectorName = "adaptive"
    threshold: float | None = None
    """The detector's own threshold, on its own scale (None: PySceneDetect's default):
    content 27 (mean HSV change, 0-255), adaptive 3.0 (ratio to the neighbours'),
    histogram 0.2 (histogram difference, 0-1)."""
    min_shot_seconds: float = 0.5
    """No second cut this soon after one (flashes, the two sides of a dissolve)."""
    black_level: int = 12
    """A pixel is near black when none of its channels is above this (0..255)."""
    black_share: float = 0.98
    """A frame is black (part of a fade) when this share of its pixels is near black."""
    fade_reach_seconds: float = 1.0
    """A cut this close to a black run whose two sides are one picture at two brightnesses
    is the fade's ramp (a detector that reads brightness fires there): part of the fade."""

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise UsageError(
                f"unknown shot detector {self.detector!r} (choose from {', '.join(DETECTORS)})"
            )
        if self.threshold is not None and not self.threshold > 0:
            raise UsageError(f"--shot-threshold must be positive, got {self.threshold}")


@functools.cache
def _scenedetect() -> Any:
    try:
        import cv2
        import scenedetect
    except ImportError as exc:  # a broken or partial install
        raise UsageError(
            f"shot detection needs PySceneDetect and OpenCV ({exc}); "
            "pip install 'scenedetect>=0.7' (OpenCV needs libGL: apt-get install libgl1), "
            "or run with --no-shots"
        ) from None
    cv2.setNumThreads(1)  # tiny frames: threads would only contend with torch
    return scenedetect


def _make_detector(config: ShotConfig, fps: float, min_frames: int) -> Any:
    sd = _scenedetect()
    threshold = {} if config.threshold is None else {"threshold": config.threshold}
    if config.detector == "adaptive":
        threshold = {f"adaptive_{k}": v for k, v in threshold.items()}
        return sd.AdaptiveDetector(min_scene_len=min_frames, **threshold)
    if config.detector == "histogram":
        return sd.HistogramDetector(min_scene_len=min_frames, **threshold)
    return sd.ContentDetector(min_scene_len=min_frames, **threshold)


def _colours(pixels: np.ndarray) -> np.ndarray:
    """512-bin colour histogram (8 levels a channel) of the picture at one mean brightness."""
    scaled = pixels.astype(np.float32) * (110.0 / max(float(pixels.mean()), 1.0))
    levels = np.clip(scaled, 0, 255).astype(np.int32) >> 5
    index = (levels[..., 0] << 6) | (levels[..., 1] << 3) | levels[..., 2]
    return np.bincount(index.ravel(), minlength=512) / index.size


def _one_picture(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether two frames may be one picture at two brightnesses, a step of a fade's ramp:
    one is near black, or their brightness is within a factor of four and their colours
    at one brightness agree (in a dark pair the colours are too coarse to tell)."""
    dark, bright = sorted((float(before.mean()), float(after.mean())))
    if dark < _RAMP_BLACK:
        return True
    if dark < bright / 4:
        return False  # a cut into (or out of) dark footage, not one step of a ramp
    if dark < _RAMP_DARK:
        return True
    return 1.0 - float(np.minimum(_colours(before), _colours(after)).sum()) < 0.3


def _resized(pixels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``pixels`` brought to ``shape`` by picking the nearest pixels."""
    rows = np.arange(shape[0]) * pixels.shape[0] // shape[0]
    cols = np.arange(shape[1]) * pixels.shape[1] // shape[1]
    return pixels[np.ix_(rows, cols)]


def thumbnail_rate(average_fps: float | None) -> float:
    """Frames per second the detector watches: every source frame, up to :data:`MAX_RATE`."""
    return min(average_fps or 30.0, MAX_RATE)


class ShotDetector:
    """Finds cuts and fades in frames given in time order (uint8 H×W×3 RGB thumbnails).

    Args:
        config: which detector, thresholds.
        fps: the rate of the frames pushed (every source frame: :func:`thumbnail_rate`).
        frame_seconds: how long the source shows one frame (1 / its frame rate). A cut
            between the frames at t0 and t1 has the gap (t0 + frame_seconds / 2, t1): the
            last frame of the old shot is in the piece before, the first of the new one
            is not (half a frame keeps that true after times are rounded to milliseconds).
    """

    def __init__(
        self, config: ShotConfig | None = None, *, fps: float = 30.0, frame_seconds: float = 0.0
    ) -> None:
        self.config = config or ShotConfig()
        self.fps = float(fps)
        self.frame_seconds = frame_seconds
        self.boundaries: list[ShotBoundary] = []
        min_frames = max(1, round(self.config.min_shot_seconds * self.fps))
        self._detector = _make_detector(self.config, self.fps, min_frames)
        self._index = 0
        # pts of the recent frames (the detectors answer a few frames late; a merged flash
        # can hold a cut back longer)
        self._recent: deque[tuple[int, float]] = deque(maxlen=round(_HISTORY * self.fps))
        self._last_pixels: np.ndarray | None = None
        self._thumbnails: deque[tuple[int, np.ndarray]] = deque(
            maxlen=round(self.config.fade_reach_seconds * self.fps) + 8
        )
        self._dimming: set[float] = set()
        """``gap_end`` of the cuts whose two sides are one picture (ramp cuts, if a fade
        comes)."""
        self._black: tuple[float, float, float] | None = None
        """(first black pts, last black pts, largest near-black share) of the current run."""
        self._fade: int | None = None
        """Index in :attr:`boundaries` of the last fade, while cuts may still join it."""

    def push(self, frame: Frame) -> ShotBoundary | None:
        """Look at the next frame; returns the boundary it completes, if any."""
        cfg = self.config
        pts, pixels = frame.pts_seconds, frame.pixels
        if self._last_pixels is not None and pixels.shape != self._last_pixels.shape:
            pixels = _resized(pixels, self._last_pixels.shape)  # the stream changed size
        found = None
        if self._maybe_black(pixels) and (share := self._black_share(pixels)) >= cfg.black_share:
            first, _, darkest = self._black or (pts, pts, share)
            self._black = (first, pts, max(darkest, share))
        elif self._black is not None:
            found = self._end_black(pts)
        timecode = self._timecode(self._index)
        self._last_pixels = pixels
        self._recent.append((self._index, pts))
        self._thumbnails.append((self._index, pixels))
        self._index += 1
        for cut in self._detector.process_frame(timecode, np.ascontiguousarray(pixels[..., ::-1])):
            found = self._add_cut(cut.frame_num) or found
        return found

    def _maybe_black(self, pixels: np.ndarray) -> bool:
        """Cheap test first: a frame this bright on average cannot be black."""
        cfg = self.config
        ceiling = cfg.black_share * cfg.black_level + (1 - cfg.black_share) * 255
        return float(pixels.mean()) <= ceiling

    def _black_share(self, pixels: np.ndarray) -> float:
        """The share of pixels with no channel above ``black_level``."""
        brightest = np.maximum(np.maximum(pixels[..., 0], pixels[..., 1]), pixels[..., 2])
        return float((brightest <= self.config.black_level).mean())

    def _timecode(self, index: int) -> Any:
        return _scenedetect().FrameTimecode(index, fps=self.fps)

    def _end_black(self, pts: float) -> ShotBoundary:
        """The first frame after a black run: the run is one fade, with the cuts next to it."""
        assert self._black is not None
        first, last, share = self._black
        self._black = None
        start = first - self.frame_seconds / 2
        reach = self.config.fade_reach_seconds
        while (
            self.boundaries
            and self.boundaries[-1].kind == "cut"
            and self.boundaries[-1].gap_end >= first - reach
            and self.boundaries[-1].gap_end in self._dimming
        ):
            start = min(start, self.boundaries.pop().gap_start)  # the fade-out's ramp
        fade = ShotBoundary("fade", (first + last) / 2, max(start, 0.0), pts, round(share, 4))
        self.boundaries.append(fade)
        self._fade = len(self.boundaries) - 1
        return fade

    def _add_cut(self, index: int) -> ShotBoundary | None:
        """The detector's cut before frame ``index``, or None when it is part of a fade."""
        times = dict(self._recent)
        if index not in times:  # older than _HISTORY: cannot be placed any more
            return None
        pts = times[index]
        before_pts = times.get(index - 1, pts)
        if self._black is not None:
            return None  # a cut into the black run: the fade will cover it
        gap_start = min(before_pts + self.frame_seconds / 2, pts)
        thumbnails = dict(self._thumbnails)
        before, after = thumbnails.get(index - 1), thumbnails.get(index)
        dimming, change = False, 0.0
        if before is not None and after is not None:  # computed per cut, not per frame
            dimming = _one_picture(before, after)
            change = float(np.abs(after.astype(np.int16) - before).mean()) / 255
        reach = self.config.fade_reach_seconds
        if self._fade is not None and dimming:
            fade = self.boundaries[self._fade]
            if gap_start <= fade.gap_end + reach:  # the fade-in's ramp
                self.boundaries[self._fade] = replace(fade, gap_end=max(fade.gap_end, pts))
                return None
        cut = ShotBoundary("cut", (gap_start + pts) / 2, gap_start, pts, round(change, 4))
        if dimming:
            self._dimming.add(cut.gap_end)
        self.boundaries.append(cut)
        self._fade = None
        return cut

    def so_far(self) -> list[ShotBoundary]:
        """The boundaries found, and a black run still going on as a fade that has begun
        (a segment that ends inside it must not reach into the black)."""
        if self._black is None:
            return self.boundaries
        first = self._black[0]
        start = first - self.frame_seconds / 2  # black from there until further notice
        return [*self.boundaries, ShotBoundary("fade", first, start, float("inf"), 0.0)]

    def finish(self) -> list[ShotBoundary]:
        """All boundaries; black at the very end is a fade-out with no next shot."""
        if self._index:
            for cut in self._detector.post_process(self._timecode(self._index)):
                self._add_cut(cut.frame_num)
        if self._black is not None:
            first, last, share = self._black
            start, end = first - self.frame_seconds / 2, last + self.frame_seconds
            self.boundaries.append(ShotBoundary("fade", first, start, end, round(share, 4)))
            self._black = None
        return self.boundaries


def split_segments(
    segments: Sequence[Segment], boundaries: Sequence[ShotBoundary], *, min_seconds: float = 0.0
) -> list[Segment]:
    """``segments`` split at the shot boundaries inside them (:func:`split_at_shots`)."""
    if not boundaries:
        return list(segments)
    return [p for seg in segments for p in split_at_shots(seg, boundaries, min_seconds=min_seconds)]


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
