"""Engine parsers on real saved pages and on fixtures of each engine's current markup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("bs4")

from scrapers.engines import RefusedLink, bing, duckduckgo, engines, google, link, local
from scrapers.hits import ImageHit


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def test_real_bing_images_page(shared_data: Path) -> None:
    hits = bing.parse(_read(shared_data / "scraper" / "bing_images_gopher_de.html"))
    assert len(hits) == 28
    assert all(
        h.image_url.startswith("http") and h.page_url and h.page_url.startswith("http")
        for h in hits
    )
    assert hits[0].image_url.endswith("GopherHunting.jpg")
    assert (hits[0].width, hits[0].height) == (1024, 681)
    assert len({h.image_url for h in hits}) == 28


@pytest.mark.parametrize(
    "name",
    [
        "se-scraper_google_test_keyword_page1.html",
        "se-scraper_bing_test_keyword_page1.html",
        "se-scraper_duckduckgo_test_keyword_page1.html",
    ],
)
def test_web_search_pages_give_no_image_hits(shared_data: Path, name: str) -> None:
    html = _read(shared_data / "scraper" / name)
    for engine in engines().values():
        assert engine.parse(html) == []
        assert engine.blocked(html) is None


def test_current_bing_grid() -> None:
    meta = {"murl": "https://img.example/a.jpg", "purl": "https://site.example/a", "t": "A"}
    html = (
        f"<div class='imgpt'><a class='iusc' m='{json.dumps(meta)}' href='#'><img></a>"
        "<div class='img_info'><span class='nowrap'>1920 x 1080 · jpeg</span></div></div>"
        "<a class='iusc' m='not json'></a>"
        f"<a class='iusc' m='{json.dumps({'murl': 'javascript:alert(1)'})}'></a>"
    )
    assert bing.parse(html) == [
        ImageHit("https://img.example/a.jpg", "https://site.example/a", "A", 1920, 1080),
        RefusedLink("javascript:alert(1)"),
    ]
    assert "first=36&count=35" in bing.search_url("http://127.0.0.1:9", "arm wrestling", 1)
    assert bing.search_url("http://127.0.0.1:9", "arm wrestling", 0).startswith(
        "http://127.0.0.1:9/images/search?q=arm+wrestling&first=1"
    )


def test_google_full_size_data_then_thumbnails_and_blocks() -> None:
    page = (
        '<script>var d=[0,["https://encrypted-tbn0.gstatic.com/images?q=x",90,120],'
        '["https://img.example/full.jpg",768,1024],'
        '["https://img.example/full.jpg",768,1024]];</script>'
    )
    assert google.parse(page) == [ImageHit("https://img.example/full.jpg", None, None, 1024, 768)]
    thumb = "data:image/jpeg;base64," + "A" * 300
    fallback = google.parse(f'<div id="search"><img src="{thumb}" alt="cat"></div>')
    assert len(fallback) == 1 and fallback[0].thumbnail
    assert google.blocked("<form action='https://consent.google.com/save'>") == "consent wall"
    assert google.blocked("Our systems have detected unusual traffic") == "captcha"
    assert "tbm=isch" in google.search_url("https://www.google.com", "yoga", 0)


def test_duckduckgo_tiles() -> None:
    html = (
        '<div class="tile tile--img"><img class="tile--img__img" '
        'data-src="//external-content.duckduckgo.com/iu/?u=https%3A%2F%2Fimg.example%2Fd.png&f=1"'
        ' alt="D"><a class="tile--img__sub" href="https://site.example/d">site</a></div>'
    )
    assert duckduckgo.parse(html) == [
        ImageHit("https://img.example/d.png", "https://site.example/d", "D")
    ]


def test_local_markup_round_trip() -> None:
    hits = [
        ImageHit("http://127.0.0.1:1/img/a.jpg", "http://127.0.0.1:1/page/a", "a", 10, 20),
        ImageHit("http://127.0.0.1:1/img/b.jpg"),
    ]
    html = local.results_page("q", hits, next_url=None)
    assert local.parse(html) == [hits[0], ImageHit("http://127.0.0.1:1/img/b.jpg", None, None)]
    assert local.parse('<a class="result" href="file:///etc/passwd"></a>') == [
        RefusedLink("file:///etc/passwd")
    ]
    assert local.parse('<a class="result" href=" "></a><a class="result"></a>') == []


def test_hits_refuse_other_schemes() -> None:
    with pytest.raises(ValueError, match="http"):
        ImageHit("file:///etc/passwd")
    with pytest.raises(ValueError, match="fetched"):
        RefusedLink("https://img.example/a.jpg")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("javascript:alert(1)", "not javascript:"),
        ("file:///etc/passwd", "not file:"),
        ("FTP://example.com/a.jpg", "not ftp:"),
        ("/img/a.jpg", "not an absolute http(s) URL"),
        ("http://[::1", "not a valid URL"),
    ],
)
def test_refused_links_say_why(url: str, reason: str) -> None:
    refused = link(url, "https://site.example/p", "t")
    assert isinstance(refused, RefusedLink) and refused.page_url == "https://site.example/p"
    assert refused.reason.startswith("refused: ") and reason in refused.reason


@pytest.mark.parametrize(
    "url", ["https://img.example/a.jpg", "HTTP://img.example/b", "data:image/png;base64,AA"]
)
def test_fetched_links_are_hits(url: str) -> None:
    assert link(url, None, None, 3, 4) == ImageHit(url, None, None, 3, 4)


def test_duckduckgo_proxied_javascript_is_refused() -> None:
    html = (
        '<div class="tile tile--img"><img class="tile--img__img" '
        'data-src="//external-content.duckduckgo.com/iu/?u=javascript%3Aalert(1)&f=1" alt="x">'
        "</div>"
    )
    assert duckduckgo.parse(html) == [RefusedLink("javascript:alert(1)", None, "x")]
