"""Where a query's search stops, without a browser: the result pages are given."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from scrapers.config import ScrapeConfig
from scrapers.engines import engines
from scrapers.hits import ImageHit
from scrapers.scrape import ActionSummary, ClassPlan, Manifest, ManifestRow, _Job

BASE = "http://127.0.0.1:9"


def _pages(*pages: range) -> list[list[ImageHit]]:
    return [[ImageHit(f"{BASE}/{k}.jpg", f"{BASE}/about") for k in page] for page in pages]


def _search(tmp_path: Path, engine: str, pages, taken: range, want: int) -> list[str]:
    """The image URLs the search downloads, with ``taken`` saved by an earlier run."""
    manifest = Manifest(tmp_path / "manifest.csv")
    for k in taken:
        manifest.add(ManifestRow("a", "a", engine, f"{BASE}/{k}.jpg", status="ok"))
    job = _Job(
        engines()[engine], BASE, ScrapeConfig(max_pages=6), tmp_path, manifest,
        None, None, {"a": ActionSummary("a")}, threading.Event(), None, {"a": "a"},  # type: ignore[arg-type]
        threading.BoundedSemaphore(4),
    )  # fmt: skip
    fetched: list[str] = []
    read: list[int] = []

    def links(driver: object, url: str, query: str) -> list[ImageHit]:
        read.append(len(read))
        return pages[len(read) - 1] if len(read) <= len(pages) else []

    def download(plan: ClassPlan, query: str, hits: list[ImageHit], got: int, want: int) -> int:
        take = hits[: want - got]
        fetched.extend(h.image_url for h in take)
        return got + len(take)

    job._links = links  # type: ignore[method-assign]
    job._download = download  # type: ignore[method-assign]
    job._search(None, ClassPlan("a", ("a",), want), "a", want)
    return [url.removeprefix(f"{BASE}/") for url in fetched]


def test_a_resumed_run_on_a_paged_engine_reads_on_past_the_pages_it_took(tmp_path: Path) -> None:
    pages = _pages(range(0, 5), range(5, 10), range(10, 15))
    got = _search(tmp_path, "local", pages, taken=range(0, 10), want=5)
    assert got == [f"{k}.jpg" for k in range(10, 15)]


@pytest.mark.parametrize("engine", ["local", "bing"])
def test_a_paged_engine_stops_at_the_end_or_at_a_page_it_showed_already(
    tmp_path: Path, engine: str
) -> None:
    # the engine repeats its last page: the search stops there, with what it found
    pages = _pages(range(0, 5), range(0, 5), range(5, 10))
    assert _search(tmp_path / "a", engine, pages, taken=range(0), want=20) == [
        f"{k}.jpg" for k in range(5)
    ]
    # everything taken before and no page after: the search ends
    assert _search(tmp_path / "b", engine, _pages(range(0, 5)), taken=range(5), want=5) == []
