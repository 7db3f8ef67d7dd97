"""Read back what find-clips left in ``OUT``: the clips, their embeddings, the shots.

Every mined video has a folder ``OUT/videos/<name>/`` (:mod:`clipminer.layout`) with
``segments.csv`` (one row per clip), ``run.json`` and, from this version on,
``embeddings.npy`` and ``shots.csv``. A clip is known across OUT by its :attr:`Clip.key`,
``<name>/<clip_id>``.

``embeddings.npy`` is one structured array (``numpy.load(..., allow_pickle=False)``
opens it), one row per clip plus one row for the whole video:

- ``clip_id`` (int32): the clip's id in ``segments.csv``, or :data:`VIDEO_ROW` (-1);
- ``image`` (float32 vector): the image model's pooled features, averaged over the
  frames the pass scored inside the clip (over all scored frames for the video row),
  L2-normalised;
- ``video`` (float32 vector, present only when a video model re-labelled): the first
  video model's penultimate features, averaged over the windows it saw, L2-normalised
  (the video row: the mean of the clips').

``run.json`` names the models the vectors come from (``embedding_models``), so vectors
of different models are never compared.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipminer import store
from clipminer.errors import UsageError
from clipminer.fsutil import atomic_path
from clipminer.layout import (
    EMBEDDINGS_NPY,
    RUN_JSON,
    SEGMENTS_CSV,
    SegmentRow,
    read_run,
    read_segments,
    videos_root,
)

log = logging.getLogger(__name__)

DUPLICATES_CSV = "duplicates.csv"
"""``OUT/duplicates.csv``, written by ``clipminer dedup``."""
REVIEW_DB = "review.sqlite"
"""``OUT/review.sqlite``, the votes of ``clipminer review``."""
VIDEO_ROW = -1
"""``clip_id`` of the whole-video row of ``embeddings.npy``."""


@dataclass(frozen=True)
class Clip:
    """One row of a video's ``segments.csv``, with where it came from."""

    video: str
    """The video's folder name under ``OUT/videos`` (its ``youtube_id``)."""
    clip_id: int
    image_label: str
    image_score: float
    video_label: str | None
    video_score: float | None
    time_start: float
    time_end: float
    clip_path: str | None
    """Relative to OUT; None when find-clips ran with ``--cut none``."""
    source: str
    """The source video's path as find-clips saw it."""

    @property
    def key(self) -> str:
        """``<video>/<clip_id>``: unique across OUT."""
        return f"{self.video}/{self.clip_id}"

    @property
    def label(self) -> str:
        """The video model's label when there is one, else the image model's."""
        return self.video_label or self.image_label


@dataclass(frozen=True)
class Embeddings:
    """The vectors of one video (rows in the order of ``clip_ids``)."""

    clip_ids: np.ndarray
    """int32, without the whole-video row."""
    image: np.ndarray
    """float32, clips x dims, L2-normalised."""
    video: np.ndarray | None
    image_of_video: np.ndarray
    """The whole video's image embedding."""
    video_of_video: np.ndarray | None


def video_folders(out: str | os.PathLike[str]) -> list[Path]:
    """The done per-video folders of OUT, by name: those with a ``segments.csv`` and a
    ``run.json``. ``run.json`` is written (and uploaded) last, so a folder without it,
    such as one a killed upload left in a bucket and a sync brought down, is absent."""
    root = videos_root(out)
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / SEGMENTS_CSV).is_file()
        and (p / RUN_JSON).is_file()
    )  # fmt: skip


def check_mined(out: str | os.PathLike[str]) -> Path:
    """OUT as a Path, or a one-line error when it holds no mined videos."""
    if store.names_url(out):
        raise UsageError(
            f"{out}: a URL; dedup, review and export read a local OUT. Copy it here first "
            "(for S3: aws s3 sync URL DIR); folders without run.json are left out"
        )
    out = Path(out)
    if not out.is_dir():
        raise UsageError(f"{out}: no such folder")
    if not video_folders(out):
        raise UsageError(f"{out}: no mined videos (expected {out / 'videos'}/<name>/segments.csv)")
    return out


def read_clips(folder: Path) -> list[Clip]:
    """The clips of one video folder; a one-line error naming the file when it is broken."""
    return [clip_of(folder.name, row) for row in read_segments(folder)]


def clip_of(video: str, row: SegmentRow) -> Clip:
    """The :class:`Clip` of one ``segments.csv`` row of the folder named ``video``."""
    return Clip(
        video=video,
        clip_id=row.clip_id,
        image_label=row.label,
        image_score=row.score,
        video_label=row.video_label,
        video_score=row.video_score,
        time_start=row.time_start,
        time_end=row.time_end,
        clip_path=row.clip_path,
        source=row.video,
    )


def all_clips(out: str | os.PathLike[str]) -> list[Clip]:
    """Every clip in OUT, video by video; a broken folder is logged and skipped."""
    clips: list[Clip] = []
    for folder in video_folders(out):
        try:
            clips += read_clips(folder)
        except UsageError as exc:
            log.warning("%s", exc)
    return clips


def clip_file(out: str | os.PathLike[str], clip: Clip) -> Path | None:
    """The clip's file, resolved, when it is a file inside its own video's ``clips/`` folder
    once links are followed; else None (no clip, deleted, or a ``clip_path`` that leads
    anywhere else: OUT's other files, or out of OUT)."""
    if not clip.clip_path:
        return None
    try:
        allowed = (videos_root(out) / clip.video / "clips").resolve()
        path = (Path(out) / clip.clip_path).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if path == allowed or not path.is_relative_to(allowed) or not path.is_file():
        return None
    return path


def write_embeddings(
    path: Path,
    clip_ids: Sequence[int],
    image: np.ndarray,
    video: np.ndarray | None,
    *,
    image_of_video: np.ndarray,
    video_of_video: np.ndarray | None = None,
) -> Path:
    """Write ``embeddings.npy`` (see the module doc) atomically; vectors are normalised here."""
    fields: list[tuple[str, str, tuple[int, ...]]] = [
        ("clip_id", "<i4", ()), ("image", "<f4", (image.shape[1],))
    ]  # fmt: skip
    if video is not None:
        fields.append(("video", "<f4", (video.shape[1],)))
    table = np.zeros(len(clip_ids) + 1, dtype=fields)
    table["clip_id"] = [*clip_ids, VIDEO_ROW]
    table["image"] = _normalised(np.vstack([image, image_of_video[None]]))
    if video is not None:
        whole = video_of_video if video_of_video is not None else video.mean(0)
        table["video"] = _normalised(np.vstack([video, whole[None]]))
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, table, allow_pickle=False)
    return path


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def read_embeddings(folder: Path) -> Embeddings | None:
    """The embeddings of one video folder; None when it has none (older runs, --rescore)."""
    path = folder / EMBEDDINGS_NPY
    if not path.is_file():
        return None
    try:
        table = np.load(path, allow_pickle=False)
        ids = table["clip_id"].astype(np.int32)
        whole = ids == VIDEO_ROW
        has_video = "video" in (table.dtype.names or ())
        return Embeddings(
            clip_ids=ids[~whole],
            image=table["image"][~whole],
            video=table["video"][~whole] if has_video else None,
            image_of_video=table["image"][whole][0],
            video_of_video=table["video"][whole][0] if has_video else None,
        )
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise UsageError(f"{path}: not a clipminer embeddings.npy ({exc})") from None


def embedding_models(folder: Path) -> dict[str, str | None]:
    """``{"image": id, "video": id}`` of the models the folder's embeddings came from."""
    models = read_run(folder).get("embedding_models")
    if not isinstance(models, dict):
        return {"image": None, "video": None}
    return {"image": models.get("image"), "video": models.get("video")}


DUPLICATES_COLUMNS = ("group_id", "kind", "member", "kept", "similarity", "component")
"""``OUT/duplicates.csv``: one row per clip or video that has a near-duplicate. ``kind`` is
``clip`` (``member`` is a :attr:`Clip.key`) or ``video`` (``member`` is a video folder
name: every clip of a dropped video is dropped); a group is one kept member (``kept`` 1)
and the near-duplicates of it (``kept`` 0; ``similarity``, their cosine similarity to the
kept member); ``component`` joins the groups linked through a member (a ~ b ~ c with b
in a's group and c leading its own), which export keeps in one split."""


@dataclass(frozen=True)
class Duplicates:
    """What ``clipminer dedup`` decided, as :func:`read_duplicates` reads it."""

    clip_group: dict[str, str]
    """Clip key -> group id, for clips in a clip group."""
    video_group: dict[str, str]
    """Video folder name -> group id, for videos in a video group."""
    dropped_clips: frozenset[str]
    """Keys of clips marked ``kept=0``."""
    dropped_videos: frozenset[str]
    """Video folder names marked ``kept=0``."""
    clip_component: dict[str, str] = field(default_factory=dict)
    """Clip key -> component id (see :data:`DUPLICATES_COLUMNS`)."""
    video_component: dict[str, str] = field(default_factory=dict)
    """Video folder name -> component id."""

    def dropped(self, clip: Clip) -> bool:
        """Whether dedup dropped ``clip`` (or the video it comes from)."""
        return clip.key in self.dropped_clips or clip.video in self.dropped_videos


def read_duplicates(out: str | os.PathLike[str]) -> Duplicates:
    """``OUT/duplicates.csv``; empty when dedup has not run."""
    path = Path(out) / DUPLICATES_CSV
    clip_group: dict[str, str] = {}
    video_group: dict[str, str] = {}
    dropped_clips: set[str] = set()
    dropped_videos: set[str] = set()
    clip_component: dict[str, str] = {}
    video_component: dict[str, str] = {}
    if not path.is_file():
        return Duplicates({}, {}, frozenset(), frozenset())
    try:
        with path.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
            for row in csv.DictReader(handle):
                kind, member, group = row["kind"], row["member"], row["group_id"]
                kept = row["kept"].strip() == "1"
                component = row.get("component") or group
                if kind == "clip":
                    clip_group[member] = group
                    clip_component[member] = component
                    if not kept:
                        dropped_clips.add(member)
                elif kind == "video":
                    video_group[member] = group
                    video_component[member] = component
                    if not kept:
                        dropped_videos.add(member)
                else:
                    raise ValueError(f"unknown kind {kind!r}")
    except (OSError, UnicodeDecodeError, KeyError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path}: not a clipminer duplicates.csv ({exc})") from None
    return Duplicates(
        clip_group,
        video_group,
        frozenset(dropped_clips),
        frozenset(dropped_videos),
        clip_component,
        video_component,
    )
