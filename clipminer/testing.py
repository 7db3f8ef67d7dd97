"""An S3 server on loopback for tests and benchmarks, and a proxy that misbehaves.

:class:`LoopbackS3` runs moto's server (``ThreadedMotoServer``, the test server of s3fs's
own suite) on 127.0.0.1 and points the standard AWS settings of this process at it, so
the code under test reaches it the way it reaches any S3-compatible store: through
``AWS_ENDPOINT_URL`` and the credential chain, with no clipminer setting.
:class:`FaultyProxy` sits between the two: it answers some requests with 503
SlowDown, drops the connection of others, and counts requests and bytes. Both
listen on 127.0.0.1 only. moto is a development dependency (``clipminer[dev]``).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

LOOPBACK = "127.0.0.1"
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class LoopbackS3:
    """moto's S3 server on 127.0.0.1, and this process's AWS settings pointed at it.

    Use as a context manager; :meth:`bucket` makes a bucket and gives its URL. On exit
    the environment is as it was.
    """

    def __init__(self) -> None:
        self.endpoint = ""
        self._server: Any = None
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> LoopbackS3:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.point_at(self.endpoint)
        return self

    def point_at(self, endpoint: str) -> None:
        """Send this process's S3 requests to ``endpoint`` (the server, or a proxy of it)."""
        env = {**_AWS_ENV, "AWS_ENDPOINT_URL": endpoint}
        for key, value in env.items():
            self._saved.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        _forget_filesystems()

    @contextlib.contextmanager
    def through(self, faults: Faults | None = None) -> Iterator[FaultyProxy]:
        """This process's S3 requests go through a :class:`FaultyProxy` inside."""
        with FaultyProxy(self.endpoint, faults) as proxy:
            self.point_at(proxy.endpoint)
            try:
                yield proxy
            finally:
                self.point_at(self.endpoint)

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """The variables another process needs to reach the server (or ``endpoint``)."""
        return {**_AWS_ENV, "AWS_ENDPOINT_URL": endpoint or self.endpoint}

    def bucket(self, name: str) -> str:
        """Create the bucket ``name``; its URL."""
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket=name)
        return f"s3://{name}"

    def __exit__(self, *exc: object) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _forget_filesystems()
        if self._server is not None:
            self._server.stop()


def _forget_filesystems() -> None:
    """fsspec keeps one filesystem per set of options: a new endpoint needs a new one."""
    with contextlib.suppress(ImportError):
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()


@dataclass
class Faults:
    """Which requests :class:`FaultyProxy` spoils, counted from 1 over all requests."""

    slow_down_every: int = 0
    """Every n-th request is answered 503 SlowDown (0: none)."""
    reset_every: int = 0
    """Every n-th request has its connection reset, with no answer (0: none)."""
    fail_all: bool = False
    """Every request is answered 503 SlowDown."""
    fail_puts: bool = False
    """Every upload (PUT) is answered 503 SlowDown; reads pass."""
    put_delay_seconds: float = 0.0
    """Every upload (PUT) waits this long first: a window in which to kill a run."""


@dataclass
class Traffic:
    """What passed through :class:`FaultyProxy`."""

    requests: int = 0
    gets: int = 0
    bytes_out: int = 0
    """Bytes of response bodies sent to the client."""
    bytes_in: int = 0
    """Bytes of request bodies received from the client."""
    slowed: int = 0
    reset: int = 0
    answered: list[tuple[str, str]] = field(default_factory=list)
    """(method, path) of each request that reached the server, in order."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class _Served:
    """An HTTP server on 127.0.0.1 in a thread of its own; a context manager."""

    def __init__(self, handler: Any) -> None:
        self._server = ThreadingHTTPServer((LOOPBACK, 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class FaultyProxy(_Served):
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` that spoils requests as
    :class:`Faults` says and counts the :class:`Traffic`. A context manager."""

    def __init__(self, upstream: str, faults: Faults | None = None) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.faults = faults or Faults()
        self.traffic = Traffic()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    proxy._relay(self)  # a client killed mid-request is no proxy error

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay  # noqa: N815

        super().__init__(Handler)
        self.endpoint = self.url

    def _verdict(self, method: str) -> str:
        with self.traffic.lock:
            self.traffic.requests += 1
            n, f = self.traffic.requests, self.faults
            spoilt = f.fail_all or (f.fail_puts and method == "PUT")
            if spoilt or (f.slow_down_every and n % f.slow_down_every == 0):
                self.traffic.slowed += 1
                return "slow"
            if f.reset_every and n % f.reset_every == 0:
                self.traffic.reset += 1
                return "reset"
        return "pass"

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        verdict = self._verdict(handler.command)
        if handler.command == "PUT" and self.faults.put_delay_seconds:
            time.sleep(self.faults.put_delay_seconds)
        if verdict == "reset":  # RST, no answer: what a dropped connection looks like
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.close_connection = True
            handler.connection.close()
            return
        if verdict == "slow":
            handler.send_response(503, "Slow Down")
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(SLOW_DOWN)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(SLOW_DOWN)
            return
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "expect"}
        upstream = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        handler.send_response(answer.status, answer.reason)
        head = handler.command == "HEAD"  # its Content-Length is the object's, with no body
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "connection") and (
                head or key.lower() != "content-length"
            ):
                handler.send_header(key, value)
        if not head:
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)
        with self.traffic.lock:
            self.traffic.bytes_in += len(body)
            self.traffic.bytes_out += len(data) if handler.command != "HEAD" else 0
            self.traffic.gets += handler.command == "GET"
            self.traffic.answered.append((handler.command, handler.path))


class FileServer(_Served):
    """Files of one folder over HTTP on 127.0.0.1, with ranged reads (``Range: bytes=``)
    as object stores and CDNs answer them. A context manager; :attr:`url` is its root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        import functools
        from http.server import SimpleHTTPRequestHandler

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def send_head(self) -> Any:
                spec = self.headers.get("Range", "")
                path = Path(self.translate_path(self.path.split("?", 1)[0]))
                if not spec.startswith("bytes=") or not path.is_file():
                    return super().send_head()
                size = path.stat().st_size
                first, _, last = spec.removeprefix("bytes=").partition("-")
                start = int(first) if first else max(0, size - int(last))
                end = min(int(last), size - 1) if first and last else size - 1
                handle = path.open("rb")  # the base class closes it
                handle.seek(start)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                return _Limited(handle, end - start + 1)

        super().__init__(functools.partial(Handler, directory=str(root)))


class _Limited:
    """A file whose reads stop after ``left`` bytes (the body of a ranged answer)."""

    def __init__(self, handle: Any, left: int) -> None:
        self.handle, self.left = handle, left

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.handle.read(size)
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.handle.close()
