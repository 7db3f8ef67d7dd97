"""``clipminer dedup``: near-duplicate clips and videos, incremental reruns, --delete, CLI."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from clipminer.cli import app
from clipminer.config import DedupConfig
from clipminer.curate import catalog
from clipminer.curate import dedup as dedup_module
from clipminer.curate.dedup import leaders, neighbour_pairs
from clipminer.errors import UsageError

DIM = 64
SEGMENT_COLUMNS = (
    "video", "clip_id", "label", "score", "time_start", "time_end", "video_label",
    "video_score", "clip_path", "video_top5", "clip_start", "clip_end",
)  # fmt: skip
runner = CliRunner()


def dedup(out: Path, **kw: Any) -> dedup_module.DedupReport:
    """The library's dedup at the thresholds the vectors below are planted around (the
    research package's 0.95 / 0.97); the defaults are tested on their own."""
    return dedup_module.dedup(out, **{"threshold": 0.95, "video_threshold": 0.97, **kw})


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def partner(v: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at exactly ``cos`` to ``v`` (to float64 rounding)."""
    u = rng.standard_normal(len(v))
    u -= (u @ v) * v
    u /= np.linalg.norm(u)
    return cos * v + math.sqrt(1 - cos * cos) * u


def make_video(
    out: Path,
    name: str,
    image: np.ndarray,
    *,
    scores: list[float] | None = None,
    video: np.ndarray | None = None,
    whole: np.ndarray | None = None,
    model: str = "image-A",
    video_model: str | None = None,
) -> Path:
    """A mined folder: segments.csv, run.json, embeddings.npy and small clip files."""
    folder = out / "videos" / name
    (folder / "clips" / "run").mkdir(parents=True, exist_ok=True)
    scores = scores or [0.5] * len(image)
    with (folder / "segments.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SEGMENT_COLUMNS)
        for i, score in enumerate(scores):
            clip_path = f"videos/{name}/clips/run/{name}_{i:04d}.mp4"
            (out / clip_path).write_bytes(b"clip")
            writer.writerow(
                [f"/src/{name}.mp4", i, "run", 0.5, i, i + 1, "run", score, clip_path, "", i, i + 1]
            )
    (folder / "run.json").write_text(
        json.dumps({"embedding_models": {"image": model, "video": video_model}})
    )
    if whole is None:
        whole = unit(np.random.default_rng(abs(hash(name)) % 2**32), 1)[0]
    catalog.write_embeddings(
        folder / "embeddings.npy", list(range(len(image))), image, video, image_of_video=whole
    )
    return folder


def groups(out: Path, kind: str = "clip") -> dict[str, set[str]]:
    dups = catalog.read_duplicates(out)
    mapping = dups.clip_group if kind == "clip" else dups.video_group
    found: dict[str, set[str]] = {}
    for member, group in mapping.items():
        found.setdefault(group, set()).add(member)
    return found


def partition(out: Path) -> set[frozenset[str]]:
    return {frozenset(g) for g in groups(out).values()}


def kept(out: Path) -> set[str]:
    dups = catalog.read_duplicates(out)
    return set(dups.clip_group) - dups.dropped_clips


ODD_A = "a video [official] ü"
ODD_B = "b #1 (copy) 日本"


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """Two videos with odd names; pairs planted at, just above and just below 0.95."""
    rng = np.random.default_rng(1)
    a, b = unit(rng, 30), unit(rng, 30)
    b[0] = partner(a[0], 0.95, rng)  # exactly at the threshold: a group
    b[1] = partner(a[1], 0.9501, rng)  # just above: a group
    b[2] = partner(a[2], 0.9499, rng)  # just below: no group
    a[4] = partner(a[3], 0.99, rng)  # within one video
    b_scores = [0.5] * 30
    b_scores[0] = 0.9  # b's copy scores higher: kept
    out = tmp_path / "OUT"
    make_video(out, ODD_A, a)
    make_video(out, ODD_B, b, scores=b_scores)
    return out


def test_planted_duplicates_found_at_and_around_the_threshold(planted: Path) -> None:
    report = dedup(planted, threshold=0.95, within_videos=True)
    assert partition(planted) == {
        frozenset({f"{ODD_A}/0", f"{ODD_B}/0"}),
        frozenset({f"{ODD_A}/1", f"{ODD_B}/1"}),
        frozenset({f"{ODD_A}/3", f"{ODD_A}/4"}),
    }
    assert (report.clips, report.videos, report.clip_groups, report.dropped_clips) == (60, 2, 3, 3)
    dups = catalog.read_duplicates(planted)
    assert f"{ODD_A}/0" in dups.dropped_clips and f"{ODD_B}/0" not in dups.dropped_clips
    assert f"{ODD_A}/4" in dups.dropped_clips  # equal scores: the smaller key stays
    with (planted / "duplicates.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == catalog.DUPLICATES_COLUMNS
    sims = {r["member"]: float(r["similarity"]) for r in rows}
    assert sims[f"{ODD_A}/0"] == pytest.approx(0.95, abs=1e-5)
    assert sims[f"{ODD_B}/0"] == 1.0
    assert sims[f"{ODD_A}/4"] == pytest.approx(0.99, abs=1e-5)
    assert len(list(planted.rglob("*.mp4"))) == 60  # marked, not deleted
    assert report.deleted_files == 0


def test_a_higher_threshold_splits_and_a_lower_one_merges(planted: Path) -> None:
    dedup(planted, threshold=0.9502, within_videos=True)
    assert partition(planted) == {frozenset({f"{ODD_A}/3", f"{ODD_A}/4"})}
    dedup(planted, threshold=0.9498, within_videos=True)
    assert frozenset({f"{ODD_A}/2", f"{ODD_B}/2"}) in partition(planted)
    assert len(partition(planted)) == 4


def test_no_false_groups_among_random_vectors(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for k in range(3):
        make_video(tmp_path, f"v{k}", unit(rng, 200))
    report = dedup(tmp_path)
    assert (report.clip_groups, report.video_groups, report.dropped_clips) == (0, 0, 0)
    assert (tmp_path / "duplicates.csv").read_text().strip() == ",".join(catalog.DUPLICATES_COLUMNS)


def test_video_groups_drop_the_video_with_fewer_clips(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    whole = unit(rng, 1)[0]
    big, small = unit(rng, 6), unit(rng, 4)
    small[0] = partner(big[0], 0.99, rng)
    make_video(tmp_path, "big", big, whole=whole)
    make_video(tmp_path, "small", small, whole=partner(whole, 0.98, rng), scores=[0.99] * 4)
    make_video(tmp_path, "other", unit(rng, 5), whole=partner(whole, 0.96, rng))
    report = dedup(tmp_path)
    assert (report.video_groups, report.dropped_videos) == (1, 1)
    assert list(groups(tmp_path, "video").values()) == [{"big", "small"}]
    dups = catalog.read_duplicates(tmp_path)
    assert dups.dropped_videos == {"small"}
    # The clip pair keeps the clip of the kept video, though the other scores higher.
    assert "big/0" not in dups.dropped_clips and "small/0" in dups.dropped_clips
    assert dups.dropped(catalog.read_clips(tmp_path / "videos" / "small")[3])


def test_rerun_after_a_new_video_keeps_decisions_and_compares_new_clips(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    a, b = unit(rng, 20), unit(rng, 20)
    b[0] = partner(a[0], 0.97, rng)
    make_video(tmp_path, "a", a)
    make_video(tmp_path, "b", b, scores=[0.9] + [0.5] * 19)
    first = dedup(tmp_path)
    assert first.reused_videos == 0 and kept(tmp_path) == {"b/0"}

    c = unit(rng, 10)
    c[0] = partner(b[0], 0.99, rng)  # higher score than the kept b/0
    c[1] = partner(a[5], 0.98, rng)  # a/5 was alone before; c/1 scores higher
    c[2] = partner(c[3], 0.96, rng)  # new within the new video
    make_video(tmp_path, "c", c, scores=[1.0, 1.0, 0.5, 0.6, *[0.5] * 6])
    second = dedup(tmp_path, within_videos=True)
    assert second.reused_videos == 2 and second.clips == 50
    assert partition(tmp_path) == {
        frozenset({"a/0", "b/0", "c/0"}),
        frozenset({"a/5", "c/1"}),
        frozenset({"c/2", "c/3"}),
    }
    # b/0 was kept before and stays; a/5 was alone before, so the better c/1 leads now
    assert kept(tmp_path) == {"b/0", "c/1", "c/3"}

    # The cache changes nothing but time: without it the decisions are the same.
    shutil.rmtree(tmp_path / ".dedup")
    dedup(tmp_path, within_videos=True)
    assert partition(tmp_path) == {
        frozenset({"a/0", "b/0", "c/0"}),
        frozenset({"a/5", "c/1"}),
        frozenset({"c/2", "c/3"}),
    }
    assert kept(tmp_path) == {"b/0", "c/1", "c/3"}


def test_rerun_after_re_mining_and_removing_videos(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    a, b, c = unit(rng, 10), unit(rng, 10), unit(rng, 10)
    b[0] = partner(a[0], 0.97, rng)
    c[0] = partner(a[1], 0.97, rng)
    for name, vectors in (("a", a), ("b", b), ("c", c)):
        make_video(tmp_path, name, vectors)
    dedup(tmp_path)
    assert len(partition(tmp_path)) == 2
    make_video(tmp_path, "b", unit(rng, 10))  # re-mined: no duplicate any more
    b2 = unit(rng, 10)
    shutil.rmtree(tmp_path / "videos" / "c")  # removed
    report = dedup(tmp_path)
    assert report.reused_videos == 1 and partition(tmp_path) == set()
    b2[3] = partner(a[7], 0.99, rng)
    make_video(tmp_path, "b", b2)
    dedup(tmp_path)
    assert partition(tmp_path) == {frozenset({"a/7", "b/3"})}


def test_a_broken_cache_is_recomputed(planted: Path) -> None:
    dedup(planted)
    expected = partition(planted)
    for cache in (planted / ".dedup").iterdir():
        cache.write_bytes(b"not a zip")
    report = dedup(planted)
    assert report.reused_videos == 0 and partition(planted) == expected


def test_delete_removes_only_dropped_clip_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    a = unit(rng, 5)
    a[1] = partner(a[0], 0.99, rng)
    make_video(tmp_path, "a", a, scores=[0.9, 0.1, 0.5, 0.5, 0.5])
    b = unit(rng, 3)
    b[2] = partner(a[2], 0.99, rng)
    folder = make_video(tmp_path, "b", b, scores=[0.5, 0.5, 0.1])
    # b/2's clip_path is made to point outside OUT/videos/b/clips: never deleted.
    outside = tmp_path / "source.mp4"
    outside.write_bytes(b"source video")
    rows = list(csv.DictReader((folder / "segments.csv").open(newline="")))
    rows[2]["clip_path"] = "../source.mp4"
    with (folder / "segments.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, SEGMENT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)

    files = sorted(p.name for p in tmp_path.rglob("*.mp4"))
    report = dedup(tmp_path)
    assert report.deleted_files == 0 and sorted(p.name for p in tmp_path.rglob("*.mp4")) == files
    report = dedup(tmp_path, delete=True, within_videos=True)
    assert catalog.read_duplicates(tmp_path).dropped_clips == {"a/1", "b/2"}
    assert report.deleted_files == 1
    assert not (tmp_path / "videos/a/clips/run/a_0001.mp4").exists()
    assert (tmp_path / "videos/a/clips/run/a_0000.mp4").exists()
    assert outside.read_bytes() == b"source video"
    assert (tmp_path / "videos/b/clips/run/b_0002.mp4").exists()  # not its clip_path any more


def test_only_vectors_of_the_same_model_are_compared(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    a = unit(rng, 4)
    make_video(tmp_path, "a", a, model="image-A")
    make_video(tmp_path, "b", a.copy(), model="image-B")
    make_video(tmp_path, "c", a.copy(), model="image-A")
    report = dedup(tmp_path)
    assert all(members <= {"a/0", "a/1", "a/2", "a/3", "c/0", "c/1", "c/2", "c/3"}
               for members in groups(tmp_path).values())  # fmt: skip
    assert report.clip_groups == 4
    assert any("2 different image models" in note for note in report.notes)


def test_folders_without_embeddings_are_reported_and_skipped(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    make_video(tmp_path, "a", unit(rng, 3))
    old = make_video(tmp_path, "old [2019]", unit(rng, 3))
    (old / "embeddings.npy").unlink()
    broken = make_video(tmp_path, "broken", unit(rng, 3))
    (broken / "embeddings.npy").write_bytes(b"junk")
    report = dedup(tmp_path)
    assert report.videos == 1
    assert any("old [2019]" in n and "embeddings.npy" in n for n in report.notes)
    assert any("broken" in n and "not a clipminer embeddings.npy" in n for n in report.notes)


def test_video_space(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    image = unit(rng, 4)
    video_a, video_b = unit(rng, 4, 32), unit(rng, 4, 32)
    video_b[2] = partner(video_a[1], 0.99, rng)
    make_video(tmp_path, "a", image, video=video_a, video_model="vid")
    make_video(tmp_path, "b", unit(rng, 4), video=video_b, video_model="vid")
    make_video(tmp_path, "c", unit(rng, 4))  # mined without a video model
    report = dedup(tmp_path, space="video")
    assert partition(tmp_path) == {frozenset({"a/1", "b/2"})}
    assert any("c" in n and "no video-model vectors" in n for n in report.notes)
    only_image = tmp_path / "only-image"
    make_video(only_image, "x", unit(rng, 2))
    with pytest.raises(UsageError, match="no video-model embeddings"):
        dedup(only_image, space="video")


def test_exact_and_usearch_agree() -> None:
    rng = np.random.default_rng(10)
    x = unit(rng, 3000).astype(np.float32)
    for k in range(40):
        x[2000 + k] = partner(x[k].astype(np.float64), 0.95 + k * 0.001, rng)
    x[2500] = partner(x[0].astype(np.float64), 0.99, rng)  # a group of three
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact, how = neighbour_pairs(x, 0.95, method="exact")
    approx, how2 = neighbour_pairs(x, 0.95, method="usearch")
    assert (how, how2) == ("exact", "usearch")
    as_set = {(int(a), int(b)) for a, b in zip(exact.first, exact.second, strict=True)}
    assert {(k, 2000 + k) for k in range(40)} <= as_set
    assert as_set == {(int(a), int(b)) for a, b in zip(approx.first, approx.second, strict=True)}
    assert np.allclose(np.sort(exact.similarity), np.sort(approx.similarity), atol=1e-6)
    queries = np.arange(2000, 2100)
    part_exact, _ = neighbour_pairs(x, 0.95, queries=queries, method="exact")
    part_approx, _ = neighbour_pairs(x, 0.95, queries=queries, method="usearch")
    assert len(part_exact) == len(part_approx) == 40


def test_many_near_identical_vectors_make_one_group() -> None:
    """More duplicates of one clip than usearch's first neighbour count: all found."""
    rng = np.random.default_rng(11)
    base = unit(rng, 1)[0]
    x = np.vstack([unit(rng, 200), [partner(base, 0.999, rng) for _ in range(50)]])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    for method in ("exact", "usearch"):
        pairs, _ = neighbour_pairs(x, 0.95, method=method)  # type: ignore[arg-type]
        assert len(pairs) == 50 * 49 // 2
        labels = leaders(len(x), pairs.first, pairs.second, range(len(x)))
        assert len(set(labels[200:].tolist())) == 1 and len(set(labels.tolist())) == 201


def test_chains_do_not_merge_groups() -> None:
    """a ~ b ~ c ~ d with a !~ c: the kept a takes b only; c then keeps d."""
    first, second = np.array([0, 1, 2, 5]), np.array([1, 2, 3, 6])
    labels = leaders(8, first, second, [0, 1, 2, 3, 4, 5, 6, 7])
    assert labels.tolist() == [0, 0, 2, 2, 4, 5, 5, 7]
    # Keep preference decides who leads: with 1 first, 1 takes 0 and 2; 3 stays alone.
    labels = leaders(8, first, second, [1, 0, 2, 3, 4, 5, 6, 7])
    assert labels.tolist() == [1, 1, 1, 3, 4, 5, 5, 7]


def test_clips_of_one_video_are_grouped_only_when_asked(planted: Path) -> None:
    dedup(planted)
    assert frozenset({f"{ODD_A}/3", f"{ODD_A}/4"}) not in partition(planted)
    assert len(partition(planted)) == 2
    dedup(planted, within_videos=True)
    assert frozenset({f"{ODD_A}/3", f"{ODD_A}/4"}) in partition(planted)


def test_members_are_near_duplicates_of_the_kept_one(tmp_path: Path) -> None:
    """Moments of one slow scene in two uploads: each chain link is over the threshold,
    the ends are not; every member of a group is within the threshold of its kept clip."""
    rng = np.random.default_rng(12)
    walk = [unit(rng, 1)[0]]
    for _ in range(9):
        walk.append(partner(walk[-1], 0.97, rng))
    a = np.stack(walk)
    b = np.stack([partner(v, 0.99, rng) for v in walk])
    make_video(tmp_path, "a", a)
    make_video(tmp_path, "b", b)
    dedup(tmp_path, threshold=0.95)
    with (tmp_path / "duplicates.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["kind"] == "clip"]
    assert rows and all(float(r["similarity"]) >= 0.95 - 1e-6 for r in rows)
    assert max(len(g) for g in groups(tmp_path).values()) < 10


# -- the command ----------------------------------------------------------------------------------


def test_cli_writes_duplicates_and_prints_a_summary(planted: Path) -> None:
    result = runner.invoke(app, ["dedup", str(planted), "--threshold", "0.95"])
    assert result.exit_code == 0, result.output
    assert "dropped" in result.output and "duplicates.csv" in result.output
    assert len(partition(planted)) == 2  # the pair inside one video only with --within-videos
    result = runner.invoke(app, ["dedup", str(planted), "--within-videos", "--threshold", "0.95"])
    assert result.exit_code == 0, result.output
    assert len(partition(planted)) == 3
    result = runner.invoke(app, ["dedup", str(planted), "--delete", "--threshold", "0.95"])
    assert result.exit_code == 0, result.output
    assert "deleted 2 clip files" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threshold", "1.5"], "--threshold': Input should be less than or equal to 1"),
        (
            ["--video-threshold", "-1"],
            "--video-threshold': Input should be greater than or equal to 0",
        ),
        (["--space", "audio"], "'audio' is not one of 'image', 'video'"),
    ],
)
def test_cli_refuses_settings_out_of_bounds(planted: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["dedup", str(planted), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (planted / "duplicates.csv").exists()


def test_cli_errors_on_missing_or_empty_out(tmp_path: Path) -> None:
    result = runner.invoke(app, ["dedup", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such folder" in result.output
    result = runner.invoke(app, ["dedup", str(tmp_path)])
    assert result.exit_code == 2 and "no mined videos" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_warns_about_folders_it_skips(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    make_video(tmp_path, "a", unit(rng, 3))
    (make_video(tmp_path, "no vectors", unit(rng, 3)) / "embeddings.npy").unlink()
    result = runner.invoke(app, ["dedup", str(tmp_path), "--space", "image"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "no vectors" in result.output


def test_cli_help_documents_every_option() -> None:
    result = runner.invoke(app, ["dedup", "--help"])
    assert result.exit_code == 0
    for option in ("--threshold", "--video-threshold", "--space", "--delete"):
        assert option in result.output


def test_delete_removes_the_clips_of_a_dropped_video(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    whole = unit(rng, 1)[0]
    make_video(tmp_path, "main", unit(rng, 3), whole=whole)
    make_video(tmp_path, "re-upload", unit(rng, 2), whole=partner(whole, 0.99, rng))
    calls: list[tuple[float, float]] = []
    report = dedup(tmp_path, delete=True, progress=lambda done, total: calls.append((done, total)))
    assert report.dropped_videos == 1 and report.deleted_files == 2
    assert not list((tmp_path / "videos/re-upload/clips").rglob("*.mp4"))
    assert len(list((tmp_path / "videos/main/clips").rglob("*.mp4"))) == 3
    assert (tmp_path / "videos/re-upload/segments.csv").is_file()  # only clip files go
    assert calls and calls[-1][0] == calls[-1][1]


def test_defaults_group_copies_but_not_look_alikes(tmp_path: Path) -> None:
    """At the default thresholds a re-encoded copy (0.98) is a duplicate and a different
    clip (0.96, the closest different real videos measured) is not; the CLI has the same
    defaults."""
    rng = np.random.default_rng(13)
    a = unit(rng, 4)
    b = np.stack([partner(a[0], 0.98, rng), partner(a[1], 0.96, rng), *unit(rng, 2)])
    whole = unit(rng, 1)[0]
    make_video(tmp_path, "a", a, whole=whole)
    make_video(tmp_path, "b", b, whole=partner(whole, 0.96, rng))
    report = dedup_module.dedup(tmp_path)
    assert partition(tmp_path) == {frozenset({"a/0", "b/0"})} and report.video_groups == 0
    params = {p.name: p.default for p in click_params("dedup")}
    assert params["threshold"] == DedupConfig().threshold
    assert params["video_threshold"] == DedupConfig().video_threshold


def click_params(command: str) -> list[Any]:
    import typer.main

    group = typer.main.get_command(app)
    return list(group.commands[command].params)  # type: ignore[attr-defined]


def test_a_chain_is_one_component_for_export(tmp_path: Path) -> None:
    """a ~ b ~ c, a !~ c, all in different videos: b joins a's group, c leads its own, and
    the three share a component, so export keeps the three videos in one split."""
    rng = np.random.default_rng(14)
    base = unit(rng, 1)[0]
    b0 = partner(base, 0.995, rng)
    # c ~ b, and c is further from a than the threshold
    c0 = partner(b0, 0.995, rng)
    while float(c0 @ base) >= 0.99:
        c0 = partner(b0, 0.995, rng)
    for name, first, score in (("a", base, 0.9), ("b", b0, 0.1), ("c", c0, 0.5)):
        make_video(tmp_path, name, np.stack([first, *unit(rng, 2)]), scores=[score, 0.5, 0.5])
    dedup_module.dedup(tmp_path, threshold=0.99)
    dups = catalog.read_duplicates(tmp_path)
    assert dups.dropped_clips == {"b/0"}
    assert dups.clip_group["a/0"] == dups.clip_group["b/0"] != dups.clip_group["c/0"]
    assert len({dups.clip_component[k] for k in ("a/0", "b/0", "c/0")}) == 1


def test_a_video_without_clips_is_compared_as_a_video(tmp_path: Path) -> None:
    """A mined video with no candidate still has a whole-video row (robustness files)."""
    rng = np.random.default_rng(15)
    whole = unit(rng, 1)[0]
    make_video(tmp_path, "empty", np.zeros((0, DIM), np.float32), whole=whole)
    make_video(tmp_path, "full", unit(rng, 3), whole=partner(whole, 0.99, rng))
    report = dedup(tmp_path)
    assert (report.clips, report.videos, report.video_groups) == (3, 2, 1)
