"""The scraper against hostile hosts, without Chromium: servers on 127.0.0.x only.

Trickled headers and bodies, Retry-After: 3600, redirects to other loopback hosts,
refused schemes, pathological action names, and memory with many large images. The
search pages are read with requests instead of a browser (``scrapers.driver`` is
patched); everything else is the real scraper.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import ipaddress
import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import requests
from PIL import Image

pytest.importorskip("imagehash")
pytest.importorskip("bs4")

import scrapers.driver
from clipminer.errors import UsageError
from scrapers.download import (
    Download,
    DownloadConfig,
    Downloader,
    IPAddress,
    address_refusal,
    resolve_host,
)
from scrapers.scrape import ScrapeConfig, action_folders, scrape

pytestmark = pytest.mark.timeout(120)
TRICKLE_SECONDS = 0.2
"""Between two bytes of a trickling host."""


def _png(seed: int, size: tuple[int, int] = (96, 128)) -> bytes:
    """A blocky random image: distinct seeds give distinct perceptual hashes."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    pixels = np.kron(small, np.ones((size[0] // 8, size[1] // 8, 1), np.uint8))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


# -- a scriptable server on 127.0.0.x ------------------------------------------------------

Route = Callable[["_Handler"], None]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        self.server.hits[path] += 1
        route = self.server.routes.get(path)
        if route is None:
            return self.send(404, b"no", "text/plain")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
            route(self)

    def send(self, status: int, body: bytes, kind: str = "image/png", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send(302, b"", "text/plain", Location=location)

    def trickle(self, data: bytes, limit: int = 100) -> None:
        """Write ``data`` a byte at a time (at most ``limit`` bytes, so it always ends)."""
        for byte in data[:limit]:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(TRICKLE_SECONDS)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    hits: Counter[str]


@contextlib.contextmanager
def _serve(routes: dict[str, Route], host: str = "127.0.0.1") -> Iterator[_Server]:
    server = _Server((host, 0), _Handler)
    server.routes, server.hits = routes, Counter()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _url(server: _Server, path: str) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}{path}"


def _within(seconds: float, work: Callable[[], Download]) -> tuple[Download, float]:
    """Run ``work`` in a daemon thread; fail if it is not done in ``seconds``."""
    box: list[Download] = []
    thread = threading.Thread(target=lambda: box.append(work()), daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still downloading after {seconds} s"
    return box[0], time.monotonic() - start


def _config(**kw: Any) -> DownloadConfig:
    return DownloadConfig(polite_seconds=0, allowed_hosts=frozenset({"127.0.0.1"}), **kw)


# -- 14: the deadline and Retry-After -------------------------------------------------------


def _trickled_body(handler: _Handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    handler.trickle(_png(1))


def _trickled_headers(handler: _Handler) -> None:
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    handler.trickle(b"a" * 100)


@pytest.mark.parametrize("path", ["/trickled-body", "/trickled-headers"])
def test_a_trickling_host_is_cut_off_at_the_deadline(tmp_path: Path, path: str) -> None:
    routes = {"/trickled-body": _trickled_body, "/trickled-headers": _trickled_headers}
    with _serve(routes) as server:
        downloader = Downloader(tmp_path, _config(deadline_seconds=1.0, read_timeout_seconds=5))
        result, seconds = _within(15, lambda: downloader.download(_url(server, path), "x", "x"))
    assert result.status == "timeout", result
    assert _url(server, path) in result.error and "1 s" in result.error
    assert seconds < 4.0
    assert list(tmp_path.iterdir()) == []


def test_a_trickled_tls_handshake_is_cut_off_too(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def trickle() -> None:
            client, _ = listener.accept()
            with client, contextlib.suppress(OSError):
                for _ in range(100):  # a TLS record header that never completes
                    client.send(b"\x16")
                    time.sleep(TRICKLE_SECONDS)

        threading.Thread(target=trickle, daemon=True).start()
        url = f"https://127.0.0.1:{listener.getsockname()[1]}/x.png"
        downloader = Downloader(tmp_path, _config(deadline_seconds=1.0, read_timeout_seconds=5))
        result, seconds = _within(15, lambda: downloader.download(url, "x", "x"))
    assert result.status == "timeout" and url in result.error, result
    assert seconds < 3.0


def test_a_long_retry_after_is_not_waited_for(tmp_path: Path) -> None:
    def too_many(handler: _Handler) -> None:
        handler.send(429, b"slow down", "text/plain", Retry_After="3600")

    with _serve({"/busy.png": too_many}) as server:
        downloader = Downloader(tmp_path, _config())
        result, seconds = _within(
            15, lambda: downloader.download(_url(server, "/busy.png"), "x", "x")
        )
    assert result.status == "blocked" and "3600 s" in result.error, result
    assert seconds < 2.0
    assert server.hits["/busy.png"] == 1  # no retry slept through it either


def test_a_short_retry_after_is_waited_out(tmp_path: Path) -> None:
    def busy_once(handler: _Handler) -> None:
        if handler.server.hits["/once.png"] == 1:
            return handler.send(429, b"", "text/plain", Retry_After="1")
        handler.send(200, _png(2))

    with _serve({"/once.png": busy_once}) as server:
        downloader = Downloader(tmp_path, _config(max_retry_after_seconds=2))
        result, seconds = _within(
            15, lambda: downloader.download(_url(server, "/once.png"), "x", "x")
        )
    assert result.status == "ok", result
    assert 1.0 <= seconds < 3.0 and server.hits["/once.png"] == 2


# -- 16: where requests and redirects may go ------------------------------------------------


def test_every_redirect_hop_is_checked(tmp_path: Path) -> None:
    image = _png(3)
    with _serve({"/img.png": lambda h: h.send(200, image)}, host="127.0.0.2") as other:
        target = _url(other, "/img.png")
        routes: dict[str, Route] = {
            "/to-other.png": lambda h: h.redirect(target),
            "/hop.png": lambda h: h.redirect("/to-other.png"),
            "/to-file.png": lambda h: h.redirect("file:///etc/passwd"),
            "/to-name.png": lambda h: h.redirect(target.replace("127.0.0.2", "images.test")),
            "/loop.png": lambda h: h.redirect("/loop.png"),
        }
        with _serve(routes) as engine:
            downloader = Downloader(tmp_path, _config())
            for path in ("/to-other.png", "/hop.png"):
                refused = downloader.download(_url(engine, path), "x", "x")
                assert refused.status == "http_error", refused
                assert refused.error.startswith("refused: ") and "127.0.0.2" in refused.error
                assert "loopback" in refused.error and _url(engine, path) in refused.error
            direct = downloader.download(target, "x", "x")
            assert direct.status == "http_error" and "loopback" in direct.error
            assert other.hits["/img.png"] == 0

            to_file = downloader.download(_url(engine, "/to-file.png"), "x", "x")
            assert to_file.status == "http_error" and "only http(s)" in to_file.error

            def fake_dns(host: str) -> list[IPAddress]:
                if host == "images.test":
                    return [ipaddress.ip_address("127.0.0.3")]
                return resolve_host(host)

            named = Downloader(tmp_path, _config(), resolve=fake_dns)
            by_name = named.download(_url(engine, "/to-name.png"), "x", "x")
            assert "images.test is 127.0.0.3, a loopback address" in by_name.error

            def no_dns(host: str) -> list[IPAddress]:
                raise OSError(f"no such host {host}")

            unresolved = Downloader(tmp_path, DownloadConfig(polite_seconds=0), resolve=no_dns)
            failed = unresolved.download(_url(engine, "/hop.png"), "x", "x")
            assert failed.status == "http_error" and "cannot resolve 127.0.0.1" in failed.error

            loop = downloader.download(_url(engine, "/loop.png"), "x", "x")
            assert loop.status == "http_error" and "more than 5 redirects" in loop.error
            assert engine.hits["/loop.png"] == 6

            allowing = Downloader(tmp_path, _config(allow_private_addresses=True))
            assert allowing.download(_url(engine, "/hop.png"), "x", "x").status == "ok"
            assert other.hits["/img.png"] == 1


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.2", "loopback"),
        ("::", "unspecified"),
    ],
)
def test_address_refusal(address: str, kind: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == kind


# -- the scraper end to end, with requests instead of a browser -----------------------------


@pytest.fixture
def no_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Search pages are fetched with requests; the rest of the scraper is unchanged."""

    @contextlib.contextmanager
    def chromium(**kwargs: Any) -> Iterator[requests.Session]:
        with requests.Session() as session:
            yield session

    def load(driver: requests.Session, url: str, *, scrolls: int = 0) -> str:
        return driver.get(url, timeout=10).text

    monkeypatch.setattr(scrapers.driver, "chromium", chromium)
    monkeypatch.setattr(scrapers.driver, "load", load)


def _results(*hrefs: str) -> bytes:
    rows = "".join(
        f'<a class="result" href="{h}" data-page="https://site.test/p">r</a>' for h in hrefs
    )
    return f"<html><body><div id='results'>{rows}</div></body></html>".encode()


def _engine(handler: _Handler, pages: Callable[[str, str], bytes]) -> None:
    query = parse_qs(urlsplit(handler.path).query)
    page = query.get("page", ["0"])[0]
    body = pages(query.get("q", [""])[0], handler.headers["Host"]) if page == "0" else _results()
    handler.send(200, body, "text/html; charset=utf-8")


def _manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_refused_links_get_manifest_rows(tmp_path: Path, no_browser: None) -> None:
    def pages(query: str, host: str) -> bytes:
        if query == "only refused":
            return _results("javascript:void(0)")
        return _results(
            "javascript:alert(1)",
            "file:///etc/passwd",
            f"http://{host}/ok.png",
            f"http://{host.replace('127.0.0.1', '127.0.0.2')}/elsewhere.png",
        )

    routes: dict[str, Route] = {
        "/images/search": lambda h: _engine(h, pages),
        "/ok.png": lambda h: h.send(200, _png(4)),
    }
    with _serve(routes) as engine:
        config = ScrapeConfig(
            engine="local",
            engine_url=_url(engine, ""),
            per_action=5,
            retry_failed=True,
            download=DownloadConfig(polite_seconds=0),
        )
        out = tmp_path / "out"
        summaries = scrape(["jumping", "only refused"], out, config=config)
        rows = _manifest(out)
        by_url = {r["image_url"]: r for r in rows}
        for url in ("javascript:alert(1)", "file:///etc/passwd", "javascript:void(0)"):
            row = by_url[url]
            assert row["status"] == "http_error" and row["error"].startswith("refused: ")
            assert row["page_url"] == "https://site.test/p" and row["path"] == ""
        assert by_url[_url(engine, "/ok.png")]["status"] == "ok"
        elsewhere = next(r for r in rows if r["image_url"].endswith("/elsewhere.png"))
        assert elsewhere["status"] == "http_error" and "loopback" in elsewhere["error"]
        assert [r["status"] for r in rows if r["action"] == "only refused"] == [
            "http_error",
            "blocked",
        ]
        assert [(s.saved, s.failures) for s in summaries] == [(1, 3), (0, 1)]
        # A re-run with retry_failed tries the refused address again (the policy may have
        # changed), never a refused scheme, and never what it saved.
        fetched = engine.hits["/ok.png"]
        scrape(["jumping", "only refused"], out, config=config)
        assert engine.hits["/ok.png"] == fetched
        again = Counter(r["image_url"] for r in _manifest(out))
        again.subtract(r["image_url"] for r in rows)
        assert +again == {elsewhere["image_url"]: 1, "": 1}  # and "only refused" is blocked


NASTY_ACTIONS = [
    "manifest.csv",
    "MANIFEST.CSV",
    "..",
    ".hidden",
    "[bold]x[/]",
    "é" * 150,  # 300 bytes of UTF-8
    "a/b",
    "a_b",
]


def test_nasty_action_names(tmp_path: Path, no_browser: None) -> None:
    def pages(query: str, host: str) -> bytes:
        key = hashlib.sha256(query.encode()).hexdigest()[:8]
        return _results(*(f"http://{host}/img/{key}-{k}.png" for k in range(2)))

    def image(handler: _Handler) -> None:
        handler.send(200, _png(int(hashlib.sha256(handler.path.encode()).hexdigest()[:8], 16)))

    out = tmp_path / "out"
    (out / "manifest.csv").mkdir(parents=True)  # taken by a folder: refused up front
    with pytest.raises(UsageError, match="not a file"):
        scrape(["x"], out, config=ScrapeConfig(engine="local", engine_url="http://127.0.0.1:9"))
    (out / "manifest.csv").rmdir()

    routes: dict[str, Route] = {"/images/search": lambda h: _engine(h, pages)}
    with _serve(routes) as engine:
        for k in NASTY_ACTIONS:
            key = hashlib.sha256(k.encode()).hexdigest()[:8]
            for n in range(2):
                routes[f"/img/{key}-{n}.png"] = image
        config = ScrapeConfig(
            engine="local",
            engine_url=_url(engine, ""),
            per_action=2,
            download=DownloadConfig(polite_seconds=0),
        )
        summaries = scrape(NASTY_ACTIONS, out, config=config)
        assert [s.saved for s in summaries] == [2] * len(NASTY_ACTIONS)
        rows = _manifest(out)
        assert Counter(r["action"] for r in rows if r["status"] == "ok") == dict.fromkeys(
            NASTY_ACTIONS, 2
        )
        folders = {Path(r["path"]).parent.as_posix() for r in rows if r["status"] == "ok"}
        assert len(folders) == len(NASTY_ACTIONS)
        for folder in folders:
            assert "/" not in folder and not folder.startswith(".")
            assert folder.casefold() != "manifest.csv" and len(folder.encode()) <= 120
            assert (out / folder).is_dir()
        assert (out / "manifest.csv").is_file()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
        assert sorted(p.name for p in out.iterdir()) == sorted([*folders, "manifest.csv"])
        # The same run again resumes: nothing new is fetched or recorded.
        fetched = sum(engine.hits.values())
        scrape(NASTY_ACTIONS, out, config=config)
        assert len(_manifest(out)) == len(rows)
        assert sum(engine.hits.values()) - fetched == 0


def test_action_folders_are_distinct_and_stable() -> None:
    actions = ["a/b", "a_b", "a:b", "Run", "run", "manifest.csv", "manifest.csv_", "é" * 150]
    folders = action_folders(actions)
    assert len({f.casefold() for f in folders.values()}) == len(actions)
    assert folders["a_b"] == "a_b" and folders["Run"] == "Run"
    assert folders["a/b"].startswith("a_b-") and folders["run"].startswith("run-")
    assert folders["manifest.csv_"] == "manifest.csv_"
    assert folders["manifest.csv"].startswith("manifest.csv_-")
    assert action_folders(actions[::-1]) == folders


def test_an_error_in_a_worker_is_not_lost(tmp_path: Path, no_browser: None) -> None:
    def pages(query: str, host: str) -> bytes:
        return _results(f"http://{host}/one.png")

    def boom(action: str, saved: int, target: int) -> None:
        if saved:
            raise RuntimeError("progress display failed")

    routes: dict[str, Route] = {
        "/images/search": lambda h: _engine(h, pages),
        "/one.png": lambda h: h.send(200, _png(5)),
    }
    with _serve(routes) as engine:
        config = ScrapeConfig(
            engine="local", engine_url=_url(engine, ""), per_action=1, download=_config()
        )
        with pytest.raises(RuntimeError, match="progress display failed"):
            scrape(["x"], tmp_path, config=config, progress=boom)
    assert [r["status"] for r in _manifest(tmp_path)] == ["ok"]


# -- 15: memory does not grow with the number of links --------------------------------------

_CHILD = r"""
import contextlib, json, struct, sys, threading, zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

import scrapers.driver
from clipminer.errors import UsageError
from scrapers.download import DownloadConfig
from scrapers.engines.local import results_page
from scrapers.hits import ImageHit
from scrapers.scrape import ScrapeConfig, scrape

count, png, out = int(sys.argv[1]), Path(sys.argv[2]).read_bytes(), Path(sys.argv[3])


def peak_kib():  # this process's own peak RSS (ru_maxrss would include the parent's)
    status = Path("/proc/self/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("VmHWM:")).split()[1])


def variant(k):  # same pixels, distinct bytes: a tEXt chunk before IEND
    body = b"tEXtComment\x00" + str(k).encode()
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return png[:-12] + chunk + png[-12:]


images = {f"/img/{k}.png": variant(k) for k in range(count)}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        base = "http://" + self.headers["Host"]
        if self.path.startswith("/images/search"):
            hits = [ImageHit(base + p) for p in images] if "page=0" in self.path else []
            body, kind = results_page("big", hits, next_url=None).encode(), "text/html"
        else:
            body, kind = images[self.path], "image/png"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def chromium(**kwargs):
    with requests.Session() as session:
        yield session


scrapers.driver.chromium = chromium
scrapers.driver.load = lambda driver, url, scrolls=0: driver.get(url, timeout=30).text
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
config = ScrapeConfig(
    engine="local",
    engine_url=f"http://127.0.0.1:{server.server_address[1]}",
    per_action=count,
    download_workers=4,
    download=DownloadConfig(polite_seconds=0, per_host=4),
)
before = peak_kib()
summary = scrape(["big"], out, config=config)[0]
after = peak_kib()
print(json.dumps({"before_kib": before, "peak_kib": after, "saved": summary.saved,
                  "duplicates": summary.duplicates}))
"""


@pytest.fixture(scope="module")
def big_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6000×6000 RGB (108 MB of pixels) in a small PNG."""
    rng = np.random.default_rng(6)
    blocks = rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)
    pixels = np.kron(blocks, np.ones((100, 100, 1), np.uint8))
    path = tmp_path_factory.mktemp("big") / "big.png"
    Image.fromarray(pixels).save(path, format="PNG", compress_level=1)
    return path


def _peak_mib(count: int, png: Path, out: Path) -> tuple[float, dict[str, int]]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(count), str(png), str(out)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    return (facts["peak_kib"] - facts["before_kib"]) / 1024, facts


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads VmHWM from /proc")
def test_peak_memory_does_not_grow_with_the_links(tmp_path: Path, big_png: Path) -> None:
    few, few_facts = _peak_mib(2, big_png, tmp_path / "few")
    many, many_facts = _peak_mib(12, big_png, tmp_path / "many")
    assert (few_facts["saved"], few_facts["duplicates"]) == (1, 1)
    assert (many_facts["saved"], many_facts["duplicates"]) == (1, 11)
    print(f"peak RSS growth: {few:.0f} MiB for 2 links, {many:.0f} MiB for 12")
    # One 108 MB decode at a time: 12 links cost what 2 do (holding them all: > 1.2 GiB).
    assert many < few * 1.5 + 64, (few, many)
    assert many < 500, many
