"""Open-set decisions: is a candidate confidently one action, or none of them?

A closed-set classifier always names one of its classes; on footage unlike anything it
was trained on (a face talking to a camera, a crowd, fish) the largest class can still
get most of the probability. What does not carry over is where the frame lies in the
model's feature space: the pooled features of such footage are far from those of any
action. So every class gets a prototype, the mean of its L2-normalised training features,
and a candidate's **open-set score** is the mean, over its frames, of the cosine
similarity between a frame's features and the prototype of the candidate's label.

The threshold on that score is calibrated when the model is trained, on its validation
images (which hold out whole background sources, :mod:`clipminer.data.background`): the
lowest threshold whose precision, among validation images predicted as an action and
kept, reaches the precision the user asked for. The recall it leaves is recorded beside
it. Everything here is pure numpy; the bundle stores :meth:`OpenSet.to_dict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero); float32."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def prototypes(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """float32 K×D: per class, the normalised mean of its normalised features (a class
    without samples gets a zero row, which no frame is similar to)."""
    features = normalise(features)
    labels = np.asarray(labels)
    out = np.zeros((num_classes, features.shape[1]), np.float32)
    for k in range(num_classes):
        if (labels == k).any():
            out[k] = features[labels == k].mean(0)
    return normalise(out)


def similarity(features: np.ndarray, protos: np.ndarray, label_indices: np.ndarray) -> np.ndarray:
    """Cosine similarity of each feature row with the prototype of its label (N floats)."""
    return (normalise(features) * protos[np.asarray(label_indices)]).sum(-1)


@dataclass(frozen=True)
class Calibration:
    """A threshold on the open-set score and what it gave on validation images."""

    threshold: float
    target_precision: float
    precision: float
    """Among validation images predicted as an action with a score >= threshold, the
    share whose label is right (background images and wrong actions count against)."""
    recall: float
    """Among validation images of actions, the share predicted right and kept."""
    reached: bool
    """Whether ``precision >= target_precision``; if not, the threshold of the best
    precision found is kept."""
    curve: tuple[tuple[float, float, float], ...] = ()
    """(threshold, precision, recall) at up to 21 thresholds, for reports."""


def calibrate(
    scores: np.ndarray,
    predicted: np.ndarray,
    truth: np.ndarray,
    action: np.ndarray,
    *,
    target_precision: float,
) -> Calibration:
    """The lowest threshold on ``scores`` whose precision reaches ``target_precision``.

    Args:
        scores: open-set score of each validation sample.
        predicted: the label index the model predicted for it.
        truth: its true label index.
        action: bool per label index, False for background labels.
        target_precision: 0..1.
    """
    if not 0 < target_precision <= 1:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
    scores = np.asarray(scores, np.float64)
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    action = np.asarray(action, bool)
    claims = action[predicted]  # predicted as an action: a candidate
    right = claims & (predicted == truth)
    positives = int(action[truth].sum())
    if not claims.any() or positives == 0:
        return Calibration(-1.0, target_precision, 0.0, 0.0, False)
    order = np.argsort(-scores[claims], kind="stable")
    sorted_scores = scores[claims][order]
    hits = np.cumsum(right[claims][order])
    kept = np.arange(1, len(order) + 1)
    precision = hits / kept
    recall = hits / positives
    # Only thresholds between distinct scores are real choices.
    last_of_run = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    ok = (precision >= target_precision - 1e-12) & last_of_run
    if ok.any():
        k = int(np.flatnonzero(ok)[-1])  # the lowest threshold (most recall) that holds
        reached = True
    else:
        candidates = np.flatnonzero(last_of_run)
        k = int(candidates[np.argmax(precision[candidates])])
        reached = False
    picks = np.unique(np.linspace(0, len(order) - 1, 21).round().astype(int))
    curve = tuple(
        (
            round(float(sorted_scores[i]), 4),
            round(float(precision[i]), 4),
            round(float(recall[i]), 4),
        )
        for i in picks
    )
    return Calibration(
        round(float(sorted_scores[k]) - 1e-6, 6),
        target_precision,
        round(float(precision[k]), 4),
        round(float(recall[k]), 4),
        reached,
        curve,
    )


@dataclass(frozen=True, repr=False)
class OpenSet:
    """What a bundle carries for open-set decisions: class prototypes and a threshold."""

    prototypes: np.ndarray
    """float32 K×D, one row per label of the bundle (normalised mean features)."""
    calibration: Calibration
    samples: dict[str, int] = field(default_factory=dict)
    """Validation images the calibration used: ``action``, ``background``."""

    def __repr__(self) -> str:
        c = self.calibration
        return (
            f"OpenSet(prototypes={self.prototypes.shape}, threshold={c.threshold}, "
            f"precision={c.precision}, recall={c.recall})"
        )

    def score(self, features: np.ndarray, label_index: int) -> float:
        """The open-set score of a candidate: mean similarity of its frames' features
        (N×D) to the prototype of ``label_index``."""
        labels = np.full(len(features), label_index)
        return float(similarity(features, self.prototypes, labels).mean())

    def to_dict(self) -> dict[str, Any]:
        """Plain types and a tensor (the bundle loads weights-only)."""
        c = self.calibration
        return {
            "method": "prototype-cosine",
            "prototypes": torch.from_numpy(np.ascontiguousarray(self.prototypes, np.float32)),
            "threshold": c.threshold,
            "target_precision": c.target_precision,
            "precision": c.precision,
            "recall": c.recall,
            "reached": c.reached,
            "curve": [list(point) for point in c.curve],
            "samples": dict(self.samples),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, num_labels: int) -> OpenSet:
        protos = data["prototypes"]
        protos = protos.numpy() if isinstance(protos, torch.Tensor) else np.asarray(protos)
        if protos.ndim != 2 or len(protos) != num_labels:
            raise ValueError(f"open-set prototypes must be {num_labels}×D, got {protos.shape}")
        calibration = Calibration(
            float(data["threshold"]),
            float(data["target_precision"]),
            float(data["precision"]),
            float(data["recall"]),
            bool(data["reached"]),
            tuple(tuple(float(v) for v in point) for point in data.get("curve", ())),  # type: ignore[misc]
        )
        samples = {str(k): int(v) for k, v in dict(data.get("samples", {})).items()}
        return cls(protos.astype(np.float32), calibration, samples)


def action_mask(labels: Sequence[str], background_labels: Sequence[str]) -> np.ndarray:
    """bool per label: True for actions."""
    return np.array([label not in background_labels for label in labels], bool)
