"""The scraper end to end in headless Chromium, against a faulty engine on 127.0.0.1."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("selenium")

from clipminer.cli import app
from scrapers.download import DownloadConfig
from scrapers.engines.local import results_page
from scrapers.hits import ImageHit
from scrapers.scrape import ScrapeConfig, scrape

pytestmark = pytest.mark.browser
if not (shutil.which("chromium") and shutil.which("chromedriver")):
    pytestmark = [
        pytest.mark.browser,
        pytest.mark.skip(reason="apt-get install chromium chromium-driver"),
    ]


def _image(seed: int, size: tuple[int, int] = (120, 160), fmt: str = "JPEG", **kw) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    pixels = np.kron(small, np.ones((size[0] // 6 + 1, size[1] // 8 + 1, 1), np.uint8))
    buffer = io.BytesIO()
    Image.fromarray(pixels[: size[0], : size[1]]).save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (7100, 7100), 128).save(buffer, format="PNG")  # 50.4 megapixels, ~50 kB
    return buffer.getvalue()


OK1 = _image(1)
FAULTS = {
    # path: (expected status, response)
    "/ok1.jpg": ("ok", OK1),
    "/ok2.png": ("ok", _image(2, fmt="PNG")),
    "/same-as-ok1.jpg": ("duplicate", OK1),
    "/near-ok1.jpg": ("near_duplicate", _image(1, quality=60)),
    "/err500.jpg": ("http_error", 500),
    "/slow.jpg": ("timeout", "slow"),
    "/truncated.jpg": ("not_image", _image(3)[:900]),
    "/html.jpg": ("not_image", b"<html><body>not an image</body></html>"),
    "/bomb.png": ("too_large", _bomb()),
    "/loop.jpg": ("http_error", "loop"),
    "/tiny.png": ("too_small", _image(4, size=(8, 8), fmt="PNG")),
}
PASSWD_IMAGE = "/passwd-ok.jpg"


class _Faulty(BaseHTTPRequestHandler):
    requests: ClassVar[Counter[str]] = Counter()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if "clipminer" in self.headers.get("User-Agent", ""):  # the downloader, not the browser
            _Faulty.requests[path] += 1
        base = f"http://{self.headers.get('Host')}"
        if path == "/images/search":
            if "page=0" not in self.path:
                return self._send(200, "text/html", results_page("q", [], next_url=None).encode())
            paths = [PASSWD_IMAGE] if "passwd" in self.path else list(FAULTS)
            hits = [ImageHit(base + p, base + "/about") for p in paths]
            return self._send(200, "text/html", results_page("q", hits, next_url=None).encode())
        if path == PASSWD_IMAGE:
            return self._send(200, "image/jpeg", _image(9))
        if path not in FAULTS:
            return self._send(404, "text/plain", b"no")
        _, response = FAULTS[path]
        if response == 500:
            return self._send(500, "text/plain", b"boom")
        if response == "slow":
            time.sleep(2.0)
            return self._send(200, "image/jpeg", OK1)
        if response == "loop":
            self.send_response(302)
            self.send_header("Location", "/loop.jpg")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        self._send(200, "image/jpeg", response)  # HTML served as image/jpeg too

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def engine_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Faulty)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Faulty.requests.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_faults_manifest_containment_and_resume(engine_url: str, tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    config = ScrapeConfig(
        engine="local",
        engine_url=engine_url,
        per_action=20,
        download_workers=1,
        download=DownloadConfig(read_timeout_seconds=0.5, retries=1, min_size=32, polite_seconds=0),
    )
    summaries = scrape(["faults", "../../etc/passwd"], out, config=config)
    rows = _manifest(out)
    got = {
        row["image_url"].removeprefix(engine_url): row["status"]
        for row in rows
        if row["action"] == "faults"
    }
    assert got == {path: status for path, (status, _) in FAULTS.items()}
    by_path = {row["image_url"].removeprefix(engine_url): row for row in rows}
    assert by_path["/ok1.jpg"]["path"] in by_path["/same-as-ok1.jpg"]["error"]
    assert by_path["/bomb.png"]["error"].startswith("7100x7100")
    ok = [row for row in rows if row["status"] == "ok"]
    for row in ok:
        assert (out / row["path"]).is_file()
        assert len(Path(row["path"]).stem) == 16 and row["sha256"].startswith(
            Path(row["path"]).stem
        )
    # Nothing outside the output folder; the dangerous action got a safe folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]
    assert sorted(p.name for p in out.iterdir()) == ["__._etc_passwd", "faults", "manifest.csv"]
    assert [s.saved for s in summaries] == [2, 1]
    # A second run fetches no image again.
    fetched = sum(_Faulty.requests.values())
    assert fetched >= len(FAULTS)
    scrape(["faults", "../../etc/passwd"], out, config=config)
    assert sum(_Faulty.requests.values()) == fetched
    assert len(_manifest(out)) == len(rows)


def test_cli_scrape_with_its_own_local_engine(tmp_path: Path) -> None:
    actions = tmp_path / "actions.txt"
    actions.write_text("# toy actions\nbouncing\n\nsliding left\n")
    result = CliRunner().invoke(
        app,
        [
            "scrape",
            "--actions",
            str(actions),
            "--action",
            "juggling",
            "--engine",
            "local",
            "--per-action",
            "6",
            "--out",
            str(tmp_path / "out"),
            "--polite-seconds",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out" / "bouncing").glob("*.jpg"))) == 6
    assert len(list((tmp_path / "out" / "sliding left").glob("*.jpg"))) == 6
    rows = _manifest(tmp_path / "out")
    assert [r["status"] for r in rows if r["action"] == "juggling"] == ["blocked"]
    assert "no image results" in result.output


def test_no_chromium_outlives_a_failing_run(tmp_path: Path) -> None:
    import socket

    def chromium_processes() -> int:
        out = subprocess.run(["pgrep", "-c", "-f", "chromium"], capture_output=True, text=True)
        return int(out.stdout.strip() or 0)

    before = chromium_processes()
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = ScrapeConfig(
        engine="local",
        engine_url=f"http://127.0.0.1:{port}",
        per_action=3,
        page_load_timeout_seconds=5,
    )
    summaries = scrape(["a", "b"], tmp_path / "out", config=config)
    assert all(s.saved == 0 and s.note for s in summaries)
    rows = _manifest(tmp_path / "out")
    assert [r["status"] for r in rows] == ["blocked", "blocked"]
    deadline = time.time() + 10
    while chromium_processes() > before and time.time() < deadline:
        time.sleep(0.2)
    assert chromium_processes() <= before
