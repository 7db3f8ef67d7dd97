"""An offline engine: clipminer serves an image folder behind search result pages.

``LocalEngineServer`` (127.0.0.1, a free port) answers ``/images/search?q=QUERY&page=N``
with a page of results for the class folder whose name matches the query (case,
spaces and underscores ignored), ``/img/<class>/<file>`` with the image and
``/page/<class>/<file>`` with a small page that shows it. The demo and the tests
scrape it through headless Chromium exactly as they would a real engine.
"""

from __future__ import annotations

import html as html_lib
import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, quote, quote_plus, unquote, urlsplit

from bs4 import BeautifulSoup

from clipminer.labels import label_key
from scrapers.engines.base import Engine, Link, attr, link
from scrapers.hits import ImageHit

PER_PAGE = 20


def search_url(base: str, query: str, page: int) -> str:
    return f"{base.rstrip('/')}/images/search?q={quote_plus(query)}&page={page}"


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def parse(html: str) -> list[Link]:
    """``a.result`` links: href = image, data-page = page, data-width/height."""
    soup = BeautifulSoup(html, "html.parser")
    return [
        link(
            url,
            attr(anchor, "data-page") or None,
            attr(anchor, "title") or None,
            _int(attr(anchor, "data-width")),
            _int(attr(anchor, "data-height")),
        )
        for anchor in soup.select("a.result")
        if (url := (attr(anchor, "href") or "").strip())
    ]


def blocked(html: str) -> str | None:
    return "captcha" if 'class="captcha"' in html else None


ENGINE = Engine("local", "", search_url, parse, blocked)


def results_page(query: str, hits: list[ImageHit], *, next_url: str | None) -> str:
    """A results page in the local engine's markup."""
    rows = "\n".join(
        f'<a class="result" href="{html_lib.escape(h.image_url)}" '
        f'data-page="{html_lib.escape(h.page_url or "")}" title="{html_lib.escape(h.title or "")}"'
        + (f' data-width="{h.width}" data-height="{h.height}"' if h.width and h.height else "")
        + f'><img src="{html_lib.escape(h.image_url)}" width="96"></a>'
        for h in hits
    )
    more = f'<a class="next" href="{html_lib.escape(next_url)}">more</a>' if next_url else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html_lib.escape(query)} - "
        f"local images</title></head><body><div id='results'>{rows}</div>{more}</body></html>"
    )


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        root = self.server.root
        if parts.path == "/images/search":
            params = parse_qs(parts.query)
            query = params.get("q", [""])[0]
            page = int(params.get("page", ["0"])[0] or 0)
            folder = self.server.folders.get(label_key(query))
            files = sorted(p for p in folder.iterdir() if p.is_file()) if folder else []
            chunk = files[page * PER_PAGE : (page + 1) * PER_PAGE]
            base = f"http://{self.headers.get('Host')}"
            hits = [
                ImageHit(
                    f"{base}/img/{quote(p.parent.name)}/{quote(p.name)}",
                    f"{base}/page/{quote(p.parent.name)}/{quote(p.name)}",
                    p.stem,
                )
                for p in chunk
            ]
            more = (page + 1) * PER_PAGE < len(files)
            body = results_page(
                query, hits, next_url=search_url(base, query, page + 1) if more else None
            )
            self._send(200, "text/html; charset=utf-8", body.encode())
        elif parts.path.startswith(("/img/", "/page/")):
            kind, _, rest = parts.path[1:].partition("/")
            path = (root / unquote(rest)).resolve()
            if not path.is_file() or root.resolve() not in path.parents:
                self._send(404, "text/plain", b"not found")
            elif kind == "img":
                self._send(
                    200,
                    mimetypes.guess_type(path.name)[0] or "application/octet-stream",
                    path.read_bytes(),
                )
            else:
                body = f"<html><body><img src='/img/{quote(rest)}'></body></html>"
                self._send(200, "text/html", body.encode())
        else:
            self._send(404, "text/plain", b"not found")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    folders: dict[str, Path]


class LocalEngineServer:
    """Serves ``root/<class>/<image>`` as a search engine on 127.0.0.1 (a context manager)."""

    def __init__(self, root: str | Path, *, port: int = 0) -> None:
        self.root = Path(root)
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.root = self.root
        self._server.folders = {label_key(p.name): p for p in self.root.iterdir() if p.is_dir()}
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="local image engine"
        )

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> LocalEngineServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
