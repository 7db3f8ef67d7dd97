"""find-clips: mine candidate action clips from long videos, in one streaming pass.

:class:`ClipMiner` loads the models once and mines any number of videos; each video
goes through the rooms of :mod:`clipminer.mining`:

- :mod:`~clipminer.mining.stream`, the pass: decode once, score, segment, split at
  shots, re-label from ring buffers, guess clips for the early cutter;
- :mod:`~clipminer.mining.relabel`, the video models' verdict on a segment;
- :mod:`~clipminer.mining.judge`, which segments become clips (best N, not background,
  merged, the open-set decision);
- :mod:`~clipminer.mining.cutter`, where a clip is cut;
- :mod:`~clipminer.mining.outputs`, where a video's files are written and swapped in.

:func:`find_clips` runs a miner over several videos and writes ``OUT/kinetics.csv``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from clipminer import __version__, store
from clipminer.config import FindClipsConfig
from clipminer.decode import Tap, VideoInfo, probe
from clipminer.devices import resolve_device
from clipminer.errors import ClipminerError, OutputDiskError, UsageError, output_error
from clipminer.layout import (
    KINETICS_CSV,
    SHOTS_CSV,
    SourceId,
    check_out_folder,
    folder_name,
    videos_root,
)
from clipminer.memory import PeakMemory, keep_big_blocks_out_of_the_heap
from clipminer.mining import outputs
from clipminer.mining.cutter import EarlyCutter, cut_candidate
from clipminer.mining.judge import (
    OpenSetJudge,
    choose,
    feature_rows,
    mean_row,
    merge_same_label,
    pick,
    threshold_of_run,
)
from clipminer.mining.relabel import Relabel, VideoRelabeler, segment_clips, vote_both
from clipminer.mining.results import Candidate, Progress, Scan, StageTimes, VideoResult
from clipminer.mining.shots import read_shots_csv, split_segments
from clipminer.mining.stream import IMAGE_TAP, PassModels, scan
from clipminer.models.bundle import Bundle, load_bundle
from clipminer.models.features import weights_id
from clipminer.models.image import ImageScorer
from clipminer.precision import report
from clipminer.segments import OnlineSegmenter, Segment
from clipminer.store import RemoteVideo, VideoPath, as_video
from clipminer.transforms import eval_resize_shape

__all__ = [
    "Candidate",
    "ClipMiner",
    "FindClipsConfig",
    "Relabel",
    "StageTimes",
    "VideoRelabeler",
    "VideoResult",
    "find_clips",
    "merge_same_label",
    "segment_clips",
    "vote_both",
]

log = logging.getLogger(__name__)


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
        if config.low_memory and not keep_big_blocks_out_of_the_heap():
            log.warning("--low-memory: this C library has no glibc mallopt; ignored")
        self.scorer: ImageScorer | None = None
        if image_model is not None:
            self.scorer = ImageScorer(
                image_model,
                device=config.device,
                precision=config.precision,
                guard=config.precision_guard,
            )
            if config.image_size:
                self.scorer.size = (config.image_size, config.image_size)
                _check_fixed_shape(self.scorer)
        if config.batch_size is None:
            side = max(self.scorer.size) if self.scorer else 224
            # the same activation memory: twice the frames in bf16 (AMX gains more on
            # bigger batches; densenet121 alone ran 1.8-2x fp32 at batch 8)
            half = self.scorer is not None and self.scorer.run.precision == "bf16"
            cpu_batch = min(32, max(4, round(4 * (224 / side) ** 2 * (2 if half else 1))))
            config = replace(config, batch_size=32 if self.device.type == "cuda" else cpu_batch)
        self.config = config
        self._split = functools.partial(split_segments, min_seconds=config.segment.min_seconds)
        """Segments split at the shot boundaries inside them (none: as they are)."""
        self.batch_size: int = config.batch_size or 4
        self.judge = OpenSetJudge(config, self.scorer, config.open_set_threshold)
        """The open-set decision (:mod:`clipminer.mining.judge`)."""
        if self.judge.threshold is None and self.judge.open_set is not None:
            self.judge.threshold = self.judge.open_set.threshold
        bundles = [
            b if isinstance(b, Bundle) else load_bundle(b, kind="video") for b in video_models
        ]
        self.relabeler = (
            VideoRelabeler(
                bundles,
                device=self.device,
                windows=config.relabel_windows,
                precision=config.precision,
                guard=config.precision_guard,
                agree=config.relabel_agree,
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
        self._peaks: PeakMemory | None = None
        """The memory watch of the video being mined (``run.json``)."""

    @property
    def precision(self) -> dict[str, str | None]:
        """What each model runs at now (``run.json``): auto's guard may have changed it."""
        return {
            "image": self.scorer.run.precision if self.scorer else None,
            "video": self.relabeler.precision if self.relabeler else None,
        }

    def precision_report(self) -> dict[str, object]:
        """How each model ran, auto's guard included (``run.json``)."""
        return {
            "image": report(self.scorer.run) if self.scorer else None,
            "video": self.relabeler.precision_report() if self.relabeler else [],
        }

    @property
    def labels(self) -> tuple[str, ...]:
        if self.scorer is None:
            raise UsageError("an image model is needed to score frames")
        return self.scorer.labels

    def run(
        self,
        video: str | os.PathLike[str] | RemoteVideo,
        out_root: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        name: str | None = None,
        source: SourceId | None = None,
    ) -> VideoResult:
        """Mine one video into ``out_root/videos/<name>/``.

        ``name`` defaults to :func:`~clipminer.layout.folder_name` of the video.
        """
        with PeakMemory() as self._peaks:
            return self._mine(video, out_root, progress, name, source)

    def _mine(
        self,
        video: str | os.PathLike[str] | RemoteVideo,
        out_root: str | os.PathLike[str],
        progress: Progress | None,
        name: str | None,
        source: SourceId | None,
    ) -> VideoResult:
        video, out_root = as_video(video), Path(out_root)
        info = probe(video)
        source = source or _source_of(video)
        folder = videos_root(out_root) / (name or folder_name(video, source, out_root))
        started = time.perf_counter()
        stages = StageTimes()
        outputs.clear_staging(folder)
        cutter = None
        if self.config.cut != "none" and self.config.max_clips_per_video is None:
            cutter = EarlyCutter(
                video,
                folder,
                "copy" if self.config.cut == "copy" else "reencode",
                (self.config.cut_crf, self.config.cut_preset),
                self.turns,
            )
        try:
            found = self._scan(video, info, progress, stages, cutter)
            return self._complete(
                video, info, found, folder, started, source, stages, self.labels, cutter
            )
        except BaseException as exc:
            # nothing half written stays behind: the staging folder goes (the cutter first)
            if cutter is not None:
                cutter.close()
                cutter = None
            with contextlib.suppress(OSError):
                outputs.clear_staging(folder)
            if isinstance(exc, OSError):  # the disk: full, read-only, gone
                raise output_error(exc, folder) from exc
            raise
        finally:
            if cutter is not None:
                cutter.close()

    def rescore(
        self,
        video: str | os.PathLike[str] | RemoteVideo,
        scores_path: str | os.PathLike[str],
        out_root: str | os.PathLike[str],
        *,
        name: str | None = None,
    ) -> VideoResult:
        """Segment, re-label and cut again from a saved ``scores.parquet``."""
        with PeakMemory() as self._peaks:
            return self._rescore(video, scores_path, out_root, name)

    def _rescore(
        self,
        video: str | os.PathLike[str] | RemoteVideo,
        scores_path: str | os.PathLike[str],
        out_root: str | os.PathLike[str],
        name: str | None,
    ) -> VideoResult:
        video, out_root = as_video(video), Path(out_root)
        info = probe(video)
        source = _source_of(video)
        folder = videos_root(out_root) / (name or folder_name(video, source, out_root))
        started = time.perf_counter()
        stages = StageTimes()
        outputs.clear_staging(folder)
        times, scores, labels = _read_scores(Path(scores_path))
        # The shots of the run that wrote the scores (none when it ran without them).
        shots = read_shots_csv(Path(scores_path).with_name(SHOTS_CSV)) if self.config.shots else []
        segmenter = self._segmenter(labels)
        segments: list[Segment] = []
        for t, p in zip(times, scores, strict=True):
            segments += self._split(segmenter.push(float(t), p), shots)
        segments += self._split(segmenter.finish(), shots)
        with stages.timing("relabel"):
            picked = pick(
                [(s, None) for s in segments],
                info.duration_seconds,
                self.config.max_clips_per_video,
            )
            chosen = [
                (seg, self.relabeler.decode_and_relabel(video, seg) if self.relabeler else None)
                for seg, _ in picked
            ]
            chosen = [(seg, self.judge.vote(seg, r, times, scores, labels)) for seg, r in chosen]
        # Without an image model, the threshold of the run that wrote the scores.
        threshold = self.judge.threshold
        if threshold is None and self.scorer is None:
            threshold = threshold_of_run(Path(scores_path).parent)
        found = Scan(times, scores, chosen, shots, open_set_threshold=threshold)
        return self._complete(video, info, found, folder, started, source, stages, labels)

    def _complete(
        self,
        video: VideoPath,
        info: VideoInfo,
        found: Scan,
        folder: Path,
        started: float,
        source: SourceId,
        stages: StageTimes,
        labels: Sequence[str],
        cutter: EarlyCutter | None = None,
    ) -> VideoResult:
        """Choose and cut the clips, then write the outputs and swap the folder in."""
        rows_of = feature_rows(found.features)
        with stages.timing("cut"):
            candidates, rejected = self._finish(
                video,
                info,
                found.segments,
                folder,
                cutter,
                scores=(found.times, found.scores, labels),
                threshold=found.open_set_threshold,
                rows_of=rows_of,
            )
        if found.features:
            candidates = [replace(c, embedding=mean_row(rows_of(c.segment))) for c in candidates]
        result = VideoResult(
            video, folder, info, candidates, len(found.times), time.perf_counter() - started,
            found.times, found.scores, stages, found.shots, found.video_embedding, rejected,
            found.open_set_threshold, found.model_work,
        )  # fmt: skip
        with stages.timing("write"):
            outputs.write_outputs(result, self.config, labels)
        outputs.publish(result, source, self._record(result))
        return result

    def _finish(
        self,
        video: VideoPath,
        info: VideoInfo,
        segments: Sequence[tuple[Segment, Relabel | None]],
        folder: Path,
        cutter: EarlyCutter | None = None,
        *,
        scores: tuple[np.ndarray, np.ndarray, Sequence[str]],
        threshold: float | None,
        rows_of: Callable[[Segment], np.ndarray | None] = lambda seg: None,
    ) -> tuple[list[Candidate], list[dict[str, Any]]]:
        """The candidates (:func:`~clipminer.mining.judge.choose`), each cut under a name
        of its own; and the rejected."""
        chosen, rejected = choose(
            video, segments, info.duration_seconds, self.judge,
            scores=scores, threshold=threshold, rows_of=rows_of,
        )  # fmt: skip
        candidates: list[Candidate] = []
        used: set[str] = set()
        for c in chosen:
            candidate = Candidate(
                len(candidates), c.segment, c.relabel,
                open_set_score=c.score, open_set_similarity=c.similarity,
            )  # fmt: skip
            if self.config.cut != "none":
                candidate = cut_candidate(self.config, video, candidate, folder, used, cutter)
            candidates.append(candidate)
        return candidates, rejected

    def _record(self, result: VideoResult) -> dict[str, Any]:
        """What ``run.json`` says beside the source: settings, models, times, open set."""
        calibration = self.judge.open_set
        # --rescore writes no embeddings.npy; no models are named for it then
        embedded = self.embedding_models if result.video_embedding is not None else {}
        return {
            "clipminer_version": __version__,
            "seconds": round(result.seconds, 3),
            "stages": result.stages.rounded(),
            "frames_scored": result.frames_scored,
            "model_work": result.model_work,
            "video_seconds": result.info.duration_seconds,
            "device": str(self.device),
            "precision": self.precision,
            "precision_check": self.precision_report(),
            "memory": self._peaks.report() if self._peaks else {},
            "models": self.models,
            "embedding_models": embedded,
            "open_set": {
                "mode": self.config.open_set,
                "threshold": result.open_set_threshold,
                "calibration": None if calibration is None else calibration.to_dict(),
                "rejected": result.rejected,
            },
            "config": asdict(self.config),
        }

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
        video: VideoPath,
        info: VideoInfo,
        progress: Progress | None,
        stages: StageTimes,
        cutter: EarlyCutter | None = None,
    ) -> Scan:
        """The single pass (:func:`clipminer.mining.stream.scan`)."""
        if self.scorer is None:
            raise UsageError("find-clips needs --image-model to score frames")
        models = PassModels(self.scorer, self.batch_size, self.judge, self.relabeler, self.turns)
        return scan(
            video,
            info,
            models,
            image_tap=self.image_tap(info),
            segmenter=self._segmenter(self.scorer.labels),
            split=self._split,
            stages=stages,
            progress=progress,
            cutter=cutter,
        )


def _check_fixed_shape(scorer: ImageScorer) -> None:
    """An OpenVINO model, exported for one input size, refuses ``--image-size`` of another."""
    shape = scorer.run.saved.get("input_shape")
    if scorer.run.backend == "openvino" and shape and tuple(shape[-2:]) != scorer.size:
        raise UsageError(
            f"--image-size {scorer.size[0]}: the {scorer.run.precision} weights of "
            f"{scorer.bundle.source or 'the image model'} were made for "
            f"{shape[-2]}x{shape[-1]}; quantize at that size or use --precision fp32"
        )


def _source_of(video: VideoPath) -> SourceId:
    if isinstance(video, RemoteVideo):
        found = store.stat(video.url)
        return SourceId(str(video), found.size, found.mtime, found.fingerprint)
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
    progress_for: Callable[[VideoPath], Progress | None] | None = None,
    on_result: Callable[[VideoPath, VideoResult | ClipminerError], None] | None = None,
) -> list[tuple[VideoPath, VideoResult | ClipminerError]]:
    """Mine several videos into ``out_root``; one failing video never stops the others
    (OUT's disk refusing writes, :class:`OutputDiskError`, stops them all).

    Each video gets ``out_root/videos/<name>/`` (:mod:`clipminer.layout`). With
    ``rescore`` (the ``scores.parquet`` of an earlier run; one video only), the scores
    are read instead of computed. Writes ``out_root/kinetics.csv`` for the videos of
    this call. Videos may be URLs (read as streams); ``out_root`` may be a URL too:
    each video's folder is then made in a temporary folder here and uploaded whole,
    its ``run.json`` last.
    """
    if rescore is not None and len(videos) != 1:
        raise UsageError("--rescore takes the scores of one video; give one VIDEO")
    found = store.local_or_url(out_root)
    out_url = found if isinstance(found, str) else None
    with (
        tempfile.TemporaryDirectory(prefix="clipminer-out-")
        if out_url
        else contextlib.nullcontext(str(found))
    ) as local:
        root = check_out_folder(local)
        results = _mine_each(miner, videos, root, out_url, rescore, progress_for, on_result)
        from clipminer.report import write_kinetics_csv

        rows = [
            (
                c.final_label,
                r.out_dir.name,
                c.segment.time_start_seconds,
                c.segment.time_end_seconds,
            )
            for _, r in results
            if isinstance(r, VideoResult)
            for c in r.candidates
        ]
        write_kinetics_csv(root / KINETICS_CSV, rows)
        if out_url:
            store.put_file(root / KINETICS_CSV, store.join(out_url, KINETICS_CSV))
    return results


def _mine_each(
    miner: ClipMiner,
    videos: Sequence[str | os.PathLike[str]],
    out_root: Path,
    out_url: str | None,
    rescore: Path | None,
    progress_for: Callable[[VideoPath], Progress | None] | None,
    on_result: Callable[[VideoPath, VideoResult | ClipminerError], None] | None,
) -> list[tuple[VideoPath, VideoResult | ClipminerError]]:
    """:func:`find_clips`' loop: each video mined (and with ``out_url`` uploaded) in turn."""
    results: list[tuple[VideoPath, VideoResult | ClipminerError]] = []
    claimed: dict[str, str] = {}
    for raw in videos:
        video = as_video(raw)
        outcome: VideoResult | ClipminerError
        try:
            source = _source_of(video)
            if source.path in claimed.values():
                raise UsageError(f"{video}: given twice")
            name = folder_name(video, source, out_root, owners=claimed, out_url=out_url)
            claimed[name] = source.path
            if rescore is not None:
                outcome = miner.rescore(video, rescore, out_root, name=name)
            else:
                progress = progress_for(video) if progress_for else None
                outcome = miner.run(video, out_root, progress=progress, name=name, source=source)
            if out_url:
                outputs.upload(outcome.out_dir, out_url)
        except OutputDiskError:
            raise  # OUT takes no more writes: the videos after this one would fail the same way
        except ClipminerError as exc:
            outcome = exc
        except Exception as exc:  # one video's bug must not stop the others
            log.debug("%s: unexpected failure", video, exc_info=True)
            outcome = ClipminerError(f"{video}: {type(exc).__name__}: {store.scrub(str(exc))}")
        results.append((video, outcome))
        if on_result:
            on_result(video, outcome)
    return results
