"""The background class of ``clipminer scrape``: generic queries dealt round-robin."""

from __future__ import annotations

import contextlib
import csv
import random
import shutil
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from clipminer.cli import app
from clipminer.errors import UsageError
from scrapers.background import parse_queries, read_queries, round_robin
from scrapers.config import ScrapeConfig

QUERIES = "# generic scenes\ncity street\n\nbeach   # sand and sea\nCity  Street\nthe moon\n"


# -- the query file ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "queries"),
    [
        (QUERIES, ["city street", "beach", "the moon"]),
        ("", []),
        ("# only a comment\n\n   \n", []),
        ("a kitchen counter\r\na  kitchen\tcounter\r\n", ["a kitchen counter"]),
        ("forest#no space before the comment\nforest\n", ["forest"]),
        ("Dog lying down\ndog lying down\n", ["Dog lying down"]),  # the first spelling
        ("  lake at sunset  \n", ["lake at sunset"]),
    ],
)
def test_parse_queries(text: str, queries: list[str]) -> None:
    assert parse_queries(text) == queries


def test_read_queries_file_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "queries.txt"
    path.write_text(QUERIES, encoding="utf-8-sig")  # a BOM is not part of the first query
    assert read_queries(path) == ["city street", "beach", "the moon"]
    with pytest.raises(UsageError, match="no such background queries file"):
        read_queries(tmp_path / "missing.txt")
    path.write_text("# nothing but comments\n\n")
    with pytest.raises(UsageError, match="no background queries"):
        read_queries(path)


def test_default_queries_are_many_varied_and_no_kinetics_action(shared_data: Path) -> None:
    queries = read_queries()
    assert 30 <= len(queries) <= 40
    assert len({q.casefold() for q in queries}) == len(queries)
    labels = (shared_data / "labels" / "mmaction2_label_map_k400.txt").read_text().splitlines()
    for query in queries:
        for label in filter(None, (line.strip().lower() for line in labels)):
            assert f" {label} " not in f" {query.lower()} ", (query, label)


# -- the round-robin split ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "have", "targets"),
    [
        (7, [0, 0, 0], [3, 2, 2]),
        (6, [0, 0, 0], [2, 2, 2]),
        (2, [0, 0, 0], [1, 1, 0]),  # fewer images than queries: the first ones
        (0, [0, 0], [0, 0]),
        (5, [0], [5]),
        (200, [0] * 38, [6] * 10 + [5] * 28),
        (7, [4, 0, 0], [4, 2, 1]),  # a resumed class evens out
        (4, [1, 0, 1], [2, 1, 1]),
        (9, [0, 5, 1], [2, 5, 2]),
        (3, [5, 0], [5, 0]),  # already more than the total: nothing taken away
        (5, [2, 2, 2], [2, 2, 2]),
        (10, [], []),
    ],
)
def test_round_robin(total: int, have: list[int], targets: list[int]) -> None:
    assert round_robin(total, have) == targets


def test_round_robin_deals_one_at_a_time_to_the_fewest() -> None:
    rng = random.Random(7)
    for _ in range(300):
        have = [rng.randrange(6) for _ in range(rng.randrange(1, 7))]
        total = rng.randrange(40)
        dealt = list(have)
        for _ in range(total - sum(have)):
            dealt[dealt.index(min(dealt))] += 1
        assert round_robin(total, have) == dealt


def test_round_robin_refuses_negative_counts() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        round_robin(-1, [0])
    with pytest.raises(ValueError, match="0 or more"):
        round_robin(3, [1, -1])


# -- settings and plans ------------------------------------------------------------------------


def test_config_background_options(tmp_path: Path) -> None:
    assert not ScrapeConfig().background
    assert ScrapeConfig(per_action=30).background_target == 60
    assert ScrapeConfig(background_queries=tmp_path / "q.txt").background
    assert ScrapeConfig(background_images=5).background_target == 5
    assert ScrapeConfig(background_images=5).background
    with pytest.raises(UsageError, match="--background-label"):
        ScrapeConfig(background=True, background_label=" .. ")
    with pytest.raises(UsageError, match="--background-images"):
        ScrapeConfig(background_images=0)


def test_class_plans() -> None:
    scrape = pytest.importorskip("scrapers.scrape")
    config = ScrapeConfig(per_action=4, query_template="{action} video", background=True)
    plans = scrape.class_plans(["juggling", "juggling", "yoga"], config)
    assert [(p.name, p.queries, p.target) for p in plans[:2]] == [
        ("juggling", ("juggling video",), 4),
        ("yoga", ("yoga video",), 4),
    ]
    background = plans[2]
    assert background.name == "background" and background.target == 8
    assert background.queries == tuple(read_queries())  # no template on generic queries
    assert [p.name for p in scrape.class_plans([], config)] == ["background"]
    with pytest.raises(UsageError, match="no actions"):
        scrape.class_plans([], ScrapeConfig())
    with pytest.raises(UsageError, match="'background' is the background class"):
        scrape.class_plans(["yoga", "background"], config)
    with pytest.raises(UsageError, match="ignoring case"):
        scrape.class_plans(["Back ground"], config)
    assert len(scrape.class_plans(["background"], ScrapeConfig())) == 1  # no class, no clash


def test_cli_refuses_an_action_named_as_the_background_class(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["scrape", "--action", "negatives", "--background-label", "negatives", "--out",
         str(tmp_path / "out"), "--background"],
    )  # fmt: skip
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "'negatives' is the background class" in lines[0]
    assert not (tmp_path / "out").exists()


# -- the local engine serves generic queries ---------------------------------------------------


def test_local_engine_serves_every_generic_query() -> None:
    scrape = pytest.importorskip("scrapers.scrape")
    from scrapers.engines import local

    queries = ("city street", "beach", "fish in an aquarium", "Bouncing")
    config = ScrapeConfig(engine="local", per_action=2, background_images=7)
    with scrape._engine_base(config, ["bouncing"], queries) as base:
        pages = {
            q: urllib.request.urlopen(local.search_url(base, q, 0), timeout=10).read().decode()
            for q in queries
        }
    hits = {q: [h.image_url for h in local.parse(page)] for q, page in pages.items()}
    assert all(len(hits[q]) == 2 + 5 for q in queries[:3])  # its share, and some to spare
    assert len(set().union(*hits.values())) == sum(map(len, hits.values()))  # all different
    assert all("/img/bouncing/" in url for url in hits["Bouncing"])  # the toy action's


# -- the scraper end to end --------------------------------------------------------------------


def _images(folder: Path, count: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for k in range(count):
        blocks = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        pixels = np.kron(blocks, np.ones((16, 16, 1), np.uint8))
        Image.fromarray(pixels).save(folder / f"{k}.png")


def _manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def no_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Search pages are fetched with requests; the rest of the scraper is unchanged."""
    requests = pytest.importorskip("requests")
    import scrapers.driver

    @contextlib.contextmanager
    def chromium(**kwargs: Any) -> Iterator[Any]:
        with requests.Session() as session:
            yield session

    def load(driver: Any, url: str, *, scrolls: int = 0) -> str:
        return str(driver.get(url, timeout=10).text)

    monkeypatch.setattr(scrapers.driver, "chromium", chromium)
    monkeypatch.setattr(scrapers.driver, "load", load)


def test_a_short_query_leaves_its_share_to_the_others(tmp_path: Path, no_browser: None) -> None:
    scrape = pytest.importorskip("scrapers.scrape")
    from scrapers.download import DownloadConfig
    from scrapers.engines.local import LocalEngineServer

    _images(tmp_path / "engine" / "city street", 6, seed=1)
    _images(tmp_path / "engine" / "beach", 2, seed=2)  # and nothing for the moon
    queries = tmp_path / "queries.txt"
    queries.write_text(QUERIES)
    out = tmp_path / "out"
    with LocalEngineServer(tmp_path / "engine") as server:
        config = ScrapeConfig(
            engine="local",
            engine_url=server.url,
            background_queries=queries,
            background_images=7,
            download=DownloadConfig(polite_seconds=0),
        )
        (summary,) = scrape.scrape([], out, config=config)
    assert (summary.action, summary.saved) == ("background", 7)
    assert summary.note.startswith("3 generic queries; 1 blocked or empty, first: ")
    assert "'the moon'" in summary.note
    rows = _manifest(out)
    assert {r["action"] for r in rows} == {"background"}
    ok = Counter(r["query"] for r in rows if r["status"] == "ok")
    assert ok == {"city street": 5, "beach": 2}  # 3 + 2 + 0, then the moon's 2 to the others
    assert [r["query"] for r in rows if r["status"] == "blocked"] == ["the moon"]
    assert len(list((out / "background").iterdir())) == 7


needs_chromium = pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="apt-get install chromium chromium-driver",
)


@pytest.mark.browser
@needs_chromium
def test_scrape_an_action_and_a_background_class(tmp_path: Path) -> None:
    scrape = pytest.importorskip("scrapers.scrape")
    from scrapers.download import DownloadConfig

    queries = tmp_path / "queries.txt"
    queries.write_text("city street\nbeach\nfish in an aquarium\n")
    out = tmp_path / "out"
    config = ScrapeConfig(
        engine="local",
        per_action=3,
        background_queries=queries,
        background_images=7,
        download=DownloadConfig(polite_seconds=0),
    )
    summaries = scrape.scrape(["bouncing"], out, config=config)
    assert [(s.action, s.saved) for s in summaries] == [("bouncing", 3), ("background", 7)]
    assert sorted(p.name for p in out.iterdir()) == ["background", "bouncing", "manifest.csv"]
    assert len(list((out / "background").glob("*.jpg"))) == 7
    rows = _manifest(out)
    background = [r for r in rows if r["action"] == "background"]
    assert all(r["status"] == "ok" and r["path"].startswith("background/") for r in background)
    assert Counter(r["query"] for r in background) == {
        "city street": 3,
        "beach": 2,
        "fish in an aquarium": 2,
    }
    assert {r["query"] for r in rows if r["action"] == "bouncing"} == {"bouncing"}

    # The command line resumes it: the action is full; the class evens out to 9.
    result = CliRunner().invoke(
        app,
        ["scrape", "--action", "bouncing", "--engine", "local", "--per-action", "3",
         "--background-queries", str(queries), "--background-images", "9",
         "--polite-seconds", "0", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.output.splitlines() if line.startswith("│ background ")]
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    assert cells[0] == "background" and cells[2] == "9" and cells[5] == "3 generic queries"
    again = _manifest(out)
    assert again[: len(rows)] == rows
    assert all(r["action"] == "background" for r in again[len(rows) :])
    ok = Counter(r["query"] for r in again if r["action"] == "background" and r["status"] == "ok")
    assert ok == dict.fromkeys(["city street", "beach", "fish in an aquarium"], 3)
    assert len(list((out / "background").glob("*.jpg"))) == 9
