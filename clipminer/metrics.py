"""Classification metrics: pure numpy on class probabilities and targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def topk_accuracy(probs: np.ndarray, targets: np.ndarray, k: int) -> float:
    """Fraction of rows whose target is among the ``k`` highest scores.

    Args:
        probs: float N×K scores.
        targets: int N class indices.
        k: clipped to K.
    """
    if len(targets) == 0:
        return float("nan")
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == targets[:, None]).any(axis=1).mean())


def confusion_matrix(predictions: np.ndarray, targets: np.ndarray, num_classes: int) -> np.ndarray:
    """int K×K counts; rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (targets, predictions), 1)
    return matrix


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class; NaN for classes without samples."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)


def most_confused_pairs(
    confusion: np.ndarray, labels: Sequence[str], n: int = 10
) -> list[tuple[str, str, int]]:
    """The ``n`` largest off-diagonal cells as (true label, predicted label, count)."""
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:n]
    pairs = []
    for flat in order:
        true, predicted = np.unravel_index(flat, off.shape)
        if off[true, predicted] == 0:
            break
        pairs.append((labels[int(true)], labels[int(predicted)], int(off[true, predicted])))
    return pairs


@dataclass(frozen=True, repr=False)
class ClassificationMetrics:
    """Metrics of one evaluation."""

    labels: tuple[str, ...]
    top1: float
    top5: float
    mean_class_accuracy: float
    per_class: dict[str, float]
    """Accuracy of each class that has samples."""
    confusion: np.ndarray
    """int K×K; rows true, columns predicted."""
    samples: int

    def __repr__(self) -> str:
        return (
            f"ClassificationMetrics(samples={self.samples}, top1={self.top1:.3f}, "
            f"top5={self.top5:.3f}, mean_class_accuracy={self.mean_class_accuracy:.3f})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the confusion matrix)."""
        return {
            "samples": self.samples,
            "top1": self.top1,
            "top5": self.top5,
            "mean_class_accuracy": self.mean_class_accuracy,
            "per_class_accuracy": self.per_class,
            "most_confused": [
                {"true": t, "predicted": p, "count": c}
                for t, p, c in most_confused_pairs(self.confusion, self.labels)
            ],
        }


def classification_metrics(
    probs: np.ndarray, targets: np.ndarray, labels: Sequence[str]
) -> ClassificationMetrics:
    """Top-1/top-5, mean class accuracy, per-class accuracy and confusion.

    Args:
        probs: float N×K class probabilities (or any scores).
        targets: int N class indices into ``labels``.
        labels: the K class names.
    """
    if probs.ndim != 2 or probs.shape[1] != len(labels) or len(probs) != len(targets):
        raise ValueError(f"probs must be N×{len(labels)} with N={len(targets)}, got {probs.shape}")
    confusion = confusion_matrix(probs.argmax(axis=1), targets, len(labels))
    accuracy = per_class_accuracy(confusion)
    present = ~np.isnan(accuracy)
    return ClassificationMetrics(
        labels=tuple(labels),
        top1=topk_accuracy(probs, targets, 1),
        top5=topk_accuracy(probs, targets, 5),
        mean_class_accuracy=float(accuracy[present].mean()) if present.any() else float("nan"),
        per_class={labels[int(i)]: float(accuracy[i]) for i in np.flatnonzero(present)},
        confusion=confusion,
        samples=len(targets),
    )


def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two time intervals (start, end)."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class DetectionScore:
    """Precision, recall and F1 of predicted segments against ground truth."""

    precision: float
    recall: float
    f1: float
    matched: int
    predicted: int
    truth: int


def segment_detection(
    predicted: Sequence[tuple[str, float, float]],
    truth: Sequence[tuple[str, float, float]],
    *,
    min_tiou: float = 0.5,
) -> DetectionScore:
    """Match (label, start, end) predictions to ground truth one-to-one.

    A prediction counts when it has the same label and a temporal IoU of at least
    ``min_tiou`` with a ground-truth segment not matched yet (greedy, best IoU first).
    """
    pairs = sorted(
        ((temporal_iou(p[1:], t[1:]), i, j) for i, p in enumerate(predicted)
         for j, t in enumerate(truth) if p[0] == t[0]),
        reverse=True,
    )  # fmt: skip
    used_p: set[int] = set()
    used_t: set[int] = set()
    for iou, i, j in pairs:
        if iou < min_tiou:
            break
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    matched = len(used_p)
    precision = matched / len(predicted) if predicted else 0.0
    recall = matched / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DetectionScore(precision, recall, f1, matched, len(predicted), len(truth))
