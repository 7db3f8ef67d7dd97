"""Where a find-clips process's memory goes, phase by phase, at 1080p.

Runs ``clipminer find-clips`` in a fresh process on the 1-minute generated 1080p video of
``benchmarks/hour.py`` (its models too: densenet121 at 224 px, r2plus1d_18 at 16 x 112,
``--cut reencode``), with a thread that samples the resident size every 20 ms and notes
what is running: image-model batches, re-labels, clip encodes. Prints one JSON line:
resident size after the imports (anonymous and file-backed: shared-library pages) and
after loading the models, then the peak resident and anonymous size while each
combination of work ran, and what ``run.json`` recorded. Issue 24's budget: peak
anonymous memory (what each batch worker owns; the shared libraries' pages are not
counted) <= 768 MiB.

Usage: python benchmarks/memory.py [--work bench-out/hour] [--video FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from hour import build_minute, train_models

CHILD = r"""
import sys, threading, time

def status():
    fields = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) // 1024
    return fields

running = set()
peaks = {}
anon_peaks = {}

def sample():
    while True:
        key = "+".join(sorted(running)) or "other"
        now = status()
        peaks[key] = max(peaks.get(key, 0), now["VmRSS"])
        anon_peaks[key] = max(anon_peaks.get(key, 0), now["RssAnon"])
        time.sleep(0.02)

import clipminer
from clipminer import findclips
from clipminer.mining import cutter, relabel
from clipminer.cli import app
from clipminer.models.image import ImageScorer

after_imports = status()

def noting(work, name):
    def run(*args, **kwargs):
        running.add(name)
        try:
            return work(*args, **kwargs)
        finally:
            running.discard(name)
    return run

ImageScorer.__call__ = noting(ImageScorer.__call__, "image")
relabel.VideoRelabeler.__call__ = noting(relabel.VideoRelabeler.__call__, "relabel")
cutter.cut_clip = noting(cutter.cut_clip, "cut")
loaded = {}
init = findclips.ClipMiner.__init__
def init_and_note(self, *args, **kwargs):
    init(self, *args, **kwargs)
    loaded.update(status())
findclips.ClipMiner.__init__ = init_and_note
threading.Thread(target=sample, daemon=True).start()
try:
    app(sys.argv[1:], prog_name="clipminer")
except SystemExit as exc:
    assert not exc.code, exc.code
import json
peak = max(peaks.values())
print(json.dumps({"after_imports": after_imports, "after_models": loaded,
                  "peak_by_work": peaks, "peak_mib": peak,
                  "anon_peak_by_work": anon_peaks, "peak_anon_mib": max(anon_peaks.values())}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("bench-out/hour"))
    parser.add_argument("--video", type=Path, help="default: the hour benchmark's minute")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    image, video = train_models(args.work)
    source = args.video or build_minute(args.work)
    out = args.work / "out_memory"
    shutil.rmtree(out, ignore_errors=True)
    command = ["find-clips", str(source), "--image-model", str(image)]
    command += ["--video-model", str(video), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *command], capture_output=True, text=True, check=True
    )
    row = json.loads(done.stdout.strip().splitlines()[-1])
    run = json.loads(next((out / "videos").glob("*/run.json")).read_text())
    print(
        json.dumps(
            {
                "case": "memory",
                "video": str(source),
                **row,
                "run_json_memory": run["memory"],
                "targets": {"peak_anon_mib": 768},
            }
        )
    )


if __name__ == "__main__":
    main()
