"""Streaming video decode with PyAV.

One video stream is demuxed and decoded packet by packet; only the frames that the
timestamp sampler keeps are converted to RGB and resized (inside libswscale), so
memory stays bounded whatever the length of the video. Frames carry presentation
timestamps in seconds relative to the start of the stream.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import math
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import av
import av.container
import av.error
import av.video.stream
import numpy as np
from av.codec.hwaccel import HWAccel

from clipminer import store
from clipminer.errors import DecodeError
from clipminer.sampling import TimestampSampler
from clipminer.store import RemoteVideo, VideoPath, as_video

log = logging.getLogger(__name__)

Interpolation = Literal["FAST_BILINEAR", "BILINEAR", "BICUBIC", "AREA"]

# A stream that ends this much before its declared duration is reported as truncated.
_TRUNCATION_SLACK_SECONDS = 0.5


@dataclass(frozen=True, repr=False)
class Frame:
    """One decoded video frame."""

    pixels: np.ndarray
    """uint8 H×W×3 RGB, display orientation (rotation metadata applied)."""
    pts_seconds: float
    """Presentation time in seconds from the start of the stream."""
    index: int
    """0-based position of this frame among all frames decoded from the stream."""

    def __post_init__(self) -> None:
        if self.pixels.dtype != np.uint8 or self.pixels.ndim != 3 or self.pixels.shape[2] != 3:
            raise ValueError(
                f"Frame.pixels must be uint8 H×W×3, got {self.pixels.dtype} {self.pixels.shape}"
            )

    def __repr__(self) -> str:
        h, w, _ = self.pixels.shape
        return (
            f"Frame(index={self.index}, pts_seconds={self.pts_seconds:.3f}, "
            f"pixels=uint8[{h}×{w}×3])"
        )


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video file without decoding it all."""

    path: VideoPath
    stream_index: int
    """Index of the chosen video stream among all streams of the container."""
    codec: str
    width: int
    """Display width in pixels, after rotation."""
    height: int
    """Display height in pixels, after rotation."""
    rotation_degrees: int
    """Clockwise rotation (0, 90, 180 or 270) applied to decoded pixels for display."""
    average_fps: float | None
    duration_seconds: float | None
    num_frames: int | None
    """Frame count from the container header, None when the header has none."""
    start_seconds: float
    """Stream start time in seconds; frame timestamps are relative to it."""
    has_audio: bool


@dataclass(frozen=True)
class Tap:
    """One output of a decode pass: which frames to keep, and at what size.

    Several taps share one decode (find-clips takes 2 fps frames for the image model
    and 15 fps small frames for the video model from the same pass).
    """

    sample_fps: float | None = None
    """Keep one frame per ``1/sample_fps`` seconds (by timestamp); None keeps all."""
    size: tuple[int, int] | None = None
    """(height, width) after rotation; None keeps the display size."""
    short_side: int | None = None
    """Instead of ``size``: scale the shorter display side to this, keeping the aspect."""
    thumbnail: int | None = None
    """Instead of ``size``: at most this many pixels along the long side, picked straight
    from the decoded planes by striding (no scaler: about 0.1 ms for a 1080p frame against
    4 ms through libswscale). Nearest-neighbour pixels in coded (unrotated) orientation,
    for detectors that watch every frame (shot boundaries), not for models."""
    name: str = ""
    """What the frames are for (``"image"``, ``"video"``): consumers route by it."""

    def __post_init__(self) -> None:
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ValueError(f"size must be (height, width) of positive ints, got {self.size!r}")
        if self.short_side is not None and (self.size is not None or self.short_side < 2):
            raise ValueError(f"short_side must be >= 2 and excludes size, got {self.short_side!r}")
        if self.thumbnail is not None and (
            self.thumbnail < 2 or self.size is not None or self.short_side is not None
        ):
            raise ValueError(
                f"thumbnail must be >= 2 and excludes size and short_side, got {self.thumbnail!r}"
            )
        TimestampSampler(self.sample_fps)  # validates the rate


@dataclass
class DecodeStats:
    """Counters of one decode pass, filled in while frames are yielded."""

    frames_decoded: int = 0
    frames_yielded: int = 0
    corrupt_packets: int = 0
    truncated: bool = False
    hardware: bool = False
    """Whether NVDEC (or another hardware decoder) was in use: the opened stream's codec
    context says so, not merely that a hardware device was asked for."""
    hardware_fallback: str | None = None
    """Why decoding runs on the CPU although a hardware device was asked for."""
    last_pts_seconds: float | None = None
    errors: list[str] = field(default_factory=list)


def presentation_times(
    frames: Iterable[av.VideoFrame], step_seconds: float, depth: int = 4
) -> Iterator[tuple[av.VideoFrame, float]]:
    """Pair decoded frames (already in display order) with increasing timestamps.

    Some files carry timestamps in decode order: AVI has none of its own, so packed
    B-frames (as in UCF-101's XviD files) come out as 0.04, 0.08, 0.16, 0.12, ...
    The decoder's output order is the display order; the timestamps of a small
    window are sorted and handed out in that order, which changes nothing for files
    whose timestamps already increase. Frames without a timestamp get the previous
    one plus ``step_seconds``.
    """
    pending: deque[av.VideoFrame] = deque()
    times: list[float] = []
    last: float | None = None
    for frame in frames:
        time = frame.time
        if time is None:
            time = (last + step_seconds) if last is not None else 0.0
        last = time if last is None else max(last, time)
        pending.append(frame)
        heapq.heappush(times, time)
        if len(pending) > depth:
            yield pending.popleft(), heapq.heappop(times)
    while pending:
        yield pending.popleft(), heapq.heappop(times)


def timed_frames(
    container: av.container.InputContainer, frames: Iterable[av.VideoFrame], step_seconds: float
) -> Iterator[tuple[av.VideoFrame, float]]:
    """Decoded frames with increasing timestamps in seconds (not yet made relative).

    AVI stores no presentation timestamps, so its frames are put through
    :func:`presentation_times`; other containers' timestamps are used as they are.
    """
    if container.format.name == "avi":
        return presentation_times(frames, step_seconds)
    return _frame_times(frames, step_seconds)


def _frame_times(
    frames: Iterable[av.VideoFrame], step_seconds: float
) -> Iterator[tuple[av.VideoFrame, float]]:
    """Frames with their own timestamps (or the previous one plus a step)."""
    last = -step_seconds
    for frame in frames:
        time = frame.time
        last = (last + step_seconds) if time is None else time
        yield frame, last


def _parse_device(decode_device: str) -> tuple[str, str | None]:
    if decode_device == "cpu":
        return "cpu", None
    kind, _, index = decode_device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"decode_device must be 'cpu', 'cuda' or 'cuda:N', got {decode_device!r}")
    return "cuda", index or None


def _open(path: VideoPath, hwaccel: HWAccel | None = None) -> av.container.InputContainer:
    """Open ``path`` (a file, or a video in the store read as a stream) for reading,
    mapping every failure to DecodeError."""
    source: str | IO[bytes]
    if isinstance(path, RemoteVideo):
        info = store.stat(path.url)
        if info.size == 0:
            raise DecodeError(f"{path}: empty object (0 bytes)")
        source = path.open(size=info.size)
    else:
        _check_file(path)
        source = str(path)
    try:
        if hwaccel is None:
            return av.open(source, mode="r")
        return av.open(source, mode="r", hwaccel=hwaccel)
    except PermissionError:
        if hwaccel is not None:
            raise  # the hardware device refused; the caller falls back to CPU
        raise DecodeError(f"{path}: permission denied") from None
    except av.error.FFmpegError as exc:
        raise DecodeError(f"{path}: not a readable video container ({exc.strerror})") from exc


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DecodeError(f"{path}: no such file")
    if path.is_dir():
        raise DecodeError(f"{path}: is a directory, not a video file")
    if not path.is_file():  # reading a FIFO or a device would wait for a writer forever
        raise DecodeError(f"{path}: not a regular file (a FIFO, socket or device)")
    if path.stat().st_size == 0:
        raise DecodeError(f"{path}: empty file (0 bytes)")


def _video_stream(
    container: av.container.InputContainer, path: VideoPath, stream_index: int | None
) -> av.video.stream.VideoStream:
    videos = list(container.streams.video)
    if not videos:
        raise DecodeError(f"{path}: has no video stream")
    if stream_index is None:
        return videos[0]
    for stream in videos:
        if stream.index == stream_index:
            return stream
    raise DecodeError(
        f"{path}: stream {stream_index} is not a video stream; "
        f"video streams: {[s.index for s in videos]}"
    )


def _seconds(value: int | None, time_base: object) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)  # type: ignore[operator]


def _rotation_clockwise(frame: av.VideoFrame) -> int:
    # PyAV reports the display matrix angle counter-clockwise; display needs the inverse.
    return round(-frame.rotation / 90.0) % 4 * 90


def probe(
    path: str | os.PathLike[str] | RemoteVideo, *, stream_index: int | None = None
) -> VideoInfo:
    """Read a video's metadata; decodes only the first frame (for rotation and a check).

    Raises:
        DecodeError: the file is missing, empty, not a video, or its first frame
            cannot be decoded.
    """
    path = as_video(path)
    with _open(path) as container:
        stream = _video_stream(container, path, stream_index)
        rotation = 0
        try:
            for frame in container.decode(stream):
                rotation = _rotation_clockwise(frame)
                break
            else:
                raise DecodeError(f"{path}: no decodable video frames")
        except av.error.FFmpegError as exc:
            raise DecodeError(f"{path}: cannot decode the first frame ({exc.strerror})") from exc
        time_base = stream.time_base
        start = _seconds(stream.start_time, time_base) or 0.0
        duration = _seconds(stream.duration, time_base)
        if duration is None and container.duration is not None:
            duration = container.duration / 1_000_000 - start
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            path=path,
            stream_index=stream.index,
            codec=stream.codec_context.name,
            width=width,
            height=height,
            rotation_degrees=rotation,
            average_fps=float(rate) if rate else None,
            duration_seconds=duration,
            num_frames=stream.frames or None,
            start_seconds=start,
            has_audio=bool(container.streams.audio),
        )


class VideoReader:
    """Streams sampled frames of one video; a context manager and an iterable.

    Iterating yields :class:`Frame` objects; :attr:`stats` counts what happened.
    Corrupt packets in the middle of the stream are skipped and counted, and a
    stream that ends early is flagged as truncated, unless ``strict`` is set, in
    which case either raises :class:`DecodeError`.

    Args:
        path: the video file.
        sample_fps: keep one frame per ``1/sample_fps`` seconds (by timestamp), or
            every frame when None.
        size: (height, width) of the yielded pixels, after rotation; None keeps the
            display size.
        short_side: instead of ``size``, scale so the shorter display side has this
            many pixels, keeping the aspect ratio (sides rounded to even numbers).
        stream_index: container stream index of the video stream; the first video
            stream when None.
        decode_device: "cpu", or "cuda"/"cuda:N" to decode with NVDEC, falling back
            to the CPU with a warning when the hardware decoder cannot be opened.
        threads: decoder threads; "auto" lets FFmpeg pick one per core.
        strict: raise on corrupt packets and truncation instead of skipping them.
        interpolation: libswscale scaler for resizing.
        start_seconds: seek here first (to the keyframe before, decoding on from it)
            and yield frames from this time on.
        end_seconds: stop before the first frame at or after this time.
        taps: several outputs of one decode instead of ``sample_fps``/``size``/
            ``short_side``; iterate :meth:`iter_taps` to get ``(tap index, Frame)``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | RemoteVideo,
        *,
        sample_fps: float | None = None,
        size: tuple[int, int] | None = None,
        short_side: int | None = None,
        stream_index: int | None = None,
        decode_device: str = "cpu",
        threads: int | Literal["auto"] = "auto",
        strict: bool = False,
        interpolation: Interpolation = "FAST_BILINEAR",
        start_seconds: float | None = None,
        end_seconds: float | None = None,
        taps: list[Tap] | None = None,
    ) -> None:
        self.path = as_video(path)
        self.taps = taps or [Tap(sample_fps=sample_fps, size=size, short_side=short_side)]
        if taps and (sample_fps is not None or size is not None or short_side is not None):
            raise ValueError("give either taps or sample_fps/size/short_side")
        if threads != "auto" and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be 'auto' or a positive int, got {threads!r}")
        if start_seconds is not None and end_seconds is not None and end_seconds <= start_seconds:
            raise ValueError(
                f"end_seconds {end_seconds} must be after start_seconds {start_seconds}"
            )
        self._samplers = [TimestampSampler(tap.sample_fps) for tap in self.taps]
        self._start_seconds = start_seconds
        self._end_seconds = end_seconds
        self._threads = threads
        self._strict = strict
        self._interpolation = interpolation
        self.stats = DecodeStats()
        self._container = self._open_with_device(decode_device)
        try:
            self._stream = _video_stream(self._container, self.path, stream_index)
        except DecodeError:
            self._container.close()
            raise
        if decode_device != "cpu" and self.stats.hardware_fallback is None:
            # PyAV opens a codec without a hardware decoder in software, silently.
            self.stats.hardware = bool(getattr(self._stream.codec_context, "is_hwaccel", False))
            if not self.stats.hardware:
                self._fall_back(
                    decode_device, f"no hardware decoder for {self._stream.codec_context.name}"
                )
        self._started = False

    def _open_with_device(self, decode_device: str) -> av.container.InputContainer:
        kind, index = _parse_device(decode_device)
        if kind == "cpu":
            return _open(self.path)
        hwaccel = HWAccel(device_type="cuda", device=index, allow_software_fallback=True)
        try:
            container = _open(self.path, hwaccel)
        except (PermissionError, av.error.FFmpegError, RuntimeError) as exc:
            self._fall_back(decode_device, str(exc))
            return _open(self.path)
        return container

    def _fall_back(self, decode_device: str, reason: str) -> None:
        self.stats.hardware = False
        self.stats.hardware_fallback = reason
        log.warning(
            "%s: hardware decoding on %s unavailable (%s); decoding on the CPU",
            self.path,
            decode_device,
            reason,
        )

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the container; safe to call twice."""
        self._container.close()

    def __iter__(self) -> Iterator[Frame]:
        if len(self.taps) != 1:
            raise RuntimeError("a VideoReader with several taps is read with iter_taps()")
        for _, frame in self.iter_taps():
            yield frame

    def iter_taps(self) -> Iterator[tuple[int, Frame]]:
        """Yield ``(tap index, Frame)`` for every tap that keeps each decoded frame."""
        if self._started:
            raise RuntimeError(f"{self.path}: a VideoReader can be iterated only once")
        self._started = True
        stream = self._stream
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = 0 if self._threads == "auto" else self._threads
        time_base = stream.time_base
        start = _seconds(stream.start_time, time_base) or 0.0
        rate = stream.average_rate or stream.guessed_rate
        step = 1.0 / float(rate) if rate else 0.0
        declared = _seconds(stream.duration, time_base)
        if declared is None and self._container.duration is not None:
            declared = self._container.duration / 1_000_000 - start
        declared_frames = stream.frames or None
        ranged = self._start_seconds is not None or self._end_seconds is not None
        if self._start_seconds is not None and self._start_seconds > 0:
            target = int((self._start_seconds + start) / time_base) if time_base else 0
            try:
                self._container.seek(target, stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError as exc:
                raise DecodeError(
                    f"{self.path}: cannot seek to {self._start_seconds:.3f} s ({exc.strerror})"
                ) from exc
        try:
            for frame, time in timed_frames(self._container, self._decoded(stream), step):
                pts = time - start
                index = self.stats.frames_decoded
                self.stats.frames_decoded += 1
                self.stats.last_pts_seconds = pts
                if self._start_seconds is not None and pts < self._start_seconds - 1e-6:
                    continue
                if self._end_seconds is not None and pts >= self._end_seconds - 1e-6:
                    break
                for k, (tap, sampler) in enumerate(zip(self.taps, self._samplers, strict=True)):
                    if sampler.keep(pts):
                        self.stats.frames_yielded += 1
                        yield (
                            k,
                            Frame(pixels=self._to_rgb(frame, tap), pts_seconds=pts, index=index),
                        )
        finally:
            self.close()
        if self.stats.frames_decoded == 0:
            detail = f" ({self.stats.errors[-1]})" if self.stats.errors else ""
            raise DecodeError(f"{self.path}: no decodable video frames{detail}")
        if not ranged:
            self._check_truncation(declared, declared_frames)

    def _decoded(self, stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
        """Decode packet by packet so that one bad packet costs only itself."""
        packets = self._container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                # The demuxer gave up: what is left of the file cannot be read.
                self._damaged(f"demux failed after {self.stats.frames_decoded} frames", exc)
                self.stats.truncated = True
                yield from self._flush(stream)
                return
            try:
                yield from packet.decode()
            except av.error.FFmpegError as exc:
                self._damaged(f"corrupt packet at byte {packet.pos}", exc)
                self.stats.corrupt_packets += 1

    def _flush(self, stream: av.video.stream.VideoStream) -> Iterator[av.VideoFrame]:
        try:
            yield from stream.codec_context.decode(None)
        except av.error.FFmpegError as exc:
            self._damaged("flushing the decoder failed", exc)

    def _damaged(self, what: str, exc: av.error.FFmpegError) -> None:
        message = f"{what}: {exc.strerror}"
        self.stats.errors.append(message)
        if self._strict:
            raise DecodeError(f"{self.path}: {message}") from exc
        log.warning("%s: %s (skipped)", self.path, message)

    def _check_truncation(self, declared: float | None, declared_frames: int | None) -> None:
        """Flag a stream that ended well before the length its header declares."""
        last = self.stats.last_pts_seconds
        decoded = self.stats.frames_decoded
        if (
            declared is not None
            and last is not None
            and math.isfinite(declared)
            and last + _TRUNCATION_SLACK_SECONDS < declared * 0.98
        ):
            self.stats.truncated = True
        if declared_frames and decoded + max(2, 0.02 * declared_frames) < declared_frames:
            self.stats.truncated = True
        if self.stats.truncated:
            declared_text = f"{declared_frames} frames" if declared_frames else f"{declared} s"
            message = (
                f"stream ends after {decoded} frames ({last or 0.0:.2f} s) "
                f"of a declared {declared_text} (truncated)"
            )
            self.stats.errors.append(message)
            if self._strict:
                raise DecodeError(f"{self.path}: {message}")
            log.warning("%s: %s", self.path, message)

    def _to_rgb(self, frame: av.VideoFrame, tap: Tap) -> np.ndarray:
        if tap.thumbnail is not None:
            return strided_thumbnail(frame, tap.thumbnail)
        quarter_turns = _rotation_clockwise(frame) // 90
        if tap.short_side is not None:
            scale = tap.short_side / min(frame.width, frame.height)
            width = max(2, round(frame.width * scale / 2) * 2)
            height = max(2, round(frame.height * scale / 2) * 2)
        elif tap.size is None:
            width, height = frame.width, frame.height
        else:
            height, width = tap.size
            if quarter_turns % 2:  # resize before rotating: swap the target sides
                width, height = height, width
        rgb: np.ndarray = frame.reformat(
            width=width, height=height, format="rgb24", interpolation=self._interpolation
        ).to_ndarray()
        if quarter_turns:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=-quarter_turns))
        return rgb


# Planar 8-bit YUV layouts read directly: chroma subsampling (log2) across, down.
_PLANAR_YUV = {
    "yuv420p": (1, 1), "yuvj420p": (1, 1), "yuv422p": (1, 0), "yuvj422p": (1, 0),
    "yuv444p": (0, 0), "yuvj444p": (0, 0), "nv12": (1, 1),
}  # fmt: skip


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    plane = frame.planes[index]
    return np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)


# BT.601 YUV -> RGB (rows: Y, U, V), limited range (16-235, 16-240) and full range.
_LIMITED = np.array([[1.0, 1.0, 1.0], [0.0, -0.344136, 1.772], [1.402, -0.714136, 0.0]])
_LIMITED = (_LIMITED * [[255 / 219], [255 / 224], [255 / 224]]).astype(np.float32)
_FULL = np.array([[1.0, 1.0, 1.0], [0.0, -0.344136, 1.772], [1.402, -0.714136, 0.0]], np.float32)


def strided_thumbnail(frame: av.VideoFrame, long_side: int) -> np.ndarray:
    """An RGB thumbnail of at most ``long_side`` pixels along the long side, picked from
    the decoded planes every ``step`` pixels (colours by BT.601, the range the frame
    declares); formats other than 8-bit YUV and gray go through libswscale."""
    name = frame.format.name
    step = max(1, -(-max(frame.width, frame.height) // long_side))
    height, width = frame.height, frame.width
    if name == "gray":
        return np.repeat(_plane(frame, 0)[:height:step, :width:step, None], 3, axis=2)
    if name not in _PLANAR_YUV:
        return frame.reformat(
            width=-(-width // step),
            height=-(-height // step),
            format="rgb24",
            interpolation="FAST_BILINEAR",
        ).to_ndarray()
    across, down = _PLANAR_YUV[name]
    if step > 1 and (across or down):
        step += step % 2  # an even step picks whole chroma samples by striding as well
    y = _plane(frame, 0)[:height:step, :width:step]
    h, w = y.shape
    rows: slice | np.ndarray
    cols: slice | np.ndarray
    if step > 1 or not (across or down):
        rows, cols = slice(0, None, step >> down), slice(0, None, step >> across)
    else:  # full size: each chroma sample serves two pixels
        rows, cols = np.arange(h)[:, None] >> down, np.arange(w)[None, :] >> across
    if name == "nv12":  # one plane of interleaved U, V
        uv = _plane(frame, 1)
        u = uv[:, 0::2][rows, cols][:h, :w]
        v = uv[:, 1::2][rows, cols][:h, :w]
    else:
        u = _plane(frame, 1)[rows, cols][:h, :w]
        v = _plane(frame, 2)[rows, cols][:h, :w]
    yuv = np.stack([y, u, v], axis=-1)
    full_range = name.startswith("yuvj") or getattr(frame, "color_range", 0) == 2
    offset = np.array([0 if full_range else 16, 128, 128], np.float32)
    rgb = (yuv.astype(np.float32) - offset) @ (_FULL if full_range else _LIMITED)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def describe(path: str | os.PathLike[str], *, sample_fps: float | None = None) -> dict[str, Any]:
    """:func:`probe` as a plain dict (``path`` as given; a URL without its secrets), for
    printing or JSON.

    With ``sample_fps`` the whole file is also decoded, keeping that many frames per
    second: ``sampled_frames`` and ``problems`` (what the decoder had to skip) are added.

    Raises:
        DecodeError: as :func:`probe`, or the decode fails.
    """
    video = as_video(path)
    row: dict[str, Any] = dataclasses.asdict(probe(video))
    row["path"] = str(video)
    if sample_fps:
        with VideoReader(video, sample_fps=sample_fps) as reader:
            row["sampled_frames"] = sum(1 for _ in reader)
        row["problems"] = reader.stats.errors
    return row


def iter_frames(
    path: str | os.PathLike[str],
    *,
    sample_fps: float | None = None,
    size: tuple[int, int] | None = None,
    short_side: int | None = None,
    stream_index: int | None = None,
    decode_device: str = "cpu",
    threads: int | Literal["auto"] = "auto",
    strict: bool = False,
) -> Iterator[Frame]:
    """Yield the sampled frames of a video in presentation order.

    A shorthand for iterating a :class:`VideoReader`; see there for the arguments.
    The file is closed when the generator finishes or is closed.

    Raises:
        DecodeError: the file cannot be opened or yields no frame; with ``strict``,
            also on corrupt packets and truncation.
    """
    reader = VideoReader(
        path,
        sample_fps=sample_fps,
        size=size,
        short_side=short_side,
        stream_index=stream_index,
        decode_device=decode_device,
        threads=threads,
        strict=strict,
    )
    yield from reader
