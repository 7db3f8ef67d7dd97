"""UCF-101 split parsing (on the real split files), folders, windows and clip loading."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from clipminer import synth
from clipminer.data.videos import (
    ClipAugment,
    ClipDataset,
    ClipSpec,
    VideoItem,
    check_readable,
    read_class_index,
    read_ucf101,
    scan_video_folder,
    split_by_name,
)
from clipminer.errors import UsageError
from clipminer.sampling import random_window_start, uniform_window_starts, window_indices


@pytest.mark.parametrize(
    ("num_frames", "clip_len", "start", "expected"),
    [
        (10, 4, 0, [0, 1, 2, 3]),
        (10, 4, 6, [6, 7, 8, 9]),
        (3, 6, 0, [0, 0, 1, 1, 2, 2]),  # short: each frame repeated, order kept
        (4, 16, 0, [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4),
        (1, 3, 0, [0, 0, 0]),
    ],
)
def test_window_indices(num_frames, clip_len, start, expected) -> None:
    assert window_indices(num_frames, clip_len, start).tolist() == expected


@pytest.mark.parametrize(
    ("num_frames", "clip_len", "count", "expected"),
    [
        (100, 16, 3, [0, 42, 84]),
        (100, 16, 1, [42]),
        (10, 16, 3, [0, 0, 0]),
        (20, 16, 5, [0, 1, 2, 3, 4]),
    ],
)
def test_uniform_window_starts(num_frames, clip_len, count, expected) -> None:
    assert uniform_window_starts(num_frames, clip_len, count) == expected


def test_window_bounds() -> None:
    rng = np.random.default_rng(0)
    starts = {random_window_start(20, 16, rng) for _ in range(200)}
    assert starts == set(range(5))
    assert random_window_start(5, 16, rng) == 0
    with pytest.raises(ValueError, match="start 7 out of range for 10 frames, window 4"):
        window_indices(10, 4, 7)


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, Path]:
    """All 101 class folders (empty), plus the one real UCF-101 clip in its place."""
    root = tmp_path_factory.mktemp("ucf") / "UCF-101"
    labels = shared_data / "labels"
    for name in read_class_index(labels / "ucf101_classInd.txt"):
        (root / name).mkdir(parents=True)
    shutil.copy(
        shared_data / "actions" / "ucf101_ApplyEyeMakeup__mmaction2_tests_data_test.avi",
        root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi",
    )
    splits = tmp_path_factory.mktemp("splits")
    for name in ("classInd", "trainlist01", "testlist01"):
        shutil.copy(labels / f"ucf101_{name}.txt", splits / f"{name}.txt")
    return root, splits


def test_real_ucf101_split_files(ucf_root: tuple[Path, Path]) -> None:
    root, splits = ucf_root
    labels = read_class_index(splits / "classInd.txt")  # CRLF line endings
    assert len(labels) == 101 and labels[0] == "ApplyEyeMakeup" and labels[-1] == "YoYo"
    videos = read_ucf101(root, splits, 1)
    assert videos.labels == labels
    # Only the one real clip exists; every other listed video is reported missing.
    assert len(videos.train) + len(videos.val) + len(videos.missing) == 9537 + 3783
    assert [(i.relative, i.label) for i in videos.val] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", 0)
    ]
    assert videos.train == []


def test_split_file_mismatch_and_missing_class_folder(ucf_root, tmp_path: Path) -> None:
    root, splits = ucf_root
    bad = tmp_path / "splits"
    shutil.copytree(splits, bad)
    lines = (bad / "trainlist01.txt").read_bytes().split(b"\r\n")
    lines[5] = lines[5].replace(b" 1", b" 2")
    (bad / "trainlist01.txt").write_bytes(b"\r\n".join(lines))
    with pytest.raises(
        UsageError, match=r"trainlist01.txt:6: .* listed as class 2 \(ApplyLipstick\)"
    ):
        read_ucf101(root, bad, 1)
    partial = tmp_path / "root"
    shutil.copytree(root, partial)
    shutil.rmtree(partial / "YoYo")
    with pytest.raises(UsageError, match=r"class folder\(s\) missing: \['YoYo'\]"):
        read_ucf101(partial, splits, 1)
    with pytest.raises(UsageError, match="split file not found"):
        read_ucf101(root, splits, 2)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips") / "clips"
    synth.make_clips(
        root,
        per_class=5,
        seconds=1.2,
        fps=25,
        size=(64, 80),
        seed=0,
        labels=("sliding_left", "sliding_right", "spinning"),
    )
    return root


def test_folder_split_is_stratified_and_deterministic(clips: Path) -> None:
    labels, items, unknown = scan_video_folder(clips)
    assert labels == ("sliding_left", "sliding_right", "spinning") and not unknown
    _train, val = split_by_name(items, 0.2)
    assert sorted(i.label for i in val) == [0, 1, 2]
    again = split_by_name(list(reversed(items)), 0.2)[1]
    assert {i.path for i in again} == {i.path for i in val}


def test_clip_shapes_train_and_eval(clips: Path) -> None:
    _, items, _ = scan_video_folder(clips)
    items = check_readable(items, [])
    spec = ClipSpec(clip_len=8, frame_rate=12.5, size=48)
    train = ClipDataset(items, spec)
    clip, _label = train[0]
    assert clip.shape == (3, 8, 48, 48) and clip.dtype.is_floating_point
    evaluation = ClipDataset(items, spec, clips_per_video=3)
    clips_, _ = evaluation[1]
    assert clips_.shape == (3, 3, 8, 48, 48)


def test_several_clips_per_video_per_epoch(clips: Path) -> None:
    _, items, _ = scan_video_folder(clips)
    items = check_readable(items[:2], [])
    spec = ClipSpec(clip_len=4, frame_rate=12.5, size=32)
    train = ClipDataset(items, spec, augment=ClipAugment(clips_per_video=3))
    assert len(train) == 6
    assert [train[k][1] for k in range(6)] == [items[0].label] * 3 + [items[1].label] * 3


def test_augment_crops_resizes_and_jitters_every_frame_alike() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1, 40, 60, 3), dtype=np.uint8)
    frames = np.repeat(frame, 4, axis=0)
    augment = ClipAugment(crop_scale=0.3, hflip=True, color_jitter=0.4)
    outputs = [augment.apply(frames, 24, np.random.default_rng(seed)) for seed in range(6)]
    for out in outputs:
        assert out.shape == (4, 3, 24, 24) and out.dtype == torch.uint8
        assert (out == out[:1]).all()  # one crop, flip and colour change per clip
    assert len({out.numpy().tobytes() for out in outputs}) == 6  # but another per clip
    plain = ClipAugment().apply(frames, 24, np.random.default_rng(1))
    top_left = [
        (t, left)
        for t in range(40 - 24 + 1)
        for left in range(60 - 24 + 1)
        if np.array_equal(frame[0, t : t + 24, left : left + 24], plain[0].permute(1, 2, 0).numpy())
    ]
    assert len(top_left) == 1  # without a crop scale or jitter: a plain crop of the pixels


def test_augment_refuses_bad_settings() -> None:
    with pytest.raises(UsageError, match="bad clip augmentation"):
        ClipAugment(crop_scale=0)
    with pytest.raises(UsageError, match="bad clip augmentation"):
        ClipAugment(clips_per_video=0)


def test_short_video_is_padded_and_unreadable_is_skipped(shared_data: Path, tmp_path: Path) -> None:
    short = shared_data / "robustness" / "decord_unordered.mov"  # 4 frames, 50x50
    text = tmp_path / "text.avi"
    text.write_text("not a video")
    unreadable: list = []
    items = check_readable(
        [VideoItem(short, 0, "a/short.mov"), VideoItem(text, 1, "b/text.avi")], unreadable
    )
    assert [i.path for i in items] == [short]
    assert unreadable[0][0] == text and "text.avi" in unreadable[0][1]
    spec = ClipSpec(clip_len=16, frame_rate=32, size=32)
    clip, _ = ClipDataset(items, spec)[0]
    assert clip.shape == (3, 16, 32, 32)
    many, _ = ClipDataset(items, spec, clips_per_video=4)[0]
    assert many.shape == (4, 3, 16, 32, 32)
