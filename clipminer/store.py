"""Data in object storage: ``s3://``, ``gs://`` and other fsspec URLs, and ``http(s)://``
for inputs.

Every path that names data (input videos, model bundles, OUT) may be such a URL; this
module is the one place that talks to the store. The store is configured the standard
way, never by a clipminer setting: for S3, ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, instance roles (the usual chain);
for GCS, the application default credentials. s3fs and gcsfs are optional extras
(``clipminer[s3]``, ``clipminer[gcs]``), imported only when a URL needs them.

- A video is read as a stream: PyAV reads a file object whose reads are ranged GETs
  of whole blocks (:data:`READ_BLOCK_BYTES`, :data:`CACHED_BLOCKS` kept). A container
  whose index sits at the end (an MP4 with ``moov`` last) costs one more ranged GET,
  not a download (``benchmarks/store_read.py`` measures it).
- A model bundle is fetched once per machine and cached by its content hash
  (:func:`local_model`); it still loads with ``weights_only=True``.
- A result folder is written locally, then uploaded with its ``run.json`` last
  (:func:`upload_folder`): a folder without it is absent to every reader.
- A store that answers 503 (SlowDown) or drops the connection is retried with
  backoff, a bounded number of times (:data:`MAX_ATTEMPTS`, or ``AWS_MAX_ATTEMPTS``).
- URLs are shown and recorded with their secrets removed (:func:`redact`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from clipminer.errors import ClipminerError, UsageError
from clipminer.fsutil import atomic_path

log = logging.getLogger(__name__)

READ_BLOCK_BYTES = 5 << 20
"""One ranged GET reads a block of this much (S3's smallest multipart size)."""
S3FS_TRIES = 2
"""Tries of s3fs's own loop, each of them botocore's :data:`MAX_ATTEMPTS`."""
CACHED_BLOCKS = 2
"""Blocks kept per open video: the start and the index at the end, or the last two."""
MAX_ATTEMPTS = 5
"""Tries of one request to S3 when ``AWS_MAX_ATTEMPTS`` is not set (botocore's
``standard`` retry mode: exponential backoff with jitter, at most 20 s a wait)."""
MODEL_CACHE_ENV = "CLIPMINER_CACHE"
"""Where fetched model bundles are kept (default ``~/.cache/clipminer``)."""
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_SECRET_PARAMS = re.compile(
    r"(signature|credential|token|key|secret|password|sig|auth|session)", re.IGNORECASE
)
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "http": "s3", "https": "s3"}


def is_url(text: object) -> bool:
    """Whether ``text`` is a URL (``scheme://...``) rather than a local path."""
    return isinstance(text, str) and bool(_SCHEME.match(text)) and not text.startswith("file://")


def names_url(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` is a URL, also after a Path has folded its ``//`` (``s3:/b/k``)."""
    return is_url(str(text)) or bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:/[^/]", str(text)))


def local_or_url(text: str | os.PathLike[str]) -> str | Path:
    """A URL as it is; anything else as a Path (``file://`` URLs become their path)."""
    if isinstance(text, str) and text.startswith("file://"):
        return Path(urlsplit(text).path)
    return str(text) if is_url(text) else Path(text)


def join(url: str, *parts: str) -> str:
    """``url`` with ``parts`` appended, one ``/`` between each."""
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


def within(base: str | os.PathLike[str], *parts: str) -> str | Path:
    """``parts`` inside ``base``: a URL under a URL, a path under a path."""
    return join(str(base), *parts) if is_url(base) else Path(base).joinpath(*parts)


def _is_web(url: str) -> bool:
    """An ``http(s)`` URL: its ``?`` starts a query and its ``#`` a fragment; in other
    URLs (bucket keys) they are part of the name."""
    return url.lower().startswith(("http://", "https://"))


def redact(url: str) -> str:
    """``url`` without its secrets: no password in it, and no value of a query
    parameter that looks like a signature, credential or token (presigned URLs)."""
    if not is_url(url):
        return url
    if not _is_web(url):  # a bucket key may hold ? and #: only a user:password is cut
        scheme, _, rest = url.partition("://")
        host, slash, key = rest.partition("/")
        if "@" in host:
            host = "***@" + host.rpartition("@")[2]
        return f"{scheme}://{host}{slash}{key}"
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:  # a user name alone may be a token (https://TOKEN@host/...)
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':')[0]}:***@{host}" if ":" in user else f"***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_ANY_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()]+")


def scrub(text: str) -> str:
    """``text`` (an error message from a library) with every URL in it redacted."""
    return _ANY_URL.sub(lambda m: redact(m.group(0)), text)


class StoreError(ClipminerError):
    """The store refused or failed a request; the message names the (redacted) URL."""


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path within it."""
    scheme = _SCHEME.match(url)
    protocol = scheme.group(1).lower() if scheme else "file"
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError:
        raise UsageError(f"{redact(url)}: URLs need fsspec: pip install 'clipminer[s3]'") from None
    options: dict[str, Any] = {}
    if protocol in ("s3", "s3a"):
        options = _s3_options()
    try:
        fsspec.get_filesystem_class(protocol)
        fs, path = url_to_fs(url, **options)
        if protocol in ("s3", "s3a"):
            # s3fs's own loop around botocore's would multiply the tries (5 x 5): it
            # keeps one more, for an answer cut short, which botocore does not retry
            fs.retries = S3FS_TRIES
        return fs, path
    except (ImportError, ValueError) as exc:
        extra = _EXTRAS.get(protocol)
        hint = f": pip install 'clipminer[{extra}]'" if extra else ""
        raise UsageError(f"{redact(url)}: cannot use {protocol}:// URLs ({exc}){hint}") from None


def _s3_options() -> dict[str, Any]:
    """Bounded retries with backoff unless the environment chose its own."""
    if "AWS_MAX_ATTEMPTS" in os.environ or "AWS_RETRY_MODE" in os.environ:
        return {}
    retries = {"max_attempts": MAX_ATTEMPTS, "mode": "standard"}
    return {"config_kwargs": {"retries": retries}}


@contextlib.contextmanager
def errors_named(url: str, doing: str) -> Iterator[None]:
    """Every failure of the store inside as one :class:`StoreError` line naming ``url``."""
    try:
        yield
    except ClipminerError:
        raise
    except FileNotFoundError:
        raise StoreError(f"{redact(url)}: cannot {doing}: no such object") from None
    except PermissionError:
        raise StoreError(f"{redact(url)}: cannot {doing}: access denied") from None
    except Exception as exc:  # botocore, aiohttp and gcsfs each raise their own kinds
        reason = scrub(str(exc).splitlines()[0])[:200] if str(exc) else type(exc).__name__
        raise StoreError(f"{redact(url)}: cannot {doing} ({reason})") from None


@dataclass(frozen=True)
class ObjectInfo:
    """What the store says about one object, without reading it."""

    url: str
    size: int
    mtime: float
    fingerprint: str
    """A hash of the size and the object's ETag (or checksum): changes when the object does."""


def stat(url: str) -> ObjectInfo:
    """Size, modification time and fingerprint of the object at ``url``."""
    fs, path = filesystem(url)
    with errors_named(url, "read"):
        info = fs.info(path)
        if info.get("type") == "directory":
            raise StoreError(f"{redact(url)}: is a folder (a prefix), not an object")
    return _object_info(url, info)


def _object_info(url: str, info: dict[str, Any]) -> ObjectInfo:
    size = int(info.get("size") or 0)
    stamp = next(
        (info[k] for k in ("LastModified", "updated", "mtime", "last_modified") if info.get(k)),
        0.0,
    )
    mtime = _timestamp(stamp)
    tag = next(
        (str(info[k]) for k in ("ETag", "etag", "md5Hash", "crc32c", "checksum") if info.get(k)),
        f"{mtime}",
    )
    digest = hashlib.sha256(f"{size}\0{tag.strip(chr(34))}".encode()).hexdigest()[:24]
    return ObjectInfo(url, size, mtime, digest)


def _timestamp(stamp: object) -> float:
    """Seconds since the epoch of a store's modification time (a datetime, an ISO text
    or a number); 0 when it is none of these."""
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    try:
        if isinstance(stamp, str):
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        return float(stamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def list_objects(url: str) -> list[ObjectInfo]:
    """Every object under the prefix ``url`` (recursively), by URL; one object when
    ``url`` names an object. Hidden names (a part starting with ``.``) are left out."""
    fs, path = filesystem(url)
    with errors_named(url, "list"):
        if fs.isfile(path):
            return [stat(url)]
        found = fs.find(path, detail=True)
    base = url.rstrip("/")
    objects = []
    for key, info in sorted(found.items()):
        relative = key[len(path.rstrip("/")) :].strip("/")
        if info.get("type") == "directory" or any(p.startswith(".") for p in relative.split("/")):
            continue
        objects.append(_object_info(join(base, relative), info))
    return objects


def open_read(url: str, *, size: int | None = None) -> IO[bytes]:
    """``url`` as a seekable binary file whose reads are ranged GETs (PyAV reads it).

    Reads go through :data:`CACHED_BLOCKS` blocks of :data:`READ_BLOCK_BYTES`, so that
    FFmpeg's jump to an index at the end and back costs one GET for the index, not a
    second GET of the start (measured: 3 GETs and 10.2 MiB to open a 28 MiB MP4 with
    its ``moov`` last when only the latest block was kept). ``size``, when known,
    saves the request that would ask for it.
    """
    fs, path = filesystem(url)
    options: dict[str, Any] = {"maxblocks": CACHED_BLOCKS}
    if size is not None:
        options = {"size": size, "cache_options": options}
    else:
        options = {"cache_options": options}
    with errors_named(url, "read"):
        opened = fs.open(
            path, "rb", block_size=READ_BLOCK_BYTES, cache_type="blockcache", **options
        )
    return _Stream(opened, url)  # type: ignore[return-value]


class _Stream:
    """A store's file object as PyAV reads it: every failure a :class:`StoreError` line
    naming the redacted URL (never an OSError that would read as the output disk's, nor
    a library's message with a signed URL in it); reads of an ``http(s)`` URL, which
    fsspec does not retry, are retried with backoff (:data:`MAX_ATTEMPTS`)."""

    def __init__(self, raw: Any, url: str) -> None:
        self.raw, self.url = raw, url
        self.tries = MAX_ATTEMPTS if _is_web(url) else 1

    def read(self, size: int = -1) -> bytes:
        where, attempt = self.raw.tell(), 1
        while True:
            try:
                with errors_named(self.url, "read"):
                    return bytes(self.raw.read(size))
            except StoreError as exc:
                if attempt >= self.tries or "no such object" in str(exc):
                    raise
            time.sleep(min(0.2 * 2**attempt, 5.0))
            self.raw.seek(where)
            attempt += 1

    def seek(self, offset: int, whence: int = 0) -> int:
        with errors_named(self.url, "read"):
            return int(self.raw.seek(offset, whence))

    def tell(self) -> int:
        return int(self.raw.tell())

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    with errors_named(url, "read"):
        return bool(fs.exists(path))


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    with errors_named(url, "read"):
        return bytes(fs.cat_file(path))


def write_bytes(url: str, data: bytes) -> None:
    """One object, whole (an object store never shows a half-written object)."""
    fs, path = filesystem(url)
    with errors_named(url, "write"):
        fs.pipe_file(path, data)


def put_file(local: Path, url: str) -> None:
    fs, path = filesystem(url)
    with errors_named(url, "upload"):
        fs.put_file(str(local), path)


def remove(url: str, *, recursive: bool = False) -> None:
    """Remove the object (or with ``recursive`` everything under the prefix); a missing
    one is no error."""
    fs, path = filesystem(url)
    with errors_named(url, "remove"), contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=recursive)


def upload_folder(folder: Path, url: str, *, marker: str) -> int:
    """Upload ``folder`` to the prefix ``url``: its file ``marker`` (a video folder's
    ``run.json``) last, so that the prefix counts as done only once everything else is
    there. A marker already at ``url`` (an earlier result) is removed first, and objects
    of the earlier result that the new one does not have are removed before the marker
    goes up.

    Returns:
        The bytes uploaded.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    last = folder / marker
    fs, base = filesystem(url)
    with errors_named(url, "upload"):
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(f"{base}/{marker}")
        old = set(fs.find(base)) if fs.exists(base) else set()
        sent = 0
        for file in files:
            if file == last:
                continue
            fs.put_file(str(file), f"{base}/{file.relative_to(folder).as_posix()}")
            sent += file.stat().st_size
        stale = old - {f"{base}/{f.relative_to(folder).as_posix()}" for f in files}
        if stale:
            fs.rm(sorted(stale))
        if last.is_file():
            fs.put_file(str(last), f"{base}/{marker}")
            sent += last.stat().st_size
    return sent


def download_folder(url: str, folder: Path, *, skip: tuple[str, ...] = ()) -> None:
    """The objects under the prefix ``url`` into ``folder`` (made whole beside it, then
    swapped in), leaving out top-level parts named in ``skip``."""
    from clipminer.fsutil import swap_folder_in

    fs, base = filesystem(url)
    stage = folder.parent / f".{folder.name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    with errors_named(url, "download"):
        for key in sorted(fs.find(base)):
            relative = PurePosixPath(key[len(base.rstrip("/")) :].strip("/"))
            if not relative.parts or relative.parts[0] in skip or ".." in relative.parts:
                continue
            dest = stage.joinpath(*relative.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(key, str(dest))
    swap_folder_in(stage, folder)


def cache_root() -> Path:
    """``$CLIPMINER_CACHE``, else ``$XDG_CACHE_HOME/clipminer``, else ``~/.cache/clipminer``."""
    if os.environ.get(MODEL_CACHE_ENV):
        return Path(os.environ[MODEL_CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "clipminer"


def local_model(url: str) -> Path:
    """A local copy of the model bundle at ``url``, fetched once per machine.

    The copy is named by the SHA-256 of its content (``models/<sha256>.pt``); an index
    maps the object's fingerprint (size and ETag) to that name, so a bundle that has not
    changed is not fetched again, and one that has is. The copy is written under a
    temporary name and renamed when complete.
    """
    info = stat(url)
    models = cache_root() / "models"
    models.mkdir(parents=True, exist_ok=True)
    index = models / f"{info.fingerprint}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        cached = models / f"{json.loads(index.read_text())['sha256']}.pt"
        if cached.is_file() and cached.stat().st_size == info.size:
            return cached
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=models, prefix=".fetch-", delete=False) as tmp:
        try:
            with open_read(url) as source, errors_named(url, "read"):
                while chunk := source.read(READ_BLOCK_BYTES):
                    digest.update(chunk)
                    tmp.write(chunk)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    fetched = Path(tmp.name).stat().st_size
    if fetched != info.size:
        Path(tmp.name).unlink(missing_ok=True)
        raise StoreError(f"{redact(url)}: read {fetched} of {info.size} bytes; not cached")
    cached = models / f"{digest.hexdigest()}.pt"
    Path(tmp.name).replace(cached)
    with atomic_path(index) as tmp_index:
        tmp_index.write_text(json.dumps({"url": redact(url), "sha256": digest.hexdigest()}))
    log.info("%s: fetched into %s", redact(url), cached)
    return cached


@dataclass(frozen=True)
class RemoteVideo:
    """A video in object storage or behind http(s): read as a stream, never downloaded.

    It stands where a local video's :class:`~pathlib.Path` stands, with the parts of
    one that mining uses (:attr:`name`, :attr:`stem`, :attr:`suffix`); ``str()`` is
    the URL with its secrets removed.
    """

    url: str

    def __repr__(self) -> str:
        return f"RemoteVideo({str(self)!r})"

    @property
    def name(self) -> str:
        path = urlsplit(self.url).path if _is_web(self.url) else self.url.partition("://")[2]
        return PurePosixPath(path).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    def open(self, *, size: int | None = None) -> IO[bytes]:
        return open_read(self.url, size=size)

    def __str__(self) -> str:
        return redact(self.url)


VideoPath = Path | RemoteVideo
"""A video to mine: a local file, or one in the store."""


def as_video(video: str | os.PathLike[str] | RemoteVideo) -> VideoPath:
    """``video`` as a :class:`~pathlib.Path` or, for a URL, a :class:`RemoteVideo`."""
    if isinstance(video, RemoteVideo):
        return video
    found = local_or_url(video)
    return RemoteVideo(found) if isinstance(found, str) else found
