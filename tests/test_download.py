"""The downloader's checks without a network: schemes, data: URIs, sizes, filing."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("imagehash")

from clipminer.errors import UsageError
from scrapers.download import Checked, Download, DownloadConfig, Downloader


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


def test_exact_duplicates_are_not_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = "data:image/png;base64," + base64.b64encode(_png(colour=(1, 2, 3))).decode()
    downloader = Downloader(tmp_path, DownloadConfig())
    first = downloader.download(uri, "a", "a")
    assert first.status == "ok" and first.path is not None
    opened: list[object] = []
    real_open = Image.open

    def counting_open(*args: object, **kwargs: object) -> Image.Image:
        opened.append(args)
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "open", counting_open)
    again = downloader.download(uri, "b", "b")
    assert again.status == "duplicate" and opened == []
    assert again.error == f"same bytes as a/{first.path.name} (a)"
    facts = (again.sha256, again.phash, again.width, again.height)
    assert facts == (first.sha256, first.phash, 40, 30)


def test_checks_keep_no_pixels_and_still_catch_truncation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    downloader = Downloader(tmp_path, DownloadConfig())
    checked = downloader.check(data)
    assert isinstance(checked, Checked) and (checked.width, checked.height) == (1600, 1200)
    assert checked.data is data and checked.sha256 == checked.source_sha256
    assert repr(checked).startswith("Checked(1600x1200 jpg,") and len(repr(checked)) < 100
    # Decoded at 1/2 scale for the hash, but the whole stream is read: truncation fails.
    truncated = downloader.check(data[: len(data) - 200])
    assert isinstance(truncated, Download) and truncated.status == "not_image"
    jpeg = Downloader(tmp_path, DownloadConfig(save_as="jpeg")).check(_png())
    assert isinstance(jpeg, Checked) and jpeg.ext == "jpg" and jpeg.sha256 != jpeg.source_sha256


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("deadline_seconds", 0, "--deadline must be a number >= 0.1"),  # by its option
        ("max_retry_after_seconds", -1, "--max-retry-after must be a number >= 0"),
        ("decode_slots", 0, "decode_slots must be more than 0"),  # not an option
    ],
)
def test_config_is_checked(field: str, value: float, named: str) -> None:
    with pytest.raises(UsageError, match=named):
        DownloadConfig(**{field: value})
