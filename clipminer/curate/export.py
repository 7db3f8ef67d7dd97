"""The final dataset: reviewed clips copied into train/val/test folders, with a card.

``export(OUT, DATASET)`` writes::

    DATASET/
      train/<label>/<video>_<start>_<end>.mp4   (folder per label: train-video --videos)
      val/...  test/...
      train.csv  val.csv  test.csv              (Kinetics: label,youtube_id,time_start,...)
      dataset.json                              (counts, sources, models, settings, dates)
      shards/train-000000.tar ...               (with webdataset=True)

Which clips: with ``include="accepted"`` those reviewers accepted (under the label they
accepted, which may be a relabel); with ``include="all"`` every clip that is not
rejected (accepted ones under their verdict's label, the rest under the mined label).
Clips ``clipminer dedup`` dropped are never exported. Verdicts follow the rule stored in
``OUT/review.sqlite`` (:func:`~clipminer.curate.verdicts.rule_for_export`): another rule
only with ``override_rule``, and ``require_complete`` refuses while any clip is pending or
disputed. ``dataset.json`` records the rule, where it came from, what the verdicts made of
every clip and how far the reviewers agreed (key ``review``).

Splits leak nothing: all clips of one source video, of one clip duplicate group and of
one video duplicate group (and, transitively, everything linked to them) go to the same
split, or a model would be tested on near-copies of what it trained on. Within that
constraint the split is stratified per label, greedily, so each label's proportions
approach the ratios.

``train-video --videos DATASET/train --val-dir DATASET/val`` trains on it and
``eval-video MODEL --videos DATASET/test --val-fraction 0`` tests on all of the test split.
Label folders are the labels made safe (:func:`label_folders`; ``dataset.json`` maps them
back), so a label that is not already a safe name reaches a model under its folder name.

The dataset is built in a hidden staging folder beside DATASET and renamed into place
when complete; OUT is only read.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from clipminer import __version__
from clipminer.curate.catalog import (
    DUPLICATES_CSV,
    REVIEW_DB,
    Clip,
    Duplicates,
    all_clips,
    check_mined,
    clip_file,
    read_duplicates,
)
from clipminer.curate.verdicts import (
    Agreement,
    Rule,
    RuleChoice,
    RuleRecord,
    Verdict,
    Vote,
    agreement,
    connect,
    decide,
    rule_for_export,
    standing_votes,
    stored_rule,
)
from clipminer.data.videos import VIDEO_SUFFIXES
from clipminer.errors import UsageError, output_error
from clipminer.fsutil import (
    atomic_path,
    current_umask,
    remove_leftover_stages,
    safe_component,
    short_hash,
    swap_folder_in,
)
from clipminer.layout import RUN_JSON, read_run, videos_root

log = logging.getLogger(__name__)

Include = Literal["accepted", "all"]
Link = Literal["copy", "hardlink"]
SPLIT_NAMES = ("train", "val", "test")
"""The splits, in the order their ratios are given."""
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
DATASET_JSON = "dataset.json"
SHARDS_DIR = "shards"
DATASET_FORMAT = "clipminer-dataset/1"
DEFAULT_SHARD_SIZE = 1000
_RATIO_TOLERANCE = 1e-6
Progress = Callable[[float, float], None]


@dataclass(frozen=True)
class Item:
    """One clip chosen for the dataset."""

    clip: Clip
    label: str
    """The label it is exported under (the reviewers' when accepted, else the mined one)."""
    source_file: Path
    """The clip file in OUT."""


@dataclass(frozen=True)
class Selection:
    """What :func:`select` chose, and why the rest was left out."""

    items: list[Item]
    considered: int
    rejected: int = 0
    unreviewed: int = 0
    """Pending or disputed clips left out (``include="accepted"`` only)."""
    duplicates: int = 0
    """Clips dedup dropped."""
    missing_file: int = 0
    """Chosen clips without a clip file (``--cut none``, deleted, or a path outside OUT)."""
    missing_example: str | None = None
    accepted: int = 0
    """Clips accepted as their mined label (not dropped duplicates; so are the next three)."""
    relabelled: int = 0
    """Clips accepted as another label."""
    pending: int = 0
    disputed: int = 0

    def review_counts(self) -> dict[str, int]:
        """What the verdicts made of OUT's clips: each is in one of the first six
        (accepted ... dropped_duplicates); ``missing_files`` are chosen ones left out."""
        return {
            "accepted": self.accepted, "relabelled": self.relabelled, "rejected": self.rejected,
            "pending": self.pending, "disputed": self.disputed,
            "dropped_duplicates": self.duplicates, "missing_files": self.missing_file,
        }  # fmt: skip


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export` wrote."""

    dataset: Path
    counts: dict[str, dict[str, int]]
    """Split -> label -> clips (every split with a non-zero ratio, even when empty)."""
    selection: Selection
    shards: dict[str, list[Path]] = field(default_factory=dict)
    """Split -> its WebDataset tar files (empty without ``webdataset``)."""
    copied_instead_of_linked: int = 0
    """Files copied because a hard link was impossible (another file system)."""
    rule: Rule = field(default_factory=Rule)
    """The rule the verdicts followed."""
    rule_source: str = "default: no votes yet"
    """Where ``rule`` came from (:func:`~clipminer.curate.verdicts.rule_for_export`)."""
    agreement: dict[str, Agreement] = field(default_factory=dict)
    """Per mined label and ``all``: how far the reviewers agree."""
    rejected_as: str | None = None
    """The label the rejected clips were exported as (None: left out)."""

    @property
    def total(self) -> int:
        return sum(sum(labels.values()) for labels in self.counts.values())

    def __repr__(self) -> str:
        sizes = {split: sum(labels.values()) for split, labels in self.counts.items()}
        return f"ExportReport(dataset={str(self.dataset)!r}, clips={sizes})"


# -- arguments -------------------------------------------------------------------------


def parse_splits(text: str) -> tuple[float, ...]:
    """``"0.8,0.1,0.1"`` -> ratios of train, val, test (missing trailing ones are 0)."""
    try:
        ratios = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(
            f"--splits {text!r}: expected up to three numbers such as 0.8,0.1,0.1"
        ) from None
    check_splits(ratios)
    return ratios


def check_splits(ratios: Sequence[float]) -> dict[str, float]:
    """The splits with a non-zero ratio, by name; a one-line error when the ratios are bad."""
    shown = ",".join(f"{r:g}" for r in ratios)
    if not 1 <= len(ratios) <= len(SPLIT_NAMES):
        raise UsageError(f"--splits {shown}: give 1 to 3 ratios (train, val, test)")
    if any(not 0 <= r <= 1 for r in ratios):
        raise UsageError(f"--splits {shown}: every ratio must be between 0 and 1")
    if abs(sum(ratios) - 1) > _RATIO_TOLERANCE:
        raise UsageError(f"--splits {shown}: the ratios must sum to 1, not {sum(ratios):g}")
    return {name: float(r) for name, r in zip(SPLIT_NAMES, ratios, strict=False) if r > 0}


# -- selection -------------------------------------------------------------------------


def select(
    out: Path,
    clips: Sequence[Clip],
    decided: Mapping[str, Verdict],
    duplicates: Duplicates,
    include: Include,
    rejected_as: str | None = None,
) -> Selection:
    """The clips to export with their labels (see the module doc), and counts of the rest;
    with ``rejected_as``, the rejected clips too, as that label."""
    items: list[Item] = []
    rejected = unreviewed = dropped = missing = 0
    example: str | None = None
    status: Counter[str] = Counter()
    for clip in clips:
        verdict = decided.get(clip.key, Verdict("pending", None, 0))
        if duplicates.dropped(clip):
            dropped += 1
            continue
        relabelled = verdict.status == "accepted" and verdict.label != clip.label
        status["relabelled" if relabelled else verdict.status] += 1
        if verdict.status == "rejected":
            rejected += 1
            if rejected_as is None:
                continue
            label = rejected_as
        elif verdict.status == "accepted" and verdict.label:
            label = verdict.label
        elif include == "all":
            label = clip.label
        else:
            unreviewed += 1
            continue
        path = clip_file(out, clip)
        if path is None:
            missing += 1
            example = example or f"{clip.key} ({clip.clip_path or 'no clip_path'})"
            continue
        items.append(Item(clip, label, path))
    return Selection(
        items, len(clips), rejected, unreviewed, dropped, missing, example,
        accepted=status["accepted"], relabelled=status["relabelled"],
        pending=status["pending"], disputed=status["disputed"],
    )  # fmt: skip


def _incomplete(out: Path, selection: Selection, rule: Rule) -> UsageError:
    """Why ``require_complete`` refuses, in one line that says where to look."""
    return UsageError(
        f"{out}: {selection.pending} clips pending and {selection.disputed} disputed under "
        f"the rule {rule.describe()}; --require-complete exports only when every clip is "
        f"decided: see them with clipminer review {out}"
    )


def _nothing_to_export(out: Path, selection: Selection, include: Include) -> UsageError:
    """Why nothing is left, in one line that says what to do."""
    s = selection
    if s.missing_file:
        return UsageError(
            f"{out}: none of the {s.missing_file} chosen clips has a clip file (mined with "
            f"--cut none, or deleted), e.g. {s.missing_example}"
        )
    if include == "accepted":
        return UsageError(
            f"{out}: no accepted clips ({s.considered} clips: {s.unreviewed} not accepted yet, "
            f"{s.rejected} rejected, {s.duplicates} dropped duplicates): run clipminer review "
            "first, or --include all"
        )
    return UsageError(
        f"{out}: nothing to export: all {s.considered} clips are rejected ({s.rejected}) or "
        f"dropped duplicates ({s.duplicates})"
    )


# -- leak-free stratified splits -----------------------------------------------------------


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, node: str) -> str:
        self.parent.setdefault(node, node)
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def components(clips: Sequence[Clip], duplicates: Duplicates) -> list[list[int]]:
    """Indices of ``clips`` grouped so that no group may be split: linked by source video
    (folder and source path) and near-duplicate component, of clips and of videos (a
    component holds the groups linked through dropped members too)."""
    links = _UnionFind()
    for clip in clips:
        video = f"v:{clip.video}"
        links.union(video, f"s:{clip.source}")
        group = duplicates.clip_component.get(clip.key, duplicates.clip_group.get(clip.key))
        if group is not None:
            links.union(video, f"c:{group}")
        video_group = duplicates.video_component.get(
            clip.video, duplicates.video_group.get(clip.video)
        )
        if video_group is not None:
            links.union(video, f"g:{video_group}")
    grouped: dict[str, list[int]] = {}
    for index, clip in enumerate(clips):
        grouped.setdefault(links.find(f"v:{clip.video}"), []).append(index)
    return list(grouped.values())


def assign_splits(
    clips: Sequence[Clip],
    labels: Sequence[str],
    duplicates: Duplicates,
    ratios: Sequence[float],
    *,
    seed: int = 0,
) -> list[str]:
    """The split of each clip (``labels[i]`` is clip i's exported label).

    Components (:func:`components`) are placed whole, largest first (equal sizes in an
    order drawn from ``seed``), each into the split whose per-label shortfall against its
    targets (``ratio x clips of the label``) it fills best: the split where it least
    increases the squared distance from the targets, each label's term divided by the
    label's size so that rare labels weigh as much as common ones. For a component of one
    label that is the split with the largest shortfall. Ties go to the split listed first.
    """
    shares = check_splits(ratios)
    names = list(shares)
    totals = Counter(labels)
    target = {s: {label: shares[s] * n for label, n in totals.items()} for s in names}
    have: dict[str, Counter[str]] = {s: Counter() for s in names}
    groups = components(clips, duplicates)
    order = np.random.default_rng(seed).permutation(len(groups))
    rank = {id(group): int(r) for group, r in zip(groups, order, strict=True)}
    groups.sort(key=lambda g: (-len(g), rank[id(g)]))
    result = [""] * len(clips)
    for group in groups:
        counts = Counter(labels[i] for i in group)

        def cost(split: str, counts: Counter[str] = counts) -> float:
            # increase of sum((have - target)^2 / total) if the group goes to ``split``
            return sum(
                n * (2 * (have[split][label] - target[split][label]) + n) / totals[label]
                for label, n in counts.items()
            )

        best = min(names, key=lambda s: (cost(s), names.index(s)))
        have[best].update(counts)
        for i in group:
            result[i] = best
    return result


# -- layout ----------------------------------------------------------------------------


def label_folders(labels: Iterable[str]) -> dict[str, str]:
    """Label -> its folder name: safe, and distinct even where two labels would clash
    (``a/b`` and ``a_b``, or ``Run`` and ``run`` on a case-insensitive disk)."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for label in sorted(set(labels)):
        name = safe_component(label)
        if name.casefold() in taken:
            name = safe_component(f"{name}-{short_hash(label)}")
        taken.add(name.casefold())
        folders[label] = name
    return folders


def clip_file_name(clip: Clip, suffix: str, taken: set[str]) -> str:
    """``<video>_<start>_<end><suffix>``, safe, and not in ``taken`` (casefolded; added)."""
    suffix = suffix.lower() if suffix.lower() in VIDEO_SUFFIXES else ".mp4"
    base = f"{clip.video}_{clip.time_start:07.2f}_{clip.time_end:07.2f}"
    for attempt in (base, f"{base}_{clip.clip_id}", f"{base}_{short_hash(clip.key)}"):
        name = safe_component(attempt) + suffix
        if name.casefold() not in taken:
            taken.add(name.casefold())
            return name
    raise UsageError(f"{clip.key}: cannot make a unique file name")  # distinct keys: unreachable


@dataclass(frozen=True)
class _Placed:
    item: Item
    split: str
    relative: str
    """Path inside DATASET, POSIX."""


def _place(items: Sequence[Item], splits: Sequence[str]) -> list[_Placed]:
    """Where each item goes inside the dataset, in split, label, video and time order."""
    folders = label_folders(item.label for item in items)
    taken: dict[tuple[str, str], set[str]] = {}
    order = sorted(
        range(len(items)),
        key=lambda i: (
            SPLIT_NAMES.index(splits[i]), items[i].label, items[i].clip.video,
            items[i].clip.time_start, items[i].clip.clip_id,
        ),
    )  # fmt: skip
    placed = []
    for i in order:
        item, split = items[i], splits[i]
        folder = folders[item.label]
        name = clip_file_name(
            item.clip, item.source_file.suffix, taken.setdefault((split, folder), set())
        )
        placed.append(_Placed(item, split, f"{split}/{folder}/{name}"))
    return placed


def _link_or_copy(source: Path, target: Path, link: Link) -> bool:
    """Put ``source`` at ``target``; True when a hard link was asked for but a copy made."""
    if link == "hardlink":
        try:
            os.link(source, target)
            return False
        except OSError:
            shutil.copyfile(source, target)
            return True
    shutil.copyfile(source, target)
    return False


def _write_csv(path: Path, placed: Sequence[_Placed]) -> None:
    with (
        atomic_path(path) as tmp,
        tmp.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle,
    ):
        writer = csv.writer(handle)
        writer.writerow(KINETICS_COLUMNS)
        for p in placed:
            c = p.item.clip
            writer.writerow(
                [p.item.label, c.video, f"{c.time_start:.3f}", f"{c.time_end:.3f}", p.split]
            )


def _write_shards(
    root: Path, placed: Sequence[_Placed], split: str, shard_size: int, tick: Callable[[], None]
) -> list[Path]:
    """``shards/<split>-NNNNNN.tar``: per sample ``mp4`` (the clip's bytes) and ``json``."""
    try:
        import webdataset
    except ImportError:
        raise UsageError(
            "--webdataset needs the webdataset package: pip install 'clipminer[curate]'"
        ) from None

    folder = root / SHARDS_DIR
    folder.mkdir(exist_ok=True)
    opened: list[Any] = []

    def opener(name: str) -> Any:
        handle = (folder / name).open("wb")
        opened.append(handle)
        return handle

    # A relative pattern and our own opener: DATASET's path may hold '%' or 'pipe:'.
    writer = webdataset.ShardWriter(
        f"{split}-%06d.tar", maxcount=shard_size, opener=opener, verbose=0, mtime=0
    )
    try:
        for number, p in enumerate(placed):
            c = p.item.clip
            meta = {
                "label": p.item.label, "video": c.video, "time_start": c.time_start,
                "time_end": c.time_end, "clip": c.key, "file": p.relative, "split": split,
            }  # fmt: skip
            writer.write({
                "__key__": f"{split}_{number:08d}",
                "mp4": (root / p.relative).read_bytes(),
                "json": json.dumps(meta, ensure_ascii=False).encode("utf-8"),
            })  # fmt: skip
            tick()
    finally:
        writer.close()
        for handle in opened:
            handle.close()
    return sorted(folder.glob(f"{split}-*.tar"))


# -- the card ----------------------------------------------------------------------------


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def _run_info(out: Path, videos: Iterable[str]) -> dict[str, Any]:
    """Models, find-clips segment settings and mining dates from the videos' run.json."""
    image: set[str] = set()
    video: set[str] = set()
    segment: list[dict[str, Any]] = []
    sample_fps: set[float] = set()
    mined: list[float] = []
    for name in videos:
        folder = videos_root(out) / name
        data = read_run(folder)
        if not data:
            continue
        with contextlib.suppress(OSError):
            mined.append((folder / RUN_JSON).stat().st_mtime)
        config: dict[str, Any] = data["config"] if isinstance(data.get("config"), dict) else {}
        for models in (data.get("embedding_models"), data.get("models")):
            if isinstance(models, dict):
                image.update(str(v) for k, v in models.items() if k == "image" and v)
                for key in ("video", "videos", "video_models"):
                    value = models.get(key)
                    values = value if isinstance(value, list) else [value]
                    video.update(str(v) for v in values if v)
        if config.get("image_model"):
            image.add(str(config["image_model"]))
        video.update(str(v) for v in config.get("video_models") or [] if v)
        if isinstance(config.get("segment"), dict) and config["segment"] not in segment:
            segment.append(config["segment"])
        if isinstance(config.get("sample_fps"), int | float):
            sample_fps.add(float(config["sample_fps"]))
    return {
        "models": {"image": sorted(image), "video": sorted(video)},
        "find_clips": {"segment": segment, "sample_fps": sorted(sample_fps)},
        "mined": {"first": _iso(min(mined)), "last": _iso(max(mined))} if mined else None,
    }


def _dedup_info(out: Path, duplicates: Duplicates) -> dict[str, Any] | None:
    """What ``duplicates.csv`` says: groups, drops, and the lowest similarity at which a
    member was dropped (dedup's threshold is at most that)."""
    path = out / DUPLICATES_CSV
    if not path.is_file():
        return None
    lowest: dict[str, float] = {}
    try:
        with path.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
            for row in csv.DictReader(handle):
                if row.get("kept", "").strip() != "1" and row.get("similarity"):
                    kind = row.get("kind", "")
                    lowest[kind] = min(lowest.get(kind, 1.0), float(row["similarity"]))
    except (OSError, ValueError, UnicodeDecodeError):
        pass  # read_duplicates already accepted the file; the extra figures are optional
    return {
        "file": DUPLICATES_CSV,
        "clip_groups": len(set(duplicates.clip_group.values())),
        "video_groups": len(set(duplicates.video_group.values())),
        "dropped_clips": len(duplicates.dropped_clips),
        "dropped_videos": len(duplicates.dropped_videos),
        "lowest_dropped_similarity": lowest,
    }


def _last_vote(out: Path, clips: Sequence[Clip]) -> str | None:
    """When the latest standing vote on an exported clip was cast."""
    if not clips or not (out / REVIEW_DB).is_file():
        return None
    with connect(out, readonly=True) as con:
        standing = standing_votes(con, clips)
    times = [v.cast_at for votes in standing.values() for v in votes]
    return _iso(max(times)) if times else None


def _review_state(
    out: Path, clips: Sequence[Clip]
) -> tuple[RuleRecord | None, dict[str, list[Vote]]]:
    """The stored rule and the standing votes (none without ``OUT/review.sqlite``, which
    is not created)."""
    if not (out / REVIEW_DB).is_file():
        return None, {}
    with connect(out, readonly=True) as con:
        return stored_rule(con), standing_votes(con, clips)


def _review_info(
    rule: Rule,
    source: str,
    stored: RuleRecord | None,
    selection: Selection,
    agreed: Mapping[str, Agreement],
) -> dict[str, Any]:
    """``dataset.json``'s ``review``: the rule, its source, the verdicts, the agreement."""
    return {
        "rule": asdict(rule),
        "rule_source": source,
        "stored_rule": None if stored is None else {
            **asdict(stored.rule), "set_by": stored.set_by, "set_at": _iso(stored.set_at)
        },
        "counts": selection.review_counts(),
        "agreement": {label: asdict(a) for label, a in agreed.items()},
    }  # fmt: skip


def dataset_card(
    out: Path,
    placed: Sequence[_Placed],
    counts: Mapping[str, Mapping[str, int]],
    selection: Selection,
    duplicates: Duplicates,
    *,
    settings: Mapping[str, Any],
    shards: Mapping[str, Sequence[str]],
    review: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``dataset.json``: enough to know what the dataset is and to make it again."""
    videos = sorted({p.item.clip.video for p in placed})
    folders = label_folders(p.item.label for p in placed)
    s = selection
    return {
        "format": DATASET_FORMAT,
        "created": _iso(time.time()),
        "clipminer_version": __version__,
        "out": str(out.resolve()),
        **settings,
        "counts": {
            "total": len(placed),
            "splits": {split: sum(labels.values()) for split, labels in counts.items()},
            "labels": dict(sorted(Counter(p.item.label for p in placed).items())),
            "per_split": {split: dict(labels) for split, labels in counts.items()},
        },
        "label_folders": folders,
        "left_out": {
            "clips_in_out": s.considered,
            "rejected": s.rejected,
            "not_accepted": s.unreviewed,
            "duplicates": s.duplicates,
            "missing_clip_file": s.missing_file,
        },
        "sources": {"videos": len(videos), "names": videos},
        **_run_info(out, videos),
        "last_vote": _last_vote(out, [p.item.clip for p in placed]),
        "dedup": _dedup_info(out, duplicates),
        "files": {
            "annotations": {split: f"{split}.csv" for split in counts},
            "shards": {split: list(names) for split, names in shards.items()},
        },
        "review": dict(review) if review is not None else None,
    }


# -- target folder -------------------------------------------------------------------------


def _check_target(out: Path, dataset: Path, force: bool) -> None:
    """Refuse a DATASET that is OUT, holds OUT or lies inside it, a file, or a non-empty
    folder (without ``force``, or with it when the folder is not a dataset)."""
    out_real, target = out.resolve(), dataset.resolve()
    if target == out_real or target in out_real.parents or out_real in target.parents:
        raise UsageError(f"{dataset}: --out must lie outside {out} (export never changes OUT)")
    if dataset.is_symlink() or (dataset.exists() and not dataset.is_dir()):
        raise UsageError(f"{dataset}: --out must be a folder, but it is a file or a link")
    if dataset.is_dir() and any(dataset.iterdir()):
        if not force:
            raise UsageError(f"{dataset}: not empty; --force replaces it")
        if not (dataset / DATASET_JSON).is_file():
            raise UsageError(
                f"{dataset}: not empty and not a clipminer dataset (no {DATASET_JSON}); "
                "refusing to replace it even with --force"
            )


def _staging(dataset: Path) -> Path:
    """An empty hidden folder beside DATASET, as readable as the user's umask allows."""
    dataset.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".export-{short_hash(dataset.name)}."
    remove_leftover_stages(dataset.parent, prefix)  # of a run that was killed
    stage = Path(
        tempfile.mkdtemp(prefix=prefix, suffix=".partial",
                         dir=dataset.parent)
    )  # fmt: skip
    stage.chmod(0o777 & ~current_umask())
    return stage


# -- the command ---------------------------------------------------------------------------


def export(
    out: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    *,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    rule: RuleChoice | Rule | None = None,
    override_rule: bool = False,
    require_complete: bool = False,
    include: Include = "accepted",
    rejected_as: str | None = None,
    webdataset: bool = False,
    shard_size: int = DEFAULT_SHARD_SIZE,
    seed: int = 0,
    link: Link = "copy",
    force: bool = False,
    progress: Progress | None = None,
) -> ExportReport:
    """Write the dataset of OUT's reviewed clips to DATASET (see the module doc).

    Args:
        splits: ratios of train, val and test (0: no such split); they sum to 1.
        rule: how votes become verdicts: by default the rule stored in
            ``OUT/review.sqlite`` (one vote decides when none is); a :class:`Rule` gives
            both numbers, a :class:`RuleChoice` those that are not None.
        override_rule: use ``rule`` even where it differs from the stored one.
        require_complete: refuse while any clip (not a dropped duplicate) is pending
            or disputed.
        include: ``accepted`` clips only, or ``all`` that are not rejected.
        rejected_as: also export the rejected clips, as this label (``background``).
        webdataset: also write tar shards of ``shard_size`` samples per split.
        link: ``copy`` the clip files, or ``hardlink`` them (copied across disks).
        force: replace a DATASET written before (only once the new one is complete).
        progress: called with (done, total) as files are written.

    Raises:
        UsageError: OUT is not mined, nothing is left to export, bad ratios or target,
            a rule other than the stored one, clips undecided with ``require_complete``.
    """
    if isinstance(rule, Rule):
        rule = RuleChoice(rule.votes, rule.agree)
    shares = check_splits(splits)
    if include not in ("accepted", "all"):
        raise UsageError(f"--include must be accepted or all, got {include!r}")
    if link not in ("copy", "hardlink"):
        raise UsageError(f"link must be copy or hardlink, got {link!r}")
    if shard_size < 1:
        raise UsageError(f"--shard-size must be at least 1, got {shard_size}")
    if rejected_as is not None and (not rejected_as.strip() or not rejected_as.isprintable()):
        raise UsageError(f"--rejected-as {rejected_as!r}: give a class name")
    out_path, target = check_mined(out), Path(dataset)
    _check_target(out_path, target, force)
    used, source = rule_for_export(out_path, rule or RuleChoice(), override=override_rule)

    clips = all_clips(out_path)
    duplicates = read_duplicates(out_path)
    stored, standing = _review_state(out_path, clips)
    decided = {c.key: decide(standing.get(c.key, []), used) for c in clips}
    selection = select(out_path, clips, decided, duplicates, include, rejected_as)
    if rejected_as is not None and any(
        item.label == rejected_as and decided[item.clip.key].status != "rejected"
        for item in selection.items
    ):
        raise UsageError(
            f"--rejected-as {rejected_as!r}: clips are exported as that label already; the "
            "rejected ones would pass for them (choose another name, e.g. background)"
        )
    if require_complete and (selection.pending or selection.disputed):
        raise _incomplete(out_path, selection, used)
    if selection.missing_file:
        log.warning(
            "%s: %d chosen clips have no clip file and are skipped, e.g. %s",
            out_path, selection.missing_file, selection.missing_example,
        )  # fmt: skip
    if not selection.items:
        raise _nothing_to_export(out_path, selection, include)

    items = selection.items
    chosen = assign_splits(
        [i.clip for i in items], [i.label for i in items], duplicates, splits, seed=seed
    )
    placed = _place(items, chosen)
    counts = {split: dict(sorted(Counter(p.item.label for p in placed if p.split == split).items()))
              for split in shares}  # fmt: skip
    agreed = agreement(standing, clips)
    review = _review_info(used, source, stored, selection, agreed)
    settings = {
        "include": include, "rejected_as": rejected_as, "review_rule": asdict(used),
        "seed": seed, "splits": shares,
        "link": link, "webdataset": {"shard_size": shard_size} if webdataset else None,
    }  # fmt: skip
    build = functools.partial(
        _build, placed=placed, shares=shares, link=link, webdataset=webdataset,
        shard_size=shard_size, progress=progress,
    )  # fmt: skip

    def card(names: dict[str, list[str]]) -> dict[str, Any]:
        return dataset_card(
            out_path, placed, counts, selection, duplicates, settings=settings, shards=names,
            review=review,
        )  # fmt: skip

    copied, shards = _write_staged(target, build, card)
    return ExportReport(
        target, counts, selection, shards, copied, used, source, agreed, rejected_as
    )


def _write_staged(
    target: Path,
    build: Callable[[Path], tuple[int, dict[str, list[Path]]]],
    card: Callable[[dict[str, list[str]]], dict[str, Any]],
) -> tuple[int, dict[str, list[Path]]]:
    """Build the dataset in a hidden folder beside DATASET (``build``), write its card
    last, and swap it in whole; a full or read-only disk names DATASET. Returns the
    copies made and the shards, as paths in DATASET."""
    try:
        stage = _staging(target)
    except OSError as exc:
        raise output_error(OSError(exc.errno, exc.strerror, str(target)), target) from None
    try:
        copied, shards = build(stage)
        names = {s: [p.relative_to(stage).as_posix() for p in files] for s, files in shards.items()}
        with atomic_path(stage / DATASET_JSON) as tmp:
            tmp.write_text(
                json.dumps(card(names), indent=2, ensure_ascii=False) + "\n",
                errors="backslashreplace",
            )
        swap_folder_in(stage, target)
    except OSError as exc:  # a file being written is named as DATASET, a source as itself
        written = exc.filename is None or Path(exc.filename).is_relative_to(stage)
        where = target if written else exc.filename
        raise output_error(OSError(exc.errno, exc.strerror, str(where)), where) from None
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return copied, {
        s: [target / p.relative_to(stage) for p in files] for s, files in shards.items()
    }


def _build(
    stage: Path,
    placed: Sequence[_Placed],
    shares: Mapping[str, float],
    link: Link,
    webdataset: bool,
    shard_size: int,
    progress: Progress | None,
) -> tuple[int, dict[str, list[Path]]]:
    """Files, annotation CSVs and shards inside ``stage``; returns (copies made instead of
    links, shards per split)."""
    total = len(placed) * (2 if webdataset else 1)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    copied = 0
    for p in placed:
        target = stage / p.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        copied += _link_or_copy(p.item.source_file, target, link)
        tick()
    shards: dict[str, list[Path]] = {}
    for split in shares:
        members = [p for p in placed if p.split == split]
        _write_csv(stage / f"{split}.csv", members)
        if webdataset and members:
            shards[split] = _write_shards(stage, members, split, shard_size, tick)
    return copied, shards
