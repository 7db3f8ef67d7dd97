"""DuckDuckGo Images: tiles rendered by the page's script; the original URL is the
``u`` parameter of the image proxy; more results by scrolling."""

from __future__ import annotations

from urllib.parse import parse_qs, quote_plus, urljoin, urlsplit

from bs4 import BeautifulSoup

from scrapers.engines.base import Engine, Link, attr, link


def search_url(base: str, query: str, page: int) -> str:
    return f"{base.rstrip('/')}/?q={quote_plus(query)}&iax=images&ia=images"


def _original(src: str) -> str | None:
    """The image behind DuckDuckGo's proxy (whatever its scheme), or ``src`` if http(s)."""
    if src.startswith("//"):
        src = "https:" + src
    try:
        parts = urlsplit(src)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if parts.path.endswith("/iu/") or parts.path == "/iu":
        inner = parse_qs(parts.query).get("u")
        return inner[0] if inner else None
    return src if parts.scheme in ("http", "https") else None


def parse(html: str) -> list[Link]:
    soup = BeautifulSoup(html, "html.parser")
    hits: list[Link] = []
    for tile in soup.select("div.tile--img"):
        image = tile.select_one("img.tile--img__img")
        if image is None:
            continue
        url = _original(attr(image, "data-src") or attr(image, "src") or "")
        sub = tile.select_one("a.tile--img__sub")
        if url and url.strip():
            page = urljoin("https://duckduckgo.com/", attr(sub, "href")) if sub else None
            hits.append(link(url.strip(), page, attr(image, "alt") or None))
    return hits


def blocked(html: str) -> str | None:
    lower = html.lower()
    if "anomaly-modal" in lower or "unusual traffic" in lower:
        return "captcha"
    return None


ENGINE = Engine(
    "duckduckgo", "https://duckduckgo.com", search_url, parse, blocked, scroll_pages=True
)
