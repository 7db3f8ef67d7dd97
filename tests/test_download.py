"""The downloader's checks without a network: schemes, data: URIs, sizes, filing."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("imagehash")

from scrapers.download import DownloadConfig, Downloader


def _png(size=(40, 30), colour=(200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/a.jpg", "javascript:alert(1)"]
)
def test_only_http_and_data_urls(tmp_path: Path, url: str) -> None:
    result = Downloader(tmp_path, DownloadConfig()).download(url, "x", "x")
    assert result.status == "http_error" and result.error.startswith("refused")
    assert list(tmp_path.iterdir()) == []


def test_data_uri_is_decoded_checked_and_capped(tmp_path: Path) -> None:
    data = _png()
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    downloader = Downloader(tmp_path, DownloadConfig(polite_seconds=0))
    first = downloader.download(uri, "red", "red")
    assert first.status == "ok" and first.path is not None and first.path.read_bytes() == data
    assert first.path.parent == tmp_path.resolve() / "red" and first.path.suffix == ".png"
    assert downloader.download(uri, "red", "red").status == "duplicate"
    capped = Downloader(tmp_path, DownloadConfig(max_bytes=20)).download(uri, "red", "red")
    assert capped.status == "too_large"
    assert (
        Downloader(tmp_path, DownloadConfig()).download("data:text/html,hi", "x", "x").status
        == "not_image"
    )


def test_jpeg_mode_and_unusual_formats(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 10)).save(buffer, format="BMP")
    uri = "data:image/bmp;base64," + base64.b64encode(buffer.getvalue()).decode()
    result = Downloader(tmp_path, DownloadConfig()).download(uri, "green", "green")
    assert result.status == "ok" and result.path is not None and result.path.suffix == ".jpg"
