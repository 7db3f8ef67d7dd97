"""The one-pass streaming miner: decode -> score -> segment -> re-label -> cut.

A decode thread feeds a bounded queue with three kinds of frames from one pass: the
image model's (``sample_fps``, at its input size), the video models' (their frame
rate, at their short side) and the shot detector's (every source frame, as a thumbnail
picked from the decoded planes). The image model scores batches on the device; the
online segmenter turns the scores into segments as soon as they can no longer
change; each segment is split at the shot boundaries found so far and re-labelled by
the video models from a ring buffer of the last seconds of small frames, so the video
is decoded once. Memory does not grow
with the video's length (the scores, a few floats per sampled frame, are kept for
``scores.parquet``). Clips are cut at the end, re-reading only their ranges.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import contextlib
import logging
import os
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from clipminer import __version__
from clipminer.config import FindClipsConfig
from clipminer.curate.catalog import write_embeddings
from clipminer.curate.shots import (
    THUMBNAIL,
    ShotBoundary,
    ShotConfig,
    ShotDetector,
    read_shots_csv,
    split_at_shots,
    thumbnail_rate,
    write_shots_csv,
)
from clipminer.cut import CutResult, cut_clip
from clipminer.data.videos import ClipSpec, center_crop, to_clip_tensor
from clipminer.decode import Frame, Tap, VideoInfo, VideoReader, probe
from clipminer.devices import resolve_device
from clipminer.errors import ClipminerError, OutputDiskError, UsageError, output_error
from clipminer.fsutil import safe_component, swap_folder_in
from clipminer.labels import label_key
from clipminer.layout import (
    CLIPS_DIR,
    EMBEDDINGS_NPY,
    KINETICS_CSV,
    RUN_JSON,
    SCORES_PARQUET,
    SHOTS_CSV,
    TIMELINE_PNG,
    SegmentRow,
    SourceId,
    check_out_folder,
    folder_name,
    run_json,
    staging_folder,
    videos_root,
    write_segments,
)
from clipminer.memory import release_free_memory
from clipminer.models import video as video_models
from clipminer.models.bundle import Bundle, inference_network, load_bundle
from clipminer.models.features import HeadInputs, weights_id
from clipminer.models.image import ImageScorer
from clipminer.openset import Calibration, open_set_score, similarity, threshold_for
from clipminer.precision import PreparedModel, for_bundle
from clipminer.sampling import uniform_window_starts, window_indices
from clipminer.segments import OnlineSegmenter, Segment, clamp, top_segments
from clipminer.transforms import eval_resize_shape

log = logging.getLogger(__name__)

IMAGE_TAP, VIDEO_TAP, SHOT_TAP = "image", "video", "shots"
"""Names of the decode outputs of the pass: frames for the image model and for the video
models' ring buffers."""
Progress = Callable[[float, float], None]
"""Called with (seconds of video done, total seconds or 0 when unknown)."""


@dataclass(frozen=True)
class Relabel:
    """What the video model(s) say about one segment."""

    label: str
    score: float
    """Probability of ``label``, averaged over windows and models, 0..1."""
    top5: tuple[tuple[str, float], ...] = ()
    """The five most likely labels with their probabilities, best first."""
    features: np.ndarray | None = field(default=None, compare=False, repr=False)
    """The first video model's penultimate features, averaged over the windows."""
    probs: dict[str, float] = field(default_factory=dict, compare=False, repr=False)
    """Every label's probability (``top5`` when empty)."""


def vote_both(
    relabel: Relabel,
    image_labels: Sequence[str],
    image_probs: np.ndarray,
    background_labels: Collection[str],
) -> Relabel:
    """The re-label of ``--relabel-vote both``: whether a candidate is an action at all is
    decided by both models together, which action by the video model.

    The action share of each model (1 - its background probability; the image model's
    averaged over the frames it scored in the segment) is averaged: below one half the
    two together say background and the re-label is the video model's background label.
    Otherwise the label is the video model's most likely action, even where the video
    model alone would have said background, so one unsure model never drops a true action.
    """
    video = relabel.probs or dict(relabel.top5)
    background_keys = {label_key(label) for label in background_labels}

    def action_share(labels: Sequence[str], probs: Sequence[float]) -> float:
        return 1.0 - sum(
            float(p) for label, p in zip(labels, probs, strict=True)
            if label_key(label) in background_keys
        )  # fmt: skip

    share = (
        action_share(image_labels, list(image_probs))
        + action_share(list(video), list(video.values()))
    ) / 2
    actions = {label: p for label, p in video.items() if label_key(label) not in background_keys}
    if share < 0.5 or not actions:
        if label_key(relabel.label) in background_keys:
            return relabel
        name = next((label for label in video if label_key(label) in background_keys), None)
        return relabel if name is None else replace(relabel, label=name, score=video[name])
    best = max(actions, key=lambda label: actions[label])
    return replace(relabel, label=best, score=round(actions[best], 6))


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

    def row(self, video: Path) -> SegmentRow:
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

    video: Path
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


@dataclass
class _Scan:
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


# -- re-labelling ---------------------------------------------------------------------


class VideoRelabeler:
    """Classifies a segment with one or more video bundles (windows and models averaged).

    Args:
        bundles: video model bundles; their labels are matched by :func:`label_key`
            and the union is scored (a model that lacks a label gives it 0).
        device: torch device.
        windows: most windows of each model's clip length spread over a segment.
        precision: "auto", "fp32", "bf16" or "int8" (:func:`clipminer.precision.for_bundle`).
    """

    def __init__(
        self,
        bundles: Sequence[Bundle],
        *,
        device: torch.device,
        windows: int = 4,
        precision: str = "auto",
    ) -> None:
        self.device = device
        self.windows = windows
        # Windows per forward pass. Measured on 2 CPU cores (torch 2.14), r2plus1d_18 at
        # 16 x 112: batch 1, 2, 4 ran 1.73-1.79, 1.74-1.76, 1.64 windows/s, and in a
        # 1-minute 1080p find-clips the re-label phase peaked at 1273, 1443, 1561 MiB.
        self.window_batch = 8 if device.type == "cuda" else 1
        self.models: list[tuple[PreparedModel, ClipSpec, list[int]]] = []
        self.labels: list[str] = []
        keys: dict[str, int] = {}
        for bundle in bundles:
            if bundle.kind != "video":
                raise UsageError(
                    f"--video-model: {bundle.source or 'bundle'}: expected a video model, "
                    "got an image model"
                )
            columns = []
            for label in bundle.labels:
                key = label_key(label)
                if key not in keys:
                    keys[key] = len(self.labels)
                    self.labels.append(label)
                columns.append(keys[key])
            model = inference_network(bundle, video_models.BUILDERS, device)
            prepared = for_bundle(model, bundle, precision, device=device)
            self.models.append((prepared, bundle.input.clip_spec(), columns))
        first = self.models[0][0] if self.models else None
        self.features = (
            HeadInputs(first, video_models.head_name(bundles[0].arch)) if first else None
        )
        """Penultimate features of the first model (clip embeddings for curation)."""
        self.weights_id = weights_id(bundles[0].state_dict) if bundles else None

    @property
    def precision(self) -> str:
        """What the models run at ("int8", or "fp32+int8" when they differ)."""
        return "+".join(dict.fromkeys(model.precision for model, _, _ in self.models))

    def taps(self) -> list[Tap]:
        """One decode output per distinct (frame rate, short side) of the models."""
        return sorted(
            {_tap(spec) for _, spec, _ in self.models}, key=lambda t: (t.sample_fps, t.short_side)
        )

    @torch.inference_mode()
    def __call__(self, frames_by_tap: dict[Tap, list[Frame]]) -> Relabel:
        """The re-label of a segment given its frames at each tap."""
        total = np.zeros(len(self.labels), np.float64)
        features: list[np.ndarray] = []
        for k, (model, spec, columns) in enumerate(self.models):
            frames = frames_by_tap.get(_tap(spec)) or []
            if not frames:
                raise ClipminerError("no frames to re-label the segment with")
            clips = segment_clips(frames, spec, self.windows)
            probs = []
            for first in range(0, len(clips), self.window_batch):
                batch = clips[first : first + self.window_batch].to(self.device)
                logits = model(batch.contiguous(memory_format=torch.channels_last_3d))
                probs.append(torch.softmax(logits.float(), dim=1).cpu())
                kept = self.features.take() if k == 0 and self.features else None
                if kept is not None:
                    features.append(kept)
            total[columns] += torch.cat(probs).mean(0).numpy()
            release_free_memory()
        total /= len(self.models)
        order = np.argsort(-total, kind="stable")
        top5 = tuple((self.labels[i], round(float(total[i]), 6)) for i in order[:5])
        mean = np.concatenate(features).mean(0) if features else None
        every = {label: float(p) for label, p in zip(self.labels, total, strict=True)}
        return Relabel(top5[0][0], top5[0][1], top5, mean, every)


def segment_clips(frames: Sequence[Frame], spec: ClipSpec, windows: int) -> torch.Tensor:
    """Up to ``windows`` clips of ``spec.clip_len`` frames spread evenly over ``frames``
    (the video model's tap), as model inputs N×C×T×H×W."""
    pixels = center_crop(np.stack([f.pixels for f in frames]), spec.size)
    count = min(windows, max(1, len(pixels) // spec.clip_len))
    starts = uniform_window_starts(len(pixels), spec.clip_len, count)
    return torch.stack(
        [
            to_clip_tensor(pixels[window_indices(len(pixels), spec.clip_len, s)], spec)
            for s in starts
        ]
    )


def _tap(spec: ClipSpec) -> Tap:
    return Tap(sample_fps=spec.frame_rate, short_side=spec.short_side, name=VIDEO_TAP)


# -- the pass -----------------------------------------------------------------------------

_DONE = object()


@dataclass
class _Failed:
    error: BaseException


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


def _clip_name(folder: Path, label: str, seg: Segment) -> tuple[str, str]:
    """(label folder, file stem) of a clip: ``<label>/<video>_<start>_<end>``."""
    stem = f"{folder.name}_{seg.time_start_seconds:08.2f}_{seg.time_end_seconds:08.2f}"
    return safe_component(label), stem


class _EarlyCutter:
    """Cuts clips in a worker thread as segments close, while the pass goes on.

    Which segments become clips (the best N, merges) is final only at the end: a clip cut
    early is used when a final candidate has the same label and range, and removed
    otherwise. Only the source's range is re-read, so this overlaps the pass's decoding
    and scoring (on a GPU machine the CPU is otherwise idle).
    """

    def __init__(
        self,
        video: Path,
        folder: Path,
        mode: Literal["reencode", "copy"],
        x264: tuple[int, str] = (18, "veryfast"),
        turns: contextlib.AbstractContextManager[Any] | None = None,
    ) -> None:
        self.video, self.folder, self.mode = video, folder, mode
        self.crf, self.preset = x264
        self.turns = turns if turns is not None and mode == "reencode" else contextlib.nullcontext()
        """Held while a clip is encoded (see ``ClipMiner.turns``)."""
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cut")
        self._jobs: dict[tuple[str, str], concurrent.futures.Future[CutResult]] = {}

    def submit(self, seg: Segment, label: str) -> None:
        key = _clip_name(self.folder, label, seg)
        if key not in self._jobs:
            dest = staging_folder(self.folder) / CLIPS_DIR / key[0] / f"{key[1]}.mp4"
            start, end = seg.time_start_seconds, seg.time_end_seconds
            self._jobs[key] = self._pool.submit(self._cut, dest, start, end)

    def _cut(self, dest: Path, start: float, end: float) -> CutResult:
        with self.turns:
            return cut_clip(
                self.video, dest, start, end, mode=self.mode, crf=self.crf, preset=self.preset
            )

    def take(self, key: tuple[str, str]) -> CutResult | None:
        """The early cut of ``key``, or None (never cut, or it failed: cut it again)."""
        job = self._jobs.pop(key, None)
        if job is None:
            return None
        try:
            return job.result()
        except ClipminerError:
            return None

    def close(self) -> None:
        """Wait for running cuts and remove the clips no candidate took."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        for job in self._jobs.values():
            if job.done() and not job.cancelled() and job.exception() is None:
                job.result().path.unlink(missing_ok=True)
        self._jobs.clear()


class ClipMiner:
    """Loads the models once and mines any number of videos.

    Args:
        image_model: an image bundle or its path (None only for :meth:`rescore`).
        video_models: video bundles or paths for re-labelling (may be empty).
        config: find-clips settings.
    """

    def __init__(
        self,
        image_model: Bundle | str | os.PathLike[str] | None,
        video_models: Sequence[Bundle | str | os.PathLike[str]] = (),
        *,
        config: FindClipsConfig,
    ) -> None:
        self.device = resolve_device(config.device)
        self.scorer: ImageScorer | None = None
        if image_model is not None:
            self.scorer = ImageScorer(image_model, device=config.device, precision=config.precision)
            if config.image_size:
                self.scorer.size = (config.image_size, config.image_size)
                _check_fixed_shape(self.scorer)
        if config.batch_size is None:
            side = max(self.scorer.size) if self.scorer else 224
            cpu_batch = min(32, max(4, round(4 * (224 / side) ** 2)))
            config = replace(config, batch_size=32 if self.device.type == "cuda" else cpu_batch)
        self.config = config
        self.batch_size: int = config.batch_size or 4
        self.open_set = _calibration_of(self.scorer)
        """The open-set threshold calibrated when the image model was trained, if any."""
        self.prototypes = _prototypes_of(self.scorer)
        """The image model's class prototypes (float32 K×D), if it has them."""
        self.open_set_threshold: float | None = config.open_set_threshold
        if self.open_set_threshold is None and self.open_set is not None:
            self.open_set_threshold = self.open_set.threshold
        bundles = [
            b if isinstance(b, Bundle) else load_bundle(b, kind="video") for b in video_models
        ]
        self.relabeler = (
            VideoRelabeler(
                bundles,
                device=self.device,
                windows=config.relabel_windows,
                precision=config.precision,
            )
            if bundles
            else None
        )
        self.turns: contextlib.AbstractContextManager[Any] = (
            threading.Lock()
            if self.relabeler is not None and self.device.type == "cpu"
            else contextlib.nullcontext()
        )
        """On the CPU the video model and the early cutter's x264 take turns: both use
        every core, so running them at once saves no time, but it adds their memory
        peaks (measured on 2 cores, 1 minute of 1080p: 20.4-20.8 s either way, peak RSS
        55-80 MiB lower taking turns)."""
        self.models: dict[str, object] = {
            "image": str(self.scorer.bundle.source or "") if self.scorer else None,
            "video": [str(b.source or "") for b in bundles],
        }
        """The model files (``run.json``; the dataset card of ``clipminer export``)."""
        self.embedding_models: dict[str, str | None] = {
            "image": weights_id(self.scorer.bundle.state_dict) if self.scorer else None,
            "video": self.relabeler.weights_id if self.relabeler else None,
        }
        """Which weights the embeddings come from (``run.json``; dedup compares like
        with like)."""
        self.precision: dict[str, str | None] = {
            "image": self.scorer.run.precision if self.scorer else None,
            "video": self.relabeler.precision if self.relabeler else None,
        }
        """What each model actually runs at (recorded in ``run.json``)."""

    def open_set_score(
        self,
        seg: Segment,
        relabel: Relabel | None,
        times: np.ndarray,
        scores: np.ndarray,
        labels: Sequence[str],
    ) -> float | None:
        """The open-set score of a candidate (:func:`clipminer.openset.open_set_score`):
        the image model's mean probability of its final label over the frames scored in
        ``seg`` (``times``, ``scores``: every scored frame, a column per label of
        ``labels``), averaged with the video models' probability of that label.

        With ``--segment-on action`` and a video model, the image model only finds actions
        and the video model names them, so the image model's vote is its action share
        (1 - background) instead: a frame cannot tell sliding left from sliding right.
        """
        label = relabel.label if relabel else seg.label
        image = None
        keys = [label_key(name) for name in labels]
        inside = _inside(times, seg)
        if inside.any() and len(scores) and relabel and self.config.segment.segment_on == "action":
            background = {label_key(name) for name in self.config.segment.background_labels}
            columns = [k for k, key in enumerate(keys) if key in background]
            image = 1.0 - float(scores[inside][:, columns].sum(1).mean())
        elif label_key(label) in keys and inside.any() and len(scores):
            image = float(scores[inside, keys.index(label_key(label))].mean())
        video = None
        if relabel is not None:
            video = (relabel.probs or dict(relabel.top5)).get(label, relabel.score)
        return open_set_score(image, video)

    def threshold_for(self, relabel: Relabel | None, base: float | None) -> float | None:
        """The threshold a candidate is judged by: ``base`` (the image model's calibrated
        threshold), averaged with the video models' half when they voted
        (:func:`clipminer.openset.threshold_for`); a ``--open-set-threshold`` as it is."""
        if base is None or self.config.open_set_threshold is not None:
            return base
        return threshold_for(base, video_voted=relabel is not None)

    def similarity(self, label: str, rows: np.ndarray | None) -> float | None:
        """The prototype guard's similarity of a candidate labelled ``label`` whose scored
        frames have the pooled features ``rows`` (N×D); None when it cannot be judged (no
        prototypes, no features, or a label the image model does not have)."""
        if self.prototypes is None or rows is None or not len(rows) or self.scorer is None:
            return None
        keys = [label_key(name) for name in self.scorer.labels]
        if label_key(label) not in keys:
            return None
        return round(similarity(rows, self.prototypes, keys.index(label_key(label))), 6)

    def rejects(
        self,
        score: float | None,
        threshold: float | None,
        similar: float | None = None,
        *,
        auto: bool | None = None,
    ) -> bool:
        """Whether ``--open-set auto`` (``auto``: whatever the settings say) drops a
        candidate with this open-set score and prototype similarity."""
        if not (self.config.open_set == "auto" if auto is None else auto):
            return False
        lowest = self.open_set.similarity_threshold if self.open_set else None
        return (score is not None and threshold is not None and score < threshold) or (
            similar is not None and lowest is not None and similar < lowest
        )

    def vote(
        self,
        seg: Segment,
        relabel: Relabel | None,
        times: np.ndarray,
        scores: np.ndarray,
        labels: Sequence[str],
    ) -> Relabel | None:
        """The re-label by ``--relabel-vote``: the video model's, or both models' together
        (the image model's probabilities, a column per label of ``labels``, averaged over
        the frames it scored in ``seg``)."""
        if relabel is None or self.config.relabel_vote != "both" or not len(scores):
            return relabel
        inside = _inside(times, seg)
        if not inside.any():
            return relabel
        return vote_both(
            relabel, labels, scores[inside].mean(0), self.config.segment.background_labels
        )

    @property
    def labels(self) -> tuple[str, ...]:
        if self.scorer is None:
            raise UsageError("an image model is needed to score frames")
        return self.scorer.labels

    def run(
        self,
        video: str | os.PathLike[str],
        out_root: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        name: str | None = None,
        source: SourceId | None = None,
    ) -> VideoResult:
        """Mine one video into ``out_root/videos/<name>/``.

        ``name`` defaults to :func:`~clipminer.layout.folder_name` of the video.
        """
        video, out_root = Path(video), Path(out_root)
        info = probe(video)
        source = source or _source_of(video)
        folder = videos_root(out_root) / (name or folder_name(video, source, out_root))
        started = time.perf_counter()
        stages = StageTimes()
        _clear_staging(folder)
        cutter = None
        if self.config.cut != "none" and self.config.max_clips_per_video is None:
            cutter = _EarlyCutter(
                video,
                folder,
                "copy" if self.config.cut == "copy" else "reencode",
                (self.config.cut_crf, self.config.cut_preset),
                self.turns,
            )
        try:
            scan = self._scan(video, info, progress, stages, cutter)
            return self._complete(
                video, info, scan, folder, started, source, stages, self.labels, cutter
            )
        except BaseException as exc:
            # nothing half written stays behind: the staging folder goes (the cutter first)
            if cutter is not None:
                cutter.close()
                cutter = None
            with contextlib.suppress(OSError):
                _clear_staging(folder)
            if isinstance(exc, OSError):  # the disk: full, read-only, gone
                raise output_error(exc, folder) from exc
            raise
        finally:
            if cutter is not None:
                cutter.close()

    def rescore(
        self,
        video: str | os.PathLike[str],
        scores_path: str | os.PathLike[str],
        out_root: str | os.PathLike[str],
        *,
        name: str | None = None,
    ) -> VideoResult:
        """Segment, re-label and cut again from a saved ``scores.parquet``."""
        video, out_root = Path(video), Path(out_root)
        info = probe(video)
        source = _source_of(video)
        folder = videos_root(out_root) / (name or folder_name(video, source, out_root))
        started = time.perf_counter()
        stages = StageTimes()
        _clear_staging(folder)
        times, scores, labels = _read_scores(Path(scores_path))
        # The shots of the run that wrote the scores (none when it ran without them).
        shots = read_shots_csv(Path(scores_path).with_name(SHOTS_CSV)) if self.config.shots else []
        segmenter = self._segmenter(labels)
        segments: list[Segment] = []
        for t, p in zip(times, scores, strict=True):
            segments += self._split(segmenter.push(float(t), p), shots)
        segments += self._split(segmenter.finish(), shots)
        with stages.timing("relabel"):
            chosen = [
                (seg, self._relabel_by_decoding(video, seg) if self.relabeler else None)
                for seg in self._pick(segments, info)
            ]
            chosen = [(seg, self.vote(seg, r, times, scores, labels)) for seg, r in chosen]
        # Without an image model, the threshold of the run that wrote the scores.
        threshold = self.open_set_threshold
        if threshold is None and self.scorer is None:
            threshold = _threshold_of_run(Path(scores_path).with_name(RUN_JSON))
        scan = _Scan(times, scores, chosen, shots, open_set_threshold=threshold)
        return self._complete(video, info, scan, folder, started, source, stages, labels)

    def _split(self, segments: Sequence[Segment], shots: Sequence[ShotBoundary]) -> list[Segment]:
        """``segments`` split at the shot boundaries inside them."""
        if not shots:
            return list(segments)
        minimum = self.config.segment.min_seconds
        return [p for seg in segments for p in split_at_shots(seg, shots, min_seconds=minimum)]

    def _complete(
        self,
        video: Path,
        info: VideoInfo,
        scan: _Scan,
        folder: Path,
        started: float,
        source: SourceId,
        stages: StageTimes,
        labels: Sequence[str],
        cutter: _EarlyCutter | None = None,
    ) -> VideoResult:
        """Pick, merge and cut the segments, then write the outputs."""
        rows_of = _feature_rows(scan.features)
        with stages.timing("cut"):
            candidates, rejected = self._finish(
                video,
                info,
                scan.segments,
                folder,
                cutter,
                scores=(scan.times, scan.scores, labels),
                threshold=scan.open_set_threshold,
                rows_of=rows_of,
            )
        if scan.features:
            candidates = [replace(c, embedding=_mean(rows_of(c.segment))) for c in candidates]
        result = VideoResult(
            video,
            folder,
            info,
            candidates,
            len(scan.times),
            time.perf_counter() - started,
            scan.times,
            scan.scores,
            stages,
            scan.shots,
            scan.video_embedding,
            rejected,
            scan.open_set_threshold,
        )
        with stages.timing("write"):
            self._write_outputs(result, labels=labels)
        self._publish(result, source)
        return result

    def _segmenter(self, labels: Sequence[str]) -> OnlineSegmenter:
        try:
            return OnlineSegmenter(labels, self.config.segment, 1.0 / self.config.sample_fps)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def image_tap(self, info: VideoInfo) -> Tap:
        """The frames the pass scores: ``sample_fps`` frames/s, resized (aspect kept) so
        that the image model's centre crop (its bundle's crop fraction) covers its input."""
        if self.scorer is None:
            raise UsageError("an image model is needed to score frames")
        hw = eval_resize_shape(
            (info.height, info.width), self.scorer.size, self.scorer.bundle.input.crop_fraction
        )
        return Tap(sample_fps=self.config.sample_fps, size=hw, name=IMAGE_TAP)

    def _scan(
        self,
        video: Path,
        info: VideoInfo,
        progress: Progress | None,
        stages: StageTimes,
        cutter: _EarlyCutter | None = None,
    ) -> _Scan:
        """The single pass: scores, segments with their re-labels, shots, features."""
        scorer = self.scorer
        if scorer is None:
            raise UsageError("find-clips needs --image-model to score frames")
        cfg = self.config
        video_taps = self.relabeler.taps() if self.relabeler else []
        taps = [self.image_tap(info), *video_taps]
        shots = None
        if cfg.shots:
            # Every source frame (up to 60/s), as thumbnails picked from the decoded planes.
            rate = thumbnail_rate(info.average_fps)
            taps.append(Tap(sample_fps=rate, thumbnail=THUMBNAIL, name=SHOT_TAP))
            shots = ShotDetector(
                ShotConfig(cfg.shot_detector, cfg.shot_threshold),
                fps=rate,
                frame_seconds=1.0 / (info.average_fps or 30.0),
            )
        reader = VideoReader(video, taps=taps, decode_device=cfg.decode_device)
        segmenter = self._segmenter(scorer.labels)
        # The ring must cover a segment from its padded start until it closes, plus
        # what batching and the queue hold back.
        keep_seconds = (
            cfg.segment.latency_seconds(1 / cfg.sample_fps) + self.batch_size / cfg.sample_fps + 4.0
        )
        rings: dict[Tap, deque[Frame]] = {tap: deque() for tap in video_taps}
        feature_ring: deque[tuple[float, np.ndarray]] = deque()
        kept_features: dict[float, np.ndarray] = {}
        video_sum: np.ndarray | None = None
        video_count = 0
        items: queue.Queue[Any] = queue.Queue(maxsize=64)
        stop = threading.Event()
        thread = threading.Thread(
            target=_produce,
            args=(reader, items, stop, stages),
            daemon=True,
            name=f"decode {video.name}",
        )
        thread.start()
        times: list[float] = []
        scores: list[np.ndarray] = []
        batch: list[Frame] = []
        segments: list[tuple[Segment, Relabel | None]] = []
        duration = info.duration_seconds or 0.0

        def relabel(closed: list[Segment]) -> None:
            for seg in self._split(closed, shots.so_far() if shots else []):
                for t, vector in feature_ring:
                    if seg.time_start_seconds - 1e-6 <= t < seg.time_end_seconds:
                        kept_features[t] = vector.astype(np.float16)
                label: Relabel | None = None
                if self.relabeler is not None:
                    frames = {
                        tap: [
                            f
                            for f in ring
                            if seg.time_start_seconds - 1e-6 <= f.pts_seconds < seg.time_end_seconds
                        ]
                        for tap, ring in rings.items()
                    }
                    if all(frames.values()):
                        with self.turns, stages.timing("relabel"):
                            label = self.relabeler(frames)
                # only the frames from the segment's start on: no copy of the whole history
                first = bisect.bisect_left(times, seg.time_start_seconds - 1e-6)
                recent = (
                    np.asarray(times[first:]),
                    np.stack(scores[first:])
                    if first < len(scores)
                    else np.zeros((0, len(scorer.labels)), np.float32),
                )
                label = self.vote(seg, label, *recent, scorer.labels)
                segments.append((seg, label))
                final = label.label if label else seg.label
                clamped = clamp(seg, info.duration_seconds)
                score = self.open_set_score(seg, label, *recent, scorer.labels)
                threshold = self.threshold_for(label, self.open_set_threshold)
                start, end = seg.time_start_seconds - 1e-6, seg.time_end_seconds
                rows = [v for t, v in feature_ring if start <= t < end]
                similar = self.similarity(final, np.stack(rows) if rows else None)
                rejected = self.rejects(score, threshold, similar)
                wanted = final not in cfg.segment.background_labels and not rejected
                if cutter and clamped and wanted:
                    cutter.submit(clamped, final)

        def flush() -> None:
            nonlocal video_sum, video_count
            if not batch:
                return
            with stages.timing("score"):
                probs = scorer(np.stack([f.pixels for f in batch]))
            features = scorer.features.take()
            if features is not None:
                video_sum = features.sum(0) + (0 if video_sum is None else video_sum)
                video_count += len(features)
            for k, (frame, p) in enumerate(zip(batch, probs, strict=True)):
                times.append(frame.pts_seconds)
                scores.append(p)
                if features is not None:
                    feature_ring.append((frame.pts_seconds, features[k]))
                    while feature_ring[0][0] < frame.pts_seconds - keep_seconds:
                        feature_ring.popleft()
                relabel(segmenter.push(frame.pts_seconds, p))
            if progress:
                progress(batch[-1].pts_seconds, duration)
            batch.clear()
            release_free_memory()

        try:
            while True:
                item = items.get()
                if item is _DONE:
                    break
                if isinstance(item, _Failed):
                    raise item.error
                tap_index, frame = item
                if taps[tap_index].name == IMAGE_TAP:
                    batch.append(frame)
                    if len(batch) >= self.batch_size:
                        flush()
                elif taps[tap_index].name == SHOT_TAP:
                    if shots is not None:
                        with stages.timing("shots"):
                            shots.push(frame)
                else:
                    ring = rings[taps[tap_index]]
                    ring.append(frame)
                    while ring and ring[0].pts_seconds < frame.pts_seconds - keep_seconds:
                        ring.popleft()
            flush()
            if shots is not None:
                shots.finish()  # a fade-out at the very end trims the last segments
            relabel(segmenter.finish())
        finally:
            stop.set()
            thread.join(timeout=10)
        if progress:
            progress(duration, duration)
        label_dim = len(scorer.labels)
        score_array = (
            np.stack(scores).astype(np.float32) if scores else np.zeros((0, label_dim), np.float32)
        )
        return _Scan(
            np.asarray(times, np.float64),
            score_array,
            segments,
            shots.boundaries if shots else [],
            kept_features,
            None if video_sum is None else video_sum / max(video_count, 1),
            self.open_set_threshold,
        )

    def _pick(self, segments: Sequence[Segment], info: VideoInfo) -> list[Segment]:
        """Clamped to the video's length, the best ``max_clips_per_video`` in time order."""
        clamped = [c for c in (clamp(s, info.duration_seconds) for s in segments) if c is not None]
        kept = {id(s) for s in top_segments(clamped, self.config.max_clips_per_video)}
        return [s for s in clamped if id(s) in kept]

    def _finish(
        self,
        video: Path,
        info: VideoInfo,
        segments: Sequence[tuple[Segment, Relabel | None]],
        folder: Path,
        cutter: _EarlyCutter | None = None,
        *,
        scores: tuple[np.ndarray, np.ndarray, Sequence[str]],
        threshold: float | None,
        rows_of: Callable[[Segment], np.ndarray | None] = lambda seg: None,
    ) -> tuple[list[Candidate], list[dict[str, Any]]]:
        """Pick the best, drop what the re-label calls background, merge, drop what the
        open-set decision rejects, and cut. Returns the candidates and the rejected."""
        clamped = [
            (c, relabel)
            for c, relabel in ((clamp(s, info.duration_seconds), r) for s, r in segments)
            if c is not None
        ]
        picked = {
            id(s) for s in top_segments([s for s, _ in clamped], self.config.max_clips_per_video)
        }
        background = self.config.segment.background_labels
        chosen: list[tuple[Segment, Relabel | None]] = []
        for seg, relabel in clamped:
            if id(seg) not in picked:
                continue
            if relabel is not None and relabel.label in background:
                log.info(
                    "%s: %.2f-%.2f s dropped, the video model says %s",
                    video,
                    seg.time_start_seconds,
                    seg.time_end_seconds,
                    relabel.label,
                )
                continue
            chosen.append((seg, relabel))
        candidates: list[Candidate] = []
        rejected: list[dict[str, Any]] = []
        used: set[str] = set()
        for seg, relabel in merge_same_label(chosen):
            final = relabel.label if relabel else seg.label
            score = self.open_set_score(seg, relabel, *scores)
            judged_by = self.threshold_for(relabel, threshold)
            similar = self.similarity(final, rows_of(seg))
            if self.rejects(score, judged_by, similar):
                log.info(
                    "%s: %.2f-%.2f s (%s) dropped: open-set score %s (threshold %s), "
                    "similarity to its class %s (lowest kept %s)",
                    video,
                    seg.time_start_seconds,
                    seg.time_end_seconds,
                    final,
                    score,
                    judged_by,
                    similar,
                    self.open_set.similarity_threshold if self.open_set else None,
                )
                rejected.append(
                    {
                        "label": final,
                        "time_start": seg.time_start_seconds,
                        "time_end": seg.time_end_seconds,
                        "open_set_score": score,
                        "threshold": judged_by,
                        "similarity": similar,
                    }
                )
                continue
            candidate = Candidate(
                len(candidates), seg, relabel, open_set_score=score, open_set_similarity=similar
            )
            if self.config.cut != "none":
                candidate = self._cut(video, candidate, folder, used, cutter)
            candidates.append(candidate)
        return candidates, rejected

    def _relabel_by_decoding(self, video: Path, seg: Segment) -> Relabel | None:
        assert self.relabeler is not None
        taps = self.relabeler.taps()
        frames: dict[Tap, list[Frame]] = {tap: [] for tap in taps}
        reader = VideoReader(
            video, taps=taps, start_seconds=seg.time_start_seconds, end_seconds=seg.time_end_seconds
        )
        for index, frame in reader.iter_taps():
            frames[taps[index]].append(frame)
        return self.relabeler(frames) if all(frames.values()) else None

    def _cut(
        self,
        video: Path,
        candidate: Candidate,
        folder: Path,
        used: set[str],
        cutter: _EarlyCutter | None,
    ) -> Candidate:
        """Cut one clip into the staging folder under a name no other clip of the video has
        (or take the one the early cutter made)."""
        seg = candidate.segment
        label_dir, name = _clip_name(folder, candidate.final_label, seg)
        result = cutter.take((label_dir, name)) if cutter else None
        if f"{label_dir}/{name}" in used:
            name += f"_{candidate.clip_id}"
            result = None
        used.add(f"{label_dir}/{name}")
        relative = Path(folder.parent.name) / folder.name / CLIPS_DIR / label_dir / f"{name}.mp4"
        mode: Literal["reencode", "copy"] = "copy" if self.config.cut == "copy" else "reencode"
        if result is None:
            result = cut_clip(
                video,
                staging_folder(folder) / CLIPS_DIR / label_dir / f"{name}.mp4",
                seg.time_start_seconds,
                seg.time_end_seconds,
                mode=mode,
                crf=self.config.cut_crf,
                preset=self.config.cut_preset,
            )
        return replace(
            candidate,
            clip_path=relative.as_posix(),
            clip_start_seconds=result.time_start_seconds,
            clip_end_seconds=result.time_end_seconds,
        )

    def _write_outputs(self, result: VideoResult, *, labels: Sequence[str]) -> None:
        """Write the per-video tables and plot into the staging folder."""
        from clipminer import report

        stage = staging_folder(result.out_dir)
        stage.mkdir(parents=True, exist_ok=True)
        report.write_scores_parquet(stage / SCORES_PARQUET, result.times, result.scores, labels)
        write_segments(stage, [c.row(result.video) for c in result.candidates])
        report.write_timeline_png(
            stage / TIMELINE_PNG,
            result.times,
            result.scores,
            labels,
            result.candidates,
            segment=self.config.segment,
            sample_period_seconds=1.0 / self.config.sample_fps,
            title=result.video.name,
            shots=result.shots,
        )
        if self.config.shots:
            write_shots_csv(stage / SHOTS_CSV, result.shots)
        self._write_embeddings(stage / EMBEDDINGS_NPY, result)

    def _write_embeddings(self, path: Path, result: VideoResult) -> None:
        """``embeddings.npy`` (:mod:`clipminer.curate.catalog`), when the pass had features."""
        if result.video_embedding is None:
            return
        dims = len(result.video_embedding)
        image = np.stack(
            [c.embedding if c.embedding is not None else np.zeros(dims) for c in result.candidates]
        ) if result.candidates else np.zeros((0, dims), np.float32)  # fmt: skip
        video_vectors = [c.relabel.features for c in result.candidates if c.relabel]
        video = None
        first = next((v for v in video_vectors if v is not None), None)
        if first is not None:
            video = np.stack(
                [
                    c.relabel.features
                    if c.relabel and c.relabel.features is not None
                    else np.zeros_like(first)
                    for c in result.candidates
                ]
            )
        write_embeddings(
            path,
            [c.clip_id for c in result.candidates],
            image,
            video,
            image_of_video=result.video_embedding,
        )

    def _publish(self, result: VideoResult, source: SourceId) -> None:
        """Write ``run.json`` (source, settings, stage times), then swap the folder in."""
        from clipminer import report

        final = result.out_dir
        stage = staging_folder(final)
        # --rescore writes no embeddings.npy; no models are named for it then
        embedded = self.embedding_models if result.video_embedding is not None else {}
        report.write_json(
            stage / RUN_JSON,
            run_json(
                source,
                name=final.name,
                clipminer_version=__version__,
                seconds=round(result.seconds, 3),
                stages=result.stages.rounded(),
                frames_scored=result.frames_scored,
                video_seconds=result.info.duration_seconds,
                device=str(self.device),
                precision=self.precision,
                models=self.models,
                embedding_models=embedded,
                open_set=self._open_set_record(result),
                config=asdict(self.config),
            ),
        )
        swap_folder_in(stage, final)

    def _open_set_record(self, result: VideoResult) -> dict[str, Any]:
        """What ``run.json`` says about the open-set decision of one video."""
        calibration = self.open_set
        return {
            "mode": self.config.open_set,
            "threshold": result.open_set_threshold,
            "calibration": None if calibration is None else calibration.to_dict(),
            "rejected": result.rejected,
        }


def _check_fixed_shape(scorer: ImageScorer) -> None:
    """An OpenVINO model, exported for one input size, refuses ``--image-size`` of another."""
    shape = scorer.run.saved.get("input_shape")
    if scorer.run.backend == "openvino" and shape and tuple(shape[-2:]) != scorer.size:
        raise UsageError(
            f"--image-size {scorer.size[0]}: the {scorer.run.precision} weights of "
            f"{scorer.bundle.source or 'the image model'} were made for "
            f"{shape[-2]}x{shape[-1]}; quantize at that size or use --precision fp32"
        )


def merge_same_label(
    segments: Sequence[tuple[Segment, Relabel | None]],
) -> list[tuple[Segment, Relabel | None]]:
    """Segments in time order, those of one final label that overlap merged into one.

    The merged segment spans both and keeps the higher score and that one's re-label.
    """

    def final(item: tuple[Segment, Relabel | None]) -> str:
        return item[1].label if item[1] else item[0].label

    merged: list[tuple[Segment, Relabel | None]] = []
    last_of: dict[str, int] = {}
    for seg, relabel in sorted(
        segments, key=lambda item: (item[0].time_start_seconds, item[0].time_end_seconds)
    ):
        label = final((seg, relabel))
        k = last_of.get(label)
        if k is not None and seg.time_start_seconds < merged[k][0].time_end_seconds:
            prev, prev_relabel = merged[k]
            best = relabel if seg.score > prev.score else prev_relabel
            merged[k] = (
                Segment(
                    prev.label if prev.score >= seg.score else seg.label,
                    max(prev.score, seg.score),
                    prev.time_start_seconds,
                    max(prev.time_end_seconds, seg.time_end_seconds),
                ),
                best,
            )
            continue
        last_of[label] = len(merged)
        merged.append((seg, relabel))
    return merged


def _inside(times: np.ndarray, seg: Segment) -> np.ndarray:
    """bool mask of the ``times`` (seconds) that fall in ``seg``."""
    return (times >= seg.time_start_seconds - 1e-6) & (times < seg.time_end_seconds)


def _feature_rows(
    features: dict[float, np.ndarray],
) -> Callable[[Segment], np.ndarray | None]:
    """A function giving the features (float32 N×D) of the frames scored inside a segment
    (None when there are none): the frames sorted by time once, each segment a binary
    search."""
    if not features:
        return lambda seg: None
    times = np.array(sorted(features))
    vectors = np.stack([features[t] for t in times]).astype(np.float32)

    def rows(seg: Segment) -> np.ndarray | None:
        lo = np.searchsorted(times, seg.time_start_seconds - 1e-6, side="left")
        hi = np.searchsorted(times, seg.time_end_seconds, side="left")
        return vectors[lo:hi] if hi > lo else None

    return rows


def _mean(rows: np.ndarray | None) -> np.ndarray | None:
    return None if rows is None else rows.mean(0)


def _threshold_of_run(path: Path) -> float | None:
    """The open-set threshold recorded in a ``run.json`` (None when there is none)."""
    import json

    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("open_set", {}).get("threshold")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def _prototypes_of(scorer: ImageScorer | None) -> np.ndarray | None:
    """The image bundle's class prototypes (K×D), or None."""
    data = scorer.bundle.open_set if scorer is not None else None
    protos = None if scorer is None or data is None else data.get("prototypes")
    if protos is None or scorer is None:
        return None
    array = np.asarray(protos.numpy() if isinstance(protos, torch.Tensor) else protos, np.float32)
    if array.ndim != 2 or len(array) != len(scorer.labels):
        log.warning(
            "%s: open-set prototypes not used (shape %s)", scorer.bundle.source, array.shape
        )
        return None
    return array


def _calibration_of(scorer: ImageScorer | None) -> Calibration | None:
    """The image bundle's calibrated open-set threshold, or None."""
    data = scorer.bundle.open_set if scorer is not None else None
    if scorer is None or data is None:
        return None
    try:
        return Calibration.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning(
            "%s: open-set calibration not used (%s)", scorer.bundle.source or "image model", exc
        )
        return None


def _clear_staging(folder: Path) -> None:
    """Remove what a killed run left in ``folder``'s staging folder."""
    stage = staging_folder(folder)
    if stage.exists():
        shutil.rmtree(stage)


def _source_of(video: Path) -> SourceId:
    try:
        return SourceId.of(video)
    except OSError as exc:
        raise ClipminerError(f"{video}: cannot read ({exc.strerror})") from None


def _read_scores(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(times, scores, labels) from a ``scores.parquet``; a one-line error otherwise."""
    import pandas as pd
    import pyarrow

    if not path.is_file():
        raise UsageError(f"{path}: no such scores file")
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError, pyarrow.ArrowException) as exc:
        raise UsageError(
            f"{path}: not a scores.parquet ({str(exc).splitlines()[0][:160]})"
        ) from None
    if len(table.columns) < 3 or table.columns[0] != "time":
        raise UsageError(f"{path}: expected columns time, then one per class")
    labels = tuple(str(c) for c in table.columns[1:])
    try:
        times = table["time"].to_numpy(np.float64)
        scores = table[list(table.columns[1:])].to_numpy(np.float32)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path}: scores are not numbers ({exc})") from None
    return times, scores, labels


def find_clips(
    miner: ClipMiner,
    videos: Sequence[str | os.PathLike[str]],
    out_root: str | os.PathLike[str],
    *,
    rescore: Path | None = None,
    progress_for: Callable[[Path], Progress | None] | None = None,
    on_result: Callable[[Path, VideoResult | ClipminerError], None] | None = None,
) -> list[tuple[Path, VideoResult | ClipminerError]]:
    """Mine several videos into ``out_root``; one failing video never stops the others
    (OUT's disk refusing writes, :class:`OutputDiskError`, stops them all).

    Each video gets ``out_root/videos/<name>/`` (:mod:`clipminer.layout`). With
    ``rescore`` (the ``scores.parquet`` of an earlier run; one video only), the scores
    are read instead of computed. Writes ``out_root/kinetics.csv`` for the videos of
    this call.
    """
    out_root = check_out_folder(out_root)
    if rescore is not None and len(videos) != 1:
        raise UsageError("--rescore takes the scores of one video; give one VIDEO")
    results: list[tuple[Path, VideoResult | ClipminerError]] = []
    claimed: dict[str, str] = {}
    for raw in videos:
        video = Path(raw)
        outcome: VideoResult | ClipminerError
        try:
            source = _source_of(video)
            if source.path in claimed.values():
                raise UsageError(f"{video}: given twice")
            name = folder_name(
                video,
                source,
                out_root,
                owners=claimed,
            )
            claimed[name] = source.path
            if rescore is not None:
                outcome = miner.rescore(video, rescore, out_root, name=name)
            else:
                progress = progress_for(video) if progress_for else None
                outcome = miner.run(video, out_root, progress=progress, name=name, source=source)
        except OutputDiskError:
            raise  # OUT takes no more writes: the videos after this one would fail the same way
        except ClipminerError as exc:
            outcome = exc
        except Exception as exc:  # one video's bug must not stop the others
            log.debug("%s: unexpected failure", video, exc_info=True)
            outcome = ClipminerError(f"{video}: {type(exc).__name__}: {exc}")
        results.append((video, outcome))
        if on_result:
            on_result(video, outcome)
    from clipminer.report import write_kinetics_csv

    rows = [
        (c.final_label, r.out_dir.name, c.segment.time_start_seconds, c.segment.time_end_seconds)
        for _, r in results
        if isinstance(r, VideoResult)
        for c in r.candidates
    ]
    write_kinetics_csv(out_root / KINETICS_CSV, rows)
    return results
