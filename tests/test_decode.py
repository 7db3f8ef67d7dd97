"""The streaming decoder on exact synthetic frames and on the real awkward files."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import av
import numpy as np
import pytest

from clipminer.decode import Frame, VideoReader, iter_frames, probe
from clipminer.errors import DecodeError

from .conftest import known_frame


def test_lossless_frames_and_timestamps_are_exact(lossless_video: Path) -> None:
    frames = list(iter_frames(lossless_video))
    assert len(frames) == 40
    for k, frame in enumerate(frames):
        assert frame.index == k
        assert frame.pts_seconds == pytest.approx(k / 10, abs=1e-6)
        assert frame.pixels.dtype == np.uint8
        np.testing.assert_array_equal(frame.pixels, known_frame(k))


def test_sampling_by_timestamp_keeps_the_expected_frames(lossless_video: Path) -> None:
    frames = list(iter_frames(lossless_video, sample_fps=2.5))
    assert [f.index for f in frames] == list(range(0, 40, 4))
    np.testing.assert_array_equal(frames[3].pixels, known_frame(12))


def test_resize_gives_the_requested_shape(lossless_video: Path) -> None:
    frame = next(iter_frames(lossless_video, size=(30, 50)))
    assert frame.pixels.shape == (30, 50, 3)
    # A constant channel stays constant through the scaler.
    assert np.all(frame.pixels[..., 0] == 0)


def test_probe_reads_metadata(lossless_video: Path) -> None:
    info = probe(lossless_video)
    assert (info.width, info.height, info.rotation_degrees) == (64, 48, 0)
    assert info.average_fps == pytest.approx(10)
    assert info.duration_seconds == pytest.approx(4.0, abs=0.11)
    assert not info.has_audio


def test_frame_repr_shows_shape_not_pixels(lossless_video: Path) -> None:
    frame = next(iter_frames(lossless_video))
    assert repr(frame) == "Frame(index=0, pts_seconds=0.000, pixels=uint8[48×64×3])"
    with pytest.raises(ValueError, match="uint8"):
        Frame(pixels=np.zeros((4, 4, 3), np.float32), pts_seconds=0.0, index=0)


def test_variable_frame_rate_timestamps(shared_data: Path) -> None:
    path = shared_data / "robustness" / "torchcodec_var_fps_video.mp4"
    every = list(iter_frames(path))
    assert len(every) == 300
    gaps = np.diff([f.pts_seconds for f in every])
    # 1/30 s and 1/15 s intervals both occur: the rate really varies.
    assert np.isclose(gaps, 1 / 30, atol=1e-3).sum() > 100
    assert np.isclose(gaps, 1 / 15, atol=1e-3).sum() > 100
    sampled = list(iter_frames(path, sample_fps=2))
    slots = [int(f.pts_seconds * 2 + 1e-6) for f in sampled]
    assert slots == sorted(set(slots)), "at most one frame per half-second slot"
    for frame in sampled:
        # Each kept frame is the first one at or after its grid point.
        earlier = [f for f in every if slots[0] <= f.pts_seconds * 2 < frame.pts_seconds * 2]
        slot_start = int(frame.pts_seconds * 2 + 1e-6) / 2
        assert not [f for f in earlier if slot_start - 1e-6 <= f.pts_seconds < frame.pts_seconds]
    # One frame for every half-second slot that holds any frame (none for empty slots).
    assert len(sampled) == len({int(f.pts_seconds * 2 + 1e-6) for f in every}) == 30


def test_generated_variable_frame_rate_round_trips(tmp_path: Path) -> None:
    from clipminer import synth

    video = synth.make_long_video(
        tmp_path / "vfr.mp4",
        duration_seconds=3.0,
        size=(64, 96),
        fps=20,
        seed=1,
        variable_frame_rate=True,
        action_seconds=(1.0, 1.5),
        gap_seconds=(0.3, 0.6),
    )
    expected = list(synth.frame_times(3.0, fps=20, variable=True, seed=1))
    got = [f.pts_seconds for f in iter_frames(video.path)]
    assert len(got) == video.frames == len(expected)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert len(set(np.round(np.diff(got), 3))) == 2


@pytest.mark.parametrize(
    ("name", "clockwise"),
    [
        ("decord_video_0.mov", 0),
        ("decord_video_90.mov", 90),
        ("decord_video_180.mov", 180),
        ("decord_video_270.mov", 270),
    ],
)
def test_rotation_is_applied(shared_data: Path, name: str, clockwise: int) -> None:
    path = shared_data / "robustness" / name
    info = probe(path)
    assert info.rotation_degrees == clockwise
    expected_shape = (320, 568) if clockwise in (0, 180) else (568, 320)
    assert (info.height, info.width) == expected_shape
    with av.open(str(path)) as container:
        raw = next(container.decode(video=0)).to_ndarray(format="rgb24")
    frame = next(iter_frames(path))
    assert frame.pixels.shape[:2] == expected_shape
    np.testing.assert_array_equal(frame.pixels, np.rot90(raw, k=-clockwise // 90))
    # Resizing happens before rotation but the requested size is the display size.
    assert next(iter_frames(path, size=(100, 60))).pixels.shape == (100, 60, 3)


def test_stream_choice_on_multistream_file(shared_data: Path) -> None:
    path = shared_data / "nonaction" / "nasa_13013__torchcodec.mp4"
    first = probe(path)
    assert (first.stream_index, first.width, first.height) == (0, 320, 180)
    assert first.has_audio
    second = probe(path, stream_index=3)
    assert (second.width, second.height) == (480, 270)
    assert second.average_fps == pytest.approx(29.97, abs=0.01)
    frames = list(iter_frames(path, stream_index=3, sample_fps=1))
    assert frames[0].pixels.shape == (270, 480, 3)
    # A constant-rate stream: one frame per whole second up to its last frame's time.
    assert second.num_frames is not None
    last_frame_seconds = (second.num_frames - 1) / second.average_fps
    assert len(frames) == int(last_frame_seconds) + 1 == 13
    assert [f.pts_seconds for f in frames] == pytest.approx([k * 1.001 for k in range(13)])
    with pytest.raises(
        DecodeError, match=r"stream 1 is not a video stream; video streams: \[0, 3\]"
    ):
        probe(path, stream_index=1)


@pytest.mark.parametrize(
    "name",
    [
        "torchcodec_h264_10bits.mp4",
        "torchcodec_h265_10bits.mp4",
        "torchcodec_h265_video.mp4",
        "torchcodec_av1_video.mkv",
        "torchcodec_bt709_full_range.mp4",
        "decord_unordered.mov",
    ],
)
def test_awkward_formats_decode(shared_data: Path, name: str) -> None:
    path = shared_data / "robustness" / name
    info = probe(path)
    reader = VideoReader(path, size=(64, 64))
    frames = list(reader)
    assert frames and all(f.pixels.shape == (64, 64, 3) for f in frames)
    assert info.num_frames is None or len(frames) == info.num_frames
    assert reader.stats.corrupt_packets == 0 and not reader.stats.truncated
    pts = [f.pts_seconds for f in frames]
    assert pts == sorted(pts)
    assert float(np.mean(frames[0].pixels)) > 5  # a picture, not a black frame


def test_corrupt_packet_is_skipped_unless_strict(shared_data: Path, caplog) -> None:
    path = shared_data / "robustness" / "decord_corrupted.mp4"
    reader = VideoReader(path)
    with caplog.at_level(logging.WARNING):
        frames = list(reader)
    assert len(frames) == 49  # the header claims 50; one packet is broken
    assert reader.stats.corrupt_packets == 1
    assert "decord_corrupted.mp4" in caplog.text
    with pytest.raises(DecodeError, match=r"decord_corrupted\.mp4: corrupt packet"):
        list(iter_frames(path, strict=True))


def _truncate(source: Path, dest: Path) -> Path:
    data = source.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


def test_truncated_mp4_raises(tiny_h264: Path, tmp_path: Path) -> None:
    cut = _truncate(tiny_h264, tmp_path / "cut.mp4")
    with pytest.raises(DecodeError, match=r"cut\.mp4: not a readable video container"):
        list(iter_frames(cut))


def test_truncated_avi_yields_its_first_half_and_is_flagged(shared_data: Path, tmp_path: Path):
    source = shared_data / "actions" / "ucf101_ApplyEyeMakeup__mmaction2_tests_data_test.avi"
    cut = _truncate(source, tmp_path / "cut.avi")
    reader = VideoReader(cut)
    frames = list(reader)
    # Every frame whose packet survived the cut is decoded (the last, cut packet may
    # give one more), and they are the first frames of the whole file.
    with av.open(str(source)) as container:
        whole = [p for p in container.demux(video=0) if p.size and p.pos is not None]
    kept = sum(1 for p in whole if p.pos + p.size <= cut.stat().st_size)
    assert kept < 164
    assert kept <= len(frames) <= kept + 1
    full = list(iter_frames(source))
    for got, want in zip(frames[:kept], full, strict=False):
        assert got.pts_seconds == pytest.approx(want.pts_seconds)
        np.testing.assert_array_equal(got.pixels, want.pixels)
    assert reader.stats.truncated
    with pytest.raises(DecodeError, match=r"cut\.avi: stream ends after \d+ frames .*truncated"):
        list(iter_frames(cut, strict=True))


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty file"), (b"hello, this is text\n" * 20, "not a readable video container")],
)
def test_unreadable_files_raise_decode_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(DecodeError, match=f"bad.mp4: {message}"):
        probe(path)
    with pytest.raises(DecodeError, match=f"bad.mp4: {message}"):
        list(iter_frames(path))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match=r"nope\.mp4: no such file"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(DecodeError, match="is a directory"):
        list(iter_frames(tmp_path))


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(DecodeError, match=r"tone\.m4a: has no video stream"):
        probe(path)


def test_bad_arguments_fail_loudly(lossless_video: Path) -> None:
    with pytest.raises(ValueError, match="size"):
        VideoReader(lossless_video, size=(0, 10))
    with pytest.raises(ValueError, match="decode_device"):
        VideoReader(lossless_video, decode_device="tpu")
    with pytest.raises(ValueError, match="sample_fps"):
        VideoReader(lossless_video, sample_fps=0)


def test_reader_closes_when_abandoned(lossless_video: Path) -> None:
    gen = iter_frames(lossless_video)
    next(gen)
    gen.close()  # must not leak or raise


def test_cuda_decode_falls_back_to_cpu_without_a_gpu(lossless_video: Path, caplog) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present; the fallback path is not taken")
    with caplog.at_level(logging.WARNING, logger="clipminer.decode"):
        reader = VideoReader(lossless_video, decode_device="cuda")
        frames = list(reader)
    # Hardware decoding was not used, and the one warning says why, naming the file.
    assert reader.stats.hardware is False
    [record] = [r for r in caplog.records if r.name == "clipminer.decode"]
    assert record.levelno == logging.WARNING
    assert re.fullmatch(
        rf"{re.escape(str(lossless_video))}: hardware decoding on cuda unavailable "
        r"\(.+\); decoding on the CPU",
        record.getMessage(),
    ), record.getMessage()
    # The CPU decode that replaced it is complete and exact, with nothing flagged.
    assert (reader.stats.frames_decoded, reader.stats.errors) == (40, [])
    assert len(frames) == 40
    np.testing.assert_array_equal(frames[5].pixels, known_frame(5))


def test_hardware_is_not_claimed_for_a_software_decoder(shared_data: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    # AV1 goes to libdav1d, which has no CUDA configuration: PyAV opens the file without
    # touching the GPU, so nothing fails, and nothing was decoded in hardware.
    path = shared_data / "robustness" / "torchcodec_av1_video.mkv"
    reader = VideoReader(path, decode_device="cuda", sample_fps=1)
    assert list(reader)
    assert reader.stats.hardware is False
    assert reader.stats.hardware_fallback  # and it says why


@pytest.mark.needs_cuda
def test_nvdec_decodes_h264(tiny_h264: Path) -> None:
    from av.codec.hwaccel import HWAccel

    reader = VideoReader(tiny_h264, decode_device="cuda", sample_fps=5)
    gpu = list(reader)
    cpu = list(iter_frames(tiny_h264, sample_fps=5))
    # PyAV alone, with no software fallback: this GPU really decodes the file in hardware,
    # so the reader must say so (opening the file is not evidence of it).
    strict = HWAccel(device_type="cuda", allow_software_fallback=False)
    with av.open(str(tiny_h264), hwaccel=strict) as container:
        stream = container.streams.video[0]
        next(container.decode(stream))
        on_gpu = stream.codec_context.is_hwaccel
    assert on_gpu, "NVDEC should decode this H.264 file"
    assert reader.stats.hardware is True
    assert [f.index for f in gpu] == [f.index for f in cpu]
    diff = np.abs(gpu[3].pixels.astype(int) - cpu[3].pixels.astype(int)).mean()
    assert diff < 3  # same picture; colour conversion may differ slightly


def test_taps_share_one_decode(lossless_video: Path) -> None:
    from clipminer.decode import Tap

    reader = VideoReader(
        lossless_video, taps=[Tap(sample_fps=2, size=(24, 32)), Tap(sample_fps=5, short_side=12)]
    )
    got: dict[int, list] = {0: [], 1: []}
    for tap, frame in reader.iter_taps():
        got[tap].append(frame)
    assert [f.index for f in got[0]] == list(range(0, 40, 5))
    assert [f.index for f in got[1]] == list(range(0, 40, 2))
    assert got[0][0].pixels.shape == (24, 32, 3) and got[1][0].pixels.shape == (12, 16, 3)
    assert reader.stats.frames_decoded == 40
    with pytest.raises(RuntimeError, match="iter_taps"):
        list(VideoReader(lossless_video, taps=[Tap(), Tap()]))


def test_time_range_seeks_and_stops(lossless_video: Path) -> None:
    frames = list(VideoReader(lossless_video, start_seconds=1.5, end_seconds=2.5))
    assert [round(f.pts_seconds, 3) for f in frames] == [round(1.5 + k / 10, 3) for k in range(10)]
    np.testing.assert_array_equal(frames[0].pixels, known_frame(15))
    with pytest.raises(ValueError, match="end_seconds"):
        VideoReader(lossless_video, start_seconds=2, end_seconds=1)
