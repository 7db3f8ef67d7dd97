"""Background sources of train-image and train-video (``--background``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipminer import synth
from clipminer.config import ClipSpec, ImageTrainConfig, VideoSource
from clipminer.data.background import (
    BUILTIN,
    BackgroundFiles,
    builtin_photos,
    find_background,
    frame_budget,
    hold_out_a_video,
    sample_background,
)
from clipminer.data.images import ImageItem, split_by_hash
from clipminer.encode import VideoWriter
from clipminer.errors import UsageError
from clipminer.models.bundle import load_bundle
from clipminer.train import FitConfig
from clipminer.train_image import train_image
from clipminer.train_video import load_videos


def _video(path: Path, seconds: float = 2.0, label: str = "background", seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scene = synth.scene(label, seed=seed, index=0, size=(48, 64))
    with VideoWriter(path, fps=10, size=(48, 64)) as writer:
        for k in range(round(seconds * 10)):
            writer.write(scene.render(k / 10))
    return path


def _image(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 50, 3), value, np.uint8)).save(path)
    return path


def test_find_background_walks_folders(tmp_path: Path) -> None:
    root = tmp_path / "src"
    _video(root / "a" / "street.mp4")
    _image(root / "b" / "room.jpg")
    _image(root / ".hidden" / "x.png")
    _image(root / "c" / ".y.png")
    (root / "notes.txt").write_text("not media")
    files = find_background([root])
    assert [p.name for p in files.videos] == ["street.mp4"]
    assert [p.name for p in files.images] == ["room.jpg"]
    # a file is taken as it is, and a source named twice counts once
    again = find_background([root / "b" / "room.jpg", root / "b" / "room.jpg"])
    assert len(again.images) == 1 and not again.videos


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "no such file or folder"),
        (lambda root: root, "no videos or images"),
    ],
)
def test_find_background_errors_name_the_source(tmp_path: Path, make, message: str) -> None:
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UsageError, match=message):
        find_background([make(tmp_path)])


def test_builtin_photos_are_real_files() -> None:
    photos = builtin_photos()
    if not photos:
        pytest.skip("neither scikit-image nor matplotlib's sample data is installed")
    assert all(p.is_file() for p in photos)
    assert len(find_background([BUILTIN]).images) == len(photos)


@pytest.mark.parametrize(
    ("videos", "images", "count", "expected"),
    [
        (0, 10, 4, (4, 0)),  # images only: up to count
        (0, 3, 10, (3, 0)),
        (2, 10, 20, (10, 5)),  # images up to half, the videos share the rest
        (2, 0, 20, (0, 10)),
        (3, 0, 5, (0, 4)),  # at least 4 frames per video
        (1, 100, 64, (32, 32)),
    ],
)
def test_frame_budget(videos: int, images: int, count: int, expected: tuple[int, int]) -> None:
    files = BackgroundFiles(
        tuple(Path(f"v{i}.mp4") for i in range(videos)),
        tuple(Path(f"i{i}.jpg") for i in range(images)),
    )
    assert frame_budget(files, count) == expected


def test_sample_background_spreads_frames_and_groups_by_video(tmp_path: Path) -> None:
    first = _video(tmp_path / "one.mp4", seconds=4.0)
    second = _video(tmp_path / "two.mp4", seconds=2.0, seed=1)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    photo = _image(tmp_path / "p.jpg")
    files = find_background([first, second, broken, photo])
    sampled = sample_background(files, tmp_path / "out", count=12, short_side=32)
    groups = {s.group for s in sampled}
    assert groups == {f"video:{first}", f"video:{second}", f"image:{photo}"}
    per_video = [sum(s.group == f"video:{v}" for s in sampled) for v in (first, second)]
    assert per_video == [4, 4]  # 12 - 1 image over 3 videos, rounded up; the broken one gives 0
    for item in sampled:
        if item.group.startswith("video:"):
            with Image.open(item.path) as image:
                assert min(image.size) == 32
    assert all(
        s.path.is_relative_to(tmp_path / "out") for s in sampled if s.group != f"image:{photo}"
    )


def test_hold_out_a_video_moves_one_whole_source() -> None:
    def items(group: str, n: int, label: int = 0) -> list[ImageItem]:
        return [ImageItem(Path(f"{group}{k}"), label, f"{k:064x}", group=group) for k in range(n)]

    train = items("video:a", 3) + items("video:b", 3) + items("image:p", 1) + items("", 2, 1)
    val = items("image:q", 1)
    new_train, new_val = hold_out_a_video(train, val, 0)
    moved = {i.group for i in new_val} - {"image:q"}
    assert len(moved) == 1 and moved <= {"video:a", "video:b"}
    assert sorted(map(str, (i.path for i in new_train + new_val))) == sorted(
        map(str, (i.path for i in train + val))
    )
    # already held out, or a single video: nothing moves
    assert hold_out_a_video(new_train, new_val, 0) == (new_train, new_val)
    single = items("video:a", 3)
    assert hold_out_a_video(single, [], 0) == (single, [])


def test_split_keeps_a_group_on_one_side() -> None:
    items = [
        ImageItem(Path(f"{g}_{k}.jpg"), 0, f"{g}{k:063x}", group=g)
        for g in "abcdef"
        for k in range(5)
    ]
    train, val = split_by_hash(items, 0.3)
    assert train and val
    for group in "abcdef":
        sides = {item in val for item in items if item.group == group}
        assert len(sides) == 1


def test_train_image_with_background_sources(tmp_path: Path) -> None:
    data = tmp_path / "images"
    synth.make_images(data, per_class=12, size=(48, 48), seed=0, labels=("bouncing", "spinning"))
    sources = tmp_path / "nonaction"
    for k in range(3):
        _video(sources / f"clip{k}.mp4", seconds=2.0, seed=k)
    result = train_image(
        data,
        tmp_path / "image.pt",
        config=ImageTrainConfig(
            arch="resnet18",
            weights="none",
            image_size=32,
            batch_size=8,
            val_fraction=0.4,
            workers=0,
            device="cpu",
            background=(str(sources),),
            background_images=30,
            fit=FitConfig(epochs=1),
        ),
    )
    bundle = load_bundle(result.model_path, kind="image")
    assert bundle.labels == ("background", "bouncing", "spinning")
    assert result.train_images + result.val_images == 24 + 30
    assert bundle.open_set is not None
    # a whole background video is held out, so the calibration sees unseen footage
    assert bundle.open_set["samples"]["background"] >= 10
    assert list(bundle.config["background"]) == [str(sources)]


def test_train_video_background_videos_balance_and_hold_out(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    synth.make_clips(
        clips,
        per_class=4,
        seconds=1.0,
        fps=10,
        size=(48, 64),
        seed=0,
        labels=("bouncing", "spinning"),
    )
    for k in range(4):
        _video(tmp_path / "bg" / f"street {k}.mp4", seconds=1.0, seed=k)
    source = VideoSource(videos=clips, val_fraction=0.25, background=(str(tmp_path / "bg"),))
    videos = load_videos(source)
    assert videos.labels == ("background", "bouncing", "spinning")
    background = videos.labels.index("background")
    train_bg = [i for i in videos.train if i.label == background]
    val_bg = [i for i in videos.val if i.label == background]
    assert val_bg and {i.path for i in val_bg}.isdisjoint({i.path for i in train_bg})
    per_action = sum(1 for i in videos.train if i.label != background) / 2
    assert len(train_bg) >= per_action  # repeated to balance the actions
    assert all(i.relative.startswith("background/") and ".." not in i.relative for i in train_bg)
    with pytest.raises(UsageError, match="takes videos"):
        load_videos(VideoSource(videos=clips, background=(str(_image(tmp_path / "i" / "a.jpg")),)))
    assert ClipSpec()  # the settings import stays light


def test_names_that_are_not_utf8(tmp_path: Path) -> None:
    """A Latin-1 file name (kept as surrogates) is sampled, grouped and split like any."""
    import os

    folder = tmp_path / "src"
    video = _video(folder / "plain.mp4")
    odd = Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9 [1] $x.mp4"))
    video.rename(odd)
    files = find_background([folder])
    assert files.videos == (odd,)
    sampled = sample_background(files, tmp_path / "out", count=4, short_side=32)
    assert len(sampled) == 4
    items = [ImageItem(s.path, 0, f"{k:064x}", group=s.group) for k, s in enumerate(sampled)]
    train, val = split_by_hash(items, 0.5)
    assert len(train) + len(val) == 4
