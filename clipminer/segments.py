"""Pure segmentation: per-class score series -> candidate action segments.

The segmenter is online: scores are pushed as frames are scored, and segments come
out as soon as they can no longer change, so that find-clips re-labels them while
their frames are still in its ring buffer. :func:`segment_series` runs the same
code over a whole series (``--rescore`` and the tests).

Per class (or, with ``segment_on="action"``, on the summed score of all actions), in
order:
1. moving-average smoothing over ``smooth_seconds`` (centred, over the samples that
   span it);
2. hysteresis: a segment opens where the smoothed score reaches ``threshold`` and
   closes where it falls below ``threshold_low``;
3. a gap of at most ``merge_gap_seconds`` between two segments of one class is
   bridged (they become one);
4. a segment longer than ``max_seconds`` is split into consecutive pieces of
   ``max_seconds`` (Kinetics clips are 10 s); pieces, like segments, shorter than
   ``min_seconds`` are dropped;
5. ``pad_seconds`` is added on both sides, and a segment never overlaps the previous
   one of its class (its start moves to the previous end).
Background labels and labels outside ``classes`` are never emitted.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from clipminer.settings import setting


@dataclass(frozen=True)
class Segment:
    """A candidate action: one label over a time range of the video."""

    label: str
    score: float
    """Mean smoothed class score over the segment, 0..1."""
    time_start_seconds: float
    time_end_seconds: float

    def __post_init__(self) -> None:
        if not self.time_end_seconds > self.time_start_seconds >= 0:
            raise ValueError(f"segment must have 0 <= start < end, got {self!r}")

    @property
    def duration_seconds(self) -> float:
        return self.time_end_seconds - self.time_start_seconds


@dataclass(frozen=True)
class SegmentConfig:
    """How score curves become segments; see the module docstring for the order."""

    threshold: float = setting(0.5, "Smoothed class score that opens a segment.", min=0.0, max=1.0)
    threshold_low: float | None = setting(
        None,
        "Score below which an open segment closes (default 0.7 x threshold).",
        min=0.0,
        max=1.0,
    )
    smooth_seconds: float = setting(1.0, "Moving-average window over the score curves.", min=0.0)
    min_seconds: float = setting(2.0, "Shorter segments are dropped.", min=0.0)
    max_seconds: float = setting(
        10.0,
        "Longer segments are split into consecutive pieces of this length (Kinetics: 10 s); "
        "a last piece shorter than --min-seconds is dropped.",
        min=0.1,
    )
    merge_gap_seconds: float = setting(1.0, "Segments of one class this close are merged.", min=0.0)
    pad_seconds: float = setting(
        0.0,
        "Added before and after each segment (never overlapping the previous one of its class).",
        min=0.0,
    )
    classes: tuple[str, ...] | None = setting(
        None,
        "Mine only these labels (repeat the option; default: all but background).",
        metavar="LABEL",
    )
    background_labels: tuple[str, ...] = setting(
        ("background",),
        "Labels never emitted; a candidate the video model calls one is dropped (repeat the "
        "option).",
        metavar="LABEL",
    )
    segment_on: Literal["class", "action"] = setting(
        "class",
        "class: a score curve per label; action: one curve, the summed action scores "
        "(1 - background), each segment labelled by its most likely action. Use action when "
        "single frames cannot tell some classes apart and a video model re-labels.",
    )
    """``class``: one score series per label. ``action``: one series, the summed
    scores of the labels that may be emitted (1 - background), each segment labelled
    with the action of highest mean score over it. ``action`` finds actions whose
    classes a single frame cannot tell apart (the image model splits its score
    between them), and leaves the label to the video model's re-labelling."""

    def __post_init__(self) -> None:
        if self.segment_on not in ("class", "action"):
            raise ValueError(f"segment_on must be class or action, got {self.segment_on!r}")
        low = self.low
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if not 0 < low <= self.threshold:
            raise ValueError(f"threshold_low must be in (0, threshold], got {low}")
        for name in ("smooth_seconds", "min_seconds", "merge_gap_seconds", "pad_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_seconds <= 0 or self.max_seconds < self.min_seconds:
            raise ValueError(
                f"max_seconds must be positive and >= min_seconds, got {self.max_seconds}"
            )

    @property
    def low(self) -> float:
        return self.threshold * 0.7 if self.threshold_low is None else self.threshold_low

    def smoothing_half_window(self, sample_period_seconds: float) -> int:
        """Samples averaged on each side of a sample. Symmetric in samples, so a grid of
        0, 0.52, 1.0, 1.52 ... s from a 25 fps source is not biased."""
        return round(self.smooth_seconds / sample_period_seconds / 2)

    def latency_seconds(self, sample_period_seconds: float) -> float:
        """How long after a frame's time its segment may still be open: the ring-buffer
        length find-clips needs on top of what decoding and batching add."""
        return (
            self.max_seconds + self.merge_gap_seconds + self.smooth_seconds
            + 2 * self.pad_seconds + 2 * sample_period_seconds
        )  # fmt: skip


def emitted_indices(labels: Sequence[str], config: SegmentConfig) -> list[int]:
    """Indices of the labels that may become segments (not background, in ``classes``).

    Raises:
        ValueError: ``config.classes`` names a label the model does not have.
    """
    wanted = config.classes
    if wanted is not None:
        unknown = sorted(set(wanted) - set(labels))
        if unknown:
            raise ValueError(f"classes {unknown} are not labels of the model: {list(labels)}")
    return [
        k for k, label in enumerate(labels)
        if label not in config.background_labels and (wanted is None or label in wanted)
    ]  # fmt: skip


def decision_curves(
    labels: Sequence[str],
    scores: np.ndarray,
    config: SegmentConfig,
    sample_period_seconds: float,
) -> dict[str, np.ndarray]:
    """The curves the segmenter compares with the thresholds, for plotting: each emitted
    class's smoothed score, or in ``action`` mode one curve, ``"action"``, the smoothed
    sum of the emitted classes' scores. ``scores`` is samples x labels."""
    scores = np.asarray(scores, np.float64)
    half = config.smoothing_half_window(sample_period_seconds)
    count = len(scores)
    sums = np.concatenate([np.zeros((1, scores.shape[1])), np.cumsum(scores, axis=0)])
    index = np.arange(count)
    lo, hi = np.maximum(0, index - half), np.minimum(count, index + half + 1)
    smoothed = (sums[hi] - sums[lo]) / (hi - lo)[:, None] if count else scores
    emitted = emitted_indices(labels, config)
    if config.segment_on == "action":
        return {"action": smoothed[:, emitted].sum(axis=1)}
    return {labels[k]: smoothed[:, k] for k in emitted}


@dataclass
class _Open:
    start: float
    end: float
    total: float
    count: int
    sums: np.ndarray
    """Sum of the smoothed class scores (labels the segment in ``action`` mode)."""


@dataclass
class _ClassState:
    label: str
    open: _Open | None = None
    pending: _Open | None = None
    """Closed, but a segment opening within the merge gap would extend it."""
    last_end: float = 0.0


@dataclass
class OnlineSegmenter:
    """Feed (time, class probabilities) in time order; collect closed segments.

    Args:
        labels: class names, in the order of the probability vectors.
        config: segmentation settings.
        sample_period_seconds: spacing of the scored frames (1 / sample fps); a
            sample at time t stands for [t - period/2, t + period/2].
    """

    labels: Sequence[str]
    config: SegmentConfig
    sample_period_seconds: float
    _states: dict[int, _ClassState] = field(default_factory=dict, init=False)
    _window: deque[tuple[float, np.ndarray]] = field(default_factory=deque, init=False)
    _next: int = field(default=0, init=False)
    """Index (within the window) of the next sample to smooth."""
    _last_time: float = field(default=-math.inf, init=False)
    _emitted: list[int] = field(default_factory=list, init=False)
    _half: int = field(default=0, init=False)
    """Indices of the labels that may be emitted."""

    def __post_init__(self) -> None:
        if self.sample_period_seconds <= 0:
            raise ValueError(
                f"sample_period_seconds must be positive, got {self.sample_period_seconds}"
            )
        self._half = self.config.smoothing_half_window(self.sample_period_seconds)
        self._emitted = emitted_indices(self.labels, self.config)
        if self.config.segment_on == "action":
            self._states[-1] = _ClassState("action")  # one series: the summed action scores
        else:
            for k in self._emitted:
                self._states[k] = _ClassState(self.labels[k])

    def push(self, time_seconds: float, probs: np.ndarray) -> list[Segment]:
        """Add one scored frame; return the segments that closed for good."""
        if time_seconds <= self._last_time:
            raise ValueError(f"times must increase: {time_seconds} after {self._last_time}")
        if probs.shape != (len(self.labels),):
            raise ValueError(f"expected {len(self.labels)} probabilities, got {probs.shape}")
        self._last_time = time_seconds
        self._window.append((time_seconds, np.asarray(probs, dtype=np.float64)))
        out: list[Segment] = []
        # Smooth every sample whose neighbourhood is now complete.
        while self._next + self._half < len(self._window):
            out += self._smoothed(self._next)
            self._next += 1
        while self._next > self._half:
            self._window.popleft()
            self._next -= 1
        return out

    def finish(self) -> list[Segment]:
        """No more frames: smooth the rest, close everything, return what is left."""
        out: list[Segment] = []
        while self._next < len(self._window):
            out += self._smoothed(self._next)
            self._next += 1
        half_period = self.sample_period_seconds / 2
        for state in self._states.values():
            if state.open is not None:
                state.pending, state.open = state.open, None
            if state.pending is not None:
                out += self._emit(state, state.pending, half_period)
                state.pending = None
        return sorted(out, key=lambda s: (s.time_start_seconds, s.label))

    def _smoothed(self, index: int) -> list[Segment]:
        t, _ = self._window[index]
        lo, hi = max(0, index - self._half), min(len(self._window), index + self._half + 1)
        near = [self._window[i][1] for i in range(lo, hi)]
        return self._step(t, np.mean(near, axis=0))

    def _step(self, t: float, smoothed: np.ndarray) -> list[Segment]:
        cfg = self.config
        half_period = self.sample_period_seconds / 2
        out: list[Segment] = []
        for k, state in self._states.items():
            score = float(smoothed[k]) if k >= 0 else float(smoothed[self._emitted].sum())
            current = state.open
            if current is None:
                if score < cfg.threshold:
                    pending = state.pending
                    if pending is not None and t - pending.end > cfg.merge_gap_seconds + 1e-9:
                        out += self._emit(state, pending, half_period)
                        state.pending = None
                    continue
                pending = state.pending
                if pending is not None and t - pending.end <= cfg.merge_gap_seconds + 1e-9:
                    state.open = _Open(
                        pending.start,
                        t,
                        pending.total + score,
                        pending.count + 1,
                        pending.sums + smoothed,
                    )
                else:
                    if pending is not None:
                        out += self._emit(state, pending, half_period)
                    state.open = _Open(t, t, score, 1, smoothed.copy())
                state.pending = None
            elif score >= cfg.low:
                current.end, current.total, current.count = (
                    t,
                    current.total + score,
                    current.count + 1,
                )
                current.sums = current.sums + smoothed
            else:
                state.pending, state.open = current, None
                continue
            # Split what has reached the maximum length.
            current = state.open
            assert current is not None
            span_start = max(0.0, current.start - half_period)
            if current.end + half_period - span_start >= cfg.max_seconds - 1e-9:
                cut = span_start + cfg.max_seconds
                out += self._emit(state, current, half_period, end=cut)
                state.open = None
                if current.end + half_period > cut + 1e-9:
                    state.open = _Open(cut + half_period, current.end, score, 1, smoothed.copy())
        return out

    def _emit(
        self, state: _ClassState, seg: _Open, half_period: float, *, end: float | None = None
    ) -> list[Segment]:
        cfg = self.config
        start = max(0.0, seg.start - half_period)
        stop = seg.end + half_period if end is None else end
        if stop - start < cfg.min_seconds - 1e-9:
            return []
        start = max(0.0, start - cfg.pad_seconds, state.last_end)
        stop = stop + cfg.pad_seconds
        if stop <= start:
            return []
        state.last_end = stop
        label = state.label
        if self.config.segment_on == "action":  # the most likely action over the segment
            label = self.labels[self._emitted[int(np.argmax(seg.sums[self._emitted]))]]
        return [Segment(label, round(seg.total / seg.count, 6), round(start, 6), round(stop, 6))]


def segment_series(
    times_seconds: Iterable[float],
    probs: np.ndarray,
    labels: Sequence[str],
    config: SegmentConfig,
    *,
    sample_period_seconds: float | None = None,
) -> list[Segment]:
    """Segments of a whole series (float T×K ``probs`` at ``times_seconds``)."""
    times = np.asarray(list(times_seconds), dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(times), len(labels)):
        raise ValueError(f"probs must be {len(times)}×{len(labels)}, got {probs.shape}")
    if sample_period_seconds is None:
        sample_period_seconds = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    segmenter = OnlineSegmenter(labels, config, sample_period_seconds)
    out: list[Segment] = []
    for t, p in zip(times, probs, strict=True):
        out += segmenter.push(float(t), p)
    out += segmenter.finish()
    return sorted(out, key=lambda s: (s.time_start_seconds, s.label))


def clamp(segment: Segment, duration_seconds: float | None) -> Segment | None:
    """``segment`` cut to the video's length; None when nothing is left."""
    if duration_seconds is None or segment.time_end_seconds <= duration_seconds:
        return segment
    if segment.time_start_seconds >= duration_seconds:
        return None
    return Segment(segment.label, segment.score, segment.time_start_seconds, duration_seconds)


def top_segments(segments: Sequence[Segment], limit: int | None) -> list[Segment]:
    """The ``limit`` best-scoring segments, in time order."""
    if limit is None or len(segments) <= limit:
        return list(segments)
    best = sorted(segments, key=lambda s: -s.score)[:limit]
    return sorted(best, key=lambda s: (s.time_start_seconds, s.label))
