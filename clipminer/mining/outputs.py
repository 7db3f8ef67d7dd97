"""A video's outputs: the tables, the plot and the embeddings written into its staging
folder, then ``run.json`` last and the folder swapped in whole (:mod:`clipminer.layout`
names every file)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipminer.config import FindClipsConfig
from clipminer.curate.catalog import write_embeddings
from clipminer.fsutil import swap_folder_in
from clipminer.layout import (
    EMBEDDINGS_NPY,
    RUN_JSON,
    SCORES_PARQUET,
    SHOTS_CSV,
    TIMELINE_PNG,
    SourceId,
    run_json,
    staging_folder,
    write_segments,
)
from clipminer.mining.results import VideoResult
from clipminer.mining.shots import write_shots_csv


def write_outputs(result: VideoResult, config: FindClipsConfig, labels: Sequence[str]) -> None:
    """Write the per-video tables, plot and embeddings into the staging folder."""
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
        segment=config.segment,
        sample_period_seconds=1.0 / config.sample_fps,
        title=result.video.name,
        shots=result.shots,
    )
    if config.shots:
        write_shots_csv(stage / SHOTS_CSV, result.shots)
    _write_embeddings(stage / EMBEDDINGS_NPY, result)


def _write_embeddings(path: Path, result: VideoResult) -> None:
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


def publish(result: VideoResult, source: SourceId, record: dict[str, Any]) -> None:
    """Write ``run.json`` (the source, then ``record``: settings, models, stage times)
    last, then swap the finished folder in."""
    from clipminer import report

    final = result.out_dir
    stage = staging_folder(final)
    report.write_json(stage / RUN_JSON, run_json(source, name=final.name, **record))
    swap_folder_in(stage, final)


def upload(folder: Path, out_url: str, *, thumbnails: bool = False) -> int:
    """Send a finished video folder to OUT in the store, its ``run.json`` last
    (:func:`clipminer.store.upload_folder`), then remove the local copy.

    With ``thumbnails``, the report's clip thumbnails are made first, here, where the
    clips are (the batch driver that writes the report may have none of them).

    Returns:
        The bytes uploaded.
    """
    from clipminer import report, store
    from clipminer.layout import VIDEOS_DIR, read_segments

    if thumbnails:
        out = folder.parent.parent
        for row in read_segments(folder):
            if row.clip_path and (out / row.clip_path).is_file():
                report.clip_thumbnail(
                    out / row.clip_path, report.thumbnail_path(folder, row.clip_path)
                )
    sent = store.upload_folder(
        folder, store.join(out_url, VIDEOS_DIR, folder.name), marker=RUN_JSON
    )
    shutil.rmtree(folder, ignore_errors=True)
    return sent


def clear_staging(folder: Path) -> None:
    """Remove what a killed or failed run left in ``folder``'s staging folder."""
    stage = staging_folder(folder)
    if stage.exists():
        shutil.rmtree(stage)
