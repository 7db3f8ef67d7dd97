"""The streaming pass: decode once, hand each frame to the consumer of its tap.

A decode thread feeds a bounded queue with the frames of every tap of one pass: the
image model's (``sample_fps``, at its input size), the video models' (their frame
rate, at their short side) and the shot detector's (every source frame, as a thumbnail
picked from the decoded planes). Each tap has one :class:`FrameConsumer`:

- :class:`ImageScoring` scores batches on the device, keeps the scores and a ring of
  pooled features, and hands each frame's probabilities to the segmenter;
- :class:`Ring` keeps the last seconds of a video model's small frames;
- :class:`ShotWatch` feeds the shot detector.

When the online segmenter closes segments (they can no longer change), a
:class:`Closer` splits them at the shot boundaries found so far, re-labels each from
the rings, keeps the features of the frames inside it and hands the likely clips to
the early cutter. Memory does not grow with the video's length (the scores, a few
floats per sampled frame, are kept for ``scores.parquet``).
"""

from __future__ import annotations

import bisect
import contextlib
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from clipminer.decode import Frame, Tap, VideoInfo, VideoReader
from clipminer.memory import release_free_memory
from clipminer.mining.cutter import EarlyCutter
from clipminer.mining.judge import OpenSetJudge
from clipminer.mining.relabel import Relabel, VideoRelabeler
from clipminer.mining.results import Progress, Scan, StageTimes
from clipminer.mining.shots import THUMBNAIL, ShotConfig, ShotDetector, thumbnail_rate
from clipminer.models.image import ImageScorer
from clipminer.segments import OnlineSegmenter, Segment, clamp
from clipminer.store import VideoPath

IMAGE_TAP, SHOT_TAP = "image", "shots"
"""Names of the decode outputs of the image model and the shot detector."""

_DONE = object()


@dataclass
class _Failed:
    error: BaseException


@dataclass(frozen=True)
class _Scored:
    """One frame's class probabilities and pooled features (None: the model has none)."""

    t: float
    probs: np.ndarray
    features: np.ndarray | None

    def close_to(self, other: _Scored, tolerance: float) -> bool:
        """Same top class, and no class's probability apart by more than ``tolerance``."""
        return int(self.probs.argmax()) == int(other.probs.argmax()) and bool(
            np.abs(self.probs - other.probs).max() <= tolerance
        )

    def towards(self, other: _Scored, t: float) -> _Scored:
        """The values at time ``t`` between this frame and ``other``, linearly."""
        w = np.float32(np.clip((t - self.t) / max(other.t - self.t, 1e-9), 0.0, 1.0))

        def between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return (a + w * (b - a)).astype(a.dtype)  # exactly a where b equals a

        features = (
            None
            if self.features is None or other.features is None
            else between(self.features, other.features)
        )
        return _Scored(t, between(self.probs, other.probs), features)


class FrameConsumer(Protocol):
    """What the pass hands the frames of one tap to."""

    tap: Tap

    def push(self, frame: Frame) -> None:
        """One decoded frame of this consumer's tap, in time order."""

    def finish(self) -> None:
        """The video has ended."""


@dataclass
class Ring:
    """The last ``keep_seconds`` of one tap's frames (a video model's clips come from it)."""

    tap: Tap
    keep_seconds: float
    frames: deque[Frame] = field(default_factory=deque)

    def push(self, frame: Frame) -> None:
        self.frames.append(frame)
        while self.frames and self.frames[0].pts_seconds < frame.pts_seconds - self.keep_seconds:
            self.frames.popleft()

    def finish(self) -> None:
        pass

    def inside(self, seg: Segment) -> list[Frame]:
        start, end = seg.time_start_seconds - 1e-6, seg.time_end_seconds
        return [f for f in self.frames if start <= f.pts_seconds < end]


@dataclass
class ShotWatch:
    """Feeds the shot detector every source frame's thumbnail."""

    tap: Tap
    detector: ShotDetector
    stages: StageTimes

    def push(self, frame: Frame) -> None:
        with self.stages.timing("shots"):
            self.detector.push(frame)

    def finish(self) -> None:
        self.detector.finish()  # a fade-out at the very end trims the last segments


class ImageScoring:
    """Scores the image tap's frames in batches; each frame's probabilities go to
    ``on_scored`` in time order. Keeps every score, the pooled features of the last
    ``keep_seconds`` and their running sum (the whole video's embedding).

    With ``stride`` > 1 only every ``stride``-th frame (an anchor) is scored at first;
    the frames between two anchors are scored too where the anchors differ (another
    top class, or any class's probability by more than ``tolerance``), and elsewhere
    get the anchors' probabilities and features interpolated by time. ``stride`` 1
    scores every frame, in the same batches as ever.
    """

    def __init__(
        self,
        tap: Tap,
        scorer: ImageScorer,
        batch_size: int,
        keep_seconds: float,
        stages: StageTimes,
        on_scored: Callable[[float, np.ndarray], None],
        progress: Callable[[float], None] | None = None,
        *,
        stride: int = 1,
        tolerance: float = 0.0,
    ) -> None:
        self.tap, self.scorer, self.batch_size = tap, scorer, batch_size
        self.keep_seconds, self.stages = keep_seconds, stages
        self.on_scored, self.progress = on_scored, progress
        self.stride, self.tolerance = max(1, stride), tolerance
        self.times: list[float] = []
        self.scores: list[np.ndarray] = []
        self.features: deque[tuple[float, np.ndarray]] = deque()
        self.feature_sum: np.ndarray | None = None
        self.feature_count = 0
        self.model_frames = 0
        """Frames the image model actually ran on (the rest were interpolated)."""
        self._waiting: list[Frame] = []
        self._anchors = 0
        self._pushed = 0
        self._left: _Scored | None = None

    def push(self, frame: Frame) -> None:
        self._waiting.append(frame)
        if self._pushed % self.stride == 0:
            self._anchors += 1
        self._pushed += 1
        if self._anchors >= self.batch_size:
            self._flush()

    def finish(self) -> None:
        self._flush()

    def _flush(self) -> None:
        """Score the waiting frames' anchors (the last waiting frame is one), then the
        frames between anchors that differ; hand every frame on, in time order."""
        waiting, first = self._waiting, self._pushed - len(self._waiting)
        if not waiting:
            return
        anchors = [k for k in range(len(waiting)) if (first + k) % self.stride == 0]
        if anchors[-1:] != [len(waiting) - 1]:
            anchors.append(len(waiting) - 1)  # the video ended between anchors
        done: dict[int, _Scored] = dict(zip(anchors, self._score(waiting, anchors), strict=True))
        between = self._unclear(waiting, anchors, done)
        done.update(zip(between, self._score(waiting, between), strict=True))
        self._interpolate(waiting, anchors, done)
        vectors = [done[k].features for k in range(len(waiting))]
        if all(v is not None for v in vectors):  # summed as one batch, as ever
            self.feature_sum = np.stack(vectors).sum(0) + (  # type: ignore[arg-type]
                0 if self.feature_sum is None else self.feature_sum
            )
            self.feature_count += len(vectors)
        for k, frame in enumerate(waiting):
            self._emit(frame.pts_seconds, done[k])
        self._left = done[len(waiting) - 1]
        if self.progress:
            self.progress(waiting[-1].pts_seconds)
        self._waiting, self._anchors = [], 0
        release_free_memory()

    def _score(self, frames: Sequence[Frame], which: Sequence[int]) -> list[_Scored]:
        """The model's probabilities and features of ``frames[k]`` for k in ``which``,
        in batches of at most ``batch_size``."""
        scored: list[_Scored] = []
        for start in range(0, len(which), self.batch_size):
            chunk = [frames[k] for k in which[start : start + self.batch_size]]
            with self.stages.timing("score"):
                probs = self.scorer(np.stack([f.pixels for f in chunk]))
            features = self.scorer.features.take()
            self.model_frames += len(chunk)
            scored += [
                _Scored(f.pts_seconds, p, None if features is None else features[i])
                for i, (f, p) in enumerate(zip(chunk, probs, strict=True))
            ]
        return scored

    def _gaps(self, anchors: Sequence[int]) -> list[tuple[int | None, int]]:
        """(left anchor, right anchor) around each run of frames between anchors; the
        left one is None where it is the last anchor of the previous batch."""
        gaps: list[tuple[int | None, int]] = []
        previous: int | None = None
        for right in anchors:
            if right - (-1 if previous is None else previous) > 1:
                gaps.append((previous, right))
            previous = right
        return gaps

    def _unclear(
        self, frames: Sequence[Frame], anchors: Sequence[int], done: dict[int, _Scored]
    ) -> list[int]:
        """The frames between anchors whose two anchors differ: they are scored."""
        unclear: list[int] = []
        for left, right in self._gaps(anchors):
            a = self._left if left is None else done[left]
            b = done[right]
            if a is None or not a.close_to(b, self.tolerance):
                unclear += range(0 if left is None else left + 1, right)
        return unclear

    def _interpolate(
        self, frames: Sequence[Frame], anchors: Sequence[int], done: dict[int, _Scored]
    ) -> None:
        """Frames between anchors that agree get the anchors' values, interpolated."""
        for left, right in self._gaps(anchors):
            a = self._left if left is None else done[left]
            if a is None:
                continue
            for k in range(0 if left is None else left + 1, right):
                if k not in done:
                    done[k] = a.towards(done[right], frames[k].pts_seconds)

    def _emit(self, t: float, scored: _Scored) -> None:
        self.times.append(t)
        self.scores.append(scored.probs)
        vector = scored.features
        if vector is not None:
            self.features.append((t, vector))
            while self.features[0][0] < t - self.keep_seconds:
                self.features.popleft()
        self.on_scored(t, scored.probs)

    def since(self, seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """(times, scores) of the frames scored from ``seconds`` on: no copy of the whole
        history."""
        first = bisect.bisect_left(self.times, seconds)
        scores = (
            np.stack(self.scores[first:])
            if first < len(self.scores)
            else np.zeros((0, len(self.scorer.labels)), np.float32)
        )
        return np.asarray(self.times[first:]), scores

    def features_inside(self, seg: Segment) -> list[tuple[float, np.ndarray]]:
        start, end = seg.time_start_seconds - 1e-6, seg.time_end_seconds
        return [(t, v) for t, v in self.features if start <= t < end]


@dataclass
class Closer:
    """What happens to segments the segmenter has closed: split at the shots found so
    far, re-labelled from the rings, voted on, kept with their frames' features, and
    the likely clips handed to the early cutter."""

    image: ImageScoring
    rings: list[Ring]
    judge: OpenSetJudge
    split: Callable[[Sequence[Segment], Sequence[Any]], list[Segment]]
    duration: float | None
    stages: StageTimes
    relabeler: VideoRelabeler | None = None
    turns: contextlib.AbstractContextManager[Any] = field(default_factory=contextlib.nullcontext)
    shots: ShotDetector | None = None
    cutter: EarlyCutter | None = None
    segments: list[tuple[Segment, Relabel | None]] = field(default_factory=list)
    kept_features: dict[float, np.ndarray] = field(default_factory=dict)

    def __call__(self, closed: Sequence[Segment]) -> None:
        labels = self.image.scorer.labels
        for seg in self.split(closed, self.shots.so_far() if self.shots else []):
            inside = self.image.features_inside(seg)
            for t, vector in inside:
                self.kept_features[t] = vector.astype(np.float16)
            label: Relabel | None = None
            if self.relabeler is not None:
                frames = {ring.tap: ring.inside(seg) for ring in self.rings}
                if all(frames.values()):
                    with self.turns, self.stages.timing("relabel"):
                        label = self.relabeler(frames)
            recent = self.image.since(seg.time_start_seconds - 1e-6)
            label = self.judge.vote(seg, label, *recent, labels)
            self.segments.append((seg, label))
            self._guess_clip(seg, label, recent, [v for _, v in inside])

    def _guess_clip(
        self,
        seg: Segment,
        label: Relabel | None,
        recent: tuple[np.ndarray, np.ndarray],
        rows: list[np.ndarray],
    ) -> None:
        """Hand the early cutter a segment the final choice will likely keep."""
        judge = self.judge
        final = label.label if label else seg.label
        clamped = clamp(seg, self.duration)
        score = judge.open_set_score(seg, label, *recent, self.image.scorer.labels)
        threshold = judge.threshold_for(label, judge.threshold)
        similar = judge.similarity(final, np.stack(rows) if rows else None)
        rejected = judge.rejects(score, threshold, similar)
        wanted = final not in judge.config.segment.background_labels and not rejected
        if self.cutter and clamped and wanted:
            self.cutter.submit(clamped, final)


@dataclass
class PassModels:
    """What the pass runs: the image model and batch size, the video models (and the
    lock they share with the early cutter on the CPU), the open-set judge."""

    scorer: ImageScorer
    batch_size: int
    judge: OpenSetJudge
    relabeler: VideoRelabeler | None = None
    turns: contextlib.AbstractContextManager[Any] = field(default_factory=contextlib.nullcontext)


def scan(
    video: VideoPath,
    info: VideoInfo,
    models: PassModels,
    *,
    image_tap: Tap,
    segmenter: OnlineSegmenter,
    split: Callable[[Sequence[Segment], Sequence[Any]], list[Segment]],
    stages: StageTimes,
    progress: Progress | None = None,
    cutter: EarlyCutter | None = None,
) -> Scan:
    """The single pass over ``video``: scores, segments with their re-labels, shots,
    the features of the frames inside segments and the whole video's embedding."""
    cfg = models.judge.config
    duration = info.duration_seconds or 0.0
    # The rings must cover a segment from its padded start until it closes, plus what
    # batching and the queue hold back.
    held_back = models.batch_size * max(1, cfg.score_stride) / cfg.sample_fps
    keep_seconds = cfg.segment.latency_seconds(1 / cfg.sample_fps) + held_back + 4.0
    shots = None
    consumers: list[FrameConsumer] = []
    image = ImageScoring(
        image_tap, models.scorer, models.batch_size, keep_seconds, stages,
        on_scored=lambda t, p: None,  # the closer, once it exists (below)
        progress=(lambda done: progress(done, duration)) if progress else None,
        stride=cfg.score_stride, tolerance=cfg.score_tolerance,
    )  # fmt: skip
    video_taps = models.relabeler.taps() if models.relabeler else []
    rings = [Ring(tap, keep_seconds) for tap in video_taps]
    consumers += [image, *rings]
    if cfg.shots:
        rate = thumbnail_rate(info.average_fps)  # every source frame, up to 60/s
        shots = ShotDetector(
            ShotConfig(cfg.shot_detector, cfg.shot_threshold),
            fps=rate,
            frame_seconds=1.0 / (info.average_fps or 30.0),
        )
        consumers.append(
            ShotWatch(Tap(sample_fps=rate, thumbnail=THUMBNAIL, name=SHOT_TAP), shots, stages)
        )
    closer = Closer(
        image, rings, models.judge, split, info.duration_seconds, stages,
        models.relabeler, models.turns, shots, cutter,
    )  # fmt: skip
    image.on_scored = lambda t, p: closer(segmenter.push(t, p))
    windows_before = models.relabeler.windows_run if models.relabeler else 0
    _run(video, consumers, cfg.decode_device, stages)
    closer(segmenter.finish())
    windows = (models.relabeler.windows_run if models.relabeler else 0) - windows_before
    if progress:
        progress(duration, duration)
    label_dim = len(models.scorer.labels)
    scores = (
        np.stack(image.scores).astype(np.float32)
        if image.scores
        else np.zeros((0, label_dim), np.float32)
    )
    return Scan(
        np.asarray(image.times, np.float64),
        scores,
        closer.segments,
        shots.boundaries if shots else [],
        closer.kept_features,
        None if image.feature_sum is None else image.feature_sum / max(image.feature_count, 1),
        models.judge.threshold,
        {"image_frames": image.model_frames, "relabel_windows": windows},
    )


def _run(
    video: VideoPath, consumers: Sequence[FrameConsumer], decode_device: str, stages: StageTimes
) -> None:
    """Decode ``video`` once in a thread and hand every frame to its tap's consumer;
    then tell each consumer, in order, that the video has ended."""
    taps = [c.tap for c in consumers]
    reader = VideoReader(video, taps=taps, decode_device=decode_device)
    items: queue.Queue[Any] = queue.Queue(maxsize=64)
    stop = threading.Event()
    thread = threading.Thread(
        target=_produce, args=(reader, items, stop, stages), daemon=True,
        name=f"decode {video.name}",
    )  # fmt: skip
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                break
            if isinstance(item, _Failed):
                raise item.error
            tap_index, frame = item
            consumers[tap_index].push(frame)
        for consumer in consumers:
            consumer.finish()
    finally:
        stop.set()
        thread.join(timeout=10)


def _produce(
    reader: VideoReader, out: queue.Queue[Any], stop: threading.Event, stages: StageTimes
) -> None:
    """Decode thread: put (tap index, Frame) items, then _DONE or _Failed."""
    try:
        items = reader.iter_taps()
        while True:
            with stages.timing("decode"):
                item = next(items, _DONE)
            if item is _DONE:
                break
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        out.put(_DONE)
    except BaseException as exc:  # handed to the consumer, which re-raises it
        out.put(_Failed(exc))
