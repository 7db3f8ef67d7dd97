"""Downloading, checking and filing images, outside the browser.

Fetching: requests, with urllib3 retries (connection errors and 5xx, short backoff),
connect/read timeouts and a byte cap. Every download ends by a wall-clock deadline
whatever the host sends: a watchdog shuts the download's sockets down when it passes,
even in the middle of a trickled header or body. Redirects are followed one hop at a
time (at most ``max_redirects``), and every hop must be http(s) and resolve to public
addresses, unless its host is one of ``allowed_hosts`` (the engine's own) or
``allow_private_addresses`` is set. A 429 is waited out only while its Retry-After fits
``max_retry_after_seconds`` and the deadline; otherwise it is recorded as ``blocked``.
Only http(s) and size-capped ``data:`` URLs are fetched.

Checking: the bytes are hashed first, so an exact (sha256) duplicate is never decoded.
The rest are decoded with Pillow in ``decode_slots`` dedicated threads (so the memory
the allocator keeps after a decode is reused by the next one, not multiplied by the
download threads), with a pixel cap against decompression bombs and never by trusting
the Content-Type; JPEGs are decoded at a reduced scale, the perceptual hash comes from
a thumbnail, and no pixels outlive the check. Near duplicates (perceptual hash) are
recognised within and across actions.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures as cf
import contextlib
import hashlib
import io
import ipaddress
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeAlias
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import imagehash
import requests
import urllib3
from PIL import Image, UnidentifiedImageError
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import InvalidHeader
from urllib3.poolmanager import PoolManager
from urllib3.util.retry import Retry

from clipminer.errors import ClipminerError
from clipminer.fsutil import atomic_path
from scrapers.config import DownloadConfig
from scrapers.engines import scheme_refusal

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
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver: TypeAlias = Callable[[str], Sequence[IPAddress]]
"""Host name -> the addresses a connection to it may reach."""

_KEEP_FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}
USER_AGENT = "clipminer (+https://github.com/clipminer; research dataset builder)"
PHASH_SOURCE_SIDE = 256
"""Longest side of the thumbnail the perceptual hash is computed from, in pixels."""
_CHUNK_BYTES = 64 * 1024


class DownloadError(ClipminerError):
    """An image could not be written into the output folder; the message names the path."""


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


@dataclass(frozen=True)
class Checked:
    """An image that passed the checks: the bytes to file and their facts, no pixels."""

    data: bytes = field(repr=False)
    """What is written: the downloaded bytes, or their JPEG re-encoding."""
    ext: str
    """File name extension for ``data``, without the dot."""
    sha256: str
    """Of ``data``."""
    source_sha256: str
    """Of the downloaded bytes (differs from ``sha256`` after re-encoding)."""
    phash: str
    width: int
    height: int

    def __repr__(self) -> str:
        return (
            f"Checked({self.width}x{self.height} {self.ext}, {len(self.data)} bytes, "
            f"sha256={self.sha256[:12]}…)"
        )


@dataclass(frozen=True)
class _Seen:
    path: Path
    action: str
    phash: str = ""
    width: int | None = None
    height: int | None = None


@dataclass
class DedupIndex:
    """Every kept image by content hash and perceptual hash (thread-safe)."""

    by_sha: dict[str, _Seen] = field(default_factory=dict)
    by_phash: list[tuple[imagehash.ImageHash, _Seen]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        sha: str,
        phash: str,
        path: Path,
        action: str,
        width: int | None = None,
        height: int | None = None,
    ) -> None:
        """Record a kept image (from an earlier run's manifest, say)."""
        with self.lock:
            self.reserve((sha,), _Seen(path, action, phash, width, height))

    def same_bytes(self, sha: str) -> _Seen | None:
        """The kept image whose bytes have this sha256, if any."""
        with self.lock:
            return self.by_sha.get(sha)

    def reserve(self, shas: Sequence[str], seen: _Seen) -> None:
        """Record ``seen`` under each of ``shas`` (call with ``lock`` held)."""
        for sha in shas:
            self.by_sha[sha] = seen
        if seen.phash:
            self.by_phash.append((imagehash.hex_to_hash(seen.phash), seen))

    def near(self, phash: str, distance: int) -> _Seen | None:
        """A kept image within ``distance`` of ``phash`` (call with ``lock`` held)."""
        target = imagehash.hex_to_hash(phash)
        return next((seen for h, seen in self.by_phash if h - target <= distance), None)

    def forget(self, seen: _Seen) -> None:
        """Undo :meth:`reserve` (call with ``lock`` held)."""
        self.by_sha = {sha: s for sha, s in self.by_sha.items() if s is not seen}
        self.by_phash = [(h, s) for h, s in self.by_phash if s is not seen]


# -- addresses ---------------------------------------------------------------------------


def address_refusal(ip: IPAddress) -> str | None:
    """What kind of non-public address ``ip`` is (``"loopback"``, ``"private"``...), or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_refusal(ip.ipv4_mapped)
        if ip.sixtofour is not None and (inner := address_refusal(ip.sixtofour)):
            return f"6to4 {inner}"
    kinds = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("non-public", not ip.is_global),
    )
    return next((kind for kind, flag in kinds if flag), None)


def resolve_host(host: str) -> list[IPAddress]:
    """The addresses ``host`` resolves to (an address literal gives itself).

    Raises:
        OSError: the name does not resolve.
    """
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    found = (ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos)
    return list(dict.fromkeys(found))


# -- the deadline watchdog ---------------------------------------------------------------


class _Watch:
    """The sockets one download uses; all shut down when its deadline passes.

    Each is tracked as a duplicate descriptor of the connection's socket, so shutting
    it down also ends a TLS handshake or a read that another thread is blocked in.
    """

    def __init__(self) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def track(self, sock: socket.socket) -> None:
        try:
            dup = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:  # already closed: nothing left to shut down
            return
        with self._lock:
            self._sockets.append(dup)
            if self.expired:
                _shut(dup)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def close(self) -> None:
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the peer may have closed it already
        sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()
"""``watch``: the :class:`_Watch` of the download running in this thread, if any."""


def _track(sock: socket.socket | None) -> None:
    watch: _Watch | None = getattr(_current, "watch", None)
    if watch is not None and sock is not None:
        watch.track(sock)


class _Retry(Retry):
    """urllib3's retries, with none left once the download's deadline has passed."""

    def is_exhausted(self) -> bool:
        watch: _Watch | None = getattr(_current, "watch", None)
        return super().is_exhausted() or (watch is not None and watch.expired)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _track(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _track(self.sock)  # a kept-alive connection, reused by a later download
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _track(sock)  # before the TLS handshake, which a host can trickle too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _track(self.sock)
        super().request(*args, **kwargs)


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def _watch_pools(manager: PoolManager) -> PoolManager:
    """Make ``manager`` open watched connections (SOCKS proxies keep their own pools)."""
    if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = {
            "http": _WatchedHTTPConnectionPool,
            "https": _WatchedHTTPSConnectionPool,
        }
    return manager


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> PoolManager:
        return _watch_pools(super().proxy_manager_for(*args, **kwargs))


# -- the downloader ----------------------------------------------------------------------


class Downloader:
    """Fetches and files images into ``root/<folder>/<sha256 prefix>.<ext>``.

    A context manager: leaving it closes the connections and the decoding threads.

    Args:
        root: the output folder; nothing is ever written outside it.
        config: limits and manners.
        index: duplicates seen so far (shared by all actions of a run).
        resolve: host name -> addresses, to check where each request and redirect goes.
    """

    def __init__(
        self,
        root: Path,
        config: DownloadConfig,
        index: DedupIndex | None = None,
        *,
        resolve: Resolver = resolve_host,
    ) -> None:
        self.root = root.resolve()
        self.config = config
        self.index = index or DedupIndex()
        self.resolve = resolve
        self.session = requests.Session()
        self._retry = _Retry(
            total=config.retries,
            connect=config.retries,
            read=config.retries,
            status=config.retries,
            backoff_factor=0.3,
            backoff_max=2.0,
            status_forcelist=(500, 502, 503, 504),  # 429 is ours: see _throttled
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
            respect_retry_after_header=False,
        )
        adapter = _WatchedAdapter(max_retries=self._retry, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept-Encoding"] = "identity"  # images are compressed already
        self._hosts: dict[str, threading.Semaphore] = {}
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._decoders = cf.ThreadPoolExecutor(config.decode_slots, thread_name_prefix="decode")

    def close(self) -> None:
        """Close the connections and stop the decoding threads."""
        self._decoders.shutdown(wait=True, cancel_futures=True)
        self.session.close()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- fetching -----------------------------------------------------------------------

    def fetch(self, url: str) -> bytes | Download:
        """The bytes at ``url``, or what went wrong as a :class:`Download`."""
        if url[:5].lower() == "data:":
            return _data_uri(url, self.config.max_bytes)
        refusal = scheme_refusal(url)
        if refusal is not None:
            return Download("http_error", refusal)
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

    def _get(self, url: str) -> bytes | Download:
        """Fetch ``url`` within the deadline, whatever the host sends."""
        cfg = self.config
        deadline = time.monotonic() + cfg.deadline_seconds
        watch = _Watch()
        timer = threading.Timer(cfg.deadline_seconds, watch.expire)
        timer.daemon = True
        _current.watch = watch
        timer.start()
        try:
            result = self._follow(url, deadline)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            result = _failure(url, exc)
        finally:
            timer.cancel()
            _current.watch = None
            watch.close()
        if watch.expired:
            return Download("timeout", f"{url[:200]}: not done within {cfg.deadline_seconds:g} s")
        return result

    def _follow(self, url: str, deadline: float) -> bytes | Download:
        """GET ``url``, one redirect hop at a time, each hop checked before it is requested."""
        cfg = self.config
        hop, redirects, throttled = url, 0, 0
        while True:
            refusal = self._hop_refusal(url, hop)
            if refusal is not None:
                return refusal
            with self.session.get(
                hop,
                stream=True,
                allow_redirects=False,
                timeout=(cfg.connect_timeout_seconds, cfg.read_timeout_seconds),
            ) as response:
                target = self.session.get_redirect_target(response)
                if target is not None:
                    redirects += 1
                    if redirects > cfg.max_redirects:
                        return Download(
                            "http_error", f"{url}: more than {cfg.max_redirects} redirects"
                        )
                    try:
                        hop = urljoin(hop, target)
                    except ValueError:
                        return Download("http_error", f"{hop}: bad redirect {target[:200]!r}")
                    continue
                if response.status_code != 429:
                    return self._body(response, hop, deadline)
                wait = self._throttled(response, hop, throttled, deadline)
            if isinstance(wait, Download):
                return wait
            throttled += 1
            time.sleep(wait)

    def _hop_refusal(self, url: str, hop: str) -> Download | None:
        """Why ``hop`` (``url`` or a redirect from it) is not requested, or None."""
        cfg = self.config
        where = hop[:200] if hop == url else f"{url[:200]} redirects to {hop[:200]}"
        try:
            parts = urlsplit(hop)
        except ValueError:
            return Download("http_error", f"refused: {where}: not a valid URL")
        if parts.scheme.lower() not in ("http", "https"):
            return Download("http_error", f"refused: {where}: only http(s) is followed")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            return Download("http_error", f"refused: {where}: no host")
        if cfg.allow_private_addresses or host in cfg.allowed_hosts:
            return None
        try:
            addresses = self.resolve(host)
        except (OSError, UnicodeError) as exc:
            return Download("http_error", f"{where}: cannot resolve {host} ({exc})")
        if not addresses:
            return Download("http_error", f"{where}: {host} resolves to no address")
        for ip in addresses:
            kind = address_refusal(ip)
            if kind is not None:
                return Download(
                    "http_error",
                    f"refused: {where}: {host} is {ip}, a {kind} address, and not the "
                    "engine's host (allow_private_addresses allows it)",
                )
        return None

    def _throttled(
        self, response: requests.Response, hop: str, throttled: int, deadline: float
    ) -> float | Download:
        """Seconds to wait before asking again after a 429, or the ``blocked`` result."""
        cfg = self.config
        header = response.headers.get("Retry-After", "")
        try:
            wait = self._retry.parse_retry_after(header) if header else None
        except InvalidHeader:
            wait = None
        if wait is None:
            wait = min(cfg.max_retry_after_seconds, 2.0**throttled)
        if throttled >= cfg.retries:
            return Download("blocked", f"{hop}: HTTP 429 Too Many Requests, {throttled + 1} times")
        if wait > cfg.max_retry_after_seconds:
            return Download(
                "blocked",
                f"{hop}: HTTP 429 asks to wait {wait:.0f} s (Retry-After), more than "
                f"max_retry_after_seconds {cfg.max_retry_after_seconds:g}",
            )
        if time.monotonic() + wait > deadline:
            return Download(
                "blocked",
                f"{hop}: HTTP 429 asks to wait {wait:.0f} s (Retry-After), past the "
                f"{cfg.deadline_seconds:g} s download deadline",
            )
        return wait

    def _body(self, response: requests.Response, hop: str, deadline: float) -> bytes | Download:
        cfg = self.config
        if response.status_code >= 300:
            return Download("http_error", f"HTTP {response.status_code} from {hop[:200]}")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cfg.max_bytes:
            return Download("too_large", f"{declared} bytes > --max-bytes {cfg.max_bytes}")
        chunks, size = [], 0
        # Undecoded: a Content-Encoding the host sends anyway cannot inflate past the cap.
        for chunk in response.raw.stream(_CHUNK_BYTES, decode_content=False):
            size += len(chunk)
            if size > cfg.max_bytes:
                return Download("too_large", f"more than --max-bytes {cfg.max_bytes}")
            if time.monotonic() > deadline:
                return Download(
                    "timeout", f"{hop[:200]}: not done within {cfg.deadline_seconds:g} s"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    # -- checking and filing -------------------------------------------------------------

    def fetch_and_check(self, url: str) -> Checked | Download:
        """What filing needs of the image at ``url``, or why there is none (thread-safe).

        Bytes already kept are a duplicate without being decoded.
        """
        data = self.fetch(url)
        if isinstance(data, Download):
            return data
        sha = hashlib.sha256(data).hexdigest()
        seen = self.index.same_bytes(sha)
        if seen is not None:
            return self._duplicate(seen, sha, len(data))
        return self.check(data, source_sha256=sha)

    def check(self, data: bytes, *, source_sha256: str = "") -> Checked | Download:
        """Decode ``data`` and keep what filing needs, or say why it is refused.

        The decoding runs in one of the ``decode_slots`` decoding threads; no pixels
        are kept.
        """
        sha = source_sha256 or hashlib.sha256(data).hexdigest()
        return self._decoders.submit(_check, data, sha, self.config).result()

    def file(self, checked: Checked, folder: str, action: str) -> Download:
        """Deduplicate and save an image that passed :meth:`check`.

        Raises:
            DownloadError: the file cannot be written (the message names it).
        """
        facts = (checked.sha256, checked.phash, checked.width, checked.height, len(checked.data))
        index = self.index
        with index.lock:
            same = index.by_sha.get(checked.sha256) or index.by_sha.get(checked.source_sha256)
            near = None if same else index.near(checked.phash, self.config.phash_distance)
            if same is None and near is None:
                path = self._path(folder, f"{checked.sha256[:16]}.{checked.ext}")
                # Reserve it before writing, so two threads never keep the same image.
                seen = _Seen(path, action, checked.phash, checked.width, checked.height)
                index.reserve((checked.sha256, checked.source_sha256), seen)
        if same is not None:
            return Download(
                "duplicate", f"same bytes as {self._rel(same.path)} ({same.action})", None, *facts
            )
        if near is not None:
            return Download(
                "near_duplicate", f"looks like {self._rel(near.path)} ({near.action})", None, *facts
            )
        try:
            with atomic_path(path) as tmp:
                tmp.write_bytes(checked.data)
        except OSError as exc:
            with index.lock:
                index.forget(seen)
            raise DownloadError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return Download("ok", "", path, *facts)

    def _duplicate(self, seen: _Seen, sha: str, size: int) -> Download:
        why = f"same bytes as {self._rel(seen.path)} ({seen.action})"
        return Download("duplicate", why, None, sha, seen.phash, seen.width, seen.height, size)

    def _path(self, folder: str, name: str) -> Path:
        path = (self.root / folder / name).resolve()
        if path.parent.parent != self.root:
            raise DownloadError(f"refusing to write outside {self.root}: {path}")
        return path

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def download(self, url: str, folder: str, action: str) -> Download:
        """Fetch, check and file one image URL."""
        checked = self.fetch_and_check(url)
        if isinstance(checked, Download):
            return checked
        return self.file(checked, folder, action)


def _data_uri(url: str, max_bytes: int) -> bytes | Download:
    """The bytes of an image ``data:`` URI, or why there are none."""
    header, _, payload = url.partition(",")
    if not header.lower().startswith("data:image/"):
        return Download("not_image", "data: URI is not an image")
    if len(payload) > max_bytes * 4 // 3 + 4:
        return Download("too_large", f"data: URI larger than --max-bytes {max_bytes}")
    try:
        if header.lower().endswith(";base64"):
            return base64.b64decode(payload, validate=False)
        return unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        return Download("not_image", f"bad data: URI ({exc})")


def _check(data: bytes, sha: str, cfg: DownloadConfig) -> Checked | Download:
    """What filing needs of an image, or why it is refused (in a decoding thread)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(data, sha, cfg)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return Download("too_large", str(exc)[:200], bytes=len(data))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        return Download("not_image", f"not a readable image ({exc})"[:200], bytes=len(data))


def _decode(data: bytes, sha: str, cfg: DownloadConfig) -> Checked | Download:
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if width * height > cfg.max_pixels:
            why = f"{width}x{height} pixels > --max-pixels {cfg.max_pixels}"
            return Download("too_large", why, None, "", "", width, height, len(data))
        ext = _KEEP_FORMATS.get(image.format or "")
        reencode = cfg.save_as == "jpeg" or ext is None
        if not reencode:
            # JPEG: decode at 1/2 to 1/8 scale. The whole stream is still read, so a
            # truncated file still fails; other formats decode in full.
            image.draft(None, (2 * PHASH_SOURCE_SIDE, 2 * PHASH_SOURCE_SIDE))
        image.load()
        if min(width, height) < cfg.min_size:
            why = f"{width}x{height} < --min-size {cfg.min_size}"
            return Download("too_small", why, None, "", "", width, height, len(data))
        small = image if image.mode in ("L", "LA", "RGB", "RGBA") else image.convert("RGB")
        stored, stored_sha = data, sha
        if reencode:
            buffer = io.BytesIO()
            small.convert("RGB").save(buffer, format="JPEG", quality=92)
            stored, ext = buffer.getvalue(), "jpg"
            stored_sha = hashlib.sha256(stored).hexdigest()
        small.thumbnail((PHASH_SOURCE_SIDE, PHASH_SOURCE_SIDE))
        phash = str(imagehash.phash(small))
    return Checked(stored, ext or "jpg", stored_sha, sha, phash, width, height)


def _failure(url: str, exc: Exception) -> Download:
    """The result of a request that raised ``exc``."""
    name = type(exc).__name__
    if isinstance(exc, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError) or (
        "timed out" in str(exc).lower()
    ):
        return Download("timeout", f"{url[:200]}: {name}")
    if isinstance(exc, requests.exceptions.RetryError):
        return Download("http_error", f"{url[:200]}: gave up after retries ({exc})"[:300])
    if isinstance(exc, requests.exceptions.ConnectionError):
        return Download("http_error", f"{url[:200]}: connection failed ({name})")
    return Download("http_error", f"{url[:200]}: {name}: {exc}"[:300])
