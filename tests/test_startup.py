"""Start-up: find-clips decodes its first frame before any heavy optional module loads,
and writes per-stage times to run.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .helpers import TINY_FLAGS, make_videos, model_flags

PROBE = """
import json, sys, time
started = time.perf_counter()
from clipminer.decode import VideoReader
original = VideoReader.iter_taps
seen = {}
def iter_taps(self):
    for item in original(self):
        if not seen:
            seen["modules"] = sorted(sys.modules)
            seen["seconds"] = time.perf_counter() - started
        yield item
VideoReader.iter_taps = iter_taps
from clipminer.cli import app
try:
    app(sys.argv[1:], prog_name="clipminer")
except SystemExit as exc:
    seen["exit"] = exc.code
print("PROBE " + json.dumps(seen))
"""
HEAVY = ("pandas", "pyarrow", "matplotlib", "selenium", "ray", "requests", "imagehash", "bs4")


def test_no_heavy_module_before_the_first_frame(tiny_models, tmp_path: Path) -> None:
    video = make_videos(tmp_path / "in", 1, seconds=3)[0]
    args = ["find-clips", str(video), "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args, *model_flags(tiny_models), *TINY_FLAGS],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("PROBE "))
    seen = json.loads(line.removeprefix("PROBE "))
    assert seen["exit"] in (0, None), done.stderr
    loaded = {name.split(".")[0] for name in seen["modules"]}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    run = json.loads((tmp_path / "out" / "videos" / "v0" / "run.json").read_text())
    stages = run["stages"]
    assert set(stages) == {
        f"{s}_seconds" for s in ("decode", "score", "relabel", "shots", "cut", "write")
    }
    assert stages["decode_seconds"] > 0 and stages["score_seconds"] > 0
    assert run["frames_scored"] > 0 and run["device"] == "cpu"
    assert run["precision"] == {"image": "fp32", "video": "fp32"}
