"""Cut clips out of a source video, reading only the clip's range again.

``reencode`` (the default) is frame-exact: it keeps the frames whose timestamps lie
in [start, end), keeps the source's frame rate and timestamps exactly (29.97 stays
29.97, variable rates stay variable), and cuts the first audio track to the same
range. ``copy`` copies packets without decoding, from the keyframe at or before the
start (fast; the clip may begin earlier, and the actual start is returned).
Clips are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import av.audio.stream
import av.container
import av.error
import av.video.stream
import numpy as np

from clipminer.decode import _rotation_clockwise, probe, timed_frames
from clipminer.encode import encode_failure
from clipminer.errors import DISK_ERRNOS, DecodeError, EncodeError
from clipminer.fsutil import partial_path
from clipminer.store import RemoteVideo, VideoPath, as_video

log = logging.getLogger(__name__)

_EPS = 1e-6


@dataclass(frozen=True)
class CutResult:
    """What a cut wrote."""

    path: Path
    time_start_seconds: float
    """Actual start in the source (the keyframe for ``copy``, the first frame otherwise)."""
    time_end_seconds: float
    frames: int
    has_audio: bool


def _streams(
    container: av.container.InputContainer, path: VideoPath, stream_index: int | None
) -> tuple[av.video.stream.VideoStream, av.audio.stream.AudioStream | None]:
    videos = list(container.streams.video)
    if not videos:
        raise DecodeError(f"{path}: has no video stream")
    video = (
        videos[0]
        if stream_index is None
        else next((s for s in videos if s.index == stream_index), None)
    )
    if video is None:
        raise DecodeError(f"{path}: stream {stream_index} is not a video stream")
    audio = container.streams.audio[0] if container.streams.audio else None
    return video, audio


def _seconds(value: int | None, time_base: Fraction | None) -> float:
    return float(value * time_base) if value is not None and time_base is not None else 0.0


def cut_clip(
    source: str | os.PathLike[str] | RemoteVideo,
    dest: str | os.PathLike[str],
    start_seconds: float,
    end_seconds: float,
    *,
    mode: Literal["reencode", "copy"] = "reencode",
    stream_index: int | None = None,
    crf: int = 18,
    preset: str = "veryfast",
) -> CutResult:
    """Write [start, end) of ``source`` (seconds from the video stream's start) to ``dest``.

    ``crf`` and ``preset`` are x264's for ``reencode`` (``benchmarks/cut_settings.py``
    measures the choices).
    """
    if not 0 <= start_seconds < end_seconds:
        raise ValueError(f"need 0 <= start < end, got {start_seconds}, {end_seconds}")
    video, dest = as_video(source), Path(dest)
    tmp = partial_path(dest)
    try:
        try:
            opened = video.open() if isinstance(video, RemoteVideo) else str(video)
            with av.open(opened, "r") as container:
                if mode == "copy":
                    result = _copy(container, video, tmp, start_seconds, end_seconds, stream_index)
                else:
                    result = _reencode(
                        container, video, tmp, start_seconds, end_seconds, stream_index,
                        crf, preset,
                    )  # fmt: skip
        except av.error.FFmpegError as exc:
            if getattr(exc, "errno", None) in DISK_ERRNOS:  # the output's disk, not the source
                raise encode_failure(exc, dest, "cutting failed") from exc
            raise EncodeError(
                f"{video}: cutting {start_seconds:.2f}-{end_seconds:.2f} s into "
                f"{dest} failed ({exc.strerror})"
            ) from exc
        if result.frames == 0:
            raise DecodeError(
                f"{video}: no frames between {start_seconds:.2f} and {end_seconds:.2f} s"
            )
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return CutResult(
        dest, result.time_start_seconds, result.time_end_seconds, result.frames, result.has_audio
    )


def _seek(container: av.container.InputContainer, stream: av.stream.Stream, seconds: float) -> None:
    if seconds > 0 and stream.time_base is not None:
        origin = stream.start_time or 0
        container.seek(
            origin + int(seconds / stream.time_base), stream=stream, backward=True, any_frame=False
        )


def _reencode(
    container: av.container.InputContainer,
    source: VideoPath,
    dest: Path,
    start: float,
    end: float,
    stream_index: int | None,
    crf: int,
    preset: str,
) -> CutResult:
    video, audio = _streams(container, source, stream_index)
    info = probe(source, stream_index=video.index)  # display size, known before muxing starts
    video.thread_type = "AUTO"
    v_origin = _seconds(video.start_time, video.time_base)
    rate = video.average_rate or video.guessed_rate or Fraction(30)
    time_base = video.time_base or Fraction(1, 90_000)
    _seek(container, video, start)
    # Video first, then audio (each with its own seek): the muxer interleaves the two.
    out = av.open(str(dest), "w")
    try:
        out_video = out.add_stream("libx264", rate=rate)
        out_video.pix_fmt = "yuv420p"
        out_video.width, out_video.height = (
            info.width - info.width % 2,
            info.height - info.height % 2,
        )
        out_video.codec_context.time_base = time_base
        out_video.options = {"crf": str(crf), "preset": preset}
        out_audio = None
        copy_audio = audio is not None and audio.codec_context.codec.canonical_name in COPIED_AUDIO
        if audio is not None and copy_audio:
            out_audio = out.add_stream_from_template(audio)
        elif audio is not None:
            layout = audio.layout.name if audio.layout else "stereo"
            out_audio = out.add_stream("aac", rate=audio.rate, layout=layout)
        first = last = None
        frames = 0
        step = float(1 / rate) if rate else 0.0
        for frame, time in timed_frames(container, _decode(container, video, source), step):
            t = time - v_origin
            if t < start - _EPS:
                continue
            if t >= end - _EPS:
                break
            out_frame = _display_frame(frame)
            if (
                out_frame.width != out_video.width
                or out_frame.height != out_video.height
                or out_frame.format.name != "yuv420p"
            ):
                out_frame = out_frame.reformat(
                    width=out_video.width, height=out_video.height, format="yuv420p"
                )
            out_frame.pts = round((t - start) / time_base)
            out_frame.time_base = time_base
            first = t if first is None else first
            last = t
            frames += 1
            for out_packet in out_video.encode(out_frame):
                out.mux(out_packet)
        if audio is not None and out_audio is not None and copy_audio:
            _copy_audio(container, audio, out, out_audio, start, end)
        elif audio is not None and out_audio is not None:
            _cut_audio(container, audio, out, out_audio, start, end, source)
        for stream in (out_video, None if copy_audio else out_audio):
            if stream is not None:
                for out_packet in stream.encode(None):
                    out.mux(out_packet)
    finally:
        out.close()
    return CutResult(
        dest,
        first if first is not None else start,
        (last + step) if last is not None else start,
        frames,
        out_audio is not None,
    )


def _decode(
    container: av.container.InputContainer, stream: av.stream.Stream, source: VideoPath
) -> Iterator[Any]:
    """Frames of ``stream`` from the current position; corrupt packets are skipped."""
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            log.warning("%s: corrupt packet skipped while cutting", source)


COPIED_AUDIO = frozenset({"aac", "mp3"})
"""Audio codecs an MP4 clip takes as they are: their packets are copied, not re-encoded
(no second lossy generation, no encoder time); the clip's audio then starts and ends on
the source's packet boundaries (about 21-26 ms), the rest is re-encoded to AAC sample-exact."""


def _copy_audio(
    container: av.container.InputContainer,
    audio: av.audio.stream.AudioStream,
    out: av.container.OutputContainer,
    out_audio: av.audio.stream.AudioStream,
    start: float,
    end: float,
) -> None:
    """The audio packets of [start, end) (each taken when most of it is inside), copied."""
    origin = _seconds(audio.start_time, audio.time_base)
    _seek(container, audio, start)
    for packet in container.demux(audio):
        if packet.pts is None or packet.time_base is None:
            continue
        t = float(packet.pts * packet.time_base) - origin
        half = float((packet.duration or 0) * packet.time_base) / 2
        if t + half >= end:
            break
        if t + half < start:
            continue
        packet.pts = packet.dts = max(0, round((t - start) / packet.time_base))
        packet.stream = out_audio
        out.mux(packet)


def _cut_audio(
    container: av.container.InputContainer,
    audio: av.audio.stream.AudioStream,
    out: av.container.OutputContainer,
    out_audio: av.audio.stream.AudioStream,
    start: float,
    end: float,
    source: VideoPath,
) -> None:
    """The audio samples of [start, end), re-encoded, aligned with the video's origin."""
    origin = _seconds(audio.start_time, audio.time_base)
    _seek(container, audio, start)
    written: int | None = None
    for frame in _decode(container, audio, source):
        if frame.time is None:
            continue
        t0 = frame.time - origin
        if t0 >= end - _EPS:
            break
        rate = frame.sample_rate
        lo = max(0, round((start - t0) * rate))
        hi = min(frame.samples, round((end - t0) * rate))
        if hi <= lo:
            continue
        piece = _slice_audio(frame, lo, hi)
        # The first piece keeps its offset from the clip start; the rest follow on.
        piece.pts = max(0, round((t0 - start) * rate) + lo) if written is None else written
        piece.time_base = Fraction(1, rate)
        written = piece.pts + (hi - lo)
        for packet in out_audio.encode(piece):
            out.mux(packet)


def _display_frame(frame: av.VideoFrame) -> av.VideoFrame:
    """The frame in display orientation (rotation metadata applied)."""
    turns = _rotation_clockwise(frame) // 90
    if not turns:
        return frame
    rgb: Any = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), k=-turns))
    return av.VideoFrame.from_ndarray(rgb, format="rgb24")


def _slice_audio(frame: av.AudioFrame, lo: int, hi: int) -> av.AudioFrame:
    if lo == 0 and hi == frame.samples:
        return frame
    data = frame.to_ndarray()
    planar = frame.format.is_planar
    part = (
        data[:, lo:hi]
        if planar
        else data[:, lo * len(frame.layout.channels) : hi * len(frame.layout.channels)]
    )
    contiguous: Any = np.ascontiguousarray(part)
    piece = av.AudioFrame.from_ndarray(
        contiguous, format=frame.format.name, layout=frame.layout.name
    )
    piece.sample_rate = frame.sample_rate
    return piece


def _copy(
    container: av.container.InputContainer,
    source: VideoPath,
    dest: Path,
    start: float,
    end: float,
    stream_index: int | None,
) -> CutResult:
    video, audio = _streams(container, source, stream_index)
    v_origin = _seconds(video.start_time, video.time_base)
    _seek(container, video, start)
    out = av.open(str(dest), "w")
    try:
        out_video = out.add_stream_from_template(video)
        out_audio = out.add_stream_from_template(audio) if audio is not None else None
        offset = None  # seconds, the first copied video packet's decode time
        actual_start = last = None
        frames = 0
        for packet in container.demux(*[s for s in (video, audio) if s is not None]):
            if packet.dts is None or packet.pts is None:
                continue
            t = float(packet.pts * packet.time_base) - v_origin
            if packet.stream is video:
                if offset is None:
                    if not packet.is_keyframe:
                        continue
                    offset = float(packet.dts * packet.time_base)
                    actual_start = t
                if t >= end - _EPS:
                    break
                target: Any = out_video
                last = t if last is None else max(last, t)
                frames += 1
            else:
                if offset is None or t >= end - _EPS or out_audio is None:
                    continue
                target = out_audio
            shift = round(offset / packet.time_base)
            packet.pts -= shift
            packet.dts -= shift
            if packet.dts < 0:
                continue
            packet.stream = target
            out.mux(packet)
    finally:
        out.close()
    rate = video.average_rate or video.guessed_rate
    step = float(1 / rate) if rate else 0.0
    return CutResult(
        dest,
        actual_start if actual_start is not None else start,
        (last + step) if last is not None else start,
        frames,
        audio is not None,
    )
