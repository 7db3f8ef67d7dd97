"""``clipminer export``: selection by verdicts, leak-free stratified splits, the layout
train-video reads, the card, shards, and the refusals."""

from __future__ import annotations

import csv
import json
import os
import random
import tarfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clipminer.cli import app
from clipminer.curate import catalog, verdicts
from clipminer.curate.catalog import DUPLICATES_COLUMNS, Clip, Duplicates
from clipminer.curate.export import (
    DATASET_JSON,
    KINETICS_COLUMNS,
    assign_splits,
    check_splits,
    components,
    export,
    label_folders,
    parse_splits,
)
from clipminer.curate.verdicts import Rule, RuleChoice, settle_rule
from clipminer.encode import VideoWriter
from clipminer.errors import UsageError
from clipminer.fsutil import safe_name

SEGMENT_HEADER = (
    "video", "clip_id", "label", "score", "time_start", "time_end", "video_label",
    "video_score", "clip_path", "video_top5", "clip_start", "clip_end",
)  # fmt: skip
runner = CliRunner()
Spec = tuple[str, float, float]
"""(label, start seconds, end seconds) of one mined clip."""


def _clip_bytes(key: str) -> bytes:
    return f"not really a video: {key}".encode()


def _write_mp4(path: Path, seed: int) -> None:
    """A tiny decodable clip: 8 frames of 32x32 at 8 fps."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with VideoWriter(path, fps=8, size=(32, 32), preset="ultrafast") as writer:
        for k in range(8):
            writer.write(np.roll(base, k, axis=1))


def make_out(
    root: Path,
    videos: dict[str, Sequence[Spec]],
    *,
    real: bool = False,
    run: dict[str, object] | None = None,
    no_file: Sequence[str] = (),
) -> list[Clip]:
    """A fake mined OUT: segments.csv, run.json and clip files (``real``: decodable mp4s).

    Clips whose key is in ``no_file`` get no file on disk."""
    for name, specs in videos.items():
        folder = root / "videos" / name
        folder.mkdir(parents=True)
        rows = []
        for clip_id, (label, start, end) in enumerate(specs):
            relative = (
                f"videos/{name}/clips/{safe_name(label)}/{name}_{start:07.2f}_{end:07.2f}.mp4"
            )
            key = f"{name}/{clip_id}"
            target = root / relative
            if key not in no_file:
                target.parent.mkdir(parents=True, exist_ok=True)
                if real:
                    _write_mp4(target, seed=len(rows) + 100 * len(name))
                else:
                    target.write_bytes(_clip_bytes(key))
            rows.append([
                f"/src/{name}.mp4", clip_id, label, "0.9000", f"{start:.3f}", f"{end:.3f}",
                label, "0.8000", relative, f"{label}:0.8000", f"{start:.3f}", f"{end:.3f}",
            ])  # fmt: skip
        with (folder / "segments.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(SEGMENT_HEADER)
            writer.writerows(rows)
        (folder / "run.json").write_text(json.dumps(run or {"name": name}))
    return catalog.all_clips(root)


def vote(out: Path, votes: Sequence[tuple[str, str, str, str | None]]) -> None:
    """(clip key, reviewer, action, label) votes."""
    clips = {c.key: c for c in catalog.all_clips(out)}
    with verdicts.connect(out) as con:
        for key, reviewer, action, label in votes:
            verdicts.cast(con, clips[key], reviewer, action, label)  # type: ignore[arg-type]


def write_duplicates(out: Path, rows: Sequence[tuple[str, str, str, int, float]]) -> None:
    with (out / catalog.DUPLICATES_CSV).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(DUPLICATES_COLUMNS)
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def exported(dataset: Path) -> dict[str, tuple[str, str]]:
    """Kinetics rows of every split: '<youtube_id> <start>' -> (label, split)."""
    rows: dict[str, tuple[str, str]] = {}
    for split in ("train", "val", "test"):
        if (dataset / f"{split}.csv").is_file():
            for row in read_csv(dataset / f"{split}.csv"):
                rows[f"{row['youtube_id']} {row['time_start']}"] = (row["label"], row["split"])
    return rows


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(catalog.REVIEW_DB)
    }


# -- selection ------------------------------------------------------------------------------


def test_accepted_clips_take_the_reviewers_label(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_out(out, {"a": [("run", 0, 2), ("run", 3, 5), ("jump", 6, 8), ("jump", 9, 11)]})
    vote(out, [
        ("a/0", "ann", "accept", None),
        ("a/1", "ann", "reject", None),
        ("a/2", "ann", "relabel", "swim"),
    ])  # fmt: skip
    report = export(out, tmp_path / "ds", splits=(1.0,))
    assert exported(tmp_path / "ds") == {
        "a 0.000": ("run", "train"), "a 6.000": ("swim", "train")
    }  # fmt: skip
    assert report.counts == {"train": {"run": 1, "swim": 1}}
    assert report.selection.rejected == 1 and report.selection.unreviewed == 1
    assert sorted(p.name for p in (tmp_path / "ds" / "train").iterdir()) == ["run", "swim"]

    everything = export(out, tmp_path / "all", splits=(1.0,), include="all")
    assert exported(tmp_path / "all") == {
        "a 0.000": ("run", "train"), "a 6.000": ("swim", "train"), "a 9.000": ("jump", "train")
    }  # fmt: skip
    assert everything.selection.rejected == 1


def test_two_of_three_votes_decide(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_out(out, {"v": [("run", 0, 2), ("run", 3, 5), ("run", 6, 8), ("run", 9, 11)]})
    vote(out, [
        # accepted 2:1
        ("v/0", "ann", "accept", None), ("v/0", "bob", "accept", None),
        ("v/0", "cid", "reject", None),
        # relabelled by two of three
        ("v/1", "ann", "relabel", "walk"), ("v/1", "bob", "relabel", "walk"),
        ("v/1", "cid", "accept", None),
        # three different outcomes: disputed
        ("v/2", "ann", "accept", None), ("v/2", "bob", "reject", None),
        ("v/2", "cid", "relabel", "walk"),
        # one vote of three: pending
        ("v/3", "ann", "accept", None),
    ])  # fmt: skip
    report = export(out, tmp_path / "ds", splits=(1.0,), rule=Rule(votes=3, agree=2))
    assert exported(tmp_path / "ds") == {"v 0.000": ("run", "train"), "v 3.000": ("walk", "train")}
    assert report.selection.unreviewed == 2
    # one vote decides under the default rule: v/3 is accepted then, v/2 still split
    export(out, tmp_path / "one", splits=(1.0,), rule=Rule(votes=3, agree=1))
    assert "v 9.000" in exported(tmp_path / "one")


# -- the stored rule, what was taken and left out -------------------------------------------

TWO_OF_THREE_VOTES = [
    ("v/0", "ann", "accept", None), ("v/0", "bob", "accept", None),
    ("v/0", "cid", "reject", None),  # 2 of 3 accept
    ("v/1", "ann", "relabel", "walk"), ("v/1", "bob", "relabel", "walk"),
    ("v/1", "cid", "accept", None),  # 2 of 3 relabel to walk
    ("v/2", "ann", "accept", None), ("v/2", "bob", "reject", None),
    ("v/2", "cid", "relabel", "walk"),  # disputed
    ("v/3", "ann", "accept", None),  # pending under 2 of 3, accepted when one vote decides
]  # fmt: skip
TWO_OF_THREE_DATASET = {"v 0.000": ("run", "train"), "v 3.000": ("walk", "train")}


def _voted_out(root: Path) -> Path:
    out = root / "out"
    make_out(out, {"v": [("run", 0, 2), ("run", 3, 5), ("run", 6, 8), ("run", 9, 11)]})
    vote(out, TWO_OF_THREE_VOTES)
    return out


def test_plain_export_follows_the_stored_rule(tmp_path: Path) -> None:
    out = _voted_out(tmp_path)
    one = export(out, tmp_path / "one", splits=(1.0,))  # no rule stored: one vote decides
    assert exported(tmp_path / "one") == {"v 9.000": ("run", "train")}
    assert (one.rule, one.rule_source) == (Rule(), "default: no rule stored")
    settle_rule(out, RuleChoice(votes=3, agree=2), who="ann")
    report = export(out, tmp_path / "ds", splits=(1.0,))
    assert exported(tmp_path / "ds") == TWO_OF_THREE_DATASET
    assert (report.rule, report.rule_source) == (Rule(3, 2), "stored")
    card = json.loads((tmp_path / "ds" / DATASET_JSON).read_text())
    assert card["review_rule"] == {"votes": 3, "agree": 2}
    review = card["review"]
    assert review["rule"] == {"votes": 3, "agree": 2} and review["rule_source"] == "stored"
    assert review["stored_rule"]["set_by"] == "ann"
    assert review["counts"] == {
        "accepted": 1, "relabelled": 1, "rejected": 0, "pending": 1, "disputed": 1,
        "dropped_duplicates": 0, "missing_files": 0,
    }  # fmt: skip
    # 3 clips with 2+ votes: P = (1/3 + 1/3 + 0) / 3; outcomes run 4, reject 2, walk 3 of 9
    overall = review["agreement"]["all"]
    assert (overall["clips"], overall["votes"]) == (3, 9)
    assert overall["percent"] == pytest.approx(2 / 9)
    assert overall["kappa"] == pytest.approx((2 / 9 - 29 / 81) / (1 - 29 / 81))
    assert review["agreement"]["run"] == overall


def test_export_without_votes_creates_no_database(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_out(out, {"v": [("run", 0, 2)]})
    report = export(out, tmp_path / "ds", splits=(1.0,), include="all")
    assert not (out / catalog.REVIEW_DB).exists()
    assert report.rule_source == "default: no votes yet"
    card = json.loads((tmp_path / "ds" / DATASET_JSON).read_text())
    assert card["review"]["stored_rule"] is None
    assert card["review"]["counts"]["pending"] == 1
    assert card["review"]["agreement"]["all"] == {
        "clips": 0, "votes": 0, "percent": None, "kappa": None
    }  # fmt: skip


def test_another_rule_at_export_needs_override(tmp_path: Path) -> None:
    out = _voted_out(tmp_path)
    settle_rule(out, RuleChoice(votes=3, agree=2), who="ann")
    with pytest.raises(UsageError, match=r"review\.sqlite: .*3 votes, 2 must agree .*--override"):
        export(out, tmp_path / "ds", splits=(1.0,), rule=Rule())
    assert not (tmp_path / "ds").exists()
    # half of the stored rule is the stored rule
    export(out, tmp_path / "half", splits=(1.0,), rule=RuleChoice(agree=2))
    assert exported(tmp_path / "half") == TWO_OF_THREE_DATASET

    report = export(out, tmp_path / "ds", splits=(1.0,), rule=Rule(), override_rule=True)
    assert exported(tmp_path / "ds") == {"v 9.000": ("run", "train")}
    assert report.rule == Rule()
    card = json.loads((tmp_path / "ds" / DATASET_JSON).read_text())
    assert card["review_rule"] == card["review"]["rule"] == {"votes": 1, "agree": 1}
    assert card["review"]["rule_source"].startswith(
        "given, differs from the stored 3 votes, 2 must agree (set by ann at "
    )
    assert card["review"]["stored_rule"]["votes"] == 3


@pytest.mark.parametrize(
    ("votes", "message"),
    [
        ([], "1 clips pending and 0 disputed"),
        ([("v/1", "bob", "reject", None)], "0 clips pending and 1 disputed"),
    ],
)
def test_require_complete_refuses_undecided_clips_and_passes_decided_ones(
    tmp_path: Path, votes: list[tuple[str, str, str, str | None]], message: str
) -> None:
    out = tmp_path / "out"
    make_out(out, {"v": [("run", 0, 2), ("run", 3, 5)], "w": [("run", 0, 2)]})
    write_duplicates(out, [("g", "video", "v", 1, 1.0), ("g", "video", "w", 0, 0.99)])
    # v/0 accepted, v/1 one vote of two; w/0 has none but is a dropped duplicate: never counts
    vote(out, [("v/0", "ann", "accept", None), ("v/0", "bob", "accept", None),
               ("v/1", "ann", "accept", None)])  # fmt: skip
    settle_rule(out, RuleChoice(votes=2, agree=2), who="ann")
    vote(out, votes)
    with pytest.raises(UsageError, match=message) as refused:
        export(out, tmp_path / "ds", splits=(1.0,), require_complete=True)
    assert f"clipminer review {out}" in str(refused.value)
    assert not (tmp_path / "ds").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    vote(out, [("v/1", "cid", "accept", None)])  # now v/1 has two accepts
    report = export(out, tmp_path / "ds", splits=(1.0,), require_complete=True)
    assert report.total == 2 and report.selection.review_counts()["dropped_duplicates"] == 1


def test_dropped_duplicates_are_never_exported(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_out(out, {
        "a": [("run", 0, 2), ("run", 3, 5)],
        "b": [("run", 0, 2)],
        "c": [("jump", 0, 2), ("jump", 4, 6)],
        "d": [("jump", 0, 2)],
    })  # fmt: skip
    write_duplicates(out, [
        ("g1", "clip", "a/0", 1, 1.0), ("g1", "clip", "b/0", 0, 0.97),
        ("v1", "video", "d", 1, 1.0), ("v1", "video", "c", 0, 0.95),
    ])  # fmt: skip
    vote(out, [("b/0", "ann", "accept", None)])  # accepted, but still a dropped duplicate
    report = export(out, tmp_path / "ds", splits=(1.0,), include="all")
    assert set(exported(tmp_path / "ds")) == {"a 0.000", "a 3.000", "d 0.000"}
    assert report.selection.duplicates == 3
    card = json.loads((tmp_path / "ds" / DATASET_JSON).read_text())
    assert card["dedup"]["dropped_clips"] == 1 and card["dedup"]["dropped_videos"] == 1
    assert card["dedup"]["lowest_dropped_similarity"] == {"clip": 0.97, "video": 0.95}


def test_clips_without_files_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    make_out(out, {"a": [("run", 0, 2), ("run", 3, 5), ("run", 6, 8)]}, no_file=["a/1"])
    segments = out / "videos" / "a" / "segments.csv"
    rows = read_csv(segments)
    rows[2]["clip_path"] = "../../../etc/passwd"  # never read outside OUT
    with segments.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, SEGMENT_HEADER)
        writer.writeheader()
        writer.writerows(rows)
    report = export(out, tmp_path / "ds", splits=(1.0,), include="all")
    assert report.total == 1 and report.selection.missing_file == 2
    assert "a/1" in caplog.text and "no clip file" in caplog.text

    (out / "videos" / "a" / "clips" / "run").joinpath("a_0000.00_0002.00.mp4").unlink()
    with pytest.raises(UsageError, match="none of the 3 chosen clips has a clip file"):
        export(out, tmp_path / "ds2", include="all")


# -- splits -------------------------------------------------------------------------------


def _random_clips(rng: random.Random) -> tuple[list[Clip], list[str], Duplicates]:
    """A random OUT in memory: videos with clips, clip groups across videos, video groups."""
    labels = ["run", "jump", "swim", "walk"][: rng.randint(1, 4)]
    clips = []
    for v in range(rng.randint(1, 25)):
        for c in range(rng.randint(1, 6)):
            label = rng.choice(labels)
            clips.append(Clip(f"v{v}", c, label, 0.9, None, None, c, c + 1, "x.mp4", f"v{v}.mp4"))
    clip_group = {c.key: f"g{rng.randint(0, 8)}" for c in clips if rng.random() < 0.2}
    videos = sorted({c.video for c in clips})
    video_group = {v: f"h{rng.randint(0, 3)}" for v in videos if rng.random() < 0.15}
    dups = Duplicates(clip_group, video_group, frozenset(), frozenset())
    return clips, [c.image_label for c in clips], dups


def test_no_video_or_duplicate_group_is_in_two_splits() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        clips, labels, dups = _random_clips(rng)
        cuts = sorted(rng.random() for _ in range(2))
        ratios = rng.choice(
            [(cuts[0], cuts[1] - cuts[0], 1 - cuts[1]), (0.8, 0.1, 0.1), (0.5, 0.5)]
        )
        splits = assign_splits(clips, labels, dups, ratios, seed=rng.randint(0, 99))
        allowed = set(check_splits(ratios))
        assert len(splits) == len(clips) and set(splits) <= allowed
        seen: dict[str, set[str]] = {}
        for clip, split in zip(clips, splits, strict=True):
            keys = [f"video {clip.video}", f"source {clip.source}"]
            if clip.key in dups.clip_group:
                keys.append(f"clip group {dups.clip_group[clip.key]}")
            if clip.video in dups.video_group:
                keys.append(f"video group {dups.video_group[clip.video]}")
            for key in keys:
                seen.setdefault(key, set()).add(split)
        leaks = {key: s for key, s in seen.items() if len(s) > 1}
        assert not leaks, f"ratios {ratios}: {leaks}"


def test_components_join_videos_through_duplicate_groups() -> None:
    def clip(video: str, clip_id: int) -> Clip:
        return Clip(video, clip_id, "run", 0.9, None, None, 0, 1, None, f"/{video}.mp4")

    clips = [clip("a", 0), clip("b", 0), clip("c", 0), clip("d", 0), clip("e", 0)]
    dups = Duplicates({"a/0": "g", "b/0": "g"}, {"b": "h", "c": "h"}, frozenset(), frozenset())
    groups = sorted(sorted(clips[i].video for i in g) for g in components(clips, dups))
    assert groups == [["a", "b", "c"], ["d"], ["e"]]


def test_a_chain_through_a_dropped_clip_keeps_both_ends_together() -> None:
    """dedup put a/0 and c/0 in different groups (b/0, dropped, links them): only a/0 and
    c/0 are exported, and their shared component keeps videos a and c in one split."""

    def clip(video: str) -> Clip:
        return Clip(video, 0, "run", 0.9, None, None, 0, 1, None, f"/{video}.mp4")

    dups = Duplicates(
        {"a/0": "g1", "b/0": "g1", "c/0": "g2"},
        {},
        frozenset({"b/0"}),
        frozenset(),
        {"a/0": "k", "b/0": "k", "c/0": "k"},
    )
    clips = [clip("a"), clip("c"), clip("d")]
    groups = sorted(sorted(clips[i].video for i in g) for g in components(clips, dups))
    assert groups == [["a", "c"], ["d"]]


def test_splits_are_stratified_per_label() -> None:
    clips, labels = [], []
    sizes = {"run": 200, "jump": 100, "swim": 30}
    for label, count in sizes.items():
        for k in range(count):
            # one to three clips per video, all of one label
            video = f"{label}{k // 2}"
            clips.append(Clip(video, k, label, 0.9, None, None, k, k + 1, "x", video))
            labels.append(label)
    dups = Duplicates({}, {}, frozenset(), frozenset())
    splits = assign_splits(clips, labels, dups, (0.8, 0.1, 0.1), seed=3)
    got = Counter(zip(labels, splits, strict=True))
    for label, count in sizes.items():
        for split, share in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
            assert abs(got[label, split] - share * count) <= 2, (label, split, got)
    assert splits == assign_splits(clips, labels, dups, (0.8, 0.1, 0.1), seed=3)
    assert splits != assign_splits(clips, labels, dups, (0.8, 0.1, 0.1), seed=4)


@pytest.mark.parametrize(
    ("text", "message"),
    [("0.8,0.1", "sum to 1"), ("0.5,0.5,0.5", "sum to 1"), ("a,b", "expected up to three"),
     ("1.5,-0.5", "between 0 and 1"), ("0.5,0.2,0.2,0.1", "1 to 3 ratios")],
)  # fmt: skip
def test_bad_splits_are_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_splits(text)


def test_zero_ratio_leaves_a_split_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_out(out, {f"v{k}": [("run", 0, 2)] for k in range(6)})
    report = export(out, tmp_path / "ds", splits=(0.5, 0.0, 0.5), include="all")
    assert list(report.counts) == ["train", "test"]
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == [
        "dataset.json", "test", "test.csv", "train", "train.csv"
    ]  # fmt: skip


# -- layout, CSVs, the card -------------------------------------------------------------------


def test_layout_annotations_and_card(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = {
        "name": "x",
        "config": {"sample_fps": 2.0, "segment": {"threshold": 0.6, "min_seconds": 1.0}},
        "embedding_models": {"image": "img-abc", "video": "vid-def"},
    }
    make_out(
        out,
        {f"v{k}": [("run", 0, 2), ("jump", 3, 5.5)] for k in range(10)},
        run=run,
    )
    vote(out, [(f"v{k}/{c}", "ann", "accept", None) for k in range(10) for c in (0, 1)])
    before = snapshot(out)
    report = export(out, tmp_path / "ds", seed=7)
    dataset = tmp_path / "ds"
    assert snapshot(out) == before  # OUT is only read
    assert sum(sum(c.values()) for c in report.counts.values()) == 20

    card = json.loads((dataset / DATASET_JSON).read_text())
    for split in ("train", "val", "test"):
        rows = read_csv(dataset / f"{split}.csv")
        assert tuple(rows[0]) == KINETICS_COLUMNS if rows else True
        assert {r["split"] for r in rows} <= {split}
        files = sorted(p.relative_to(dataset).as_posix() for p in (dataset / split).rglob("*.mp4"))
        assert len(files) == len(rows) == card["counts"]["splits"][split]
        for row in rows:
            start, end = float(row["time_start"]), float(row["time_end"])
            name = f"{split}/{row['label']}/{row['youtube_id']}_{start:07.2f}_{end:07.2f}.mp4"
            assert name in files
            key = f"{row['youtube_id']}/{0 if row['label'] == 'run' else 1}"
            assert (dataset / name).read_bytes() == _clip_bytes(key)
    with (dataset / "train.csv").open() as handle:
        assert handle.readline().strip() == "label,youtube_id,time_start,time_end,split"
    rows = {
        (r["label"], r["youtube_id"], r["time_start"], r["time_end"])
        for s in ("train", "val", "test")
        for r in read_csv(dataset / f"{s}.csv")
    }
    assert ("jump", "v3", "3.000", "5.500") in rows and len(rows) == 20

    assert card["format"] == "clipminer-dataset/1"
    assert card["clipminer_version"] and card["created"].endswith("+00:00")
    assert card["out"] == str(out.resolve())
    assert card["counts"]["total"] == 20
    assert card["counts"]["labels"] == {"jump": 10, "run": 10}
    assert card["counts"]["per_split"]["train"] == report.counts["train"]
    assert card["splits"] == {"train": 0.8, "val": 0.1, "test": 0.1}
    assert card["include"] == "accepted" and card["seed"] == 7
    assert card["review_rule"] == {"votes": 1, "agree": 1}
    assert card["sources"] == {"videos": 10, "names": [f"v{k}" for k in range(10)]}
    assert card["models"] == {"image": ["img-abc"], "video": ["vid-def"]}
    assert card["find_clips"] == {
        "segment": [{"threshold": 0.6, "min_seconds": 1.0}], "sample_fps": [2.0]
    }  # fmt: skip
    assert card["dedup"] is None and card["last_vote"] and card["mined"]["first"]
    assert card["label_folders"] == {"jump": "jump", "run": "run"}
    # every split's clips come from its own videos
    videos = {s: {r["youtube_id"] for r in read_csv(dataset / f"{s}.csv")} for s in report.counts}
    assert not (videos["train"] & videos["val"]) and not (videos["train"] & videos["test"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_odd_names_make_safe_distinct_folders(tmp_path: Path) -> None:
    from clipminer.data.videos import scan_video_folder

    out = tmp_path / "out"
    labels = ["a/b", "a_b", "Run", "run", "..", ".hidden", "jump [slow] ü"]
    names = ["my video [1] ü", "my video [1] ü (copy)"]
    make_out(out, {name: [(label, k, k + 1) for k, label in enumerate(labels)] for name in names})
    export(out, tmp_path / "ds [1] %d", splits=(1.0,), include="all", webdataset=True)
    dataset = tmp_path / "ds [1] %d"
    folders = [p.name for p in (dataset / "train").iterdir()]
    assert len(folders) == len(labels) == len({f.casefold() for f in folders})
    assert not [f for f in folders if f.startswith(".") or "/" in f]
    found, items, _ = scan_video_folder(dataset / "train")
    assert len(items) == len(labels) * len(names)
    assert set(found) == set(label_folders(labels).values())
    card = json.loads((dataset / DATASET_JSON).read_text())
    assert set(card["label_folders"]) == set(labels)
    rows = read_csv(dataset / "train.csv")
    assert {r["label"] for r in rows} == set(labels)
    assert {r["youtube_id"] for r in rows} == set(names)
    assert (dataset / "shards" / "train-000000.tar").is_file()


def test_webdataset_shards(tmp_path: Path) -> None:
    import webdataset

    out = tmp_path / "out"
    make_out(out, {f"v{k}": [("run", 0, 2)] for k in range(5)})
    report = export(out, tmp_path / "ds", splits=(1.0,), include="all", webdataset=True,
                    shard_size=2)  # fmt: skip
    shards = sorted((tmp_path / "ds" / "shards").iterdir())
    assert [p.name for p in shards] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert report.shards == {"train": shards}
    samples = list(webdataset.WebDataset([str(p) for p in shards], shardshuffle=False))
    assert len(samples) == 5
    for sample in samples:
        meta = json.loads(sample["json"])
        assert sample["mp4"] == _clip_bytes(meta["clip"])
        assert meta["label"] == "run" and meta["video"] == meta["clip"].split("/")[0]
        assert (meta["time_start"], meta["time_end"]) == (0.0, 2.0)
        assert (tmp_path / "ds" / meta["file"]).read_bytes() == sample["mp4"]
    with tarfile.open(shards[0]) as tar:
        assert sorted(tar.getnames()) == [
            "train_00000000.json", "train_00000000.mp4", "train_00000001.json",
            "train_00000001.mp4",
        ]  # fmt: skip
    card = json.loads((tmp_path / "ds" / DATASET_JSON).read_text())
    assert card["files"]["shards"]["train"] == [f"shards/{p.name}" for p in shards]


def test_hardlinks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_out(out, {"v": [("run", 0, 2)]})
    report = export(out, tmp_path / "ds", splits=(1.0,), include="all", link="hardlink")
    copy = next((tmp_path / "ds" / "train" / "run").iterdir())
    source = next((out / "videos" / "v" / "clips" / "run").iterdir())
    assert copy.stat().st_ino == source.stat().st_ino and report.copied_instead_of_linked == 0


# -- refusals, errors --------------------------------------------------------------------------


def test_existing_dataset_needs_force_and_survives_a_failed_export(tmp_path: Path) -> None:
    out, dataset = tmp_path / "out", tmp_path / "ds"
    make_out(out, {"v": [("run", 0, 2)], "w": [("run", 0, 2)]})
    dataset.mkdir()  # an empty folder is fine
    export(out, dataset, splits=(1.0,), include="all")
    with pytest.raises(UsageError, match="not empty; --force replaces it"):
        export(out, dataset, splits=(1.0,), include="all")
    vote(out, [("v/0", "ann", "reject", None)])
    export(out, dataset, splits=(1.0,), include="all", force=True)
    assert set(exported(dataset)) == {"w 0.000"}
    assert not (dataset / "train" / "run" / "v_0000.00_0002.00.mp4").exists()
    vote(out, [("w/0", "ann", "reject", None)])
    with pytest.raises(UsageError, match="nothing to export"):
        export(out, dataset, splits=(1.0,), include="all", force=True)
    assert set(exported(dataset)) == {"w 0.000"}  # the old dataset is untouched

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not a clipminer dataset"):
        export(out, other, include="all", force=True)
    assert (other / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("target", "message"),
    [("out", "outside"), ("out/dataset", "outside"), (".", "outside"), ("file", "is a file")],
)
def test_target_that_would_touch_out_is_refused(tmp_path: Path, target: str, message: str) -> None:
    out = tmp_path / "out"
    make_out(out, {"v": [("run", 0, 2)]})
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match=message):
        export(out, tmp_path / target, include="all", force=True)


def test_nothing_accepted_says_what_to_do(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_out(out, {"v": [("run", 0, 2), ("run", 3, 4)]})
    vote(out, [("v/0", "ann", "reject", None)])
    with pytest.raises(UsageError, match=r"no accepted clips .*run clipminer review first, or "):
        export(out, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_out_must_be_mined(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such folder"):
        export(tmp_path / "missing", tmp_path / "ds")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no mined videos"):
        export(tmp_path / "empty", tmp_path / "ds")


# -- the command ------------------------------------------------------------------------------


def test_cli_exports_and_prints_a_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_out(out, {f"v{k}": [("run [x]", 0, 2), ("jump", 3, 4)] for k in range(4)})
    args = ["export", str(out), "--out", str(tmp_path / "ds"), "--splits", "0.5,0.5,0",
            "--include", "all", "--webdataset", "--shard-size", "3", "--seed", "1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "run [x]" in result.stdout and "train" in result.stdout and "8 clips" in result.stdout
    card = json.loads((tmp_path / "ds" / DATASET_JSON).read_text())
    assert card["splits"] == {"train": 0.5, "val": 0.5} and card["seed"] == 1

    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--force" in again.output
    assert "Traceback" not in again.output and len(again.output.strip().splitlines()) == 1
    assert runner.invoke(app, [*args, "--force", "--hardlink"]).exit_code == 0


def test_cli_prints_the_rule_and_what_it_took_and_left_out(tmp_path: Path) -> None:
    out = _voted_out(tmp_path)
    settle_rule(out, RuleChoice(votes=3, agree=2), who="ann")
    args = ["export", str(out), "--out", str(tmp_path / "ds"), "--splits", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "rule: 3 votes, 2 must agree (stored)" in lines
    assert "verdicts: 1 accepted, 1 relabelled, 0 rejected, 1 pending, 1 disputed" in lines
    assert (
        "left out: 0 rejected, 2 pending or disputed, 0 dropped duplicates, "
        "0 without a clip file" in lines
    )
    assert "agreement: 22% over 3 clips with 2+ votes (Fleiss' kappa -0.21)" in lines

    other = [*args, "--force", "--votes", "1", "--agree", "1"]
    refused = runner.invoke(app, other)
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "--override-rule" in refused.output and "review.sqlite" in refused.output
    overridden = runner.invoke(app, [*other, "--override-rule"])
    assert overridden.exit_code == 0, overridden.output
    assert "rule: 1 vote, 1 must agree (given, differs from the stored 3 votes" in (
        overridden.stdout
    )

    incomplete = runner.invoke(app, [*args, "--force", "--require-complete"])
    assert incomplete.exit_code == 2 and len(incomplete.output.strip().splitlines()) == 1
    assert "1 clips pending and 1 disputed" in incomplete.output
    assert f"clipminer review {out}" in incomplete.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--splits", "0.7,0.2"], "sum to 1"), (["--agree", "3"], "need 1 <= agree <= votes"),
     ([], "no accepted clips")],
)  # fmt: skip
def test_cli_errors_are_one_line(tmp_path: Path, extra: list[str], message: str) -> None:
    out = tmp_path / "out"
    make_out(out, {"v": [("run", 0, 2)]})
    result = runner.invoke(app, ["export", str(out), "--out", str(tmp_path / "ds"), *extra])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


# -- train-video reads the dataset ---------------------------------------------------------------


def test_train_split_loads_as_a_folder_per_class_video_set(tmp_path: Path) -> None:
    from clipminer.config import ClipSpec, VideoSource
    from clipminer.data.videos import ClipDataset
    from clipminer.train_video import load_videos

    out = tmp_path / "out"
    make_out(out, {f"v{k}": [("run", 0, 1), ("jump", 2, 3)] for k in range(4)}, real=True)
    export(out, tmp_path / "ds", splits=(0.5, 0.5), include="all")
    dataset = tmp_path / "ds"
    videos = load_videos(VideoSource(videos=dataset / "train", val_dir=dataset / "val"))
    assert videos.labels == ("jump", "run") and not videos.unreadable
    assert len(videos.train) == 4 and len(videos.val) == 4
    for item in videos.train:
        assert item.path.parent.name == videos.labels[item.label]
    spec = ClipSpec(clip_len=4, frame_rate=8.0, size=16)
    clip, label = ClipDataset(videos.train, spec)[0]
    assert tuple(clip.shape) == (3, 4, 16, 16) and label in (0, 1)
    clips, _ = ClipDataset(videos.val, spec, clips_per_video=2)[0]
    assert tuple(clips.shape) == (2, 3, 4, 16, 16)
    assert os.path.commonpath([p.path for p in videos.train]) == str(dataset / "train")
    trained = runner.invoke(
        app,
        ["train-video", "--videos", str(dataset / "train"), "--val-dir", str(dataset / "val"),
         "--out", str(tmp_path / "model.pt"), "--arch", "small3d", "--clip-len", "4",
         "--frame-rate", "8", "--frame-size", "16", "--epochs", "1", "--batch-size", "4",
         "--train-clips-per-video", "1", "--val-clips-per-video", "1", "--workers", "0",
         "--device", "cpu"],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert "4 train / 4 validation videos" in trained.output
    evaluated = runner.invoke(
        app,
        ["eval-video", str(tmp_path / "model.pt"), "--videos", str(dataset / "val"),
         "--val-fraction", "0", "--out", str(tmp_path / "eval"), "--clips-per-video", "1",
         "--workers", "0", "--device", "cpu"],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "video_top1" in json.dumps(metrics)


def test_rejected_clips_can_be_exported_as_the_background_class(tmp_path: Path) -> None:
    """--rejected-as background: the miner's mistakes become a class a model can learn
    (train-video --videos DATASET/train reads it as one more class folder)."""
    out = tmp_path / "out"
    make_out(out, {"v": [("run", 0, 2), ("run", 3, 5)], "w": [("walk", 0, 2)]})
    vote(out, [("v/0", "ann", "accept", None), ("v/1", "ann", "reject", None),
               ("w/0", "ann", "reject", None)])  # fmt: skip
    export(out, tmp_path / "plain", splits=(1.0,))
    assert exported(tmp_path / "plain") == {"v 0.000": ("run", "train")}
    report = export(out, tmp_path / "ds", splits=(1.0,), rejected_as="background")
    assert exported(tmp_path / "ds") == {
        "v 0.000": ("run", "train"), "v 3.000": ("background", "train"),
        "w 0.000": ("background", "train"),
    }  # fmt: skip
    assert report.counts["train"] == {"background": 2, "run": 1}
    assert len(list((tmp_path / "ds" / "train" / "background").glob("*.mp4"))) == 2
    card = json.loads((tmp_path / "ds" / DATASET_JSON).read_text())
    assert card["review"]["counts"]["rejected"] == 2
    with pytest.raises(UsageError, match="--rejected-as"):
        export(out, tmp_path / "bad", splits=(1.0,), rejected_as=" ")
    with pytest.raises(UsageError, match="exported as that label already"):
        export(out, tmp_path / "bad", splits=(1.0,), rejected_as="run")
    result = runner.invoke(
        app, ["export", str(out), "--out", str(tmp_path / "cli"), "--splits", "1,0,0",
              "--rejected-as", "background"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "left out: 2 rejected (exported as background)" in result.output
