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
from clipminer.curate.shots import (
    SHOT_COLUMNS,
    ShotBoundary,
    ShotDetector,
    read_shots_csv,
    split_at_shots,
)
from clipminer.errors import UsageError
from clipminer.findclips import ClipMiner, find_clips
from clipminer.segments import Segment
from tests.helpers import tiny_findclips_config


def _scene_frames(seed: int, count: int, *, start: float = 0.0, fps: float = 10.0):
    """Frames of one synthetic shot with a moving object (pts, pixels)."""
    rng = np.random.default_rng(seed)
    item = synth.scene(str(rng.choice(synth.ACTIONS)), seed=seed, index=seed, size=(72, 128))
    return [(start + k / fps, item.render(k / fps)) for k in range(count)]


def _detect(frames, **kw) -> list[ShotBoundary]:
    detector = ShotDetector(frame_seconds=0.0, **kw)
    for t, pixels in frames:
        detector.push(t, pixels)
    return detector.finish()


@pytest.mark.parametrize("seeds", [(1, 2), (3, 4), (5, 6), (7, 8)])
def test_a_hard_cut_is_found_between_the_right_frames(seeds: tuple[int, int]) -> None:
    first = _scene_frames(seeds[0], 30)
    second = _scene_frames(seeds[1], 30, start=3.0)
    found = _detect(first + second)
    assert [b.kind for b in found] == ["cut"]
    assert found[0].gap_start == pytest.approx(2.9) and found[0].gap_end == pytest.approx(3.0)


def test_motion_brightness_changes_and_noise_within_a_shot_are_not_cuts() -> None:
    frames = _scene_frames(11, 80)
    rng = np.random.default_rng(0)
    changed = []
    for k, (t, pixels) in enumerate(frames):
        gain = 0.6 + 0.4 * (k % 20) / 20  # exposure drifting up and down
        noisy = pixels * gain + rng.normal(0, 6, pixels.shape)
        changed.append((t, np.clip(noisy, 0, 255).astype(np.uint8)))
    assert _detect(changed) == []


def test_a_fade_through_black_is_one_boundary_covering_the_dark_frames() -> None:
    frames = _scene_frames(21, 25) + _scene_frames(22, 25, start=2.5)
    faded = []
    for t, pixels in frames:
        gain = min(1.0, abs(t - 2.45) / 0.8)  # dark around 2.45 s
        faded.append((t, (pixels * gain).astype(np.uint8)))
    found = _detect(sorted(faded, key=lambda f: f[0]))
    assert [b.kind for b in found] == ["fade"]
    dark = [t for t, pixels in faded if pixels.mean() < 16]
    assert found[0].gap_start <= min(dark) and found[0].gap_end > max(dark)


def test_a_video_ending_in_black_is_a_fade_out() -> None:
    black = np.zeros((72, 128, 3), np.uint8)
    frames = _scene_frames(31, 10) + [(1.0 + k / 10, black) for k in range(5)]
    found = _detect(frames)
    assert [b.kind for b in found] == ["fade"] and found[0].time == pytest.approx(1.0)


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
    # The boundaries were found: each true one within a frame of the tap that watched it.
    found = read_shots_csv(result.out_dir / "shots.csv")
    tolerance = 1 / 8 + 0.05 if with_video_model else 0.5 + 0.05
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


def test_a_dark_run_still_open_already_trims_segments() -> None:
    """A segment that closes while the picture is still black must not reach into it."""
    detector = ShotDetector(frame_seconds=0.04)
    for t, pixels in _scene_frames(41, 20):
        detector.push(t, pixels)
    black = np.zeros((72, 128, 3), np.uint8)
    for k in range(5):
        detector.push(2.0 + k / 10, black)
    assert detector.boundaries == []
    (open_fade,) = detector.so_far()
    pieces = split_at_shots(Segment("a", 0.9, 0.5, 2.6), detector.so_far())
    assert open_fade.kind == "fade" and pieces[-1].time_end_seconds <= 2.0
