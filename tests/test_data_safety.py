"""Data safety for unattended runs (issue #11): every input gets its own safe folder,
re-spelt inputs are not mined again, errors are one line, outputs follow the umask,
workers die with their run. Every case is built from generated files."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import logging
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clipminer.batch import find_videos, run_batch
from clipminer.cli import app
from clipminer.errors import UsageError
from clipminer.findclips import ClipMiner, Relabel, merge_same_label
from clipminer.fsutil import NAME_MAX_BYTES, safe_component
from clipminer.layout import RESERVED_NAMES, folder_name, read_source
from clipminer.models.bundle import load_bundle, save_bundle
from clipminer.segments import Segment

from .helpers import TINY_FLAGS, batch_config, make_videos, model_flags, tiny_findclips_config

runner = CliRunner()
OUT_FILES = ("kinetics.csv", "summary.csv", "report.html", "state.sqlite")


def _find_clips(models: tuple[Path, Path], videos: list[Path], out: Path, *extra: str) -> object:
    command = ["find-clips", *map(str, videos), "--out", str(out), *model_flags(models)]
    return runner.invoke(app, [*command, *TINY_FLAGS, *extra])


def _kinetics_ids(out: Path) -> list[str]:
    with (out / "kinetics.csv").open(newline="") as handle:
        return [row["youtube_id"] for row in csv.DictReader(handle)]


def _video_folders(out: Path) -> dict[str, str]:
    """{folder name: the source path its run.json records}."""
    found = {}
    for folder in (out / "videos").iterdir():
        source = read_source(folder)
        assert source is not None, folder
        found[folder.name] = source.path
    return found


# -- the naming rule --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [".", "..", "...", ".hidden", "", " ", "a/b", "../../etc", "con", "NUL.txt", "x" * 400,
     "é" * 200, "日本語" * 40, "tab\there", "new\nline", "\udcff\udcfe", "trailing. ",
     "state.sqlite", "Kinetics.CSV", "videos", "$^$", "[bold]x[/]"],
)  # fmt: skip
def test_safe_component_is_one_safe_bounded_component(text: str) -> None:
    name = safe_component(text, reserved=RESERVED_NAMES)
    assert name not in {"", ".", ".."} and not name.startswith(".")
    assert "/" not in name and "\\" not in name and "\x00" not in name and "\n" not in name
    assert len(name.encode()) <= 120 < NAME_MAX_BYTES
    assert name.casefold() not in {r.casefold() for r in RESERVED_NAMES}
    assert name == safe_component(text, reserved=RESERVED_NAMES)  # deterministic


def test_long_names_stay_distinct() -> None:
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    assert safe_component(a) != safe_component(b)


def test_folder_name_plain_then_hashed(tmp_path: Path) -> None:
    from clipminer.layout import SourceId

    one = SourceId("/in/a.mp4", 1, 0.0, "f1")
    two = SourceId("/in/sub/a.mp4", 2, 0.0, "f2")
    assert folder_name(Path("a.mp4"), one, tmp_path) == "a"
    other = folder_name(Path("a.mp4"), two, tmp_path, owners={"a": one.path})
    assert other.startswith("a-") and other == folder_name(
        Path("a.mp4"), two, tmp_path, owners={"a": one.path}
    )
    for stem in ("..", ".", "state.sqlite", "summary.csv", "videos", ".x"):
        name = folder_name(Path(f"{stem}.mp4"), one, tmp_path)
        assert name != stem and not name.startswith(".") and "-" in name


# -- points 1-3: one input, one folder ---------------------------------------------------


def test_hostile_names_never_touch_out(tiny_models, tmp_path: Path) -> None:
    names = ["..mp4", "...mp4", "state.sqlite.mp4", "summary.csv.mp4", "report.html.mp4",
             "kinetics.csv.mp4", "videos.mp4", "x.mp4", "x.mkv", "$^$.mp4",
             "Song [official video].mp4", "x[/y].mp4", "é" * 120 + ".mp4"]  # fmt: skip
    videos = make_videos(tmp_path / "in", seconds=3, names=names)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("the user's file")
    result = _find_clips(tiny_models, videos, out)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert (out / "keep.txt").read_text() == "the user's file"
    assert (out / "kinetics.csv").is_file()
    folders = _video_folders(out)
    assert len(folders) == len(videos)
    assert sorted(folders.values()) == sorted(str(v.resolve()) for v in videos)
    for name in folders:
        assert len(name.encode()) <= 120 and not name.startswith(".")
    assert {p.name for p in out.iterdir()} == {"keep.txt", "kinetics.csv", "videos"}
    # Every clip row points at a file inside its own folder; ids are unique per video.
    for folder in (out / "videos").iterdir():
        with (folder / "segments.csv").open(newline="") as handle:
            for row in csv.DictReader(handle):
                assert row["clip_path"].startswith(f"videos/{folder.name}/clips/")
                assert (out / row["clip_path"]).is_file()
    assert set(_kinetics_ids(out)) <= set(folders)
    # Names are shown as they are, never read as markup.
    assert "Song [official video].mp4" in result.output and "x[/y].mp4" in result.output


def test_batch_keeps_out_files_and_separates_look_alikes(tiny_models, tmp_path: Path) -> None:
    names = ["state.sqlite.mp4", "summary.csv.mp4", "report.html.mp4", "kinetics.csv.mp4",
             "x.mp4", "x.mkv", "a/b.mp4", "a__b.mp4", "sub/x.mp4"]  # fmt: skip
    make_videos(tmp_path / "in", seconds=3, names=names)
    out = tmp_path / "out"
    for _ in range(2):
        summary = run_batch(tmp_path / "in", out, config=batch_config(tiny_models))
        assert summary.failed == 0
        for name in OUT_FILES:
            assert (out / name).is_file(), name
    assert summary.already_done == len(names)
    assert "(decode " in (out / "report.html").read_text()  # stage times per video
    folders = _video_folders(out)
    assert len(folders) == len(names) and len(set(folders.values())) == len(names)
    with sqlite3.connect(out / "state.sqlite") as db:
        outputs = [r[0] for r in db.execute("SELECT output FROM videos")]
    assert sorted(outputs) == sorted(f"videos/{n}" for n in folders)
    # youtube_id is the folder name: unique per video.
    ids = _kinetics_ids(out)
    assert set(ids) <= set(folders)
    by_video = {}
    for folder in folders:
        with (out / "videos" / folder / "segments.csv").open(newline="") as handle:
            by_video[folder] = len(list(csv.DictReader(handle)))
    assert {f: ids.count(f) for f in folders} == by_video


# -- point 4: the same folder by another spelling ----


def test_respelt_and_moved_inputs_are_not_mined_again(
    tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_videos(tmp_path / "in", 2, seconds=3)
    out = tmp_path / "out"
    config = batch_config(tiny_models)
    monkeypatch.chdir(tmp_path)
    assert run_batch(Path("in"), out, config=config).done == 2
    for spelling in (tmp_path / "in", Path("in/"), Path("./in/../in")):
        again = run_batch(spelling, out, config=config)
        assert (again.done, again.already_done) == (0, 2), spelling
    (tmp_path / "in").rename(tmp_path / "moved")  # a moved mount
    moved = run_batch(tmp_path / "moved", out, config=config)
    assert (moved.done, moved.already_done) == (0, 2)
    with (out / "summary.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all("/moved/" in r["video"] for r in rows)
    ids = _kinetics_ids(out)
    assert len(ids) == sum(
        len(list(csv.DictReader((out / "videos" / v / "segments.csv").open())))
        for v in ("v0", "v1")
    )


def test_an_older_state_file_is_refused_in_one_line(tiny_models, tmp_path: Path) -> None:
    make_videos(tmp_path / "in", 1, seconds=2)
    out = tmp_path / "out"
    out.mkdir()
    with sqlite3.connect(out / "state.sqlite") as db:
        db.execute("CREATE TABLE videos (path TEXT PRIMARY KEY, status TEXT)")
    with pytest.raises(UsageError, match="older clipminer"):
        run_batch(tmp_path / "in", out, config=batch_config(tiny_models))


# -- point 5: OUT inside the input folder ----


def test_out_inside_the_input_is_never_mined(tiny_models, tmp_path: Path) -> None:
    make_videos(tmp_path / "in", 2, seconds=3)
    out = tmp_path / "in" / "mined"
    first = run_batch(tmp_path / "in", out, config=batch_config(tiny_models))
    assert first.done == 2
    assert list(out.rglob("*.mp4")), "the test needs clips in OUT"
    second = run_batch(tmp_path / "in", out, config=batch_config(tiny_models))
    assert (second.done, second.failed, second.skipped) == (0, 0, 0)
    videos, others = find_videos(tmp_path / "in", exclude=[out])
    assert sorted(v.name for v in videos) == ["v0.mp4", "v1.mp4"] and others == []


def test_still_images_are_not_videos(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "thumb.jpg")
    Image.new("RGB", (32, 32)).save(tmp_path / "no_suffix", format="PNG")
    (tmp_path / "fetch.sqlite").write_bytes(b"SQLite format 3\x00")  # fetch-videos' register
    videos, others = find_videos(tmp_path)
    assert videos == [] and sorted(p.name for p in others) == ["no_suffix", "thumb.jpg"]


# -- point 6: one-line errors, the others go on ----


def test_find_clips_errors_are_one_line_and_the_rest_goes_on(tiny_models, tmp_path: Path) -> None:
    good = make_videos(tmp_path / "in", 1, seconds=3)[0]
    broken = tmp_path / "in" / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    out = tmp_path / "out"
    result = _find_clips(tiny_models, [broken, good], out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.mp4" in errors[0]
    assert (out / "videos" / "v0" / "segments.csv").is_file()

    not_parquet = tmp_path / "scores.parquet"
    not_parquet.write_text("time,a,b\n0,1,0\n")
    result = _find_clips(tiny_models, [good], tmp_path / "o2", "--rescore", str(not_parquet))
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "scores.parquet: not a scores.parquet" in result.output

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    result = _find_clips(tiny_models, [good], a_file)
    assert result.exit_code == 2 and "a_file: --out must be a folder" in result.output
    assert a_file.read_text() == "x"


@pytest.mark.parametrize("fault", ["labels", "arch"])
def test_a_bundle_that_does_not_fit_is_one_line(tiny_models, tmp_path: Path, fault: str) -> None:
    good = make_videos(tmp_path / "in", 1, seconds=2)[0]
    bundle = load_bundle(tiny_models[0])
    from dataclasses import replace

    bad = (
        replace(bundle, labels=(*bundle.labels, "extra"))
        if fault == "labels"
        else replace(bundle, arch="no_such_net")
    )
    path = save_bundle(bad, tmp_path / "bad.pt")
    result = runner.invoke(
        app, ["find-clips", str(good), "--out", str(tmp_path / "o"), "--image-model", str(path)]
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "bad.pt" in lines[0], result.output
    assert ("no_such_net" if fault == "arch" else "do not fit") in lines[0]


def test_batch_logs_no_traceback_for_a_failing_video(
    tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    make_videos(tmp_path / "in", 2, seconds=2)

    def explode(self: ClipMiner, video: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug deep inside")

    monkeypatch.setattr(ClipMiner, "run", explode)
    with caplog.at_level(logging.INFO):
        summary = run_batch(tmp_path / "in", tmp_path / "out", config=batch_config(tiny_models))
    assert summary.failed == 2
    assert all("RuntimeError: a bug deep inside" in o.error for o in summary.outcomes)
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and r.exc_info]


# -- point 8: nightly setup errors ----


def test_nightly_unwritable_log_is_a_setup_error(tiny_models, tmp_path: Path) -> None:
    from jobs import nightly

    (tmp_path / "not_a_folder").write_text("a file where the log folder should be")
    config = tmp_path / "nightly.toml"
    config.write_text(
        f'[batch]\ninput = "in"\noutput_root = "out"\nimage_model = "{tiny_models[0]}"\n'
        '[log]\nfile = "not_a_folder/nightly.log"\n'
    )
    (tmp_path / "in").mkdir()
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_CONFIG


# -- point 9: an unreachable Ray cluster ----


def test_unreachable_ray_address_fails_fast_and_releases_the_lock(
    tiny_models, tmp_path: Path
) -> None:
    pytest.importorskip("ray")
    make_videos(tmp_path / "in", 1, seconds=2)
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out"
    config = batch_config(tiny_models, engine="ray", ray_address=f"127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(UsageError, match="cannot reach the Ray cluster"):
        run_batch(tmp_path / "in", out, config=config)
    assert time.monotonic() - started < 30
    with (out / ".batch.lock").open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again


# -- point 10: done with other options ----


def test_done_with_other_options_is_said_at_the_end(tiny_models, tmp_path: Path) -> None:
    make_videos(tmp_path / "in", 1, seconds=2)
    args = ["batch", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--image-model"]
    args += [str(tiny_models[0]), "--cut", "none", "--device", "cpu"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, [*args, "--threshold", "0.7"])
    assert result.exit_code == 0
    assert "1 done videos were mined with other options" in result.output
    assert "--force" in result.output


# -- point 11: workers die with their run ----


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    if int(child) not in found:
                        found.add(int(child))
                        todo.append(int(child))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_kill_9_of_a_batch_takes_its_workers_with_it(tiny_models, tmp_path: Path) -> None:
    make_videos(tmp_path / "in", 6, seconds=6)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "clipminer", "batch", str(tmp_path / "in")]
    command += ["--out", str(out), "--image-model", str(tiny_models[0]), "--video-model"]
    command += [str(tiny_models[1]), "--workers", "2", "--segment-on", "action", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        workers: set[int] = set()
        while time.monotonic() < deadline and parent.poll() is None:
            # Once a first video is being written or done, the workers are mid-work.
            started = (out / "videos").is_dir() and any((out / "videos").iterdir())
            workers = _descendants(parent.pid)
            if started and len(workers) >= 2:
                break
            time.sleep(0.05)
        assert parent.poll() is None, "the batch ended before the workers were busy"
        assert len(workers) >= 2
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.1)
        assert not [p for p in workers if _alive(p)]
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in _descendants(parent.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    # A new run takes over and finishes cleanly.
    summary = run_batch(tmp_path / "in", out, config=batch_config(tiny_models))
    assert summary.failed == 0 and summary.done + summary.already_done == 6


# -- point 12: outputs follow the umask ----


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_follow_the_umask(tiny_models, tmp_path: Path, mask: int) -> None:
    make_videos(tmp_path / "in", 1, seconds=3)
    out = tmp_path / "out"
    with _umask(mask):
        run_batch(tmp_path / "in", out, config=batch_config(tiny_models))
        model = save_bundle(load_bundle(tiny_models[0]), tmp_path / "copy.pt")
    files = [p for p in out.rglob("*") if p.is_file() and p.name != ".batch.lock"]
    assert any(p.suffix == ".mp4" for p in files) and (out / "report.html") in files
    for path in [*files, model]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


# -- point 13: one clip per name ----


def _seg(label: str, start: float, end: float, score: float = 0.5) -> Segment:
    return Segment(label, score, start, end)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ([_seg("a", 0, 2), _seg("a", 0, 2, 0.9)], [("a", 0, 2, 0.9)]),
        ([_seg("a", 0, 2), _seg("a", 1, 3)], [("a", 0, 3, 0.5)]),
        ([_seg("a", 0, 2), _seg("a", 2, 3)], [("a", 0, 2, 0.5), ("a", 2, 3, 0.5)]),
        ([_seg("a", 0, 2), _seg("b", 0, 2)], [("a", 0, 2, 0.5), ("b", 0, 2, 0.5)]),
        ([_seg("a", 4, 6), _seg("a", 0, 2)], [("a", 0, 2, 0.5), ("a", 4, 6, 0.5)]),
    ],
)
def test_merge_same_label(given: list[Segment], expected: list[tuple]) -> None:
    merged = merge_same_label([(s, None) for s in given])
    assert [
        (s.label, s.time_start_seconds, s.time_end_seconds, s.score) for s, _ in merged
    ] == expected


def test_merge_uses_the_final_label() -> None:
    relabel = Relabel("c", 0.8)
    merged = merge_same_label([(_seg("a", 0, 2), relabel), (_seg("b", 1, 3), relabel)])
    assert len(merged) == 1 and merged[0][1] == relabel
    assert merged[0][0].time_end_seconds == 3


def test_duplicate_segments_give_one_clip(tiny_models, tmp_path: Path) -> None:
    video = make_videos(tmp_path / "in", 1, seconds=3)[0]
    miner = ClipMiner(tiny_models[0], config=tiny_findclips_config())
    from clipminer.decode import probe

    info = probe(video)
    twice = [(_seg("a", 0.5, 2.0), None), (_seg("a", 0.5, 2.0), None), (_seg("b", 0.5, 2.0), None)]
    folder = tmp_path / "out" / "videos" / "v0"
    no_scores = (np.zeros(0), np.zeros((0, 0)), ())
    candidates, rejected = miner._finish(
        video, info, twice, folder, scores=no_scores, threshold=None
    )
    assert not rejected
    paths = [c.clip_path for c in candidates]
    assert len(paths) == 2 and len(set(paths)) == 2


def test_find_clips_refuses_the_same_video_twice(tiny_models, tmp_path: Path) -> None:
    video = make_videos(tmp_path / "in", 1, seconds=2)[0]
    result = _find_clips(tiny_models, [video, tmp_path / "in" / ".." / "in" / "v0.mp4"], tmp_path)
    assert result.exit_code == 1 and "given twice" in result.output
