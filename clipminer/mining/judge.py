"""Which segments become clips: the best ``max_clips_per_video``, not background, one per
label where they overlap, and, with ``--open-set auto``, only those the open-set
decision keeps (:mod:`clipminer.openset`: the calibrated score threshold and the
prototype guard). One place decides, for the pass, for ``--rescore`` and for the early
cutter's guesses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipminer.config import FindClipsConfig
from clipminer.labels import label_key
from clipminer.layout import read_run
from clipminer.mining.relabel import Relabel, vote_both
from clipminer.models.image import ImageScorer
from clipminer.openset import Calibration, open_set_score, similarity, threshold_for
from clipminer.segments import Segment, clamp, top_segments
from clipminer.store import VideoPath

log = logging.getLogger(__name__)

Pair = tuple[Segment, Relabel | None]
"""A segment and what the video models said of it (None without them)."""


class OpenSetJudge:
    """The open-set decision of one image model (and the video models' votes).

    Args:
        config: find-clips settings (``open_set``, ``open_set_threshold``,
            ``relabel_vote``, the segment settings).
        scorer: the image model (None for ``--rescore`` without one).
        threshold: the threshold candidates are judged by (the image model's
            calibrated one, ``--open-set-threshold``, or the run's that wrote the scores).
    """

    def __init__(
        self, config: FindClipsConfig, scorer: ImageScorer | None, threshold: float | None
    ) -> None:
        self.config = config
        self.scorer = scorer
        self.open_set = calibration_of(scorer)
        """The open-set threshold calibrated when the image model was trained, if any."""
        self.prototypes = prototypes_of(scorer)
        """The image model's class prototypes (float32 K×D), if it has them."""
        self.threshold = threshold

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
        inside = inside_mask(times, seg)
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
        inside = inside_mask(times, seg)
        if not inside.any():
            return relabel
        return vote_both(
            relabel, labels, scores[inside].mean(0), self.config.segment.background_labels
        )


@dataclass(frozen=True)
class Chosen:
    """A segment that becomes a clip, with its open-set score and prototype similarity."""

    segment: Segment
    relabel: Relabel | None
    score: float | None
    similarity: float | None


def pick(pairs: Sequence[Pair], duration: float | None, max_clips: int | None) -> list[Pair]:
    """``pairs`` clamped to the video's length, the best ``max_clips`` in time order."""
    clamped = [(c, r) for c, r in ((clamp(s, duration), r) for s, r in pairs) if c is not None]
    kept = {id(s) for s in top_segments([s for s, _ in clamped], max_clips)}
    return [(s, r) for s, r in clamped if id(s) in kept]


def choose(
    video: VideoPath,
    pairs: Sequence[Pair],
    duration: float | None,
    judge: OpenSetJudge,
    *,
    scores: tuple[np.ndarray, np.ndarray, Sequence[str]],
    threshold: float | None,
    rows_of: Callable[[Segment], np.ndarray | None] = lambda seg: None,
) -> tuple[list[Chosen], list[dict[str, Any]]]:
    """Pick the best, drop what the re-label calls background, merge one label's
    overlaps, drop what the open-set decision rejects. Returns the chosen in time order
    and the rejected (for ``run.json``)."""
    background = judge.config.segment.background_labels
    kept: list[Pair] = []
    for seg, relabel in pick(pairs, duration, judge.config.max_clips_per_video):
        if relabel is not None and relabel.label in background:
            log.info(
                "%s: %.2f-%.2f s dropped, the video model says %s",
                video, seg.time_start_seconds, seg.time_end_seconds, relabel.label,
            )  # fmt: skip
            continue
        kept.append((seg, relabel))
    chosen: list[Chosen] = []
    rejected: list[dict[str, Any]] = []
    for seg, relabel in merge_same_label(kept):
        final = relabel.label if relabel else seg.label
        score = judge.open_set_score(seg, relabel, *scores)
        judged_by = judge.threshold_for(relabel, threshold)
        similar = judge.similarity(final, rows_of(seg))
        if not judge.rejects(score, judged_by, similar):
            chosen.append(Chosen(seg, relabel, score, similar))
            continue
        lowest = judge.open_set.similarity_threshold if judge.open_set else None
        log.info(
            "%s: %.2f-%.2f s (%s) dropped: open-set score %s (threshold %s), "
            "similarity to its class %s (lowest kept %s)",
            video, seg.time_start_seconds, seg.time_end_seconds, final, score, judged_by,
            similar, lowest,
        )  # fmt: skip
        rejected.append({
            "label": final, "time_start": seg.time_start_seconds,
            "time_end": seg.time_end_seconds, "open_set_score": score,
            "threshold": judged_by, "similarity": similar,
        })  # fmt: skip
    return chosen, rejected


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


def inside_mask(times: np.ndarray, seg: Segment) -> np.ndarray:
    """bool mask of the ``times`` (seconds) that fall in ``seg``."""
    return (times >= seg.time_start_seconds - 1e-6) & (times < seg.time_end_seconds)


def feature_rows(
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


def mean_row(rows: np.ndarray | None) -> np.ndarray | None:
    return None if rows is None else rows.mean(0)


def threshold_of_run(folder: Path) -> float | None:
    """The open-set threshold recorded in ``folder``'s ``run.json`` (None when none is)."""
    record = read_run(folder).get("open_set")
    value = record.get("threshold") if isinstance(record, dict) else None
    return float(value) if isinstance(value, int | float) else None


def prototypes_of(scorer: ImageScorer | None) -> np.ndarray | None:
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


def calibration_of(scorer: ImageScorer | None) -> Calibration | None:
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
