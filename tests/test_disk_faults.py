"""Real full and read-only disks (issue #28): OUT on a tmpfs of its own, filled to the
last byte or remounted read-only, for every command that writes. Each test checks the
invariants, not one message: one line naming a path under OUT and the reason, no
traceback, nothing half written, nothing recorded against the input, and, once the disk
takes writes again, a re-run that ends where a clean run does.

Mounting needs root with CAP_SYS_ADMIN; where the machine does not allow it, these tests
skip (``test_faults.py`` injects the same errors at the write layer)."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipminer.batch import run_batch
from clipminer.cli import app
from clipminer.errors import OutputDiskError, UsageError

from .helpers import TINY_FLAGS, batch_config, make_videos, model_flags
from .test_fetch_videos import site, videos  # noqa: F401 (fixtures)

runner = CliRunner()


class Disk:
    """A tmpfs mounted at ``path`` for one test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        """Write until the disk is full, as another program on the machine would."""
        with self._filler.open("ab") as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        assert os.statvfs(self.path).f_bavail == 0

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def read_only(self, on: bool = True) -> None:
        _mount("-o", f"remount,{'ro' if on else 'rw'}", str(self.path))


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    path = tmp_path / "disk"
    path.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path))
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    try:
        yield Disk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=30)


def _statuses(out: Path) -> dict[str, str]:
    with sqlite3.connect(out / "state.sqlite") as db:
        return {Path(p).name: s for p, s in db.execute("SELECT path, status FROM videos")}


def _no_leftovers(root: Path) -> None:
    assert not [p for p in root.rglob("*") if ".partial" in p.name or p.name.endswith(".old")]


def _outputs(out: Path) -> dict[str, bytes]:
    """What a run leaves in OUT/videos that does not depend on when it ran."""
    kept = {".mp4", ".csv"}
    return {
        str(p.relative_to(out)): p.read_bytes() if p.suffix == ".csv" else b""
        for p in sorted((out / "videos").rglob("*"))
        if p.suffix in kept
    }


def _one_line(output: str, *needles: str) -> None:
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    for needle in needles:
        assert needle in errors[0], output


def test_batch_stops_when_the_disk_fills_and_resumes_once_there_is_space(
    tiny_models, tmp_path: Path, disk: Disk
) -> None:
    folder = tmp_path / "in"
    make_videos(folder, 3)
    clean = tmp_path / "clean"
    run_batch(folder, clean, config=batch_config(tiny_models))
    out = disk.path / "out"

    with pytest.raises(OutputDiskError, match="no space left on the device; stopped after 1 done"):
        run_batch(folder, out, config=batch_config(tiny_models), on_outcome=lambda _: disk.fill())
    statuses = _statuses(out)
    assert sorted(statuses.values()) == ["done", "queued", "queued"]  # no video blamed
    _no_leftovers(out)

    disk.free()
    summary = run_batch(folder, out, config=batch_config(tiny_models))
    assert (summary.done, summary.already_done, summary.failed) == (2, 1, 0)
    assert set(_statuses(out).values()) == {"done"}
    assert _outputs(out) == _outputs(clean)


def test_a_full_disk_from_the_start_is_one_line_for_batch_and_find_clips(
    tiny_models, tmp_path: Path, disk: Disk
) -> None:
    folder = tmp_path / "in"
    (video,) = make_videos(folder, 1)
    out = disk.path / "out"
    commands = {
        "batch": ["batch", str(folder), "--out", str(out)],
        "find-clips": ["find-clips", str(video), str(video.with_name("v1.mp4")), "--out", str(out)],
    }
    make_videos(folder, names=["v1.mp4"])
    for command, args in commands.items():
        disk.fill()
        done = runner.invoke(app, [*args, *model_flags(tiny_models), *TINY_FLAGS])
        assert done.exit_code == 1, (command, done.output)
        _one_line(done.output, str(out), "no space left on the device")
        assert "manifest:" not in done.output  # the second video was not tried
        _no_leftovers(disk.path)
        disk.free()
        again = runner.invoke(app, [*args, *model_flags(tiny_models), *TINY_FLAGS])
        assert again.exit_code == 0, (command, again.output)
    assert set(_statuses(out).values()) == {"done"}


def test_a_full_disk_mid_find_clips_leaves_nothing_half_written(
    tiny_models, tmp_path: Path, disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills while a clip is being encoded: the video's folder never appears."""
    from clipminer.mining import cutter

    (video,) = make_videos(tmp_path / "in", 1)
    out = disk.path / "out"
    real = cutter.cut_clip
    calls = []

    def fill_then_cut(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            disk.fill()
        return real(*args, **kwargs)

    monkeypatch.setattr(cutter, "cut_clip", fill_then_cut)
    args = ["find-clips", str(video), "--out", str(out), *model_flags(tiny_models), *TINY_FLAGS]
    done = runner.invoke(app, args)
    assert len(calls) >= 2 and done.exit_code == 1
    _one_line(done.output, str(out / "videos"), "no space left on the device")
    assert not (out / "videos" / "v0").exists()
    _no_leftovers(disk.path)


@pytest.mark.parametrize("command", ["batch", "find-clips", "dedup", "export", "review"])
def test_a_read_only_out_is_one_line_for_every_command(
    tiny_models, tmp_path: Path, disk: Disk, command: str
) -> None:
    folder = tmp_path / "in"
    make_videos(folder, 1)
    out = disk.path / "out"
    run_batch(folder, out, config=batch_config(tiny_models))
    make_videos(folder, names=["later.mp4"])
    disk.read_only()
    if command == "review":
        _review_vote_on_read_only_out(out, disk)
        return
    args = {
        "batch": ["batch", str(folder), "--out", str(out), *model_flags(tiny_models), *TINY_FLAGS],
        "find-clips": [
            "find-clips",
            str(folder / "later.mp4"),
            "--out",
            str(out),
            *model_flags(tiny_models),
            *TINY_FLAGS,
        ],
        "dedup": ["dedup", str(out)],
        "export": ["export", str(out), "--out", str(disk.path / "ds"), "--include", "all"],
    }[command]
    done = runner.invoke(app, args)
    assert done.exit_code != 0, done.output
    _one_line(done.output, str(disk.path), "read-only file system")
    disk.read_only(False)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    _no_leftovers(disk.path)


def _review_vote_on_read_only_out(out: Path, disk: Disk) -> None:
    """A server refuses at once to start on an OUT votes cannot go into (one line); when
    the disk turns read-only under a running server, the page and the queue stay up and a
    vote that cannot be stored says why (HTTP 503, one line) instead of a server error,
    and is taken once the disk is writable."""
    from clipminer.curate import review

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    with pytest.raises(UsageError, match=r"out: read-only folder, review\.sqlite cannot be"):
        review.create_app(out, reviewer="ann", rule=review.Rule())
    disk.read_only(False)
    app_ = review.create_app(out, reviewer="ann", rule=review.Rule())
    disk.read_only()
    client = TestClient(app_, base_url="http://127.0.0.1", raise_server_exceptions=False)
    assert client.get("/").status_code == 200
    queue = client.get("/api/queue")  # reading needs no writes
    assert queue.status_code == 200, queue.text
    first = queue.json()["clips"][0]
    vote = {"clip": first["key"], "action": "accept"}
    headers = {review.TOKEN_HEADER: app_.state.review.token}
    refused = client.post("/api/vote", json=vote, headers=headers)
    assert refused.status_code == 503, refused.text
    assert "review.sqlite" in refused.json()["error"]
    assert "read-only file system" in refused.json()["error"]
    disk.read_only(False)
    assert client.post("/api/vote", json=vote, headers=headers).status_code == 200


def test_fetch_videos_stops_on_a_full_disk_and_fetches_the_rest_later(
    site,  # noqa: F811 (the fixture imported above)
    videos,  # noqa: F811
    tmp_path: Path,
    disk: Disk,
) -> None:
    """The disk fills as the first download starts: the run stops with one line naming
    DIR, no item is recorded as failed, and a re-run once there is space fetches both."""
    from clipminer.sources.fetch import FetchConfig, fetch_videos

    site.files.update(one=videos["big"], two=videos["v1"])
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{site.url('one')}\n{site.url('two')}\n")
    out = disk.path / "fetched"

    def fill_at_start(event) -> None:
        if event.kind == "start":
            disk.fill()

    config = FetchConfig(label="misc", workers=1)
    with pytest.raises(OutputDiskError, match=f"{out}: no space left on the device"):
        fetch_videos(urls, out, config=config, on_event=fill_at_start)
    with sqlite3.connect(out / "fetch.sqlite") as db:
        assert db.execute("SELECT status FROM items").fetchall() == []
    _no_leftovers(disk.path)
    done = runner.invoke(app, ["fetch-videos", str(urls), "--out", str(out), "--label", "misc"])
    _one_line(done.output, str(out), "no space left on the device")
    disk.free()
    done = runner.invoke(app, ["fetch-videos", str(urls), "--out", str(out), "--label", "misc"])
    assert done.exit_code == 0, done.output
    assert (out / "misc" / "one.mp4").read_bytes() == videos["big"]
    assert (out / "misc" / "two.mp4").read_bytes() == videos["v1"]


def test_export_reads_the_votes_of_an_out_on_a_read_only_disk(
    tiny_models, tmp_path: Path, disk: Disk
) -> None:
    """An archived OUT, votes and all, on a disk mounted read-only: export reads the
    votes (SQLite cannot make its WAL index there) and writes the dataset elsewhere."""
    from clipminer.curate import catalog, verdicts
    from clipminer.curate.export import export

    folder = tmp_path / "in"
    make_videos(folder, 1)
    out = disk.path / "out"
    run_batch(folder, out, config=batch_config(tiny_models))
    clips = catalog.all_clips(out)
    assert clips, "the tiny models found nothing to vote on"
    with verdicts.connect(out) as con:
        for clip in clips:
            verdicts.cast(con, clip, "ann", "reject")
    verdicts.settle_rule(out, verdicts.RuleChoice(), who="ann")
    disk.read_only()
    report = export(out, tmp_path / "ds", splits=(1.0,), include="all", rejected_as="none")
    assert report.rule_source == "stored"
    assert report.selection.rejected == len(clips)
    assert report.counts["train"] == {"none": len(clips)}
