"""Near-duplicate clips and source videos across everything mined into OUT.

Two clips are near-duplicates when the cosine similarity of their embeddings (the
image model's, or the video model's with ``space="video"``) is at least ``threshold``;
two source videos when their whole-video rows are at least ``video_threshold`` apart
(the research package's similarity graph: mean frame embedding, cosine > 0.97). Only
vectors of the same model are compared (``run.json``'s ``embedding_models``), and clips
only across videos unless ``within_videos``. Each group is one kept member and its
near-duplicates (:func:`leaders`: no chains); the others are
*marked* dropped in ``OUT/duplicates.csv`` (:data:`~clipminer.curate.catalog.
DUPLICATES_COLUMNS`); per-video files are never changed, and clip files go only with
``delete=True``.

All pairs over the threshold are found without a Python loop over pairs: exact tiled
matrix products in numpy while the number of comparisons is small enough
(:data:`EXACT_MAX_COMPARISONS`), a usearch HNSW index (cosine) above it, whose
candidates are checked with the same exact dot product, so both paths report the same
similarities for the pairs they find.

Reruns are incremental: ``OUT/.dedup/pairs-<space>.npz`` keeps the pairs of the last
run and a fingerprint of every video's ``embeddings.npy`` and ``segments.csv``; a rerun
compares only the clips of new or re-mined videos with all others, reuses the pairs
among unchanged videos, and forgets videos that are gone. A clip or video kept by an
earlier run stays kept (read from ``duplicates.csv``, so the cache changes only the time
a rerun takes, never its decisions).
"""

from __future__ import annotations

import json
import logging
import os
import time
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from clipminer.config import DedupConfig, DedupSpace
from clipminer.curate import catalog
from clipminer.curate.catalog import DUPLICATES_COLUMNS, Clip
from clipminer.errors import UsageError
from clipminer.fsutil import atomic_path, short_hash
from clipminer.layout import EMBEDDINGS_NPY, SEGMENTS_CSV
from clipminer.settings import from_flat

log = logging.getLogger(__name__)

Method = Literal["auto", "exact", "usearch"]
Progress = Callable[[float, float], None]
"""Called with (done, total) as work advances."""

CACHE_DIR = ".dedup"
CACHE_VERSION = 1
TILE_ROWS = 2048
"""Rows per side of one similarity tile: 2048² float32 is 16 MiB, whatever n is."""
EPSILON = 1e-6
"""Float32 rounding allowance: a pair whose cosine is ``threshold`` to within this counts."""
EXACT_MAX_COMPARISONS = 100_000**2 // 2
"""Pairs compared exactly (tiled numpy products) up to this many, usearch above it.

Measured with ``benchmarks/dedup.py`` on this project's 2-core CPU (shared with other
work, so two runs are given), random unit vectors of dim 1024 with 100 planted pairs at
cosine 0.96-0.99; peak RSS over the 428 MiB that 100k vectors and Python take:

=====  ==================================  =========================================
clips  exact blocked                       usearch (i8, M=16, ef_add=64, 16-NN)
=====  ==================================  =========================================
10k    4.7-5.1 s (~2,000 clips/s), +40 MiB  8.3-12.2 s (820-1,200 clips/s), +53 MiB
100k   79-150 s (665-1,264 clips/s),        73-308 s (325-1,365 clips/s),
       recall 1, +40 MiB                    recall 0.98-0.99, +166 MiB
=====  ==================================  =========================================

Exact grows as n² and usearch as about n log n; they break even near 100k clips
(5e9 comparisons), so exact is used up to that, and for every incremental rerun that
compares a night's clips with the rest in fewer comparisons: it finds every pair and
needs no memory beyond the vectors and a 16 MiB tile. Random 1024-d vectors are HNSW's
worst case; real embeddings (low intrinsic dimension) may favour usearch sooner."""
USEARCH_NEIGHBOURS = 16
"""Neighbours asked per query first; queries whose every neighbour is a candidate ask
again with 4× as many, until one is not or all vectors were returned."""
SEARCH_CHUNK = 8192
"""Queries per usearch search call (progress is reported between calls)."""
CANDIDATE_MARGIN = 0.02
"""usearch candidates are taken this far below the threshold (its i8 distances are
approximate) and then checked exactly."""


@dataclass(frozen=True)
class Pairs:
    """Undirected pairs of row indices (``first < second``) with their cosine."""

    first: np.ndarray
    """int64."""
    second: np.ndarray
    """int64."""
    similarity: np.ndarray
    """float32."""

    def __len__(self) -> int:
        return len(self.first)

    @staticmethod
    def empty() -> Pairs:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))

    @staticmethod
    def concat(parts: Sequence[Pairs]) -> Pairs:
        if not parts:
            return Pairs.empty()
        return Pairs(
            np.concatenate([p.first for p in parts]).astype(np.int64),
            np.concatenate([p.second for p in parts]).astype(np.int64),
            np.concatenate([p.similarity for p in parts]).astype(np.float32),
        )


@dataclass(frozen=True)
class DedupReport:
    """What one :func:`dedup` run compared and decided."""

    out: Path
    space: str
    clips: int
    """Clips compared (those with an embedding row)."""
    videos: int
    """Videos compared (those with embeddings)."""
    clip_groups: int
    dropped_clips: int
    """Clips marked dropped in a clip group (clips of dropped videos not counted)."""
    video_groups: int
    dropped_videos: int
    deleted_files: int
    """Clip files removed (``delete=True`` only)."""
    reused_videos: int
    """Videos whose pairs came from the last run's cache instead of a new search."""
    method: str
    """``exact`` or ``usearch`` (or ``none`` when nothing needed comparing)."""
    seconds: float
    notes: tuple[str, ...] = field(default=())
    """One-line warnings: skipped folders, several models."""


@dataclass
class _Video:
    """One video folder's clips with their vectors in the chosen space."""

    name: str
    clips: list[Clip]
    vectors: np.ndarray
    whole: np.ndarray
    model: str | None
    fingerprint: str


# -- neighbour search ---------------------------------------------------------------------------


def neighbour_pairs(
    vectors: np.ndarray,
    threshold: float,
    *,
    queries: np.ndarray | None = None,
    method: Method = "auto",
    progress: Progress | None = None,
) -> tuple[Pairs, str]:
    """Every pair of rows of ``vectors`` (L2-normalised) with cosine >= ``threshold``.

    With ``queries`` (row indices), only pairs with at least one end among them. Returns
    the pairs and the method used; ``auto`` picks by :data:`EXACT_MAX_COMPARISONS`.
    """
    n = len(vectors)
    query_rows = np.arange(n) if queries is None else np.unique(np.asarray(queries, np.int64))
    if n < 2 or len(query_rows) == 0:
        return Pairs.empty(), "none"
    if method == "auto":
        comparisons = len(query_rows) * (n - (len(query_rows) + 1) / 2)
        method = "exact" if comparisons <= EXACT_MAX_COMPARISONS else "usearch"
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if method == "exact":
        return _exact_pairs(vectors, query_rows, threshold, progress), "exact"
    if method == "usearch":
        return _usearch_pairs(vectors, query_rows, threshold, progress), "usearch"
    raise ValueError(f"method must be auto, exact or usearch, got {method!r}")


def _exact_pairs(
    vectors: np.ndarray, queries: np.ndarray, threshold: float, progress: Progress | None
) -> Pairs:
    """Tiled products: queries against themselves (upper triangle), then against the rest."""
    others = np.setdiff1d(np.arange(len(vectors)), queries, assume_unique=True)
    parts: list[Pairs] = []
    for start in range(0, len(queries), TILE_ROWS):
        rows = queries[start : start + TILE_ROWS]
        block = vectors[rows]
        for col_start in range(start, len(queries), TILE_ROWS):
            cols = queries[col_start : col_start + TILE_ROWS]
            parts.append(_tile(block, vectors[cols], rows, cols, threshold, col_start == start))
        for col_start in range(0, len(others), TILE_ROWS):
            cols = others[col_start : col_start + TILE_ROWS]
            parts.append(_tile(block, vectors[cols], rows, cols, threshold, False))
        if progress:
            progress(min(start + TILE_ROWS, len(queries)), len(queries))
    return _ordered(Pairs.concat(parts))


def _tile(
    left: np.ndarray,
    right: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    threshold: float,
    diagonal: bool,
) -> Pairs:
    """Pairs over the threshold in one tile; a diagonal tile keeps its upper triangle."""
    sims = left @ right.T
    r, c = np.nonzero(sims >= threshold - EPSILON)
    if diagonal:
        r, c = r[c > r], c[c > r]
    return Pairs(rows[r], cols[c], sims[r, c].astype(np.float32))


def _ordered(pairs: Pairs) -> Pairs:
    """Each pair as (smaller, larger) row index."""
    lo = np.minimum(pairs.first, pairs.second)
    hi = np.maximum(pairs.first, pairs.second)
    return Pairs(lo, hi, pairs.similarity)


def _usearch_pairs(
    vectors: np.ndarray, queries: np.ndarray, threshold: float, progress: Progress | None
) -> Pairs:
    """HNSW candidates (a little below the threshold), checked by exact dot products."""
    from usearch.index import Index

    n, dim = vectors.shape
    index = Index(ndim=dim, metric="cos", dtype="i8", connectivity=16, expansion_add=64)
    index.add(np.arange(n, dtype=np.uint64), vectors)
    cutoff = 1.0 - (threshold - CANDIDATE_MARGIN)
    found: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, len(queries), SEARCH_CHUNK):
        found += _candidates(index, vectors, queries[start : start + SEARCH_CHUNK], cutoff)
        if progress:
            progress(min(start + SEARCH_CHUNK, len(queries)), len(queries))
    a = np.concatenate([f[0] for f in found])
    b = np.concatenate([f[1] for f in found])
    keep = a != b
    a, b = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
    unique = np.unique(a * n + b)
    a, b = unique // n, unique % n
    sims = np.einsum("ij,ij->i", vectors[a], vectors[b]).astype(np.float32)
    ok = sims >= threshold - EPSILON
    return Pairs(a[ok], b[ok], sims[ok])


def _candidates(
    index: Any, vectors: np.ndarray, queries: np.ndarray, cutoff: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(query, neighbour) rows within ``cutoff`` cosine distance; a query whose every
    neighbour is that close asks again with 4x as many."""
    n = len(vectors)
    found = []
    pending, count = queries, USEARCH_NEIGHBOURS
    while len(pending):
        count = min(count, n)
        matches = index.search(vectors[pending], count)
        keys = np.asarray(matches.keys).reshape(len(pending), -1).astype(np.int64)
        distances = np.asarray(matches.distances).reshape(len(pending), -1)
        close = (keys >= 0) & (keys < n) & (distances <= cutoff)
        r, c = np.nonzero(close)
        found.append((pending[r], keys[r, c]))
        saturated = close.all(axis=1) & (count < n)
        pending, count = pending[saturated], count * 4
    return found


def leaders(n: int, first: np.ndarray, second: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """Groups of n nodes joined by the edges, each node's label its group's kept node.

    Nodes are taken in ``order`` (the keep preference): a node not yet in a group starts
    one and takes its neighbours that are not in one yet. So every member is a direct
    near-duplicate of the member kept, and a chain (a ~ b, b ~ c, a !~ c, as consecutive
    moments of one scene give) never puts a and c together, which connected components
    would. The loop runs over the nodes that have an edge only.
    """
    labels = np.arange(n, dtype=np.int64)
    if len(first) == 0:
        return labels
    source = np.concatenate([first, second])
    target = np.concatenate([second, first])
    by_source = np.argsort(source, kind="stable")
    target = target[by_source]
    starts = np.searchsorted(source[by_source], np.arange(n + 1))
    free = np.ones(n, bool)
    linked = np.zeros(n, bool)
    linked[source] = True
    for node in order:
        if not linked[node] or not free[node]:
            continue
        free[node] = False
        neighbours = target[starts[node] : starts[node + 1]]
        taken = neighbours[free[neighbours]]
        labels[taken] = node
        free[taken] = False
    return labels


def _fingerprint(folder: Path) -> str:
    """Changes whenever find-clips rewrites the folder's vectors or clip list."""
    parts = []
    for name in (EMBEDDINGS_NPY, SEGMENTS_CSV):
        st = (folder / name).stat()
        parts.append(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
    return "|".join(parts)


def _load_videos(
    out: Path, space: DedupSpace, progress: Progress | None
) -> tuple[list[_Video], list[str]]:
    """Every video folder with usable vectors in ``space``, and one note per one without."""
    folders = catalog.video_folders(out)
    videos: list[_Video] = []
    notes: list[str] = []
    for done, folder in enumerate(folders, 1):
        video = _load_video(folder, space, notes)
        if video is not None:
            videos.append(video)
        if progress:
            progress(done, len(folders))
    return videos, notes


def _load_video(folder: Path, space: DedupSpace, notes: list[str]) -> _Video | None:
    try:
        clips = catalog.read_clips(folder)
        embeddings = catalog.read_embeddings(folder)
    except UsageError as exc:
        notes.append(f"{exc}; skipped")
        return None
    if embeddings is None:
        notes.append(f"{folder}: no {EMBEDDINGS_NPY} (mined by an older version?); skipped")
        return None
    if space == "video":
        if embeddings.video is None or embeddings.video_of_video is None:
            notes.append(
                f"{folder / EMBEDDINGS_NPY}: no video-model vectors (mined without "
                "a video model); skipped for --space video"
            )
            return None
        vectors, whole = embeddings.video, embeddings.video_of_video
    else:
        vectors, whole = embeddings.image, embeddings.image_of_video
    row_of = {int(cid): row for row, cid in enumerate(embeddings.clip_ids)}
    matched = [c for c in clips if c.clip_id in row_of]
    if len(matched) < len(clips):
        notes.append(
            f"{folder}: {len(clips) - len(matched)} clips of {SEGMENTS_CSV} have no "
            f"row in {EMBEDDINGS_NPY}; those are not compared"
        )
    rows = np.array([row_of[c.clip_id] for c in matched], dtype=np.int64)
    return _Video(
        name=folder.name,
        clips=matched,
        vectors=np.asarray(vectors, np.float32)[rows].reshape(len(rows), len(whole)),
        whole=np.asarray(whole, np.float32),
        model=catalog.embedding_models(folder)[space],
        fingerprint=_fingerprint(folder),
    )


ModelKey = tuple[str, int]
"""The model's id (``?`` when run.json names none) and the vectors' size."""


def _model_key(video: _Video) -> ModelKey:
    return (video.model or "?", len(video.whole))


def _by_model(
    videos: Sequence[_Video], space: str, root: Path, notes: list[str]
) -> dict[ModelKey, list[_Video]]:
    """Videos whose vectors can be compared with each other, by model (a note when
    there are several)."""
    groups: dict[ModelKey, list[_Video]] = defaultdict(list)
    for video in sorted(videos, key=lambda v: (_model_key(v), v.name)):
        groups[_model_key(video)].append(video)
    if len(groups) > 1:
        notes.append(
            f"{len(groups)} different {space} models made the embeddings in {root} "
            f"({', '.join(sorted(m for m, _ in groups))}); only vectors of the same model "
            "are compared"
        )
    return dict(groups)


# -- the cache of last run's pairs ---------------------------------------------------------------


@dataclass(frozen=True)
class _Cache:
    threshold: float
    videos: dict[str, dict[str, str | None]]
    keys: list[str]
    pairs: Pairs


def _cache_path(out: Path, space: DedupSpace) -> Path:
    return out / CACHE_DIR / f"pairs-{space}.npz"


def _read_cache(out: Path, space: DedupSpace) -> _Cache | None:
    """Last run's pairs, or None when absent, unreadable or from another version."""
    path = _cache_path(out, space)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode("ascii"))
            pairs = Pairs(
                data["first"].astype(np.int64),
                data["second"].astype(np.int64),
                data["similarity"].astype(np.float32),
            )
        if meta["version"] != CACHE_VERSION or meta["space"] != space:
            return None
        return _Cache(float(meta["threshold"]), dict(meta["videos"]), list(meta["keys"]), pairs)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        log.debug("%s: ignored (%s)", path, exc)
        return None


def _write_cache(
    out: Path, space: DedupSpace, threshold: float, videos: Sequence[_Video], pairs: Pairs
) -> None:
    keys = [c.key for v in videos for c in v.clips]
    meta = {
        "version": CACHE_VERSION,
        "space": space,
        "threshold": threshold,
        "videos": {v.name: {"fingerprint": v.fingerprint, "model": v.model} for v in videos},
        "keys": keys,
    }
    path = _cache_path(out, space)
    path.parent.mkdir(exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez(
            handle,
            meta=np.frombuffer(json.dumps(meta).encode("ascii"), np.uint8),
            first=pairs.first.astype(np.int32),
            second=pairs.second.astype(np.int32),
            similarity=pairs.similarity,
        )


def _reusable(cache: _Cache | None, videos: Sequence[_Video], threshold: float) -> set[str]:
    """Names of videos unchanged since the cache was written (at a threshold <= this one)."""
    if cache is None or cache.threshold > threshold + EPSILON:
        return set()
    return {
        v.name
        for v in videos
        if (old := cache.videos.get(v.name))
        and old.get("fingerprint") == v.fingerprint
        and old.get("model") == v.model
    }


def _cached_pairs(
    cache: _Cache, reused: set[str], index_of: dict[str, int], threshold: float
) -> Pairs:
    """The cache's pairs between reused videos, re-indexed to this run's rows."""
    if not len(cache.pairs):
        return Pairs.empty()
    current = np.array(
        [index_of.get(key, -1) if key.rsplit("/", 1)[0] in reused else -1 for key in cache.keys],
        dtype=np.int64,
    )
    a, b = current[cache.pairs.first], current[cache.pairs.second]
    ok = (a >= 0) & (b >= 0) & (cache.pairs.similarity >= threshold - EPSILON)
    return _ordered(Pairs(a[ok], b[ok], cache.pairs.similarity[ok]))


# -- groups and decisions -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    group_id: str
    kind: str
    member: str
    kept: bool
    similarity: float
    component: str


def _groups(labels: np.ndarray) -> list[np.ndarray]:
    """Members of each component of two or more, by label."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    cuts = np.flatnonzero(np.diff(sorted_labels)) + 1
    return [g for g in np.split(order, cuts) if len(g) > 1]


def components(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Connected components of n nodes joined by the edges: each node's smallest member.

    Min-label propagation with pointer jumping, in numpy (no loop over edges).
    """
    labels = np.arange(n, dtype=np.int64)
    while len(first):
        low = np.minimum(labels[first], labels[second])
        updated = labels.copy()
        np.minimum.at(updated, first, low)
        np.minimum.at(updated, second, low)
        while not np.array_equal(jumped := updated[updated], updated):
            updated = jumped
        if np.array_equal(updated, labels):
            break
        labels = updated
    return labels


def _decide(
    kind: str,
    pairs: tuple[np.ndarray, np.ndarray],
    names: Sequence[str],
    vectors: np.ndarray,
    rank: Callable[[int], tuple[object, ...]],
) -> list[_Row]:
    """Rows for every member of a connected component of two or more.

    Within a component, groups are led by their kept member (:func:`leaders`); a member
    that is no leader's near-duplicate leads a group of one. ``component`` ties them
    together: export keeps a whole component in one split, since a ~ b ~ c makes a and c
    near-duplicates through b even when b is dropped.
    """
    n = len(names)
    first, second = pairs
    led = leaders(n, first, second, sorted(range(n), key=rank))
    rows: list[_Row] = []
    for members in _groups(components(n, first, second)):
        component = f"k{short_hash(f'{kind}:{names[min(members.tolist(), key=rank)]}', 12)}"
        for member in members.tolist():
            kept = int(led[member])
            group_id = f"{kind[0]}{short_hash(f'{kind}:{names[kept]}', 12)}"
            sim = 1.0 if member == kept else float(vectors[member] @ vectors[kept])
            rows.append(_Row(group_id, kind, names[member], member == kept, sim, component))
    return rows


def _group_count(rows: Sequence[_Row]) -> int:
    """Groups of two or more (a component also has groups of one)."""
    sizes = Counter(r.group_id for r in rows)
    return sum(size > 1 for size in sizes.values())


def _video_rows(
    models: dict[ModelKey, list[_Video]], threshold: float, previous: catalog.Duplicates
) -> list[_Row]:
    """Groups of near-duplicate source videos, per model; the one with most clips is kept."""
    rows: list[_Row] = []
    prev_kept = {name for name in previous.video_group if name not in previous.dropped_videos}
    for group in models.values():
        whole = np.stack([v.whole for v in group])
        pairs, _ = neighbour_pairs(whole, threshold)
        names = [v.name for v in group]

        def rank(i: int, group: list[_Video] = group) -> tuple[object, ...]:
            return (group[i].name not in prev_kept, -len(group[i].clips), group[i].name)

        rows += _decide("video", (pairs.first, pairs.second), names, whole, rank)
    return rows


def _clip_score(clip: Clip) -> float:
    return clip.video_score if clip.video_score is not None else clip.image_score


def _clip_rows(
    clips: Sequence[Clip],
    vectors: np.ndarray,
    pairs: Pairs,
    *,
    previous: catalog.Duplicates,
    dropped_videos: set[str],
    within_videos: bool = False,
) -> list[_Row]:
    """Groups of near-duplicate clips; keep order: not in a dropped video, kept before,
    highest score, key. Pairs of clips of one video count only with
    ``within_videos``."""
    first, second = pairs.first, pairs.second
    if not within_videos and len(first):
        video_of = np.unique([c.video for c in clips], return_inverse=True)[1]
        other = video_of[first] != video_of[second]
        first, second = first[other], second[other]
    prev_kept = {key for key in previous.clip_group if key not in previous.dropped_clips}

    def rank(i: int) -> tuple[object, ...]:
        clip = clips[i]
        return (
            clip.video in dropped_videos,
            clip.key not in prev_kept,
            -_clip_score(clip),
            clip.key,
        )

    return _decide("clip", (first, second), [c.key for c in clips], vectors, rank)


def _write_duplicates(out: Path, rows: Iterable[_Row]) -> Path:
    import csv

    path = out / catalog.DUPLICATES_CSV
    ordered = sorted(
        rows, key=lambda r: (r.kind != "video", r.component, r.group_id, not r.kept, r.member)
    )
    with (
        atomic_path(path) as tmp,
        tmp.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle,
    ):
        writer = csv.writer(handle)
        writer.writerow(DUPLICATES_COLUMNS)
        for r in ordered:
            writer.writerow(
                [r.group_id, r.kind, r.member, int(r.kept), f"{r.similarity:.6f}", r.component]
            )
    return path


def _delete_clip_files(out: Path, clips: Iterable[Clip]) -> int:
    """Remove the clip files of ``clips``, only where they resolve inside their own
    ``OUT/videos/<name>/clips/`` (:func:`~clipminer.curate.catalog.clip_file`); returns how
    many were removed."""
    removed = 0
    for clip in clips:
        if not clip.clip_path:
            continue
        path = out / clip.clip_path
        if catalog.clip_file(out, clip) is None:
            if path.exists():
                log.warning("%s: not a clip file of %s; not deleted", path, clip.video)
            continue
        path.unlink()
        removed += 1
    return removed


# -- the entry point -----------------------------------------------------------------------------


def dedup(
    out: str | os.PathLike[str],
    *,
    threshold: float = DedupConfig.threshold,
    video_threshold: float = DedupConfig.video_threshold,
    space: DedupSpace = DedupConfig.space,
    delete: bool = False,
    method: Method = "auto",
    within_videos: bool = DedupConfig.within_videos,
    progress: Progress | None = None,
) -> DedupReport:
    """Find near-duplicate clips and videos in OUT and write ``OUT/duplicates.csv``.

    Args:
        out: A mined output folder (``OUT/videos/<name>/``).
        threshold: Clips with cosine >= this are near-duplicates.
        video_threshold: Videos whose whole-video vectors have cosine >= this are.
        space: Compare the image model's vectors, or the video model's.
        delete: Also remove the clip files of dropped clips (and of dropped videos).
        method: Neighbour search; ``auto`` picks exact or usearch by size.
        within_videos: Also group clips of the same video. Off by default: clips of one
            video never overlap in time, consecutive moments of one scene look alike,
            and a split by source video keeps them together anyway.
        progress: Called with (done, total) while reading and while searching.
    """
    started = time.perf_counter()
    bounds = {"threshold": threshold, "video_threshold": video_threshold, "space": space}
    from_flat(DedupConfig, bounds, where="dedup")  # the one place that checks them
    root = catalog.check_mined(out)
    loaded, notes = _load_videos(root, space, progress)
    if not loaded and space == "video":
        raise UsageError(f"{root}: no video-model embeddings to compare; try --space image")
    models = _by_model(loaded, space, root, notes)
    videos = [v for group in models.values() for v in group]
    previous = catalog.read_duplicates(root)
    video_rows = _video_rows(models, video_threshold, previous)
    dropped_videos = {r.member for r in video_rows if not r.kept}

    clips = [c for v in videos for c in v.clips]
    vectors = _stack(videos)
    cache = _read_cache(root, space)
    reused = _reusable(cache, videos, threshold)
    pairs, method_used = _clip_pairs(
        models, vectors, reused, cache, threshold, method=method, progress=progress
    )
    clip_rows = _clip_rows(
        clips,
        vectors,
        pairs,
        previous=previous,
        dropped_videos=dropped_videos,
        within_videos=within_videos,
    )
    _write_duplicates(root, [*video_rows, *clip_rows])
    _write_cache(root, space, threshold, videos, pairs)
    deleted = 0
    if delete:
        dropped_keys = {r.member for r in clip_rows if not r.kept}
        deleted = _delete_clip_files(
            root, (c for c in clips if c.key in dropped_keys or c.video in dropped_videos)
        )
    return DedupReport(
        out=root,
        space=space,
        clips=len(clips),
        videos=len(videos),
        clip_groups=_group_count(clip_rows),
        dropped_clips=sum(not r.kept for r in clip_rows),
        video_groups=_group_count(video_rows),
        dropped_videos=len(dropped_videos),
        deleted_files=deleted,
        reused_videos=len(reused),
        method=method_used,
        seconds=time.perf_counter() - started,
        notes=tuple(notes),
    )


def _stack(videos: Sequence[_Video]) -> np.ndarray:
    """All clip vectors in one array, in ``videos`` order; each video keeps a view of its
    rows, so the vectors are held once."""
    if not any(len(v.clips) for v in videos):
        return np.zeros((0, 1), np.float32)
    dims = {v.vectors.shape[1] for v in videos if len(v.clips)}
    width = max(dims)
    stacked = np.zeros((sum(len(v.clips) for v in videos), width), np.float32)
    start = 0
    for v in videos:
        stacked[start : start + len(v.clips), : v.vectors.shape[1]] = v.vectors
        v.vectors = stacked[start : start + len(v.clips), : v.vectors.shape[1]]
        start += len(v.clips)
    return stacked


def _clip_pairs(
    models: dict[ModelKey, list[_Video]],
    vectors: np.ndarray,
    reused: set[str],
    cache: _Cache | None,
    threshold: float,
    *,
    method: Method,
    progress: Progress | None,
) -> tuple[Pairs, str]:
    """Last run's pairs among reused videos, plus a search of every other video's clips
    against all clips of the same model. Rows of one model are contiguous in ``vectors``."""
    videos = [v for group in models.values() for v in group]
    index_of = {c.key: i for i, c in enumerate(c for v in videos for c in v.clips)}
    found = [_cached_pairs(cache, reused, index_of, threshold)] if cache else []
    used: set[str] = set()
    start = 0
    for group in models.values():
        size = sum(len(v.clips) for v in group)
        dim = group[0].vectors.shape[1] if size else 1
        new = np.concatenate(
            [np.full(len(v.clips), v.name not in reused) for v in group] or [np.zeros(0, bool)]
        )
        pairs, how = neighbour_pairs(
            vectors[start : start + size, :dim],
            threshold,
            queries=np.flatnonzero(new),
            method=method,
            progress=progress,
        )
        used.add(how)
        found.append(Pairs(pairs.first + start, pairs.second + start, pairs.similarity))
        start += size
    used.discard("none")
    return Pairs.concat(found), "+".join(sorted(used)) or "none"
