"""Fault injection for unattended runs (issue #28): each test makes one class of fault
happen for real where a test can (links, killed workers, OUT inside the input, typed
mistakes in nightly.toml, a FIFO), or injects the OSError at the layer that meets it
where it cannot (the tests run as root, so permissions do not stop a read), and checks
the invariants rather than one message: no traceback, the state agrees with the
folders, and a re-run ends where a clean run would."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipminer import batch as batch_module
from clipminer.batch import INFLIGHT_DIR, run_batch
from clipminer.cli import app
from clipminer.errors import ClipminerError, UsageError
from clipminer.layout import RUN_JSON

from .helpers import TINY_FLAGS, batch_config, make_videos, model_flags

runner = CliRunner()


def _rows(out: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(out / "state.sqlite") as db:
        rows = db.execute("SELECT path, status, output FROM videos").fetchall()
    return {Path(path).name: (status, output) for path, status, output in rows}


def _assert_state_agrees_with_folders(out: Path) -> None:
    """Every done row has a complete folder; every complete folder has a done row."""
    rows = _rows(out)
    done = {output for status, output in rows.values() if status == "done"}
    for output in done:
        assert (out / output / RUN_JSON).is_file(), output
    folders = {f"videos/{p.parent.name}" for p in (out / "videos").glob(f"*/{RUN_JSON}")}
    assert folders == done
    assert not [p for p in out.rglob("*") if p.name.endswith((".partial", ".old"))]


@pytest.mark.parametrize("workers", [1, 2])
def test_links_to_one_file_are_one_video_mined_once(
    tiny_models, tmp_path: Path, workers: int
) -> None:
    folder = tmp_path / "in"
    (video,) = make_videos(folder, 1)
    (folder / "again.mp4").symlink_to(video)
    os.link(video, folder / "hard link.mp4")
    out = tmp_path / "out"
    summary = run_batch(folder, out, config=batch_config(tiny_models, workers=workers))
    assert summary.done == 1 and summary.failed == 0
    assert len(list((out / "videos").iterdir())) == 1
    _assert_state_agrees_with_folders(out)
    again = run_batch(folder, out, config=batch_config(tiny_models, workers=workers))
    assert (again.done, again.already_done) == (0, 1)


def test_a_done_video_whose_folder_is_gone_is_mined_again(tiny_models, tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    make_videos(folder, 2)
    run_batch(folder, out, config=batch_config(tiny_models))
    (_, output) = _rows(out)["v1.mp4"]
    (out / output / RUN_JSON).unlink()  # a half-deleted folder
    summary = run_batch(folder, out, config=batch_config(tiny_models))
    assert (summary.done, summary.already_done) == (1, 1)
    _assert_state_agrees_with_folders(out)


def test_an_unreadable_video_costs_only_itself(
    tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    make_videos(folder, 2)
    real = batch_module.fingerprint

    def refuse(path: Path) -> str:  # root reads everything: inject the refusal
        if path.name == "v0.mp4":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(batch_module, "fingerprint", refuse)
    summary = run_batch(folder, out, config=batch_config(tiny_models))
    assert (summary.done, summary.failed) == (1, 1)
    (failed,) = [o for o in summary.outcomes if not o.ok]
    assert failed.error.endswith("v0.mp4: cannot read (Permission denied)")
    assert _rows(out)["v0.mp4"][0] == "failed"
    monkeypatch.setattr(batch_module, "fingerprint", real)  # the cause is gone
    run_batch(folder, out, config=batch_config(tiny_models, retry_failed=True))
    assert {status for status, _ in _rows(out).values()} == {"done"}
    _assert_state_agrees_with_folders(out)


def test_out_is_never_an_input(tiny_models, tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_videos(out, 1)  # the long videos live in OUT itself
    first = run_batch(out, out, config=batch_config(tiny_models))
    assert first.done == 1
    again = run_batch(out, out, config=batch_config(tiny_models))
    assert (again.done, again.failed) == (0, 0)  # its own clips were not mined
    with pytest.raises(UsageError, match="inside the output folder"):
        run_batch(out / "videos", out, config=batch_config(tiny_models))
    done = runner.invoke(app, ["batch", str(out / "videos"), "--out", str(out)])
    assert done.exit_code == 2 and "Traceback" not in done.output


def _kill_workers_mining(out: Path, name: str, times: int, stop: threading.Event) -> list[int]:
    """SIGKILL the worker process mining ``name`` (its pid is in its in-flight marker),
    ``times`` times, as the out-of-memory killer would."""
    killed: list[int] = []
    marker = out / INFLIGHT_DIR / name
    deadline = time.monotonic() + 240
    while len(killed) < times and not stop.is_set() and time.monotonic() < deadline:
        try:
            pid = int(marker.read_text())
        except (OSError, ValueError):
            time.sleep(0.02)
            continue
        if pid not in killed:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.02)
    return killed


@pytest.mark.parametrize("kills", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_killed_worker_costs_only_its_own_video(tiny_models, tmp_path: Path, kills: int) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    make_videos(folder, 3, seconds=12)
    stop = threading.Event()
    killed: list[int] = []
    watcher = threading.Thread(
        target=lambda: killed.extend(_kill_workers_mining(out, "v1", kills, stop)), daemon=True
    )
    watcher.start()
    try:
        summary = run_batch(folder, out, config=batch_config(tiny_models, workers=2))
    finally:
        stop.set()
        watcher.join(10)
    assert len(killed) == kills
    statuses = {name: status for name, (status, _) in _rows(out).items()}
    if kills == 1:  # retried once, in a new pool
        assert statuses == {"v0.mp4": "done", "v1.mp4": "done", "v2.mp4": "done"}
    else:
        assert statuses["v1.mp4"] == "failed"
        (failed,) = [o for o in summary.outcomes if not o.ok]
        assert "worker process died while mining it, twice" in failed.error
        assert statuses["v0.mp4"] == statuses["v2.mp4"] == "done"
    _assert_state_agrees_with_folders(out)
    assert (out / "summary.csv").is_file() and (out / "report.html").is_file()


def test_find_clips_on_a_fifo_does_not_wait(tiny_models, tmp_path: Path) -> None:
    fifo = tmp_path / "stream.mp4"
    os.mkfifo(fifo)
    args = ["find-clips", str(fifo), "--out", str(tmp_path / "out")]
    done = runner.invoke(app, [*args, *model_flags(tiny_models), *TINY_FLAGS])
    assert done.exit_code != 0 and "not a regular file" in done.output
    assert "Traceback" not in done.output


@pytest.mark.parametrize(
    ("table", "line", "said"),
    [
        ("batch", "input = 5", "[batch]: input must be a string, got 5"),
        ("batch", "output_root = 5", "[batch]: output_root must be a string"),
        ("batch", 'force = "false"', "[batch]: force must be true or false, got 'false'"),
        ("batch", 'workers = "2"', "[batch]: workers must be an integer >= 1"),
        ("batch", "workers = true", "[batch]: workers must be an integer >= 1"),
        ("batch", "workers = 0", "[batch]: workers must be an integer >= 1, got 0"),
        ("batch", 'video_models = "/x/video.pt"', "[batch]: video_models must be a list"),
        ("batch", 'engine = "cloud"', "[batch]: engine must be one of local, ray"),
        ("log", "file = 5", "[log]: file must be a string"),
        ("log", 'max_bytes = "big"', "[log]: max_bytes must be an integer >= 1"),
        ("night", "stages = 5", "[night]: stages must be a list of strings"),
        ("watch", 'candidates = "c.csv"\nactions = 5', "[watch]: actions must be a string"),
        ("dedup", 'space = "audio"', "[dedup]: space must be one of image, video"),
        ("dedup", 'threshold = "x"', "[dedup]: threshold must be a number"),
        ("dedup", "threshold = 7", "[dedup]: threshold must be a number >= 0 and <= 1"),
        ("findclips", 'threshold = "high"', "[findclips]"),
        ("findclips", "background_labels = 5", "[findclips]: background_labels must be a list"),
        (None, "batch = 5", "[batch] must be a table"),
    ],
)
def test_typed_mistakes_in_nightly_toml_are_one_line_before_any_work(
    tiny_models, tmp_path: Path, capsys: pytest.CaptureFixture[str], table, line, said
) -> None:
    from jobs import nightly

    folder = tmp_path / "in"
    make_videos(folder, 1)
    tables = {
        "batch": f'input = "{folder}"\noutput_root = "out"\nimage_model = "{tiny_models[0]}"',
        "findclips": 'device = "cpu"',
    }
    text = "" if table is not None else f"{line}\n"
    for name in ("batch", "findclips", "log", "night", "watch", "dedup"):
        body = tables.get(name, "")
        if name == table:
            key = line.split("=")[0].strip()
            body = "\n".join(x for x in body.splitlines() if not x.startswith(f"{key} "))
            body += f"\n{line}"
        if body.strip() and not (table is None and name == "batch"):
            text += f"[{name}]\n{body}\n"
    config = tmp_path / "nightly.toml"
    config.write_text(text)
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_CONFIG
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing was mined


def _nightly_config(tmp_path: Path, models: tuple[Path, Path], more: str) -> Path:
    """A nightly.toml over a folder of one video, mining into ``out``, plus ``more``."""
    folder = tmp_path / "in"
    make_videos(folder, 1)
    config = tmp_path / "nightly.toml"
    config.write_text(
        f'[batch]\ninput = "{folder}"\noutput_root = "out"\nimage_model = "{models[0]}"\n{more}\n'
    )
    return config


def test_nightly_refuses_a_missing_model_before_any_work(
    tiny_models, tmp_path: Path, capsys
) -> None:
    from jobs import nightly

    config = _nightly_config(tmp_path, tiny_models, 'video_models = ["/nonexistent/video.pt"]')
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_CONFIG
    assert "/nonexistent/video.pt: no such model file" in capsys.readouterr().err


def test_a_name_that_is_not_utf8_is_mined_listed_and_exported(tiny_models, tmp_path: Path) -> None:
    """Names are bytes: a Latin-1 name goes through batch (twice), find-clips, dedup and
    export, and lands in the CSVs as the same bytes."""
    folder, out = tmp_path / "in", tmp_path / "out"
    (video,) = make_videos(folder, 1)
    latin1 = Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9 \xff.mp4"))
    video.rename(latin1)
    first = run_batch(folder, out, config=batch_config(tiny_models))
    assert (first.done, first.failed) == (1, 0)
    again = run_batch(folder, out, config=batch_config(tiny_models))
    assert (again.done, again.already_done) == (0, 1)
    assert b"caf\xe9 \xff.mp4" in (out / "summary.csv").read_bytes()
    _assert_state_agrees_with_folders(out)
    args = ["find-clips", str(latin1), "--out", str(tmp_path / "o2")]
    alone = runner.invoke(app, [*args, *model_flags(tiny_models), *TINY_FLAGS])
    assert alone.exit_code == 0, alone.output
    for args in (["dedup", str(out)], ["export", str(out), "--out", str(tmp_path / "ds"),
                                        "--include", "all"]):  # fmt: skip
        done = runner.invoke(app, args)
        assert done.exit_code == 0 and "Traceback" not in done.output, done.output


class _Server:
    """A loopback HTTP server answering every GET with ``answer(path, headers)``:
    (status, headers, body bytes). It records what it was asked."""

    def __init__(self, answer) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                seen.append((self.path, dict(self.headers)))
                status, headers, body = answer(self.path, self.headers)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_the_api_key_never_follows_a_redirect_to_another_origin() -> None:
    from clipminer.sources.youtube import ApiError, DataApi

    elsewhere = _Server(lambda path, headers: (200, {}, b'{"items": []}'))
    api_server = _Server(lambda path, headers: (302, {"Location": f"{elsewhere.url}/x"}, b""))
    try:
        api = DataApi(api_server.url, "secret-key", timeout_seconds=5)
        with pytest.raises(ApiError, match="redirected to another origin"):
            api.search("q", {}, None)
        assert elsewhere.seen == []  # not even asked, so the key went nowhere
        assert api_server.seen[0][1].get("X-Goog-Api-Key") == "secret-key"
    finally:
        elsewhere.close()
        api_server.close()


def test_bad_items_from_the_api_cost_only_themselves_and_cut_json_is_named() -> None:
    import json as json_module

    from clipminer.sources.youtube import ApiError, DataApi

    items = [
        {"id": {"videoId": ["x"]}}, {"id": {"videoId": "../../etc"}}, {"id": "flat"},
        {"id": {"videoId": "good_id-01"}}, "not an object",
    ]  # fmt: skip
    good = _Server(lambda path, h: (200, {}, json_module.dumps({"items": items}).encode()))
    cut = _Server(lambda path, h: (200, {}, b'{"items": [{"id": {"vid'))
    try:
        found, token = DataApi(good.url, "k", timeout_seconds=5).search("q", {}, None)
        assert [i["id"]["videoId"] for i in found] == ["good_id-01"] and token is None
        with pytest.raises(ApiError, match="not a JSON object") as caught:
            DataApi(cut.url, "k", timeout_seconds=5).search("q", {}, None)
        assert "HTTP 200 (HTTP 200)" not in str(caught.value)
    finally:
        good.close()
        cut.close()


def test_a_bad_duration_in_the_candidates_file_costs_only_that_value(tmp_path: Path) -> None:
    from clipminer.sources.youtube import read_candidates

    path = tmp_path / "candidates.csv"
    path.write_text("action,youtube_id,duration_seconds\nrun,aaa,abc\nrun,bbb,61.5\nrun,ccc,\n")
    found = read_candidates(path)
    assert {k: c.duration_seconds for k, c in found.items()} == {
        "aaa": None, "bbb": 61.5, "ccc": None,
    }  # fmt: skip


def _streaming_server(announce: int | None, chunk: bytes, chunks: int, delay: float = 0.0):
    """A loopback server whose one file announces ``announce`` bytes (None: no length)
    and sends ``chunks`` chunks, then closes: it lies about size, or sends too much."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._headers()

        def _headers(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            if announce is not None:
                self.send_header("Content-Length", str(announce))
            self.end_headers()

        def do_GET(self) -> None:
            self._headers()
            try:
                for _ in range(chunks):
                    self.wfile.write(chunk)
                    time.sleep(delay)
            except OSError:
                pass  # the client stopped reading

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/big.mp4"


@pytest.mark.parametrize("announce", [100 * 1024**3, None])
def test_a_download_stops_at_the_byte_cap_whatever_the_server_says(
    tmp_path: Path, announce: int | None
) -> None:
    from clipminer.sources.fetch import FetchConfig, fetch_videos

    chunk = b"\0" * 65536
    httpd, url = _streaming_server(announce, chunk, chunks=2000)  # 125 MiB at most
    try:
        urls = tmp_path / "urls.txt"
        urls.write_text(url + "\n")
        started = time.monotonic()
        summary = fetch_videos(
            urls, tmp_path / "fetched", config=FetchConfig(max_bytes="2M", timeout_seconds=5)
        )
        assert time.monotonic() - started < 60
    finally:
        httpd.shutdown()
        httpd.server_close()
    (result,) = summary.results
    assert result.status == "too_long" and "max-filesize" in result.message
    written = sum(p.stat().st_size for p in (tmp_path / "fetched").rglob("*") if p.is_file())
    assert written < 8 * 1024**2  # the rest was never written


def test_a_folder_where_a_report_goes_is_refused_before_mining(tiny_models, tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    make_videos(folder, 1)
    (out / "summary.csv").mkdir(parents=True)
    done = runner.invoke(
        app, ["batch", str(folder), "--out", str(out), *model_flags(tiny_models), *TINY_FLAGS]
    )
    assert done.exit_code == 2 and "summary.csv: is a folder" in done.output
    assert "Traceback" not in done.output and not (out / "videos").exists()


def test_a_state_database_locked_by_another_process_is_one_line(
    tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    make_videos(folder, 1)
    run_batch(folder, out, config=batch_config(tiny_models))
    monkeypatch.setattr(batch_module, "LOCK_WAIT_SECONDS", 0.2)
    holder = sqlite3.connect(out / "state.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a backup tool, a person with the sqlite3 shell
    try:
        done = runner.invoke(
            app, ["batch", str(folder), "--out", str(out), *model_flags(tiny_models), *TINY_FLAGS]
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert done.exit_code == 3 and "state.sqlite: locked by another process" in done.output
    assert "Traceback" not in done.output
    again = run_batch(folder, out, config=batch_config(tiny_models))  # the lock is gone
    assert again.already_done == 1


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_is_one_line_naming_out_with_nothing_half_written(
    tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Injected at the write layer (a real full or read-only mount needs privileges the
    test cannot count on): find-clips names OUT's folder, leaves no hidden partial, and
    a re-run once the disk is fine ends as a clean run."""
    from clipminer.layout import SEGMENTS_CSV
    from clipminer.mining import outputs

    (video,) = make_videos(tmp_path / "in", 1)
    out = tmp_path / "out"
    real = outputs.write_segments

    def full(folder: Path, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(folder / SEGMENTS_CSV))

    monkeypatch.setattr(outputs, "write_segments", full)
    args = ["find-clips", str(video), "--out", str(out), *model_flags(tiny_models), *TINY_FLAGS]
    done = runner.invoke(app, args)
    assert done.exit_code == 1 and "Traceback" not in done.output
    why = "no space left on the device" if code == errno.ENOSPC else "read-only file system"
    assert f"segments.csv: {why}" in done.output and str(out) in done.output
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and "partial" in p.name]
    monkeypatch.setattr(outputs, "write_segments", real)
    assert runner.invoke(app, args).exit_code == 0
    assert (out / "videos" / "v0" / RUN_JSON).is_file()


def test_an_unreadable_sub_folder_is_named_not_skipped_silently(
    tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    make_videos(folder, 1)
    (folder / "locked").mkdir()
    real_walk = os.walk

    def walk(top, onerror=None, **kw):  # root lists every folder: inject the refusal
        for here, dirs, files in real_walk(top, onerror=onerror, **kw):
            if Path(here).name == "locked":
                onerror(PermissionError(13, "Permission denied", here))
                dirs[:] = []
                continue
            yield here, dirs, files

    monkeypatch.setattr(batch_module.os, "walk", walk)
    with caplog.at_level("WARNING"):
        summary = run_batch(folder, out, config=batch_config(tiny_models))
    assert summary.done == 1
    assert "locked: cannot list (Permission denied)" in caplog.text


def test_export_cleans_what_a_killed_export_left(tiny_models, tmp_path: Path) -> None:
    from clipminer.fsutil import short_hash

    folder, out = tmp_path / "in", tmp_path / "out"
    make_videos(folder, 1)
    run_batch(folder, out, config=batch_config(tiny_models))
    dataset = tmp_path / "ds"
    leftover = tmp_path / f".export-{short_hash(dataset.name)}.x1y2.partial"  # SIGTERM's
    (leftover / "train").mkdir(parents=True)
    done = runner.invoke(app, ["export", str(out), "--out", str(dataset), "--include", "all"])
    assert done.exit_code == 0, done.output
    assert not leftover.exists()
    assert not list(tmp_path.glob(".export-*"))


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_out_deleted_during_a_run_stops_it_with_one_line(
    tiny_models, tmp_path: Path, workers: int
) -> None:
    import shutil

    folder, out = tmp_path / "in", tmp_path / "out"
    make_videos(folder, 4)
    deleted = []

    def delete_out(outcome) -> None:
        if not deleted:
            shutil.rmtree(out)  # someone cleans up the disk mid-run
            deleted.append(outcome.path)

    with pytest.raises(ClipminerError, match="deleted or replaced during the run"):
        run_batch(
            folder, out, config=batch_config(tiny_models, workers=workers), on_outcome=delete_out
        )
    assert deleted
    # a new run mines everything into a fresh OUT, with its state
    summary = run_batch(folder, out, config=batch_config(tiny_models))
    assert summary.done + summary.already_done == 4
    _assert_state_agrees_with_folders(out)


@pytest.mark.parametrize("command", ["dedup", "export", "batch"])
def test_a_full_disk_is_one_line_for_every_command(
    tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """Every file clipminer writes goes through a temporary name and a rename: make that
    rename fail as a full disk does (injected: the tests cannot fill a real mount)."""
    folder, out = tmp_path / "in", tmp_path / "out"
    make_videos(folder, 1)
    run_batch(folder, out, config=batch_config(tiny_models))
    make_videos(folder, names=["later.mp4"])
    real = Path.replace

    def full(self: Path, target) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(Path, "replace", full)
    args = {
        "dedup": ["dedup", str(out)],
        "export": ["export", str(out), "--out", str(tmp_path / "ds"), "--include", "all"],
        "batch": ["batch", str(folder), "--out", str(out), *model_flags(tiny_models), *TINY_FLAGS],
    }[command]
    done = runner.invoke(app, args)
    assert done.exit_code != 0 and "Traceback" not in done.output
    assert "no space left on" in done.output.lower()
    monkeypatch.setattr(Path, "replace", real)
    assert runner.invoke(app, args).exit_code == 0  # space freed: it goes on


def test_ctrl_c_stops_fetch_videos_within_seconds(tmp_path: Path) -> None:
    import subprocess
    import sys

    httpd, url = _streaming_server(None, b"\0" * 65536, chunks=2000, delay=0.05)  # 100 s
    try:
        urls = tmp_path / "urls.txt"
        urls.write_text(url + "\n")
        process = subprocess.Popen(
            [sys.executable, "-m", "clipminer", "fetch-videos", str(urls),
             "--out", str(tmp_path / "fetched")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until bytes arrive
            if any(p.is_file() and p.stat().st_size for p in (tmp_path / "fetched").rglob("*")):
                break
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        output, _ = process.communicate(timeout=30)
        stopped_in = time.monotonic() - started
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert stopped_in < 10, stopped_in
    assert process.returncode != 0 and "Traceback" not in output, output
    finished = [p for p in (tmp_path / "fetched").rglob("*") if p.is_file()
                and ".fetching" not in p.parts and p.name != "fetch.sqlite"
                and not p.name.startswith(("fetch.sqlite", ".fetch.lock"))]  # fmt: skip
    assert finished == []  # only the hidden staging holds bytes, for the next run to resume


def test_a_stage_that_crashes_costs_only_itself_in_the_night(
    tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from jobs import nightly

    config = _nightly_config(
        tmp_path, tiny_models, '[findclips]\ndevice = "cpu"\n[watch]\ncandidates = "candidates.csv"'
    )

    def broken(watch):  # a server's answer the stage did not expect
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(nightly, "run_search", broken)
    assert nightly.main(["--config", str(config)]) == nightly.EXIT_FAILED_VIDEOS
    night = json.loads((tmp_path / "out" / "night.json").read_text())
    stages = {s["name"]: s for s in night["stages"]}
    assert stages["search"]["status"] == "failed" and "TypeError" in stages["search"]["detail"]
    assert stages["mine"]["status"] == "ok" and "1 done" in stages["mine"]["detail"]


def test_review_shows_and_takes_votes_on_a_clip_whose_source_name_is_not_utf8(
    tiny_models, tmp_path: Path
) -> None:
    import warnings

    from clipminer.curate import review

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    folder, out = tmp_path / "in", tmp_path / "out"
    (video,) = make_videos(folder, 1)
    video.rename(Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.mp4")))
    run_batch(folder, out, config=batch_config(tiny_models))
    app_ = review.create_app(out, reviewer="ann", rule=review.Rule())
    client = TestClient(app_, base_url="http://127.0.0.1")
    assert client.get("/").status_code == 200
    queue = client.get("/api/queue")
    assert queue.status_code == 200, queue.text
    clips = queue.json()["clips"]
    assert clips, "the clips of the Latin-1 video are listed"
    first = clips[0]
    assert client.get(f"/clips/{first['key']}").status_code == 200
    token = app_.state.review.token
    vote = client.post(
        "/api/vote",
        json={"clip": first["key"], "action": "accept"},
        headers={review.TOKEN_HEADER: token},
    )
    assert vote.status_code == 200, vote.text
