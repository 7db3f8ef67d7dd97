"""The synthetic world: determinism, layouts, ground truth, the motion-only pair."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from clipminer import synth
from clipminer.decode import iter_frames, probe
from clipminer.errors import UsageError


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_images_are_deterministic(tmp_path: Path) -> None:
    first = synth.make_images(tmp_path / "a", per_class=3, size=(32, 40), seed=5)
    synth.make_images(tmp_path / "b", per_class=3, size=(32, 40), seed=5)
    synth.make_images(tmp_path / "c", per_class=3, size=(32, 40), seed=6)
    assert set(first) == set(synth.LABELS)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert len(_digest(tmp_path / "a")) == 3 * len(synth.LABELS)
    assert not list(tmp_path.rglob(".*partial*")), "no temporary files left behind"


def test_long_video_is_deterministic_and_matches_its_truth(tmp_path: Path) -> None:
    kwargs = dict(duration_seconds=60.0, size=(48, 64), fps=10, seed=2)
    a = synth.make_long_video(tmp_path / "a.mp4", **kwargs)
    b = synth.make_long_video(tmp_path / "b.mp4", **kwargs)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.truth_csv.read_text() == b.truth_csv.read_text()
    assert a.truth_csv.read_text().splitlines()[0] == "label,time_start,time_end"
    assert synth.read_truth_csv(a.truth_csv) == a.segments
    labels = [s.label for s in a.segments]
    assert len(a.segments) >= 4 and set(labels) <= set(synth.ACTIONS)
    assert len(set(labels[:5])) == len(labels[:5]), "every action appears before any repeats"
    for left, right in zip(a.segments, a.segments[1:], strict=False):
        assert right.time_start_seconds > left.time_end_seconds  # background between
    info = probe(a.path)
    assert (info.width, info.height) == (64, 48)
    assert info.num_frames == a.frames == 600


def test_long_video_frames_follow_the_timeline(tmp_path: Path) -> None:
    video = synth.make_long_video(
        tmp_path / "v.mp4", duration_seconds=20.0, size=(64, 96), fps=10, seed=4
    )
    seg = video.segments[0]
    mid = (seg.time_start_seconds + seg.time_end_seconds) / 2
    want = synth.scene(seg.label, seed=4, index=30_001, size=(64, 96)).render(
        mid - seg.time_start_seconds
    )
    frames = {round(f.pts_seconds, 1): f.pixels for f in iter_frames(video.path)}
    got = frames[round(mid, 1)]
    # Lossy H.264: close to the rendered frame, far from another scene.
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 8


def test_motion_only_pair_differs_only_in_motion() -> None:
    rng_state = 123
    left = synth.Scene("sliding_left", np.random.default_rng(rng_state), (60, 80))
    right = synth.Scene("sliding_right", np.random.default_rng(rng_state), (60, 80))
    np.testing.assert_array_equal(left.render(0.0), right.render(0.0))
    assert not np.array_equal(left.render(0.5), right.render(0.5))

    # The square's horizontal position moves in opposite directions.
    def red_x(frame: np.ndarray) -> float:
        mask = (frame[..., 0] > 180) & (frame[..., 1] < 80)
        return float(np.nonzero(mask)[1].mean())

    start = red_x(left.render(0.0))
    assert red_x(left.render(0.1)) < start < red_x(right.render(0.1))


def test_single_frames_of_other_classes_differ() -> None:
    frames = {
        label: synth.scene(label, seed=0, index=0, size=(40, 40)).render(0.3).mean(axis=(0, 1))
        for label in ("bouncing", "spinning", "pulsing", "background")
    }
    colours = np.stack(list(frames.values()))
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert distances[~np.eye(len(colours), dtype=bool)].min() > 10


def test_clip_tree_and_ucf101_tree(tmp_path: Path) -> None:
    clips = synth.make_clips(tmp_path / "clips", per_class=2, seconds=0.5, fps=10, size=(32, 48))
    assert all(len(paths) == 2 for paths in clips.values())
    assert probe(clips["spinning"][0]).num_frames == 5
    tree = synth.make_ucf101(tmp_path / "ucf", per_class=8, seconds=0.4, fps=10, size=(32, 48))
    class_ind = (tree.splits / "classInd.txt").read_bytes()
    assert class_ind.startswith(b"1 Bouncing\r\n2 Spinning\r\n3 SlidingLeft\r\n")
    train = (tree.splits / "trainlist01.txt").read_text().splitlines()
    test = (tree.splits / "testlist01.txt").read_text().splitlines()
    assert (tree.train, tree.test) == (len(train), len(test)) == (6 * 4, 6 * 4)
    assert train[0] == "Bouncing/v_Bouncing_g02_c01.avi 1"
    assert test[0] == "Bouncing/v_Bouncing_g01_c01.avi"
    assert (tree.root / "SlidingRight" / "v_SlidingRight_g02_c04.avi").is_file()


@pytest.mark.parametrize(
    ("per_class", "train", "test"), [(2, 1, 1), (3, 2, 1), (4, 2, 2), (5, 3, 2)]
)
def test_small_ucf101_trees_fill_both_splits(
    tmp_path: Path, per_class: int, train: int, test: int
) -> None:
    labels = ("bouncing", "spinning")
    tree = synth.make_ucf101(
        tmp_path, per_class=per_class, seconds=0.2, fps=10, size=(32, 48), labels=labels
    )
    assert (tree.train, tree.test) == (train * len(labels), test * len(labels))


def test_ucf101_tree_of_one_clip_per_class_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--per-class 1: a UCF-101 layout needs at least 2"):
        synth.make_ucf101(tmp_path, per_class=1, seconds=0.2, fps=10, size=(32, 48))
    assert not (tmp_path / "splits").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(size=(31, 48)), "even"),
        (dict(size=(8, 8)), "at least 16"),
        (dict(actions=("background",)), "not an action"),
        (dict(actions=("juggling",)), "unknown synthetic label"),
        (dict(duration_seconds=0), "positive"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = dict(duration_seconds=5.0, size=(32, 48), fps=10) | kwargs
    with pytest.raises(ValueError, match=message):
        synth.make_long_video(tmp_path / "x.mp4", **args)
