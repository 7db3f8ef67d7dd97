"""What mining one video gives: candidates, stage times, the pass's findings, the result."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from clipminer.decode import VideoInfo
from clipminer.layout import SegmentRow
from clipminer.mining.relabel import Relabel
from clipminer.mining.shots import ShotBoundary
from clipminer.segments import Segment
from clipminer.store import VideoPath

Progress = Callable[[float, float], None]
"""Called with (seconds of video done, total seconds or 0 when unknown)."""


@dataclass(frozen=True)
class Candidate:
    """A candidate clip: a segment, its re-label, and its clip (a row of ``segments.csv``)."""

    clip_id: int
    segment: Segment
    relabel: Relabel | None = None
    clip_path: str | None = None
    """Relative to the output root."""
    clip_start_seconds: float | None = None
    """Where the clip actually starts in the source (the keyframe for --cut copy)."""
    clip_end_seconds: float | None = None
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)
    """The image model's pooled features averaged over the frames scored in the clip."""
    open_set_score: float | None = None
    """The label's probability, the image model's over the segment averaged with the video
    model's (:mod:`clipminer.openset`)."""
    open_set_similarity: float | None = None
    """Similarity of the clip's frames to its label's class prototype; None when the image
    model has no prototypes or gave no features."""

    @property
    def video_label(self) -> str | None:
        return self.relabel.label if self.relabel else None

    @property
    def video_score(self) -> float | None:
        return self.relabel.score if self.relabel else None

    @property
    def video_top5(self) -> tuple[tuple[str, float], ...]:
        return self.relabel.top5 if self.relabel else ()

    @property
    def final_label(self) -> str:
        """The video model's label when there is one, else the image model's."""
        return self.relabel.label if self.relabel else self.segment.label

    def row(self, video: VideoPath) -> SegmentRow:
        """This candidate as a row of ``video``'s ``segments.csv``."""
        seg = self.segment
        return SegmentRow(
            str(video), self.clip_id, seg.label, seg.score, seg.time_start_seconds,
            seg.time_end_seconds, self.video_label, self.video_score, self.clip_path,
            self.video_top5, self.clip_start_seconds, self.clip_end_seconds,
            self.open_set_score, self.open_set_similarity,
        )  # fmt: skip


@dataclass
class StageTimes:
    """Wall seconds spent in each stage of one video; decoding runs in its own thread,
    beside scoring and re-labelling, so the stages can add up to more than the pass."""

    decode_seconds: float = 0.0
    score_seconds: float = 0.0
    relabel_seconds: float = 0.0
    shots_seconds: float = 0.0
    cut_seconds: float = 0.0
    write_seconds: float = 0.0

    @contextlib.contextmanager
    def timing(
        self, stage: Literal["decode", "score", "relabel", "shots", "cut", "write"]
    ) -> Iterator[None]:
        """Add the time the block takes to ``<stage>_seconds``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            name = f"{stage}_seconds"
            setattr(self, name, getattr(self, name) + time.perf_counter() - started)

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in asdict(self).items()}


@dataclass
class VideoResult:
    """What find-clips did with one video."""

    video: VideoPath
    out_dir: Path
    """``OUT/videos/<name>``; ``name`` is the video's ``youtube_id`` in ``kinetics.csv``."""
    info: VideoInfo
    candidates: list[Candidate]
    frames_scored: int
    seconds: float
    """Wall time of the pass."""
    times: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    scores: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    stages: StageTimes = field(default_factory=StageTimes)
    shots: list[ShotBoundary] = field(default_factory=list)
    video_embedding: np.ndarray | None = field(default=None, repr=False)
    """The image model's pooled features averaged over every scored frame."""
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """Candidates dropped by the open-set decision (label, times, score; in ``run.json``)."""
    open_set_threshold: float | None = None
    """The open-set threshold the candidates were judged by (None: none was)."""
    model_work: dict[str, int] = field(default_factory=dict)
    """Frames the image model ran on, windows the video models ran on (``run.json``)."""


@dataclass
class Scan:
    """What the pass found: scores, segments with re-labels, shots, frame features."""

    times: np.ndarray
    scores: np.ndarray
    segments: list[tuple[Segment, Relabel | None]]
    shots: list[ShotBoundary] = field(default_factory=list)
    features: dict[float, np.ndarray] = field(default_factory=dict)
    """Pooled image features (float16) of the scored frames inside segments, by pts: 2 KiB
    a frame at densenet121's 1024, about 7 MiB per hour of candidates at 2 fps."""
    video_embedding: np.ndarray | None = None
    open_set_threshold: float | None = None
    """The open-set threshold to judge the candidates by."""
    model_work: dict[str, int] = field(default_factory=dict)
    """Frames the image model ran on, windows the video models ran on (``run.json``)."""
