"""Downloading, checking and filing images, outside the browser.

requests with urllib3 retries and backoff, connect/read timeouts and an overall
deadline, a byte cap, a redirect limit, only http(s) and size-capped ``data:`` URIs,
a per-host concurrency limit and politeness delay. Content is checked by decoding it
with Pillow (pixel cap against decompression bombs), never by trusting the
Content-Type. Exact (sha256) and near (perceptual hash) duplicates are recognised
within and across actions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote_to_bytes, urlsplit

import imagehash
import requests
from PIL import Image, UnidentifiedImageError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from clipminer.fsutil import atomic_path

Status = Literal[
    "ok",
    "duplicate",
    "near_duplicate",
    "too_small",
    "not_image",
    "too_large",
    "http_error",
    "timeout",
    "blocked",
]
SaveAs = Literal["original", "jpeg"]
_KEEP_FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}
USER_AGENT = "clipminer (+https://github.com/clipminer; research dataset builder)"


@dataclass(frozen=True)
class DownloadConfig:
    """Limits and manners of the downloader."""

    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 15.0
    max_bytes: int = 20_000_000
    max_pixels: int = 40_000_000
    min_size: int = 0
    """Smallest accepted shorter side, in pixels."""
    retries: int = 2
    max_redirects: int = 5
    per_host: int = 2
    """Simultaneous requests to one host."""
    polite_seconds: float = 0.5
    """Least time between two requests to one host."""
    save_as: SaveAs = "original"
    phash_distance: int = 4
    """Hamming distance of perceptual hashes at or below which an image is a near-duplicate."""


@dataclass(frozen=True)
class Download:
    """What became of one image URL."""

    status: Status
    error: str = ""
    path: Path | None = None
    sha256: str = ""
    phash: str = ""
    width: int | None = None
    height: int | None = None
    bytes: int = 0


@dataclass
class _Seen:
    path: Path
    action: str


@dataclass
class DedupIndex:
    """Every kept image by content hash and perceptual hash (thread-safe)."""

    by_sha: dict[str, _Seen] = field(default_factory=dict)
    by_phash: list[tuple[imagehash.ImageHash, _Seen]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sha: str, phash: str, path: Path, action: str) -> None:
        with self.lock:
            seen = _Seen(path, action)
            self.by_sha[sha] = seen
            if phash:
                self.by_phash.append((imagehash.hex_to_hash(phash), seen))


class Downloader:
    """Fetches and files images into ``root/<folder>/<sha256 prefix>.<ext>``.

    Args:
        root: the output folder; nothing is ever written outside it.
        config: limits and manners.
        index: duplicates seen so far (shared by all actions of a run).
    """

    def __init__(self, root: Path, config: DownloadConfig, index: DedupIndex | None = None) -> None:
        self.root = root.resolve()
        self.config = config
        self.index = index or DedupIndex()
        self.session = requests.Session()
        retry = Retry(
            total=config.retries,
            connect=config.retries,
            read=config.retries,
            backoff_factor=0.3,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.max_redirects = config.max_redirects
        self.session.headers["User-Agent"] = USER_AGENT
        self._hosts: dict[str, threading.Semaphore] = {}
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- fetching -----------------------------------------------------------------------

    def fetch(self, url: str) -> tuple[bytes | None, Download | None]:
        """The bytes at ``url``, or the failure as a :class:`Download`."""
        scheme = urlsplit(url).scheme.lower()
        if scheme == "data":
            return self._data_uri(url)
        if scheme not in ("http", "https"):
            return None, Download(
                "http_error", f"refused: only http(s) and data: URLs, not {scheme}:"
            )
        host = urlsplit(url).netloc.lower()
        with self._lock:
            gate = self._hosts.setdefault(host, threading.Semaphore(self.config.per_host))
        with gate:
            self._wait_politely(host)
            return self._get(url)

    def _wait_politely(self, host: str) -> None:
        with self._lock:
            now = time.monotonic()
            ready = self._last.get(host, 0.0) + self.config.polite_seconds
            self._last[host] = max(now, ready)
        if ready > now:
            time.sleep(ready - now)

    def _get(self, url: str) -> tuple[bytes | None, Download | None]:
        cfg = self.config
        deadline = time.monotonic() + cfg.connect_timeout_seconds + 2 * cfg.read_timeout_seconds
        try:
            with self.session.get(
                url, stream=True, timeout=(cfg.connect_timeout_seconds, cfg.read_timeout_seconds)
            ) as response:
                if response.status_code >= 400:
                    return None, Download("http_error", f"HTTP {response.status_code}")
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > cfg.max_bytes:
                    return None, Download(
                        "too_large", f"{declared} bytes > --max-bytes {cfg.max_bytes}"
                    )
                chunks, size = [], 0
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > cfg.max_bytes:
                        return None, Download("too_large", f"more than --max-bytes {cfg.max_bytes}")
                    if time.monotonic() > deadline:
                        return None, Download("timeout", "download took too long")
                    chunks.append(chunk)
                return b"".join(chunks), None
        except requests.exceptions.TooManyRedirects:
            return None, Download("http_error", f"more than {cfg.max_redirects} redirects")
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
            if "timed out" in str(exc).lower() or isinstance(exc, requests.exceptions.Timeout):
                return None, Download("timeout", type(exc).__name__)
            return None, Download("http_error", f"connection failed ({type(exc).__name__})")
        except requests.exceptions.RetryError as exc:
            return None, Download("http_error", f"gave up after retries ({exc})"[:200])
        except requests.exceptions.RequestException as exc:
            return None, Download("http_error", f"{type(exc).__name__}: {exc}"[:200])

    def _data_uri(self, url: str) -> tuple[bytes | None, Download | None]:
        header, _, payload = url.partition(",")
        if not header.lower().startswith("data:image/"):
            return None, Download("not_image", "data: URI is not an image")
        if len(payload) > self.config.max_bytes * 4 // 3 + 4:
            return None, Download(
                "too_large", f"data: URI larger than --max-bytes {self.config.max_bytes}"
            )
        try:
            if header.lower().endswith(";base64"):
                return base64.b64decode(payload, validate=False), None
            return unquote_to_bytes(payload), None
        except (binascii.Error, ValueError) as exc:
            return None, Download("not_image", f"bad data: URI ({exc})")

    # -- checking and filing -------------------------------------------------------------

    def check(self, data: bytes) -> tuple[Image.Image | None, Download | None]:
        """Decode ``data`` fully; the image, or why it is refused."""
        cfg = self.config
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
                width, height = image.size
                if width * height > cfg.max_pixels:
                    return None, Download(
                        "too_large",
                        f"{width}x{height} pixels > --max-pixels {cfg.max_pixels}",
                        width=width,
                        height=height,
                        bytes=len(data),
                    )
                image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            return None, Download("too_large", str(exc)[:200], bytes=len(data))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            return None, Download(
                "not_image", f"not a readable image ({exc})"[:200], bytes=len(data)
            )
        if min(width, height) < cfg.min_size:
            return None, Download(
                "too_small",
                f"{width}x{height} < --min-size {cfg.min_size}",
                width=width,
                height=height,
                bytes=len(data),
            )
        return image, None

    def file(self, data: bytes, image: Image.Image, folder: str, action: str) -> Download:
        """Deduplicate and save an image that passed :meth:`check`."""
        width, height = image.size
        ext = _KEEP_FORMATS.get(image.format or "")
        if self.config.save_as == "jpeg" or ext is None:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=92)
            data, ext = buffer.getvalue(), "jpg"
        sha = hashlib.sha256(data).hexdigest()
        phash = str(imagehash.phash(image.convert("RGB")))
        with self.index.lock:
            same = self.index.by_sha.get(sha)
            if same is None:
                target = imagehash.hex_to_hash(phash)
                near = next(
                    (
                        seen
                        for h, seen in self.index.by_phash
                        if h - target <= self.config.phash_distance
                    ),
                    None,
                )
            else:
                near = None
            if same is None and near is None:
                path = self._path(folder, f"{sha[:16]}.{ext}")
                # Reserve it before writing, so two threads never keep the same image.
                self.index.by_sha[sha] = _Seen(path, action)
                self.index.by_phash.append((imagehash.hex_to_hash(phash), _Seen(path, action)))
        facts = (sha, phash, width, height, len(data))
        if same is not None:
            why = f"same bytes as {self._rel(same.path)} ({same.action})"
            return Download("duplicate", why, None, *facts)
        if near is not None:
            why = f"looks like {self._rel(near.path)} ({near.action})"
            return Download("near_duplicate", why, None, *facts)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return Download("ok", "", path, *facts)

    def _path(self, folder: str, name: str) -> Path:
        path = (self.root / folder / name).resolve()
        if path.parent.parent != self.root:
            raise ValueError(f"refusing to write outside {self.root}: {path}")
        return path

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def fetch_and_check(self, url: str) -> tuple[bytes, Image.Image] | Download:
        """The bytes and the decoded image at ``url``, or why there is none (thread-safe)."""
        data, failure = self.fetch(url)
        if failure is not None:
            return failure
        assert data is not None
        image, refusal = self.check(data)
        if refusal is not None:
            return refusal
        assert image is not None
        return data, image

    def download(self, url: str, folder: str, action: str) -> Download:
        """Fetch, check and file one image URL."""
        fetched = self.fetch_and_check(url)
        if isinstance(fetched, Download):
            return fetched
        data, image = fetched
        with image:
            return self.file(data, image, folder, action)
