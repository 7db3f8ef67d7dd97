"""Shot boundaries in the pass: the detector, splitting segments, and mined clips that
never span a cut or a fade (on synthetic videos with known shots)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from clipminer import synth
from clipminer.curate.catalog import read_embeddings, video_folders
from clipminer.decode import Frame, Tap, VideoReader, strided_thumbnail
from clipminer.encode import VideoWriter
from clipminer.errors import UsageError
from clipminer.findclips import ClipMiner, find_clips
from clipminer.mining.shots import (
    DETECTORS,
    SHOT_COLUMNS,
    ShotBoundary,
    ShotConfig,
    ShotDetector,
    read_shots_csv,
    split_at_shots,
)
from clipminer.segments import Segment
from tests.helpers import tiny_findclips_config


def _scene_frames(seed: int, count: int, *, start: float = 0.0, fps: float = 10.0):
    """Frames of one synthetic shot with a moving object (pts, pixels)."""
    rng = np.random.default_rng(seed)
    item = synth.scene(str(rng.choice(synth.ACTIONS)), seed=seed, index=seed, size=(72, 128))
    return [(start + k / fps, item.render(k / fps)) for k in range(count)]


def _textured_frames(seed: int, count: int, *, start: float = 0.0, fps: float = 10.0, gain=1.0):
    """A shot of a real-looking textured scene panning slowly, with sensor noise; ``gain``
    darkens it (0.12: a night scene whose mean brightness is about 14 of 255)."""
    rng = np.random.default_rng(seed)
    coarse = 255 * rng.uniform(0, 1, (12, 40, 3)) ** rng.uniform(0.4, 2.5) * rng.uniform(0.3, 1, 3)
    world = np.kron(coarse, np.ones((6, 6, 1)))  # 72 x 240 pixels of blocks
    frames = []
    for k in range(count):
        view = world[:, k : k + 128] * gain + rng.normal(0, 2, (72, 128, 3))
        frames.append((start + k / fps, np.clip(view, 0, 255).astype(np.uint8)))
    return frames


def _detect(frames, fps: float = 10.0, **kw) -> list[ShotBoundary]:
    detector = ShotDetector(ShotConfig(**kw), fps=fps)
    for k, (t, pixels) in enumerate(frames):
        detector.push(Frame(pixels, t, k))
    return detector.finish()


@pytest.mark.parametrize("detector", DETECTORS)
@pytest.mark.parametrize("seeds", [(1, 2), (3, 4), (5, 6), (7, 8)])
def test_a_hard_cut_is_found_between_the_right_frames(seeds: tuple[int, int], detector) -> None:
    # histogram compares brightness only: the synthetic scenes' flat backgrounds can share it
    shot = _textured_frames if detector == "histogram" else _scene_frames
    first = shot(seeds[0], 30)
    second = shot(seeds[1], 30, start=3.0)
    found = _detect(first + second, detector=detector)
    assert [b.kind for b in found] == ["cut"]
    assert found[0].gap_start == pytest.approx(2.9) and found[0].gap_end == pytest.approx(3.0)


def test_motion_and_noise_within_a_shot_are_not_cuts() -> None:
    frames = _scene_frames(11, 80)
    rng = np.random.default_rng(0)
    changed = []
    for k, (t, pixels) in enumerate(frames):
        gain = 0.8 + 0.2 * np.sin(k / 6)  # exposure drifting up and down
        noisy = pixels * gain + rng.normal(0, 6, pixels.shape)
        changed.append((t, np.clip(noisy, 0, 255).astype(np.uint8)))
    assert _detect(changed) == []
    assert _detect(_textured_frames(12, 100)) == []


@pytest.mark.parametrize("detector", DETECTORS)
def test_a_dark_scene_between_two_bright_ones_is_two_cuts(detector) -> None:
    """Dark footage is footage (mean brightness 14, under the old fade cut-off), not a fade."""
    night = _textured_frames(2, 40, start=3.0, gain=0.12)
    assert 8 < np.mean([p.mean() for _, p in night]) < 20
    frames = _textured_frames(1, 30) + night + _textured_frames(3, 30, start=7.0)
    found = _detect(frames, detector=detector)
    assert [b.kind for b in found] == ["cut", "cut"]
    assert [b.gap_end for b in found] == pytest.approx([3.0, 7.0])


@pytest.mark.parametrize("detector", DETECTORS)
def test_a_video_that_starts_dark_gets_its_first_cut(detector) -> None:
    frames = _textured_frames(4, 40, gain=0.1) + _textured_frames(5, 30, start=4.0)
    found = _detect(frames, detector=detector)
    assert [(b.kind, b.gap_end) for b in found] == [("cut", pytest.approx(4.0))]


def test_a_fade_through_black_is_one_boundary_covering_the_black_frames() -> None:
    frames = _scene_frames(21, 25) + _scene_frames(22, 25, start=2.5)
    faded = []
    for t, pixels in frames:
        gain = min(1.0, max(0.0, abs(t - 2.45) - 0.1) / 0.7)  # black at 2.4 and 2.5 s
        faded.append((t, (pixels * gain).astype(np.uint8)))
    for detector in DETECTORS:
        found = _detect(sorted(faded, key=lambda f: f[0]), detector=detector)
        assert [b.kind for b in found] == ["fade"], detector
        black = [t for t, pixels in faded if pixels.max() <= 12]
        assert found[0].gap_start <= min(black) and found[0].gap_end > max(black)


def test_black_leader_and_tail_are_fades_and_a_long_black_run_is_one() -> None:
    black = np.zeros((72, 128, 3), np.uint8)
    frames = (
        [(k / 10, black) for k in range(5)]
        + _scene_frames(31, 30, start=0.5)
        + [(3.5 + k / 10, black) for k in range(40)]  # 4 s of black
        + _scene_frames(32, 30, start=7.5)
        + [(10.5 + k / 10, black) for k in range(5)]
    )
    found = _detect(frames)
    assert [b.kind for b in found] == ["fade", "fade", "fade"]
    assert found[0].gap_end == pytest.approx(0.5)
    assert found[1].gap_start <= 3.5 and found[1].gap_end == pytest.approx(7.5)
    assert found[2].time == pytest.approx(10.5)


def test_the_detector_takes_the_frames_of_a_pass_tap(tmp_path: Path) -> None:
    """The same per-frame interface as the pass's other consumers: Frames from a tap of a
    VideoReader; a cut in an encoded video lands between the right two frames."""
    video = tmp_path / "cut.mp4"
    frames = _textured_frames(6, 25, fps=25) + _textured_frames(7, 25, start=1.0, fps=25)
    with VideoWriter(video, fps=25, size=(72, 128), crf=20) as writer:
        for _, pixels in frames:
            writer.write(pixels)
    detector = ShotDetector(fps=25, frame_seconds=1 / 25)
    tap = Tap(sample_fps=25, thumbnail=64)
    for _, frame in VideoReader(video, taps=[tap]).iter_taps():
        assert max(frame.pixels.shape[:2]) <= 64
        detector.push(frame)
    (cut,) = detector.finish()
    assert cut.gap_start == pytest.approx(0.96 + 0.02, abs=1e-3)
    assert cut.gap_end == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    "pixel_format", ["yuv420p", "yuvj420p", "yuv422p", "yuv444p", "nv12", "gray", "rgb24"]
)
def test_strided_thumbnails_match_the_scaled_frame(pixel_format: str) -> None:
    """Colours right in every layout the decoder hands out (a smooth picture, so picking
    pixels and scaling agree)."""
    import av

    y, x = np.mgrid[0:288, 0:512]
    pixels = np.stack([x / 2, 40 + y / 2, 200 - x / 4 - y / 8], axis=-1).astype(np.uint8)
    coded = av.VideoFrame.from_ndarray(pixels, "rgb24").reformat(format=pixel_format)
    small = strided_thumbnail(coded, 64)
    assert small.shape == (36, 64, 3)  # 288 x 512 picked every 8 pixels
    reference = coded.reformat(width=64, height=36, format="rgb24").to_ndarray()
    assert np.abs(small.astype(int) - reference.astype(int)).mean() < 6  # a swap: ~100


def test_an_unknown_detector_is_one_line() -> None:
    with pytest.raises(UsageError, match="unknown shot detector 'magic'"):
        ShotConfig("magic")  # type: ignore[arg-type]


def test_split_pieces_never_touch_a_boundary() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        start = float(rng.uniform(0, 50))
        seg = Segment("a", 0.9, start, start + float(rng.uniform(0.5, 20)))
        boundaries = []
        for t in sorted(rng.uniform(0, 75, int(rng.integers(0, 6)))):
            width = float(rng.choice([0.0, 0.1, 0.6]))
            boundaries.append(ShotBoundary("cut", t + width / 2, t, t + width, 1.0))
        pieces = split_at_shots(seg, boundaries, min_seconds=0.3)
        for piece in pieces:
            assert seg.time_start_seconds <= piece.time_start_seconds
            assert piece.time_end_seconds <= seg.time_end_seconds
            assert piece.duration_seconds >= 0.3
            for b in boundaries:
                assert not piece.time_start_seconds < b.time < piece.time_end_seconds
                overlap = min(piece.time_end_seconds, b.gap_end) - max(
                    piece.time_start_seconds, b.gap_start
                )
                assert overlap <= 1e-9
        touching = [
            b for b in boundaries
            if (seg.time_start_seconds < b.gap_end and b.gap_start < seg.time_end_seconds)
            or seg.time_start_seconds < b.time < seg.time_end_seconds
        ]  # fmt: skip
        if not touching:
            assert pieces == [seg]


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory: pytest.TempPathFactory) -> synth.LongVideo:
    root = tmp_path_factory.mktemp("shots")
    return synth.make_long_video(
        root / "cuts and fades.mp4", duration_seconds=45, size=(96, 128), fps=24, seed=3, cuts=True
    )


def test_synthetic_cuts_come_with_their_truth(cut_video: synth.LongVideo) -> None:
    truth = read_shots_csv(cut_video.truth_csv.with_name("cuts and fades.shots.csv"))
    kinds = [b.kind for b in truth]
    assert "fade" in kinds and kinds.count("cut") > 2 * len(cut_video.segments)
    inside = [
        b for b in truth for s in cut_video.segments
        if s.time_start_seconds + 0.1 < b.time < s.time_end_seconds - 0.1
    ]  # fmt: skip
    assert inside, "some cuts fall inside actions"


def _crossings(clips: list[tuple[float, float]], truth: list[ShotBoundary]) -> list[str]:
    eps = 0.02
    bad = []
    for start, end in clips:
        for b in truth:
            spans_cut = b.kind == "cut" and start < b.time - eps and end > b.time + eps
            in_fade = b.kind == "fade" and min(end, b.gap_end) - max(start, b.gap_start) > eps
            if spans_cut or in_fade:
                bad.append(f"clip {start:.2f}-{end:.2f} crosses {b.kind} at {b.time:.2f}")
    return bad


def _mined_ranges(folder: Path) -> list[tuple[float, float]]:
    with (folder / "segments.csv").open(newline="") as handle:
        return [(float(r["clip_start"]), float(r["clip_end"])) for r in csv.DictReader(handle)]


@pytest.mark.parametrize("with_video_model", [True, False])
def test_no_mined_clip_spans_a_cut_or_fade(
    cut_video: synth.LongVideo,
    tiny_models: tuple[Path, Path],
    tmp_path: Path,
    with_video_model: bool,
) -> None:
    truth = read_shots_csv(cut_video.truth_csv.with_name("cuts and fades.shots.csv"))
    video_models = [tiny_models[1]] if with_video_model else []
    miner = ClipMiner(tiny_models[0], video_models, config=tiny_findclips_config())
    (result,) = [r for _, r in find_clips(miner, [cut_video.path], tmp_path / "out")]
    assert not isinstance(result, Exception)
    ranges = _mined_ranges(result.out_dir)
    assert len(ranges) >= 5
    assert _crossings(ranges, truth) == []
    # The boundaries were found: each true one within a source frame (every one is watched).
    found = read_shots_csv(result.out_dir / "shots.csv")
    tolerance = 1 / 24 + 0.01
    for b in truth:
        assert any(abs(f.time - b.time) <= tolerance + (f.gap_end - f.gap_start) for f in found), b
    assert len(found) == len(truth)
    with (result.out_dir / "shots.csv").open() as handle:
        assert tuple(next(csv.reader(handle))) == SHOT_COLUMNS


def test_without_shots_clips_do_span_cuts(
    cut_video: synth.LongVideo, tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    """The check above can fail: the same run with --no-shots crosses boundaries."""
    truth = read_shots_csv(cut_video.truth_csv.with_name("cuts and fades.shots.csv"))
    miner = ClipMiner(tiny_models[0], [], config=tiny_findclips_config(shots=False))
    (result,) = [r for _, r in find_clips(miner, [cut_video.path], tmp_path / "out")]
    assert not isinstance(result, Exception)
    assert _crossings(_mined_ranges(result.out_dir), truth)
    assert not (result.out_dir / "shots.csv").exists()


def test_embeddings_are_keyed_by_clip_id_and_name_their_models(
    cut_video: synth.LongVideo, tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    miner = ClipMiner(tiny_models[0], [tiny_models[1]], config=tiny_findclips_config())
    find_clips(miner, [cut_video.path], tmp_path / "out")
    (folder,) = video_folders(tmp_path / "out")
    with (folder / "segments.csv").open(newline="") as handle:
        ids = [int(r["clip_id"]) for r in csv.DictReader(handle)]
    vectors = read_embeddings(folder)
    assert vectors is not None and vectors.video is not None
    assert vectors.clip_ids.tolist() == ids
    assert vectors.image.shape == (len(ids), 512)  # resnet18's pooled features
    np.testing.assert_allclose(np.linalg.norm(vectors.image, axis=1), 1.0, rtol=1e-5)
    assert np.linalg.norm(vectors.image_of_video) == pytest.approx(1.0, rel=1e-5)
    # Clips of different shots are different vectors; the same run gives the same ones.
    assert len({tuple(np.round(v, 4)) for v in vectors.image}) == len(ids)
    models = json.loads((folder / "run.json").read_text())["embedding_models"]
    assert models["image"] and models["video"] and models["image"] != models["video"]
    find_clips(miner, [cut_video.path], tmp_path / "again")
    (again,) = video_folders(tmp_path / "again")
    second = read_embeddings(again)
    assert second is not None
    np.testing.assert_allclose(second.image, vectors.image, atol=1e-5)


def test_rescore_keeps_the_shots_of_the_scored_run(
    cut_video: synth.LongVideo, tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    truth = read_shots_csv(cut_video.truth_csv.with_name("cuts and fades.shots.csv"))
    miner = ClipMiner(tiny_models[0], [], config=tiny_findclips_config())
    (result,) = [r for _, r in find_clips(miner, [cut_video.path], tmp_path / "out")]
    assert not isinstance(result, Exception)
    scores = tmp_path / "kept" / "scores.parquet"
    scores.parent.mkdir()
    for name in ("scores.parquet", "shots.csv"):
        (scores.parent / name).write_bytes((result.out_dir / name).read_bytes())
    (again,) = [r for _, r in find_clips(miner, [cut_video.path], tmp_path / "re", rescore=scores)]
    assert not isinstance(again, Exception)
    assert _crossings(_mined_ranges(again.out_dir), truth) == []
    # no frames, no embeddings: none are written and run.json names no models for them
    assert not (again.out_dir / "embeddings.npy").exists()
    assert json.loads((again.out_dir / "run.json").read_text())["embedding_models"] == {}


def test_a_broken_shots_csv_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "shots.csv"
    path.write_text("kind,time,gap_start,gap_end,score\nwipe,1,1,1,1\n")
    with pytest.raises(UsageError, match=r"not a clipminer shots\.csv"):
        read_shots_csv(path)
    path.write_text("kind,time\ncut,1\n")
    with pytest.raises(UsageError, match=r"not a clipminer shots\.csv"):
        read_shots_csv(path)


def test_a_black_run_still_open_already_trims_segments() -> None:
    """A segment that closes while the picture is still black must not reach into it."""
    detector = ShotDetector(fps=10, frame_seconds=0.04)
    for k, (t, pixels) in enumerate(_scene_frames(41, 20)):
        detector.push(Frame(pixels, t, k))
    black = np.zeros((72, 128, 3), np.uint8)
    for k in range(5):
        detector.push(Frame(black, 2.0 + k / 10, 20 + k))
    assert detector.boundaries == []
    (open_fade,) = detector.so_far()
    pieces = split_at_shots(Segment("a", 0.9, 0.5, 2.6), detector.so_far())
    assert open_fade.kind == "fade" and pieces[-1].time_end_seconds <= 2.0


@pytest.mark.parametrize("pixel_format", ["yuv420p", "nv12", "yuv422p", "yuv444p", "gray"])
@pytest.mark.parametrize("size", [(49, 65), (3, 5), (250, 130), (1080, 1920)])
def test_strided_thumbnails_of_odd_and_tiny_frames(pixel_format: str, size) -> None:
    import av

    y, x = np.mgrid[0 : size[0], 0 : size[1]]
    pixels = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    coded = av.VideoFrame.from_ndarray(pixels, "rgb24").reformat(format=pixel_format)
    small = strided_thumbnail(coded, 128)
    assert small.dtype == np.uint8 and small.ndim == 3 and max(small.shape[:2]) <= 128
    assert small.shape[0] >= min(size[0], 2) // 2 and small.shape[1] >= min(size[1], 2) // 2


def test_a_stream_that_changes_size_midway_goes_on() -> None:
    """Thumbnails of another size (a resolution switch) are compared at the first size."""
    frames = _textured_frames(9, 60)
    twice = np.ones((2, 2, 1), np.uint8)
    switched = frames[:30] + [(t, np.kron(p, twice)) for t, p in frames[30:]]
    assert _detect(switched) == []
    other = [(t + 3.0, np.kron(p, twice)) for t, p in _textured_frames(10, 30)]
    assert [b.gap_end for b in _detect(frames[:30] + other)] == pytest.approx([3.0])


def test_real_footage_with_dark_pieces_gets_every_cut_to_the_frame(
    shared_data: Path, tmp_path: Path
) -> None:
    """Real clips joined by hard cuts, among them a night-like piece (a clip darkened to a
    mean brightness of 14) and the NASA clip's Earth from space (mean 10): every join is
    found between the right two frames, and nothing else."""
    from clipminer.decode import iter_frames

    names = [
        "actions/basketball_shooting__mmaction2_test_video_structuralize.mp4",
        "nonaction/nasa_13013__torchcodec.mp4",
        "actions/kinetics_cleaning_pool__mmaction2_tests_data_test.mp4",
        "actions/activitynet_clean_and_jerk__video_features_v_GGSY1Qvo990.mp4",
        "actions/kinetics_flipping_pancake__decord_examples.mkv",
    ]
    video, joins, written = tmp_path / "spliced.mp4", [], 0
    with VideoWriter(video, fps=25, size=(120, 160), crf=23) as writer:
        for k, name in enumerate(names):
            frames = [
                f.pixels for f in iter_frames(shared_data / name, sample_fps=25, size=(120, 160))
            ]
            frames = frames[:60]  # 2.4 s
            if k == 2:  # night: the same clip much darker
                gain = 14.0 / np.mean([f.mean() for f in frames])
                frames = [(f * gain).astype(np.uint8) for f in frames]
            if k:
                joins.append(written / 25)
            for pixels in frames:
                writer.write(pixels)
            written += len(frames)
    detector = ShotDetector(fps=25, frame_seconds=1 / 25)
    for _, frame in VideoReader(video, taps=[Tap(sample_fps=25, thumbnail=128)]).iter_taps():
        detector.push(frame)
    found = detector.finish()
    assert [b.kind for b in found] == ["cut"] * len(joins)
    assert [b.gap_end for b in found] == pytest.approx(joins, abs=1e-3)
    assert all(b.gap_end - b.gap_start <= 1 / 25 for b in found)
