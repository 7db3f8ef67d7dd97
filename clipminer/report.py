"""Files that report results: metrics JSON, confusion CSV and PNG.

pandas and matplotlib live here so that the rest of the library stays light.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from clipminer.fsutil import atomic_path
from clipminer.metrics import ClassificationMetrics


def write_json(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")
    return path


def write_confusion_csv(path: str | os.PathLike[str], metrics: ClassificationMetrics) -> Path:
    """Rows are true labels, columns predicted labels."""
    import pandas as pd

    frame = pd.DataFrame(
        metrics.confusion, index=list(metrics.labels), columns=list(metrics.labels)
    )
    frame.index.name = "true\\predicted"
    path = Path(path)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp)
    return path


def write_confusion_png(
    path: str | os.PathLike[str], metrics: ClassificationMetrics, *, title: str = ""
) -> Path:
    """A row-normalised confusion heat map (counts written in the cells when small)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = metrics.confusion
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, np.maximum(rows, 1))
    k = len(metrics.labels)
    side = min(max(4.0, 0.45 * k + 2), 40.0)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), metrics.labels, rotation=90, fontsize=8 if k > 20 else 10)
    ax.set_yticks(range(k), metrics.labels, fontsize=8 if k > 20 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        title or f"top-1 {metrics.top1:.1%}, mean class accuracy {metrics.mean_class_accuracy:.1%}"
    )
    if k <= 30:
        for (i, j), value in np.ndenumerate(counts):
            if value:
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, str(value), ha="center", va="center", color=colour, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def write_classification_report(
    out_dir: str | os.PathLike[str],
    metrics: ClassificationMetrics,
    *,
    extra: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """``metrics.json``, ``confusion.csv`` and ``confusion.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    data = metrics.to_dict() | (extra or {})
    return {
        "metrics": write_json(out_dir / "metrics.json", data),
        "confusion_csv": write_confusion_csv(out_dir / "confusion.csv", metrics),
        "confusion_png": write_confusion_png(out_dir / "confusion.png", metrics),
    }
