"""What a run says about its memory, and ``--low-memory``."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from clipminer.memory import PeakMemory

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")


@linux_only
def test_peak_memory_sees_a_short_lived_allocation() -> None:
    with PeakMemory(interval=0.01) as peaks:
        before = peaks.report()["peak_anon_mib"]
        block = np.ones(160 << 20, np.uint8)  # 160 MiB, touched
        time.sleep(0.1)
        del block
        time.sleep(0.05)
    after = peaks.report()
    assert before is not None and after["peak_anon_mib"] is not None
    assert after["peak_anon_mib"] >= before + 150
    assert after["peak_rss_mib"] >= after["peak_anon_mib"]
    assert not any(t.name == "peak memory" for t in threading.enumerate())  # stopped


CHILD = """
import sys, numpy as np
from clipminer.memory import keep_big_blocks_out_of_the_heap
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) // 1024
if sys.argv[1] == "on":
    assert keep_big_blocks_out_of_the_heap()
# glibc raises its threshold to the biggest block freed (24 MiB): 8 MiB blocks then come
# from the heap, where small blocks between them keep their pages after they are freed
first = np.ones(24 << 20, np.uint8); del first
base = anon()
blocks, pins = [], []
for _ in range(8):
    blocks.append(np.ones(8 << 20, np.uint8))
    pins.append(bytearray(64))
del blocks
print(anon() - base)
"""


@linux_only
def test_low_memory_hands_big_freed_blocks_back() -> None:
    def rss_after(mode: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True
        )
        return int(done.stdout.strip())

    # measured with Debian's glibc: 16 MiB stayed without it, none with it
    assert rss_after("on") <= 2 < 8 <= rss_after("off")
