"""Google Images: full-size URLs from the page's embedded data; a consent
interstitial is recognised (the driver clicks through it); base64 thumbnails only
as a flagged last resort."""

from __future__ import annotations

import re
from urllib.parse import quote_plus

from bs4 import BeautifulSoup

from scrapers.engines.base import Engine, Link, attr
from scrapers.hits import ImageHit

# ["https://full/size.jpg",height,width] in the page's script data.
_FULL = re.compile(r'\["(https?://[^"\\]+?)",(\d+),(\d+)\]')
_THUMB_HOSTS = ("gstatic.com", "googleusercontent.com/proxy", "google.com/")


def search_url(base: str, query: str, page: int) -> str:
    return f"{base.rstrip('/')}/search?q={quote_plus(query)}&tbm=isch&ijn={page}&start={page * 100}"


def parse(html: str) -> list[Link]:
    """Full-size image hits from Google's embedded data; thumbnails only if none."""
    hits: list[Link] = []
    seen: set[str] = set()
    for match in _FULL.finditer(html):
        url = match.group(1).encode().decode("unicode_escape")
        if any(host in url for host in _THUMB_HOSTS) or url in seen:
            continue
        seen.add(url)
        hits.append(ImageHit(url, None, None, int(match.group(3)), int(match.group(2))))
    if hits:
        return hits
    soup = BeautifulSoup(html, "html.parser")
    results = soup.select("div#search img, div#islrg img, g-img img")
    for image in results:
        src = attr(image, "src") or attr(image, "data-src") or ""
        if src.startswith("data:image/") and len(src) > 200:
            hits.append(ImageHit(src, None, attr(image, "alt") or None, thumbnail=True))
    return hits


def blocked(html: str) -> str | None:
    lower = html.lower()
    if "consent.google" in lower or "before you continue" in lower:
        return "consent wall"
    if "/sorry/" in lower or "unusual traffic" in lower or "recaptcha" in lower:
        return "captcha"
    return None


ENGINE = Engine("google", "https://www.google.com", search_url, parse, blocked, scroll_pages=True)
