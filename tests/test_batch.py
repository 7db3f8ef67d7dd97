"""The nightly batch: resume, bad files, SIGKILL at random moments, the lock, Ray, the report."""

from __future__ import annotations

import csv
import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipminer.batch import BatchConfig, BatchLocked, run_batch
from clipminer.cli import app
from clipminer.findclips import FindClipsConfig

from .helpers import TINY_FLAGS, batch_config, make_videos, model_flags

runner = CliRunner()


def _state(out: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(out / "state.sqlite") as db:
        return db.execute("SELECT path, status FROM videos ORDER BY path").fetchall()


def test_good_and_bad_files_and_resume(tiny_models, tmp_path: Path, shared_data: Path) -> None:
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    good = make_videos(folder / "nested", 2)
    for name in ("decord_corrupted.mp4", "torchcodec_h265_10bits.mp4", "decord_unordered.mov"):
        (folder / name).write_bytes((shared_data / "robustness" / name).read_bytes())
    (folder / "empty.mp4").write_bytes(b"")
    data = good[0].read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "text.mp4").write_text("not a video")
    (folder / "notes.txt").write_text("not a video either")
    out = tmp_path / "out"
    summary = run_batch(folder, out, config=batch_config(tiny_models))
    status = dict(_state(out))
    assert {Path(p).name: s for p, s in status.items()} == {
        "v0.mp4": "done",
        "v1.mp4": "done",
        "decord_corrupted.mp4": "done",
        "torchcodec_h265_10bits.mp4": "done",
        "decord_unordered.mov": "done",
        "empty.mp4": "failed",
        "truncated.mp4": "failed",
        "text.mp4": "failed",
        "notes.txt": "skipped",
    }
    errors = {Path(o.path).name: o.error for o in summary.outcomes if not o.ok}
    assert errors["empty.mp4"].endswith("empty.mp4: empty file (0 bytes)")
    assert all("\n" not in e and "Traceback" not in e for e in errors.values())
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 9 and {r["status"] for r in rows} == {"done", "failed", "skipped"}
    assert (out / "videos" / "v0" / "segments.csv").is_file()
    # A second run does nothing; --retry-failed tries the failures again; new options
    # leave done videos alone unless --force.
    again = run_batch(folder, out, config=batch_config(tiny_models))
    assert (again.done, again.failed, again.already_done) == (0, 0, 5)
    retried = run_batch(folder, out, config=batch_config(tiny_models, retry_failed=True))
    assert retried.failed == 3 and retried.done == 0
    other = BatchConfig(
        image_model=str(tiny_models[0]), findclips=FindClipsConfig(device="cpu", cut="none")
    )
    assert run_batch(folder, out, config=other).done == 0
    forced = BatchConfig(
        image_model=str(tiny_models[0]),
        findclips=FindClipsConfig(device="cpu", cut="none"),
        force=True,
    )
    assert run_batch(folder, out, config=forced).done == 5


def test_lock_keeps_a_second_run_out(tiny_models, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    make_videos(folder, 1, seconds=3)
    out = tmp_path / "out"
    out.mkdir()
    with (out / ".batch.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BatchLocked, match="another clipminer batch is running"):
            run_batch(folder, out, config=batch_config(tiny_models))
        result = runner.invoke(
            app, ["batch", str(folder), "--out", str(out), "--image-model", str(tiny_models[0])]
        )
        assert result.exit_code == 3 and "another clipminer batch" in result.output


def _batch_command(folder: Path, out: Path, tiny_models) -> list[str]:
    command = [sys.executable, "-m", "clipminer", "batch", str(folder), "--out", str(out)]
    return [*command, *model_flags(tiny_models), *TINY_FLAGS]


def _statuses(out: Path) -> set[str]:
    try:
        with sqlite3.connect(out / "state.sqlite", timeout=5) as db:
            return {row[0] for row in db.execute("SELECT status FROM videos")}
    except sqlite3.Error:  # not created yet
        return set()


def _staging(out: Path) -> bool:
    videos = out / "videos"
    return videos.is_dir() and any(p.name.endswith(".partial") for p in videos.iterdir())


@pytest.mark.slow  # long: `make test-all` runs it
def test_sigkill_at_each_stage_then_resume(tiny_models, tmp_path: Path) -> None:
    """Kill -9 when the plan is written, while a video's folder is being staged, and right
    after a video is done; then a clean run finishes everything exactly once."""
    folder = tmp_path / "in"
    videos = make_videos(folder, 4)
    out = tmp_path / "out"
    command = _batch_command(folder, out, tiny_models)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    moments = [
        lambda: "queued" in _statuses(out),
        lambda: _staging(out),
        lambda: "done" in _statuses(out),
        lambda: _staging(out),
    ]
    killed = 0
    for moment in moments:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline and not moment():
            time.sleep(0.005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait(timeout=30)
    assert killed >= 3, "the batch finished before it could be killed at its stages"
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    state = _state(out)
    assert [Path(p).name for p, _ in state] == [v.name for v in videos]
    assert {s for _, s in state} == {"done"}
    leftovers = [p for p in out.rglob("*") if ".partial" in p.name or p.name.endswith(".old")]
    assert leftovers == []
    for v in videos:
        rows = list(csv.DictReader((out / "videos" / v.stem / "segments.csv").open()))
        for row in rows:
            assert (out / row["clip_path"]).is_file()
        clips = (
            sorted(p.name for p in (out / "videos" / v.stem / "clips").rglob("*.mp4"))
            if rows
            else []
        )
        assert clips == sorted(Path(r["clip_path"]).name for r in rows)
    summary = list(csv.DictReader((out / "summary.csv").open()))
    assert len(summary) == 4 and {r["status"] for r in summary} == {"done"}
    kinetics = (out / "kinetics.csv").read_text().splitlines()
    assert len(kinetics) - 1 == sum(
        len(list(csv.DictReader((out / "videos" / v.stem / "segments.csv").open()))) for v in videos
    )


def test_ray_engine_gives_the_same_outputs(tiny_models, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    folder = tmp_path / "in"
    videos = make_videos(folder, 3, seconds=5)
    local = run_batch(folder, tmp_path / "local", config=batch_config(tiny_models))
    ray_run = run_batch(
        folder, tmp_path / "ray", config=batch_config(tiny_models, engine="ray", workers=2)
    )
    assert local.done == ray_run.done == 3
    for v in videos:
        a = (tmp_path / "local" / "videos" / v.stem / "segments.csv").read_text()
        b = (tmp_path / "ray" / "videos" / v.stem / "segments.csv").read_text()
        assert a == b
    assert _state(tmp_path / "local") == _state(tmp_path / "ray")


@pytest.mark.browser
def test_report_opens_from_disk_in_chromium(tiny_models, tmp_path: Path) -> None:
    import shutil

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("apt-get install chromium chromium-driver")
    from scrapers.driver import chromium

    folder = tmp_path / "in"
    make_videos(folder, 2)
    out = tmp_path / "out"
    run_batch(folder, out, config=batch_config(tiny_models))
    report = out / "report.html"
    assert report.is_file()
    with chromium(load_images=True) as driver:
        driver.get(report.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images)"
            ".map(i => [i.src, i.complete && i.naturalWidth > 0]);"
        )
        deadline = time.time() + 20
        while True:  # videos load their metadata asynchronously
            videos = driver.execute_script(
                "return Array.from(document.querySelectorAll('video'))"
                ".map(v => [v.currentSrc, v.readyState, v.error ? v.error.code : 0]);"
            )
            if all(state >= 1 or error for _, state, error in videos) or time.time() > deadline:
                break
            time.sleep(0.2)
        logs = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        driver.save_screenshot(str(tmp_path / "report.png"))
    assert len(images) >= 3  # two timelines and at least one clip thumbnail
    assert all(ok for _, ok in images), images
    assert videos and all(state >= 1 and error == 0 for _, state, error in videos), videos
    assert logs == []
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_state_schema_is_the_row_dataclass(tmp_path: Path) -> None:
    from dataclasses import fields

    from clipminer.batch import StateStore, VideoRow

    store = StateStore(tmp_path / "state.sqlite")
    columns = [row[1] for row in store.db.execute("PRAGMA table_info(videos)")]
    store.close()
    assert columns == [f.name for f in fields(VideoRow)]
