"""Cutting clips: frame-exact range, frame rate and audio kept, copy mode, atomic files."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from clipminer.cut import cut_clip
from clipminer.decode import iter_frames, probe
from clipminer.encode import VideoWriter
from clipminer.errors import DecodeError


def _frame_times(path: Path) -> list[float]:
    return [f.pts_seconds for f in iter_frames(path)]


@pytest.mark.parametrize(
    ("name", "start", "end"),
    [
        (
            "actions/activitynet_clean_and_jerk__video_features_v_GGSY1Qvo990.mp4",
            3.0,
            8.0,
        ),  # 19.62 fps, aac
        (
            "actions/ucf101_ApplyEyeMakeup__mmaction2_tests_data_test.avi",
            1.0,
            4.0,
        ),  # packed B-frames, mp3
        ("actions/basketball_shooting__mmaction2_test_video_structuralize.mp4", 2.0, 5.0),  # 29.97
        ("actions/kinetics_flipping_pancake__decord_examples.mkv", 2.0, 5.0),  # opus
        ("nonaction/nasa_13013__torchcodec.mp4", 2.0, 6.5),  # six streams
        ("robustness/torchcodec_var_fps_video.mp4", 2.0, 6.0),  # variable frame rate
    ],
)
def test_reencode_is_frame_exact_and_keeps_rate_and_audio(
    shared_data: Path, tmp_path: Path, name: str, start: float, end: float
):
    source = shared_data / name
    result = cut_clip(source, tmp_path / "clip.mp4", start, end)
    wanted = [t for t in _frame_times(source) if start - 1e-6 <= t < end - 1e-6]
    got = _frame_times(result.path)
    assert len(got) == len(wanted) == result.frames
    # The same frames with the same spacing (timestamps kept, not re-spaced).
    np.testing.assert_allclose(np.array(got) - got[0], np.array(wanted) - wanted[0], atol=2e-3)
    assert result.time_start_seconds == pytest.approx(wanted[0], abs=1e-6)
    src_info, clip_info = probe(source), probe(result.path)
    step = 1 / src_info.average_fps
    assert abs(result.time_start_seconds - start) < step + 1e-6
    assert abs(result.time_end_seconds - end) < step + 1e-6
    if "var_fps" not in name:
        assert clip_info.average_fps == pytest.approx(src_info.average_fps, rel=2e-3)
    assert clip_info.has_audio == src_info.has_audio == result.has_audio
    if clip_info.has_audio:
        with av.open(str(result.path)) as container:
            audio = container.streams.audio[0]
            seconds = float(audio.duration * audio.time_base)
        assert seconds == pytest.approx(end - start, abs=0.05)


def test_ntsc_rate_stays_exact(tmp_path: Path) -> None:
    source = tmp_path / "ntsc.mp4"
    with VideoWriter(source, fps=Fraction(30000, 1001), size=(48, 64)) as writer:
        for k in range(90):
            writer.write(np.full((48, 64, 3), k * 2, np.uint8))
    result = cut_clip(source, tmp_path / "clip.mp4", 1.0, 2.5)
    with av.open(str(result.path)) as container:
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)
    assert result.frames == 45  # frames 30..74 of 29.97 fps lie in [1.0, 2.5)


def test_rotation_is_applied_to_the_clip(shared_data: Path, tmp_path: Path) -> None:
    result = cut_clip(shared_data / "robustness" / "decord_video_90.mov", tmp_path / "r.mp4", 0, 1)
    info = probe(result.path)
    assert (info.width, info.height, info.rotation_degrees) == (320, 568, 0)


def test_copy_starts_at_a_keyframe(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "actions" / "kinetics_flipping_pancake__decord_examples.mkv"
    result = cut_clip(source, tmp_path / "c.mp4", 4.0, 6.0, mode="copy")
    assert result.time_start_seconds <= 4.0
    got = _frame_times(result.path)
    assert got[0] == pytest.approx(0, abs=1e-3)
    assert len(got) >= 60 and probe(result.path).has_audio


def test_failed_cut_leaves_nothing(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "robustness" / "decord_video_0.mov"
    assert probe(source).duration_seconds < 5.0  # the range lies after the last frame
    with pytest.raises(
        DecodeError, match=r"decord_video_0\.mov: no frames between 5\.00 and 6\.00 s"
    ):
        cut_clip(source, tmp_path / "x.mp4", 5.0, 6.0)
    assert list(tmp_path.iterdir()) == []


def test_x264_settings_change_the_file_not_the_frames(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "actions/activitynet_walking_the_dog__video_features_v_ZNVhz7ctTq0.mp4"
    sizes = {}
    for preset, crf in (("ultrafast", 18), ("veryfast", 18), ("veryfast", 30)):
        result = cut_clip(source, tmp_path / f"{preset}{crf}.mp4", 1.0, 4.0, crf=crf, preset=preset)
        assert _frame_times(result.path) == _frame_times(tmp_path / "ultrafast18.mp4")
        sizes[(preset, crf)] = result.path.stat().st_size
    assert sizes[("ultrafast", 18)] > sizes[("veryfast", 18)] > sizes[("veryfast", 30)]


@pytest.mark.parametrize(
    ("name", "copied"),
    [
        ("actions/activitynet_clean_and_jerk__video_features_v_GGSY1Qvo990.mp4", True),  # aac
        ("actions/ucf101_ApplyEyeMakeup__mmaction2_tests_data_test.avi", True),  # mp3
        ("actions/kinetics_flipping_pancake__decord_examples.mkv", False),  # opus: re-encoded
    ],
)
def test_audio_is_copied_where_the_codec_allows(
    shared_data: Path, tmp_path: Path, name: str, copied: bool
) -> None:
    source = shared_data / name
    result = cut_clip(source, tmp_path / "clip.mp4", 1.0, 4.0)

    def packets(path: Path) -> list[bytes]:
        with av.open(str(path)) as container:
            return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]

    clip, original = packets(result.path), packets(source)
    with av.open(str(result.path)) as container:
        codec = container.streams.audio[0].codec_context.name
        decoded = sum(f.samples for f in container.decode(container.streams.audio[0]))
        rate = container.streams.audio[0].rate
    assert decoded / rate == pytest.approx(3.0, abs=0.06)
    if copied:
        first = original.index(clip[0])
        assert clip == original[first : first + len(clip)]  # the source's own bytes
    else:
        assert codec == "aac" and clip[0] not in original
