"""Write videos with PyAV (H.264), atomically.

Frames go in as uint8 H×W×3 RGB arrays with optional presentation times, so
variable frame rates can be written exactly. The file appears under its name only
when :meth:`VideoWriter.close` completes.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Literal

import av
import av.error
import numpy as np

from clipminer.errors import DISK_ERRNOS, ClipminerError, EncodeError, output_error
from clipminer.fsutil import partial_path

Codec = Literal["h264", "lossless"]

# Exact for the usual rates (24, 25, 30, 60 and the NTSC x/1.001 ones). AVI has no
# timestamps, only frame numbers: there the time base is one frame.
_TIME_BASE = Fraction(1, 90_000)


def encode_failure(exc: av.error.FFmpegError, dest: Path, what: str) -> ClipminerError:
    """The one-line error for FFmpeg failing to write ``dest``: the disk's own error
    (:class:`OutputDiskError`, naming ``dest``) when it is full or read-only."""
    code = getattr(exc, "errno", None)
    if code in DISK_ERRNOS:
        return output_error(OSError(code, exc.strerror, str(dest)), dest)
    return EncodeError(f"{dest}: {what} ({exc.strerror})")


class VideoWriter:
    """Encodes RGB frames into an H.264 file written under a temporary name.

    Args:
        path: destination; the container format follows the suffix (.mp4, .mkv, .avi).
        fps: nominal frame rate, used for frames given without a timestamp.
        size: (height, width); both even for the default yuv420p H.264.
        codec: "h264" (libx264, yuv420p) or "lossless" (libx264rgb, RGB, crf 0) whose
            decoded frames equal the input exactly.
        crf: x264 constant rate factor (lower is better quality) for "h264".
        preset: x264 speed preset.
        threads: encoder threads; 0 lets x264 choose (its output is still deterministic).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: float | Fraction,
        size: tuple[int, int],
        codec: Codec = "h264",
        crf: int = 20,
        preset: str = "veryfast",
        threads: int = 0,
    ) -> None:
        self.path = Path(path)
        height, width = size
        if codec == "h264" and (height % 2 or width % 2):
            raise ValueError(f"H.264 yuv420p needs even sides, got size={size!r}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.fps = Fraction(fps).limit_denominator(1001)
        self._size = (height, width)
        self._tmp = partial_path(self.path)
        self._frames = 0
        self._last_pts = -1
        try:
            self._container = av.open(str(self._tmp), mode="w")
            stream = self._container.add_stream(
                "libx264rgb" if codec == "lossless" else "libx264", rate=self.fps
            )
        except av.error.FFmpegError as exc:
            self._tmp.unlink(missing_ok=True)
            raise encode_failure(exc, self.path, "cannot open for writing") from exc
        stream.width, stream.height = width, height
        stream.pix_fmt = "rgb24" if codec == "lossless" else "yuv420p"
        self._time_base = 1 / self.fps if self.path.suffix.lower() == ".avi" else _TIME_BASE
        stream.codec_context.time_base = self._time_base
        stream.thread_count = threads
        stream.options = (
            {"crf": "0", "preset": "ultrafast"}
            if codec == "lossless"
            else {"crf": str(crf), "preset": preset}
        )
        self._stream = stream

    def write(self, pixels: np.ndarray, pts_seconds: float | None = None) -> None:
        """Encode one frame; ``pts_seconds`` defaults to the next step of ``fps``."""
        if pixels.dtype != np.uint8 or pixels.shape != (*self._size, 3):
            raise ValueError(
                f"{self.path}: expected uint8 {self._size[0]}×{self._size[1]}×3, "
                f"got {pixels.dtype} {pixels.shape}"
            )
        if pts_seconds is None:
            pts_seconds = float(self._frames / self.fps)
        pts = round(pts_seconds / self._time_base)
        if pts <= self._last_pts:
            raise ValueError(f"{self.path}: timestamps must increase, got {pts_seconds} s")
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts, frame.time_base = pts, self._time_base
        self._last_pts = pts
        self._frames += 1
        self._mux(frame)

    def _mux(self, frame: av.VideoFrame | None) -> None:
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except av.error.FFmpegError as exc:
            raise encode_failure(exc, self.path, "encoding failed") from exc

    def close(self) -> Path:
        """Flush the encoder and move the finished file to its name."""
        try:
            self._mux(None)
            try:
                self._container.close()
            except av.error.FFmpegError as exc:
                raise encode_failure(exc, self.path, "encoding failed") from exc
            if self._frames == 0:
                raise EncodeError(f"{self.path}: no frames were written")
            self._tmp.replace(self.path)
        finally:
            self._tmp.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        """Discard the partial file."""
        try:
            self._container.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
