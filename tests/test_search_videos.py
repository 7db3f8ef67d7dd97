"""search-videos against a fake YouTube Data API v3 on 127.0.0.1.

The fake serves ``search`` pages per query (with page tokens) and ``videos`` details,
checks the key header, and can answer with a quota error or an invalid key the way
the real API does (JSON error bodies with a reason).
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from clipminer.cli import app
from clipminer.sources.youtube import (
    CANDIDATE_COLUMNS,
    SearchConfig,
    parse_duration,
    read_candidates,
)

runner = CliRunner()
KEY = "test-key-7f3a"
BAD_KEY = "API key not valid. Please pass a valid API key."
QUOTA = (
    "The request cannot be completed because you have exceeded your "
    '<a href="/youtube/v3/getting-started#quota">quota</a>.'
)


@dataclass
class FakeApi:
    """Search results per query: a list of pages, each a list of video ids."""

    pages: dict[str, list[list[str]]] = field(default_factory=dict)
    quota_after: int | None = None
    """Answer ``quotaExceeded`` once this many search calls were made."""
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/youtube/v3"

    def searches(self, query: str | None = None) -> list[dict[str, str]]:
        return [p for e, p in self.requests if e == "search" and (query is None or p["q"] == query)]


def _error(code: int, reason: str, message: str) -> dict[str, Any]:
    detail = {"message": message, "domain": "youtube", "reason": reason}
    return {"error": {"code": code, "message": message, "errors": [detail]}}


def _handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            endpoint = url.path.rsplit("/", 1)[-1]
            params = {k: v[-1] for k, v in parse_qs(url.query).items()}
            api.requests.append((endpoint, params))
            if self.headers.get("X-Goog-Api-Key") != KEY or "key" in params:
                return self._json(400, _error(400, "keyInvalid", BAD_KEY))
            if endpoint == "search":
                if api.quota_after is not None and len(api.searches()) > api.quota_after:
                    return self._json(403, _error(403, "quotaExceeded", QUOTA))
                return self._json(200, self._search(params))
            if endpoint == "videos":
                ids = params["id"].split(",")
                items = [{"id": i, "contentDetails": {"duration": f"PT{len(i)}M5S"},
                          "status": {"license": "creativeCommon"}} for i in ids]  # fmt: skip
                return self._json(200, {"items": items})
            return self._json(404, _error(404, "notFound", "no such endpoint"))

        def _search(self, params: dict[str, str]) -> dict[str, Any]:
            pages = api.pages.get(params["q"], [])
            index = int(params.get("pageToken", "0"))
            ids = pages[index] if index < len(pages) else []
            body: dict[str, Any] = {"items": [
                {"id": {"kind": "youtube#video", "videoId": i},
                 "snippet": {"title": f"Title of {i}\n", "channelTitle": "chan",
                             "publishedAt": "2021-05-01T10:00:00Z"}}
                for i in ids
            ]}  # fmt: skip
            if index + 1 < len(pages):
                body["nextPageToken"] = str(index + 1)
            return body

        def _json(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    """A fake Data API on 127.0.0.1 (stopped after the test)."""
    api = FakeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    api.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield api
    server.shutdown()
    server.server_close()


def _search(api: FakeApi, out: Path, *args: str, key: str = KEY) -> tuple[int, str]:
    command = ["search-videos", "--out", str(out), "--api-url", api.url, "--api-key", key]
    result = runner.invoke(app, [*command, *args], env={"YOUTUBE_API_KEY": ""})
    return result.exit_code, result.output


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT4M13S", 253.0), ("PT1H", 3600.0), ("P1DT2S", 86402.0), ("PT0.5S", 0.5),
     ("P0D", None), ("", None), ("4 minutes", None)],
)  # fmt: skip
def test_iso_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_filters_become_api_parameters() -> None:
    config = SearchConfig(
        duration="long", license="creativeCommon", published_after="2020-01-01",
        published_before="2021-06-01T12:00:00+02:00", region="us", language="en",
    )  # fmt: skip
    assert config.search_params() == {
        "type": "video", "order": "relevance", "safeSearch": "moderate", "videoDuration": "long",
        "videoLicense": "creativeCommon", "publishedAfter": "2020-01-01T00:00:00Z",
        "publishedBefore": "2021-06-01T10:00:00Z", "regionCode": "US", "relevanceLanguage": "en",
    }  # fmt: skip
    assert "videoDuration" not in SearchConfig().search_params()
    for bad in ({"published_after": "yesterday"}, {"region": "USA"}, {"query_template": "x"},
                {"published_after": "2022-01-01", "published_before": "2021-01-01"}):  # fmt: skip
        with pytest.raises(ValueError):
            SearchConfig(**bad)  # type: ignore[arg-type]


def test_pages_dedupes_and_resumes(fake_api: FakeApi, tmp_path: Path) -> None:
    fake_api.pages = {
        "surfing video": [["s1", "s2", "both"], ["s3", "s4", "s5"]],
        "diving video": [["both", "d1"]],
    }
    out = tmp_path / "candidates.csv"
    args = ["--action", "surfing", "--action", "diving", "--per-action", "4",
            "--query-template", "{action} video", "--license", "creativeCommon"]  # fmt: skip
    code, output = _search(fake_api, out, *args)
    assert code == 0, output
    rows = _rows(out)
    assert list(rows[0]) == list(CANDIDATE_COLUMNS)
    by_id = {r["youtube_id"]: r for r in rows}
    assert sorted(by_id) == ["both", "d1", "s1", "s2", "s3"]  # one row per id; s4 not needed
    assert by_id["both"]["action"] == "surfing|diving"
    assert by_id["both"]["query"] == "surfing video|diving video"
    assert by_id["s1"]["duration_seconds"] == "125" and by_id["s1"]["license"] == "creativeCommon"
    assert by_id["s1"]["title"] == "Title of s1" and by_id["s1"]["url"].endswith("watch?v=s1")
    assert all(p["videoLicense"] == "creativeCommon" for p in fake_api.searches())
    assert len(fake_api.searches("surfing video")) == 2
    assert "5 candidates" in output and "about 303 quota units" in output  # 3 pages, 3 details
    assert KEY not in output and KEY not in out.read_text()
    # A rerun: surfing has its 4 and is not searched again; diving (2 of 4, no more
    # results) is asked once more and adds nothing twice.
    before = len(fake_api.searches())
    code, output = _search(fake_api, out, *args)
    assert code == 0, output
    assert len(fake_api.searches()) == before + 1
    assert fake_api.searches()[-1]["q"] == "diving video"
    assert len(_rows(out)) == 5
    # --more asks for more than the file has: surfing gets s4 and s5.
    code, output = _search(fake_api, out, *args[:2], "--per-action", "2", "--more",
                           "--query-template", "{action} video")  # fmt: skip
    assert code == 0, output
    assert {"s4", "s5"} <= set(read_candidates(out))


def test_quota_error_keeps_what_was_found(fake_api: FakeApi, tmp_path: Path) -> None:
    fake_api.pages = {"a": [["a1", "a2"], ["a3"]], "b": [["b1"]]}
    fake_api.quota_after = 1
    out = tmp_path / "c.csv"
    code, output = _search(fake_api, out, "--action", "a", "--action", "b", "--per-action", "5")
    assert code == 1
    message = " ".join(output.split())
    assert "quota exceeded" in message and "quotaExceeded" in message
    assert "2 candidates kept in" in message and "<a href" not in message
    assert "Traceback" not in output and KEY not in output
    assert [r["youtube_id"] for r in _rows(out)] == ["a1", "a2"]


def test_invalid_or_missing_key(fake_api: FakeApi, tmp_path: Path) -> None:
    fake_api.pages = {"a": [["a1"]]}
    out = tmp_path / "c.csv"
    code, output = _search(fake_api, out, "--action", "a", key="wrong-key-123")
    assert code == 2
    assert "the API key was refused" in " ".join(output.split()) and "keyInvalid" in output
    assert "wrong-key-123" not in output and not out.exists()
    assert all("key" not in params for _, params in fake_api.requests)  # a header, not the URL
    result = runner.invoke(
        app, ["search-videos", "--action", "a", "--out", str(out), "--api-url", fake_api.url],
        env={"YOUTUBE_API_KEY": ""},
    )  # fmt: skip
    assert result.exit_code == 2 and "no API key" in result.output
    result = runner.invoke(
        app, ["search-videos", "--action", "a", "--out", str(out), "--api-url", fake_api.url],
        env={"YOUTUBE_API_KEY": KEY},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [r["youtube_id"] for r in _rows(out)] == ["a1"]
