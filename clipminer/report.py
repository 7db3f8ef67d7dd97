"""Files that report results: metrics JSON, confusion CSV and PNG.

pandas and matplotlib live here so that the rest of the library stays light.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipminer.fsutil import atomic_path
from clipminer.layout import (
    KINETICS_CSV,
    SCORES_PARQUET,
    SEGMENTS_CSV,
    TIMELINE_PNG,
    SegmentRow,
    read_run,
    read_segments,
)
from clipminer.metrics import ClassificationMetrics
from clipminer.segments import SegmentConfig, decision_curves


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
    _plain_text(fig)
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


# -- find-clips outputs ----------------------------------------------------------------

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")


def write_scores_parquet(
    path: Path, times: np.ndarray, scores: np.ndarray, labels: Sequence[str]
) -> Path:
    """One row per scored frame: ``time`` then one float32 column per class."""
    import pandas as pd

    frame = pd.DataFrame(
        np.asarray(scores, np.float32).reshape(len(times), len(labels)), columns=list(labels)
    )
    frame.insert(0, "time", np.asarray(times, np.float64))
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_kinetics_csv(path: Path, rows: Sequence[tuple[str, str, float, float]]) -> Path:
    """``label,youtube_id,time_start,time_end,split`` (split is ``train``: mined clips)."""
    with (
        atomic_path(path, durable=True) as tmp,
        tmp.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle,
    ):
        writer = csv.writer(handle)
        writer.writerow(KINETICS_COLUMNS)
        for label, youtube_id, start, end in rows:
            writer.writerow([label, youtube_id, f"{start:.3f}", f"{end:.3f}", "train"])
    return path


def write_timeline_png(
    path: Path,
    times: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[str],
    candidates: Sequence[Any],
    *,
    segment: SegmentConfig,
    sample_period_seconds: float,
    title: str = "",
    shots: Sequence[Any] = (),
) -> Path:
    """What decided the segments: the image model's class scores (thin), the smoothed
    curves the segmenter compared (bold: each class's, or in ``action`` mode the summed
    action score) with the open and close thresholds, the candidate segments shaded
    in their class colour, and the shot boundaries (``shots``: cuts as dotted lines,
    fades as grey bands)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(14, 4))
    shown = shown_classes(labels, scores, candidates)
    colours = plt.get_cmap("tab10" if len(shown) <= 10 else "tab20")
    colour_of = {labels[k]: colours(n % colours.N) for n, k in enumerate(shown)}
    if len(times):
        for k in shown:
            label = labels[k]
            style = ":" if label in segment.background_labels else "-"
            # matplotlib hides legend entries whose label starts with "_"
            legend = f" {label}" if label.startswith("_") else label
            ax.plot(times, scores[:, k], style, color=colour_of[label], lw=0.8, alpha=0.55,
                    label=legend)  # fmt: skip
        curves = decision_curves(labels, scores, segment, sample_period_seconds)
        for name, curve in curves.items():
            if segment.segment_on == "action":
                ax.plot(times, curve, color="black", lw=1.8, label="actions, summed, smoothed")
            elif name in colour_of:
                ax.plot(times, curve, color=colour_of[name], lw=1.8)
    for value, what in ((segment.threshold, "open"), (segment.low, "close")):
        ax.axhline(value, color="grey", ls="--", lw=0.9)
        ax.text(0.0, value, f" {what} {value:.2f}", va="bottom", fontsize=7, color="grey",
                transform=ax.get_yaxis_transform())  # fmt: skip
    _draw_segments_and_shots(ax, candidates, shots, colour_of)
    ax.set_ylim(0, 1.12)
    ax.set_xlim(0, max(float(times[-1]) if len(times) else 1.0, 1.0))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("image-model score (bold: smoothed)")
    ax.set_title(title, loc="left")
    hidden = len(labels) - len(shown)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False,
              title=f"+{hidden} more in {SCORES_PARQUET}" if hidden else None,
              title_fontsize=7)  # fmt: skip
    _plain_text(fig)
    with warnings.catch_warnings():  # a name in a script the font lacks shows as boxes
        warnings.filterwarnings(
            "ignore", message="Glyph .* missing from font", category=UserWarning
        )
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


TIMELINE_CLASSES = 10
"""The timeline draws at most this many classes' curves besides the candidates' own
(a 400-class model's 400 curves and legend entries took 3.1 s to draw and could not
be read); every class stays in ``scores.parquet``."""


def shown_classes(
    labels: Sequence[str], scores: np.ndarray, candidates: Sequence[Any],
    limit: int = TIMELINE_CLASSES,
) -> list[int]:  # fmt: skip
    """The indices of the classes the timeline draws, in label order: every class when
    there are at most ``limit``; else the classes the candidates were found as or
    re-labelled to, then the highest-peaking others, up to ``limit`` in all."""
    if len(labels) <= limit:
        return list(range(len(labels)))
    index = {label: k for k, label in enumerate(labels)}
    picked = dict.fromkeys(
        index[name]
        for c in candidates
        for name in (c.segment.label, c.final_label)
        if name in index
    )
    peaks = np.asarray(scores).max(axis=0) if len(scores) else np.zeros(len(labels))
    for k in np.argsort(-peaks, kind="stable"):
        if len(picked) >= limit:
            break
        picked.setdefault(int(k))
    return sorted(picked)


def _draw_segments_and_shots(
    ax: Any, candidates: Sequence[Any], shots: Sequence[Any], colour_of: dict[str, Any]
) -> None:
    """The candidates shaded in their class colour and named by their final label; shot
    cuts as dotted lines, fades as grey bands."""
    for c in candidates:
        seg = c.segment
        start, end = seg.time_start_seconds, seg.time_end_seconds
        ax.axvspan(start, end, color=colour_of.get(seg.label, "grey"), alpha=0.18, lw=0)
        ax.text((start + end) / 2, 1.02, c.final_label, ha="center", va="bottom", fontsize=7,
                rotation=30)  # fmt: skip
    named: set[str] = set()
    for b in shots:
        legend = None if b.kind in named else {"cut": "shot cut", "fade": "fade"}[b.kind]
        named.add(b.kind)
        if b.kind == "fade":
            ax.axvspan(b.gap_start, b.gap_end, color="black", alpha=0.25, lw=0, label=legend)
        else:
            ax.axvline(b.time, color="black", ls=":", lw=0.8, label=legend)


def _plain_text(fig: Any) -> None:
    """Show every text of ``fig`` as written: names are data, never mathtext (``$x$``)."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_parse_math(False)
        shown = text.get_text()
        if not shown.isprintable():  # a tab or a control character in a file name
            text.set_text("".join(c if c.isprintable() else "\ufffd" for c in shown))


# -- the nightly batch's HTML report -------------------------------------------------------


def thumbnail_path(folder: Path, clip_path: str) -> Path:
    """Where the report keeps the thumbnail of a clip of the video folder ``folder``."""
    return folder / "thumbs" / (Path(clip_path).stem + ".jpg")


def clip_thumbnail(clip: Path, thumb: Path, *, width: int = 240) -> Path | None:
    """A JPEG of the clip's middle frame (made once); None when the clip cannot be read."""
    if thumb.is_file():
        return thumb
    from PIL import Image

    from clipminer.decode import VideoReader, probe
    from clipminer.errors import DecodeError

    try:
        middle = (probe(clip).duration_seconds or 0) / 2
        frame = next(iter(VideoReader(clip, start_seconds=middle)), None)
    except DecodeError:
        return None
    if frame is None:
        return None
    image = Image.fromarray(frame.pixels)
    image.thumbnail((width, width))
    with atomic_path(thumb) as tmp:
        image.save(tmp, format="JPEG", quality=85)
    return thumb


SHOWN_PROBLEMS = 50
"""The night section lists at most this many problems per stage."""


def _done_segments(out: Path, rows: Sequence[Any]) -> dict[str, list[SegmentRow]]:
    """The segments of every done video, by its output folder (read once per report)."""
    found = {}
    for row in rows:
        folder = out / row.output
        if row.status == "done":
            found[row.output] = read_segments(folder) if (folder / SEGMENTS_CSV).is_file() else []
    return found


def write_batch_html(
    out: Path,
    rows: Sequence[Any],
    *,
    night: Sequence[Any] | None = None,
    segments: dict[str, list[SegmentRow]] | None = None,
) -> Path:
    """``OUT/report.html`` (template ``pages/batch_report.html``): the totals and a card
    per mined video with its timeline and a table of its clips (thumbnail, player,
    links), and, for the nightly job, its stages (``night``: objects with ``name``,
    ``status``, ``seconds``, ``detail`` and ``problems``). Links are relative to OUT,
    so the page works opened from disk. ``rows`` are the batch state's rows
    (:class:`clipminer.batch.VideoRow`); ``segments`` those of the done ones, when the
    caller has read them already."""
    from collections import Counter

    from clipminer import pages

    segments = _done_segments(out, rows) if segments is None else segments
    cards = [_card(out, row, segments[row.output]) for row in rows if row.status == "done"]
    status = Counter(row.status for row in rows)
    labels = Counter(clip["label"] for card in cards for clip in card["clips"])
    page = pages.render(
        "batch_report.html",
        night=night,
        shown_problems=SHOWN_PROBLEMS,
        totals={
            "videos": len(rows),
            **{key: status.get(key, 0) for key in ("done", "failed", "skipped")},
            "clips": sum(len(card["clips"]) for card in cards),
        },
        per_label=", ".join(f"{k} {v}" for k, v in sorted(labels.items())),
        failed=[row.error or row.path for row in rows if row.status == "failed"],
        cards=cards,
        segments_name=SEGMENTS_CSV,
    )
    path = out / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8", errors="xmlcharrefreplace")
    return path


def _card(out: Path, row: Any, rows: Sequence[SegmentRow]) -> dict[str, Any]:
    """What the report shows of one done video (its thumbnails are made here)."""
    folder = out / row.output
    clips = []
    for c in rows:
        clip = {"label": c.final_label, "start": c.time_start, "end": c.time_end,
                "score": c.score, "video_score": _fmt(c.video_score, 4),
                "file": None, "thumbnail": None}  # fmt: skip
        # OUT in a bucket: the driver's copy has the thumbnails its workers made, not the clips
        made = c.clip_path and thumbnail_path(folder, c.clip_path).is_file()
        if c.clip_path and ((out / c.clip_path).is_file() or made):
            clip["file"], clip["file_name"] = c.clip_path, Path(c.clip_path).name
            thumb = clip_thumbnail(out / c.clip_path, thumbnail_path(folder, c.clip_path))
            clip["thumbnail"] = thumb.relative_to(out).as_posix() if thumb else None
        clips.append(clip)
    timeline = f"{row.output}/{TIMELINE_PNG}"
    return {
        "title": Path(row.path).name,
        "path": row.path,
        "duration": row.duration_seconds or 0.0,
        "fps": row.fps or 0.0,
        "stages": _stage_text(folder),
        "segments": f"{row.output}/{SEGMENTS_CSV}",
        "timeline": timeline if (out / timeline).is_file() else None,
        "clips": clips,
    }


# -- the nightly batch's reports -------------------------------------------------------

SUMMARY_COLUMNS = (
    "video",
    "status",
    "duration_seconds",
    "segments",
    "clips_per_label",
    "realtime_factor",
    "seconds",
    "output",
    "error",
)


def write_batch_reports(out: Path, rows: Sequence[Any]) -> None:
    """``summary.csv``, ``kinetics.csv`` over every done video, and ``report.html``.

    ``rows`` are the batch state's rows (:class:`clipminer.batch.VideoRow`).
    """
    with (
        atomic_path(out / "summary.csv", durable=True) as tmp,
        tmp.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle,
    ):
        writer = csv.writer(handle)
        writer.writerow(SUMMARY_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row.path,
                    row.status,
                    _num(row.duration_seconds),
                    row.segments,
                    row.clips_json if row.status == "done" else "",
                    _num(row.fps),
                    _num(row.seconds),
                    row.output,
                    row.error,
                ]
            )
    segments = _done_segments(out, rows)
    kinetics = [
        (c.final_label, Path(output).name, c.time_start, c.time_end)
        for output, found in segments.items()
        for c in found
    ]
    write_kinetics_csv(out / KINETICS_CSV, kinetics)
    write_batch_html(out, rows, segments=segments)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _stage_text(folder: Path) -> str:
    """`` (decode 12.3 s, score 40.1 s, ...)`` from a video's ``run.json``; empty if absent."""
    stages = read_run(folder).get("stages")
    if not isinstance(stages, dict):
        return ""
    parts = [
        f"{k.removesuffix('_seconds')} {v:.1f} s"
        for k, v in stages.items()
        if isinstance(v, int | float)
    ]
    return f" ({', '.join(parts)})"


# -- training --------------------------------------------------------------------------------


def write_training_curves(
    path: Path,
    *,
    epochs: Sequence[int],
    train_loss: Sequence[float],
    val_loss: Sequence[float],
    train_top1: Sequence[float],
    val_top1: Sequence[float],
) -> Path:
    """Loss and top-1 per epoch, train and validation side by side, as a PNG.

    NaN values (no validation) are left out of their curve.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, top1_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, train, val, name in (
        (loss_ax, train_loss, val_loss, "loss"),
        (top1_ax, train_top1, val_top1, "top-1"),
    ):
        ax.plot(epochs, train, "o-", label=f"train {name}")
        if not all(np.isnan(val)):
            ax.plot(epochs, val, "s-", label=f"validation {name}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    top1_ax.set_ylim(-0.02, 1.02)
    loss_ax.xaxis.get_major_locator().set_params(integer=True)
    top1_ax.xaxis.get_major_locator().set_params(integer=True)
    _plain_text(fig)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path
