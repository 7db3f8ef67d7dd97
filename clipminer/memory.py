"""Keeping a long streaming run's memory flat.

glibc keeps freed heap memory for reuse; with large tensors freed in one thread and
frames allocated in another, the heap fragments and the resident size creeps up with
the length of the video. Handing free pages back after each batch keeps it flat
(measured: 1-minute and 10-minute 720p runs 963 and 958 MiB peak, instead of 987 and
1146 MiB), at no measurable cost in speed. :class:`PeakMemory` measures what a run
used (``run.json``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
import threading
import time
from pathlib import Path
from typing import Any

_MIN_INTERVAL_SECONDS = 2.0
_last_trim = 0.0


@functools.cache
def libc_function(name: str) -> Any | None:
    """The C library's function ``name`` on Linux (glibc's ``malloc_trim`` and
    ``mallopt``, ``sigaltstack``); None elsewhere or where the library has none (musl
    has no ``malloc_trim``)."""
    if not sys.platform.startswith("linux"):
        return None
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        return getattr(ctypes.CDLL(path), name)
    except (OSError, AttributeError):
        return None


_M_MMAP_THRESHOLD = -3
"""glibc's mallopt parameter number of the mmap threshold (malloc.h)."""


def keep_big_blocks_out_of_the_heap(threshold: int = 1 << 20) -> bool:
    """Make glibc serve every allocation of ``threshold`` bytes or more with its own
    mapping, returned to the system when freed (``--low-memory``); True where it took.

    By default glibc raises that threshold to the size of the largest block freed so
    far (up to 32 MiB), so the activations of a forward pass come from the heap and stay
    there between the 2-second trims. Measured on the hour's 2-minute 1080p run (2-core
    AMD EPYC): peak anonymous memory 566-590 MiB instead of 677-705, wall 29.2-29.6 s
    instead of 24.9-25.0 (scoring 11.6-11.9 s instead of 8.7-8.8: every big tensor is a
    fresh mapping, zeroed by the kernel). It holds for the whole process, from the next
    allocation on.
    """
    mallopt = libc_function("mallopt")  # glibc's
    return mallopt is not None and bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def release_free_memory(*, force: bool = False) -> None:
    """Return freed heap pages to the operating system (glibc); a no-op elsewhere.

    Runs at most every 2 seconds unless ``force``: the walk over the heap is not free.
    """
    global _last_trim
    trim = libc_function("malloc_trim")
    now = time.monotonic()
    if trim is not None and (force or now - _last_trim >= _MIN_INTERVAL_SECONDS):
        _last_trim = now
        trim(0)


def _status_mib(*keys: str) -> dict[str, float]:
    """Fields of ``/proc/self/status`` in MiB (missing where the system has none)."""
    found: dict[str, float] = {}
    try:
        with Path("/proc/self/status").open(encoding="ascii", errors="replace") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in keys:
                    found[key] = int(value.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return found


class PeakMemory:
    """The peak resident and anonymous memory of this process while it is open.

    Peak RSS counts the shared libraries' pages (torch's CUDA build maps about
    500 MiB); anonymous memory (heap, tensors, frames) is what each batch worker adds on
    its own. The kernel tracks the peak RSS exactly (``VmHWM``, reset on entry where
    ``/proc/self/clear_refs`` allows); the anonymous peak is sampled by a thread every
    ``interval`` seconds, so a spike shorter than that may be missed. Linux only: the
    figures are None elsewhere.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak_anon: float | None = None
        self.peak_rss: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        with contextlib.suppress(OSError):
            # "5" resets the peak resident size (VmHWM) to the current one (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
        self._sample()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="peak memory")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        now = _status_mib("RssAnon", "VmHWM")
        if "RssAnon" in now:
            self.peak_anon = max(self.peak_anon or 0.0, now["RssAnon"])
        if "VmHWM" in now:
            self.peak_rss = max(self.peak_rss or 0.0, now["VmHWM"])

    def report(self) -> dict[str, float | None]:
        """``peak_rss_mib`` and ``peak_anon_mib`` so far (``run.json``)."""
        self._sample()
        return {
            "peak_rss_mib": None if self.peak_rss is None else round(self.peak_rss, 1),
            "peak_anon_mib": None if self.peak_anon is None else round(self.peak_anon, 1),
        }
