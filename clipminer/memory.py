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
import time

_MIN_INTERVAL_SECONDS = 2.0
_last_trim = 0.0


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


def release_free_memory(*, force: bool = False) -> None:
    """Return freed heap pages to the operating system (glibc); a no-op elsewhere.

    Runs at most every 2 seconds unless ``force``: the walk over the heap is not free.
    """
    global _last_trim
    trim = _malloc_trim()
    now = time.monotonic()
    if trim is not None and (force or now - _last_trim >= _MIN_INTERVAL_SECONDS):
        _last_trim = now
        trim(0)
