"""Bing Images: the current grid (``a.iusc`` with JSON in ``m``) and the older
``div.item a.thumb`` layout; pages by ``first=`` offsets."""

from __future__ import annotations

import json
import re
from urllib.parse import quote_plus

from bs4 import BeautifulSoup

from scrapers.engines.base import Engine, Link, attr, link

PER_PAGE = 35
_SIZE = re.compile(r"(\d+)\s*[x×]\s*(\d+)")


def search_url(base: str, query: str, page: int) -> str:
    first = page * PER_PAGE + 1
    return f"{base.rstrip('/')}/images/search?q={quote_plus(query)}&first={first}&count={PER_PAGE}"


def _hit(
    url: str | None, page: str | None, title: str | None, size_text: str | None
) -> Link | None:
    url = (url or "").strip()
    if not url:
        return None
    width = height = None
    if size_text and (match := _SIZE.search(size_text)):
        width, height = int(match.group(1)), int(match.group(2))
    return link(url, page or None, title or None, width, height)


def parse(html: str) -> list[Link]:
    """Result links of a Bing Images page (either layout); [] for other pages."""
    soup = BeautifulSoup(html, "html.parser")
    hits: list[Link] = []
    for anchor in soup.select("a.iusc"):
        try:
            meta = json.loads(attr(anchor, "m") or "{}")
        except json.JSONDecodeError:
            continue
        size = anchor.find_parent("div", class_="imgpt")
        info = size.select_one(".img_info span.nowrap") if size else None
        hit = _hit(
            attr(meta, "murl"),
            attr(meta, "purl"),
            attr(meta, "t"),
            info.get_text() if info else None,
        )
        if hit:
            hits.append(hit)
    for item in soup.select("div.item"):
        thumb = item.select_one("a.thumb")
        title = item.select_one("div.meta a.tit")
        info = item.select_one("div.meta div.fileInfo")
        hit = _hit(
            attr(thumb, "href") if thumb else None,
            attr(title, "href") if title else None,
            title.get_text(strip=True) if title else None,
            info.get_text() if info else None,
        )
        if hit:
            hits.append(hit)
    return hits


def blocked(html: str) -> str | None:
    lower = html.lower()
    if "captcha" in lower and "a.iusc" not in lower and "iusc" not in lower:
        return "captcha"
    if 'id="bnp_container"' in lower and "iusc" not in lower and 'class="item"' not in lower:
        return "consent wall"
    return None


ENGINE = Engine("bing", "https://www.bing.com", search_url, parse, blocked)
