"""Signals at seeded random moments (issue #28): SIGKILL of batch's main process, and
Ctrl-C (SIGINT) during each long command. Whenever the signal lands (while Python is
still importing, while a video is staged, while a dataset is copied), the command
stops within seconds without a traceback, leaves nothing half written that looks whole,
and a re-run ends where a clean run ends.

The moments come from a seeded generator, so a failure can be replayed; each case's
seed and moment are in its assertion messages."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipminer.batch import run_batch

from .helpers import TINY_FLAGS, batch_config, make_videos, model_flags

SEED = 28
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


def _clipminer(*args: str) -> list[str]:
    return [sys.executable, "-m", "clipminer", *args]


def _timed(command: list[str]) -> float:
    """Run ``command`` to the end (it must succeed); its wall time."""
    started = time.monotonic()
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


def _signal_at(command: list[str], moment: float, sig: int) -> tuple[int, str, float]:
    """Start ``command``, send ``sig`` after ``moment`` seconds (if it still runs);
    returns (exit code, stderr, seconds from the signal to the exit)."""
    process = subprocess.Popen(
        command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=moment)
    sent = time.monotonic()
    if process.poll() is None:
        process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    return process.returncode, err, time.monotonic() - sent


def _leftovers(*roots: Path) -> list[Path]:
    return [
        p
        for root in roots
        if root.exists()
        for p in root.rglob("*")
        if ".partial" in p.name or p.name.endswith(".old") or p.name.startswith(".export-")
    ]


def _results(out: Path) -> dict[str, bytes]:
    """What a mined OUT holds that does not depend on when it ran: every segments.csv
    and shots.csv byte for byte, and the clips' names."""
    return {
        str(p.relative_to(out)): p.read_bytes() if p.suffix == ".csv" else b""
        for p in sorted((out / "videos").rglob("*"))
        if p.name in ("segments.csv", "shots.csv") or p.suffix == ".mp4"
    }


@pytest.mark.parametrize(("kills", "workers"), [(2, 1), pytest.param(6, 2, marks=pytest.mark.slow)])
def test_sigkill_of_batch_at_random_moments_then_a_rerun_equals_a_clean_run(
    tiny_models, tmp_path: Path, kills: int, workers: int
) -> None:
    folder = tmp_path / "in"
    make_videos(folder, 4)
    flags = [*model_flags(tiny_models), *TINY_FLAGS, "--workers", str(workers)]
    clean, out = tmp_path / "clean", tmp_path / "out"
    took = _timed(_clipminer("batch", str(folder), "--out", str(clean), *flags))
    command = _clipminer("batch", str(folder), "--out", str(out), *flags)
    rng = random.Random(SEED + workers)
    for _ in range(kills):
        moment = rng.uniform(0.2, took)
        code, err, _ = _signal_at(command, moment, signal.SIGKILL)
        assert code in (0, -signal.SIGKILL), (moment, err)
    final = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert _results(out) == _results(clean)
    assert _leftovers(out) == []
    again = run_batch(folder, out, config=batch_config(tiny_models))
    assert (again.done, again.already_done) == (0, 4)


def _prepare(command: str, tmp_path: Path, models) -> tuple[list[str], Path]:
    """The arguments of ``command`` over small inputs, and the folder it writes."""
    folder, out = tmp_path / "in", tmp_path / "out"
    videos = make_videos(folder, 3)
    flags = [*model_flags(models), *TINY_FLAGS]
    if command == "find-clips":
        return ["find-clips", *map(str, videos), "--out", str(out), *flags], out
    if command == "batch":
        return ["batch", str(folder), "--out", str(out), *flags], out
    run_batch(folder, out, config=batch_config(models))
    if command == "dedup":
        return ["dedup", str(out)], out
    if command == "export":
        dataset = tmp_path / "ds"
        return ["export", str(out), "--out", str(dataset), "--include", "all", "--force"], dataset
    assert command == "review"
    return ["review", str(out), "--port", "0"], out


def _written(command: str, root: Path) -> dict[str, bytes]:
    """What ``command`` wrote under ``root`` that does not depend on when it ran."""
    if command in ("find-clips", "batch"):
        return _results(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.csv"))}


@pytest.mark.parametrize(
    "command",
    [
        "dedup",
        "export",
        pytest.param("find-clips", marks=pytest.mark.slow),
        pytest.param("batch", marks=pytest.mark.slow),
        pytest.param("review", marks=pytest.mark.slow),
    ],
)
def test_ctrl_c_at_a_random_moment_stops_each_long_command_cleanly(
    tiny_models, tmp_path: Path, command: str
) -> None:
    args, written = _prepare(command, tmp_path, tiny_models)
    clean: dict[str, bytes] = {}
    if command == "review":  # it serves until interrupted: any moment after start-up will do
        took = 6.0
    else:  # mining commands make their clean run into a folder of its own
        fresh = tmp_path / "clean" if command in ("find-clips", "batch") else written
        took = _timed(_clipminer(*[str(fresh) if a == str(written) else a for a in args]))
        clean = _written(command, fresh)
    rng = random.Random(f"{SEED}-{command}")
    for _ in range(2):
        moment = rng.uniform(0.1, took)
        code, err, stopped_in = _signal_at(_clipminer(*args), moment, signal.SIGINT)
        where = f"{command} interrupted at {moment:.2f} s (seed {SEED})"
        assert stopped_in < 10, where
        assert "Traceback" not in err, (where, err)
        # 130: stopped by the handler; -SIGINT: the signal landed while Python was already
        # finishing (it restores the default action then); 0: it had finished
        assert code in (0, 130, -signal.SIGINT), (where, code, err)
        assert _leftovers(tmp_path) == [], where
    if command != "review":
        _timed(_clipminer(*args))
        assert _written(command, written) == clean
