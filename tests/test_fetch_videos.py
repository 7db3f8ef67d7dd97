"""fetch-videos: yt-dlp's generic extractor against generated mp4 files on 127.0.0.1.

The server plays every part a video site plays for the downloader: whole files with
byte ranges, a 404, a truncated body, bytes that are not a video, an HTTP 429 and a
slow download to kill -9 in the middle of.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipminer.cli import app
from clipminer.data.videos import scan_video_folder
from clipminer.decode import probe
from clipminer.errors import UsageError
from clipminer.sources import fetch as fetch_mod
from clipminer.sources.fetch import FetchConfig, classify, clean_message, ydl_options
from clipminer.sources.inputs import FetchItem, read_items, video_url
from clipminer.synth import make_long_video

pytest.importorskip("yt_dlp")

runner = CliRunner()
needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="time ranges need the ffmpeg program"
)
FPS = 15
SECONDS = 4.0


# -- the fake media site -----------------------------------------------------------------


@dataclass
class MediaSite:
    """What the server serves: ``/v/<name>.mp4`` -> a behaviour, and its hit counts."""

    files: dict[str, bytes] = field(default_factory=dict)
    behaviour: dict[str, str] = field(default_factory=dict)
    """name -> file (default), 404, truncated, notvideo, 429, slow."""
    hits: collections.Counter[str] = field(default_factory=collections.Counter)
    ranges: list[tuple[str, str]] = field(default_factory=list)
    """(name, Range header) of every request that asked for a byte range."""
    release: threading.Event = field(default_factory=threading.Event)
    """Lets a ``slow`` download finish."""
    port: int = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/v/{name}.mp4"

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/v/{{id}}.mp4"


def _handler(site: MediaSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, *, body: bool) -> None:
            name = self.path.rsplit("/", 1)[-1].removesuffix(".mp4")
            site.hits[name] += 1
            kind = site.behaviour.get(name, "file")
            data = site.files.get(name, b"")
            if kind == "404" or (kind == "file" and not data):
                return self._status(404)
            if kind == "429":
                return self._status(429, {"Retry-After": "0"})
            if kind == "notvideo":
                data = b"\x00not a video at all\xff" * 500
            start = self._range_start() if kind in ("file", "slow") else 0
            self.send_response(206 if start else 200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return None
            if kind == "truncated":
                self.wfile.write(data[: len(data) // 2])
                self.close_connection = True
                return None
            if kind == "slow":  # half now, the rest when released (or after 20 s)
                middle = max(start, len(data) // 2)
                self.wfile.write(data[start:middle])
                self.wfile.flush()
                site.release.wait(20)
                start = middle
            self.wfile.write(data[start:])
            return None

        def _range_start(self) -> int:
            header = self.headers.get("Range", "")
            if header:
                site.ranges.append((self.path.rsplit("/", 1)[-1], header))
            if header.startswith("bytes=") and header[6:].split("-")[0].isdigit():
                return int(header[6:].split("-")[0])
            return 0

        def _status(self, code: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-body (a kill, a truncation test) is no error here."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Generated videos as bytes: v1, v2 (64x48, 15 fps, 4 s), big (320x240, 8 s, > 32 KB)."""
    root = tmp_path_factory.mktemp("media")
    data = {}
    for seed in (1, 2):
        path = root / f"v{seed}.mp4"
        make_long_video(path, duration_seconds=SECONDS, size=(48, 64), fps=FPS, seed=seed)
        data[f"v{seed}"] = path.read_bytes()
    make_long_video(root / "big.mp4", duration_seconds=8, size=(240, 320), fps=FPS, seed=3)
    data["big"] = (root / "big.mp4").read_bytes()
    return data


@pytest.fixture
def site(videos: dict[str, bytes]) -> Iterator[MediaSite]:
    """A media site on 127.0.0.1 serving ``videos`` under any name mapped to them."""
    media = MediaSite()
    server = _QuietServer(("127.0.0.1", 0), _handler(media))
    media.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield media
    media.release.set()
    server.shutdown()
    server.server_close()


def _fetch(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["fetch-videos", *args])
    return result.exit_code, result.output


def _register(out: Path) -> dict[str, tuple[str, str, str]]:
    with contextlib.closing(sqlite3.connect(out / "fetch.sqlite")) as db:
        rows = db.execute("SELECT key, status, message, path FROM items").fetchall()
    return {key: (status, message, path) for key, status, message, path in rows}


def _visible_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(folder).parts
        )
    )  # fmt: skip


# -- pure parts ------------------------------------------------------------------------------


def test_inputs_are_recognised_and_named(tmp_path: Path) -> None:
    template = "http://127.0.0.1:1/v/{id}.mp4"
    kinetics = tmp_path / "k.csv"
    kinetics.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "riding bike,abc,10,20,train\nriding bike,abc,10,20,train\nswim/ming,x y,1.5,3,val\n"
    )
    kind, items = read_items(kinetics, url_template=template)
    assert kind == "kinetics" and [i.key for i in items] == [
        "abc_000010_000020",
        "x y_000001.500_000003",
    ]
    assert items[0].stem() == "abc_000010_000020" and items[1].url.endswith("/x%20y.mp4")
    candidates = tmp_path / "c.csv"
    candidates.write_text("action,query,youtube_id,title\nsurfing|diving,q,zzz,t\n")
    kind, items = read_items(candidates, url_template=template)
    assert kind == "candidates" and items[0].label == "surfing" and not items[0].has_range
    urls = tmp_path / "u.txt"
    urls.write_text("# comment\nhttp://127.0.0.1:1/a.mp4\nwaving\thttp://127.0.0.1:1/b.mp4\n")
    kind, items = read_items(urls, url_template=template, label="misc")
    assert kind == "urls" and [i.label for i in items] == ["misc", "waving"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("label,youtube_id,time_start,time_end\na,x,5,2\n", "k.csv:2: time_end 2 is not after"),
        ("label,youtube_id,time_start,time_end\na,,1,2\n", "k.csv:2: empty youtube_id"),
        ("label,youtube_id,time_start,time_end\na,x,one,2\n", "k.csv:2: time_start must be"),
        ("youtube_id,title\nx,y\n", "needs either time_start,time_end"),
        ("ftp://127.0.0.1/x.mp4\n", "k.csv:1: expected an http(s) URL"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "k.csv").write_text(text)
    with pytest.raises(UsageError, match=r"k\.csv") as caught:
        read_items(tmp_path / "k.csv", url_template="http://127.0.0.1:1/{id}")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_ids_are_quoted_into_the_template_only() -> None:
    assert (
        video_url("http://h/{id}.mp4", "a/../b?c={id}") == "http://h/a%2F..%2Fb%3Fc%3D%7Bid%7D.mp4"
    )
    with pytest.raises(UsageError, match="must contain"):
        video_url("http://h/x.mp4", "a")


@pytest.mark.parametrize(
    ("message", "status"),
    [  # yt-dlp's messages, shortened
        ("ERROR: [youtube] x: Private video. Sign in if you've been granted access", "private"),
        ("ERROR: [youtube] x: Video unavailable. This video has been removed", "removed"),
        ("ERROR: [youtube] x: Video unavailable. This video is private", "private"),
        ("ERROR: [youtube] x: Sign in to confirm your age", "age_restricted"),
        ("ERROR: [youtube] x: not made this video available in your country", "geo_blocked"),
        ("ERROR: [youtube] x: Video unavailable", "unavailable"),
        ("ERROR: [generic] x: HTTP Error 404: Not Found", "unavailable"),
        ("ERROR: unable to download video data: HTTP Error 429: Too Many Requests", "rate_limited"),
        ("ERROR: [youtube] x: removed for violating YouTube's policy", "removed"),
        ("ERROR: unable to download video data: <urlopen error timed out>", "error"),
    ],
)  # fmt: skip
def test_yt_dlp_messages_are_classified(message: str, status: str) -> None:
    assert classify(message) == status
    assert not clean_message(message).startswith("ERROR")


def test_options_fetch_ranges_exactly_and_quietly(tmp_path: Path) -> None:
    item = FetchItem("a_1_2", "http://127.0.0.1:1/a", "x", "a", 1.0, 2.5)
    options = ydl_options(item, tmp_path, FetchConfig(max_height=480, rate_limit="2M"))
    assert options["force_keyframes_at_cuts"] is True
    assert options["download_ranges"]({}, None) == [{"start_time": 1.0, "end_time": 2.5}]
    assert "height<=?480" in options["format"] and options["ratelimit"] == 2 * 1024**2
    assert options["paths"]["home"] == str(tmp_path) and options["quiet"]
    whole = ydl_options(FetchItem("a", "http://127.0.0.1:1/a", "x", "a"), tmp_path, FetchConfig())
    assert "download_ranges" not in whole and "ratelimit" not in whole


def test_match_filter_refuses_long_and_live_videos() -> None:
    config = FetchConfig(max_duration_seconds=60)
    whole = FetchItem("a", "http://127.0.0.1:1/a", "x", "a")
    seen = fetch_mod._Filtered()
    check = fetch_mod._match_filter(whole, config, seen)
    assert check({"duration": 30}) is None and seen.status is None
    assert "longer than" in (check({"duration": 90}) or "") and seen.status == "too_long"
    ranged = FetchItem("a_1_2", "http://127.0.0.1:1/a", "x", "a", 1.0, 2.0)
    assert fetch_mod._match_filter(ranged, config, fetch_mod._Filtered())({"duration": 90}) is None
    live = fetch_mod._Filtered()
    assert fetch_mod._match_filter(whole, config, live)({"live_status": "is_live"})
    assert live.status == "unavailable"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        FetchConfig(rate_limit="fast")
    with pytest.raises(ValueError, match="must contain"):
        FetchConfig(url_template="http://127.0.0.1:1/x")
    code, output = _fetch("missing.csv", "--out", "o")
    assert code == 2 and "missing.csv: cannot read" in output


# -- against the local site ---------------------------------------------------------------------


@needs_ffmpeg
def test_kinetics_ranges_are_cut_exactly_and_failures_registered(
    site: MediaSite, videos: dict[str, bytes], tmp_path: Path
) -> None:
    site.files.update(good1=videos["v1"], good2=videos["v2"], trunc=videos["v1"])
    site.behaviour.update(missing="404", trunc="truncated", junk="notvideo")
    csv = tmp_path / "kinetics.csv"
    csv.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "riding bike,good1,0.5,2,train\n"
        "swimming,good2,1,3.2,train\n"
        "swimming,missing,0,1,train\n"
        "swimming,trunc,0,1,val\n"
        "swimming,junk,0,1,val\n"
    )
    out = tmp_path / "out"
    args = [str(csv), "--out", str(out), "--url-template", site.template, "--retries", "0"]
    code, output = _fetch(*args, "--workers", "2")
    assert code == 1, output  # transient failures: a rerun retries them
    register = _register(out)
    assert register["good1_000000.500_000002"][0] == "ok"
    assert register["good2_000001_000003.200"][0] == "ok"
    assert register["missing_000000_000001"][0] == "unavailable"
    assert "404" in register["missing_000000_000001"][1]
    assert register["trunc_000000_000001"][0] == "error"
    assert register["junk_000000_000001"][0] == "error"
    for key, (start, end) in {"good1_000000.500_000002": (0.5, 2.0),
                              "good2_000001_000003.200": (1.0, 3.2)}.items():  # fmt: skip
        info = probe(out / register[key][2])
        assert info.duration_seconds is not None
        assert abs(info.duration_seconds - (end - start)) <= 1 / FPS + 1e-6, (key, info)
        assert info.codec == "h264" and info.width == 64
    assert _visible_files(out) == sorted(
        [out / "fetch.sqlite", out / "riding bike" / "good1_000000.500_000002.mp4",
         out / "swimming" / "good2_000001_000003.200.mp4"]
    )  # fmt: skip
    assert "2 fetched now" in output and "unavailable: missing_000000_000001" in output
    # A rerun skips done and permanently gone items and retries the transient ones.
    before = collections.Counter(site.hits)
    code, output = _fetch(*args, "--workers", "1")
    assert code == 1
    assert site.hits["good1"] == before["good1"] and site.hits["missing"] == before["missing"]
    assert site.hits["trunc"] > before["trunc"] and site.hits["junk"] > before["junk"]
    assert "2 already done, 1 known unavailable" in output
    # The folder is a train-video --videos tree as it is.
    labels, items, _ = scan_video_folder(out)
    assert labels == ("riding bike", "swimming") and len(items) == 2


def test_url_list_and_candidates_fetch_whole_files(
    site: MediaSite, videos: dict[str, bytes], tmp_path: Path
) -> None:
    site.files.update(whole=videos["v2"], cand=videos["v1"])
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{site.url('whole')}\n")
    out = tmp_path / "out"
    code, output = _fetch(str(urls), "--out", str(out), "--label", "misc")
    assert code == 0, output
    fetched = out / "misc" / "whole.mp4"
    assert fetched.read_bytes() == videos["v2"]  # a whole mp4 is kept byte for byte
    candidates = tmp_path / "candidates.csv"
    candidates.write_text("action,query,youtube_id\nhigh jump|long jump,high jump,cand\n")
    code, output = _fetch(str(candidates), "--out", str(out), "--url-template", site.template)
    assert code == 0, output
    assert probe(out / "high jump" / "cand.mp4").duration_seconds == pytest.approx(SECONDS, abs=0.1)
    assert not (out / ".fetching").exists() or not any((out / ".fetching").iterdir())


def test_rate_limiting_backs_off_then_stops_cleanly(
    site: MediaSite, videos: dict[str, bytes], tmp_path: Path
) -> None:
    for name in ("r1", "r2", "r3", "r4"):
        site.files[name] = videos["v1"]
    site.behaviour["r2"] = "429"
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"{site.url(n)}\n" for n in ("r1", "r2", "r3", "r4")))
    out = tmp_path / "out"
    args = [str(urls), "--out", str(out), "--workers", "1", "--backoff-seconds", "0.05"]
    code, output = _fetch(*args, "--backoff-retries", "2")
    assert code == 4, output
    assert "rate limited (HTTP 429)" in output and "2 left for a later run" in output
    assert site.hits["r2"] >= 3  # the first try and two waits
    assert site.hits["r3"] == 0 and site.hits["r4"] == 0  # nothing new started
    statuses = {k.rsplit("/", 1)[-1]: v[0] for k, v in _register(out).items()}
    assert statuses == {"r1.mp4": "ok", "r2.mp4": "rate_limited"}
    site.behaviour.pop("r2")
    r1_hits = site.hits["r1"]
    code, output = _fetch(*args)
    assert code == 0, output
    assert len(list((out / "unlabelled").glob("*.mp4"))) == 4
    assert site.hits["r1"] == r1_hits  # done before: not asked for again


def test_a_second_run_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/x.mp4\n")
    out = tmp_path / "out"
    out.mkdir()
    with fetch_mod.fetch_lock(out):
        code, output = _fetch(str(urls), "--out", str(out))
    assert code == 3 and "another fetch-videos run" in output


def test_kill_9_mid_download_leaves_no_whole_looking_file(
    site: MediaSite, videos: dict[str, bytes], tmp_path: Path
) -> None:
    big = videos["big"]
    assert len(big) > 32 * 1024  # half of it is more than a file buffer: it reaches the disk
    site.files["slow"] = big
    site.behaviour["slow"] = "slow"
    csv = tmp_path / "c.csv"
    csv.write_text("action,query,youtube_id\nwaving,waving,slow\n")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "clipminer", "fetch-videos", str(csv), "--out", str(out),
               "--url-template", site.template]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        partial: list[Path] = []
        while time.monotonic() < deadline and not partial:
            time.sleep(0.1)
            partial = [p for p in (out / ".fetching").rglob("*.part") if p.stat().st_size]
        assert partial, "the download never started"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert _visible_files(out) == [out / "fetch.sqlite"]  # nothing that looks like a video
    assert "slow" not in _register(out)
    site.behaviour["slow"] = "file"
    site.release.set()
    code, output = _fetch(str(csv), "--out", str(out), "--url-template", site.template)
    assert code == 0, output
    assert (out / "waving" / "slow.mp4").read_bytes() == big
    assert any(
        name == "slow.mp4" and not header.startswith("bytes=0-") for name, header in site.ranges
    )
    assert _register(out)["slow"][0] == "ok"


@needs_ffmpeg
def test_kinetics_round_trip_into_train_video(
    site: MediaSite, videos: dict[str, bytes], tmp_path: Path
) -> None:
    """fetch-videos on a Kinetics CSV, then train-video --videos on its folder, as it is."""
    site.files.update(a=videos["v1"], b=videos["v2"])
    csv = tmp_path / "kinetics.csv"
    csv.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "bouncing,a,0,1.5,train\nbouncing,a,2,3.5,train\n"
        "spinning,b,0,1.5,train\nspinning,b,2,3.5,train\n"
    )
    out = tmp_path / "kinetics"
    code, output = _fetch(str(csv), "--out", str(out), "--url-template", site.template)
    assert code == 0, output
    model = tmp_path / "video.pt"
    result = runner.invoke(
        app,
        ["train-video", "--videos", str(out), "--arch", "small3d", "--out", str(model),
         "--clip-len", "2", "--frame-rate", "4", "--frame-size", "32", "--epochs", "1",
         "--batch-size", "2", "--workers", "0", "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    from clipminer.models.bundle import load_bundle

    assert load_bundle(model, kind="video").labels == ("bouncing", "spinning")


def test_help_explains_every_option() -> None:
    fetch_help = runner.invoke(app, ["fetch-videos", "--help"], terminal_width=100).output
    for option in ("--url-template", "--max-height", "--workers", "--rate-limit", "--cookies",
                   "--max-duration", "--max-videos", "--backoff-seconds", "sqlite"):  # fmt: skip
        assert option in fetch_help, option
    search_help = runner.invoke(app, ["search-videos", "--help"], terminal_width=100).output
    for option in ("--api-key", "--api-url", "--per-action", "--query-template", "--duration",
                   "--license", "--published-after", "--published-before", "--region",
                   "--language", "--safe-search", "YOUTUBE_API_KEY", "quota"):  # fmt: skip
        assert option in search_help, option
