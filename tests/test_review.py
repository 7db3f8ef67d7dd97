"""``clipminer review``: the API through TestClient, the CLI's errors, and the page itself
driven with the keyboard in headless Chromium."""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

with warnings.catch_warnings():  # starlette 1.x prefers httpx2 for its TestClient
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient
from typer.testing import CliRunner

from clipminer import layout, synth
from clipminer.cli import app as cli_app
from clipminer.curate import catalog, review, verdicts
from clipminer.curate.verdicts import Rule
from clipminer.encode import VideoWriter
from clipminer.errors import UsageError
from clipminer.layout import EXTRA_SEGMENT_COLUMNS, SEGMENT_COLUMNS

BASE = "http://127.0.0.1:8765"
ODD = "ü video [1] <b>"
SCRIPT = "<script>alert(1)</script>"
ODD_LABEL = "odd: [label] ü"


@dataclass(frozen=True)
class Row:
    label: str
    score: float
    video_label: str | None = None
    video_score: float | None = None
    top5: tuple[tuple[str, float], ...] = ()
    cut: bool = True


def make_mined(
    out: Path,
    videos: dict[str, Sequence[Row]],
    *,
    size: tuple[int, int] = (32, 32),
    frames: int = 4,
    fps: int = 8,
) -> Path:
    """A find-clips OUT folder: segments.csv, run.json, embeddings and real mp4 clips that
    show a synthetic scene of the clip's label (or of ``bouncing`` for other labels)."""
    for v, (name, rows) in enumerate(videos.items()):
        folder = out / "videos" / name
        folder.mkdir(parents=True)
        lines = []
        for i, row in enumerate(rows):
            start, end = 2.0 * i, 2.0 * i + 1.5
            clip_path = ""
            if row.cut:
                rel = Path("videos", name, "clips", row.label.replace("/", "_"))
                clip_path = str(rel / f"{name}_{start:07.2f}_{end:07.2f}.mp4")
                kind = row.label if row.label in synth.LABELS else "bouncing"
                scene = synth.scene(kind, seed=v, index=i, size=size)
                (out / clip_path).parent.mkdir(parents=True, exist_ok=True)
                with VideoWriter(out / clip_path, fps=fps, size=size) as writer:
                    for k in range(frames):
                        writer.write(scene.render(k / fps))
            top5 = ";".join(f"{label}:{p:.4f}" for label, p in row.top5)
            lines.append([
                f"/src/{name}.mp4", i, row.label, f"{row.score:.4f}", f"{start:.3f}", f"{end:.3f}",
                row.video_label or "", "" if row.video_score is None else f"{row.video_score:.4f}",
                clip_path, top5, f"{start:.3f}", f"{end:.3f}",
            ])  # fmt: skip
        with (folder / "segments.csv").open("w", newline="") as handle:
            writer_ = csv.writer(handle)
            writer_.writerow([*SEGMENT_COLUMNS, *EXTRA_SEGMENT_COLUMNS])
            writer_.writerows(lines)
        (folder / "run.json").write_text(json.dumps({"embedding_models": {"image": "tiny"}}))
        rng = np.random.default_rng(v)
        catalog.write_embeddings(
            folder / "embeddings.npy", list(range(len(rows))),
            rng.normal(size=(len(rows), 8)), None, image_of_video=rng.normal(size=8),
        )  # fmt: skip
    return out


FIVE = {
    "alpha": [
        Row("bouncing", 0.9, "bouncing", 0.8, (("bouncing", 0.8), ("spinning", 0.1))),
        Row("spinning", 0.4, "spinning", 0.55, (("spinning", 0.55), (SCRIPT, 0.2))),
        Row("bouncing", 0.7),
    ],
    ODD: [
        Row("pulsing", 0.95, "pulsing", 0.3, (("pulsing", 0.3), (ODD_LABEL, 0.1))),
        Row("spinning", 0.2),
    ],
}


@pytest.fixture(scope="module")
def mined(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five clips in two videos (one with an odd name); copied per test that votes."""
    return make_mined(tmp_path_factory.mktemp("mined") / "OUT", FIVE)


@pytest.fixture
def out(mined: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(mined, tmp_path / "OUT"))


def client(out: Path, reviewer: str = "ann", rule: Rule | None = None, **kw: Any) -> TestClient:
    app = review.create_app(out, reviewer=reviewer, rule=rule or Rule(), **kw)
    return TestClient(app, base_url=BASE)


def post(c: TestClient, url: str, data: dict[str, Any]) -> Any:
    token = c.app.state.review.token  # type: ignore[attr-defined]
    return c.post(url, json=data, headers={review.TOKEN_HEADER: token})


def keys(c: TestClient, **params: Any) -> list[str]:
    r = c.get("/api/queue", params=params)
    assert r.status_code == 200, r.text
    return [e["key"] for e in r.json()["clips"]]


ALL = ["alpha/0", "alpha/2", "alpha/1", f"{ODD}/0", f"{ODD}/1"]
"""The clips in score order, the most confident first (the video model's score where it
re-labelled: 0.8, 0.7, 0.55, 0.3, 0.2)."""


# -- the API ---------------------------------------------------------------------------------


def test_queue_order_filters_and_paging(out: Path) -> None:
    c = client(out)
    assert keys(c) == ALL
    entry = c.get("/api/queue").json()["clips"][3]
    assert (entry["video"], entry["label"], entry["image_label"]) == (ODD, "pulsing", "pulsing")
    assert entry["score"] == pytest.approx(0.3)  # the video model's score of its label
    assert entry["top5"] == [["pulsing", 0.3], [ODD_LABEL, 0.1]]
    assert entry["url"] == "/clips/%C3%BC%20video%20%5B1%5D%20%3Cb%3E/0"
    assert keys(c, label="spinning") == ["alpha/1", f"{ODD}/1"]
    assert keys(c, label=["spinning", "pulsing"]) == ["alpha/1", f"{ODD}/0", f"{ODD}/1"]
    assert keys(c, min_score=0.5) == ["alpha/0", "alpha/2", "alpha/1"]
    assert keys(c, min_score=0.25, max_score=0.6) == ["alpha/1", f"{ODD}/0"]
    page = c.get("/api/queue", params={"limit": 2}).json()
    assert [e["key"] for e in page["clips"]] == ALL[:2] and page["more"] is True
    page = c.get("/api/queue", params={"limit": 2, "after": "alpha/2"}).json()
    assert [e["key"] for e in page["clips"]] == ALL[2:4] and page["more"] is True
    assert keys(c, after=f"{ODD}/1") == []
    assert keys(c, after="no such/9") == ALL  # a vanished cursor starts over
    assert c.get("/api/queue", params={"min_score": "x"}).status_code == 400
    assert c.get("/api/queue", params={"min_score": 0.9, "max_score": 0.1}).status_code == 400
    # the server's own filters apply when the page sends none
    c2 = client(out, filters=review.Filters(labels=("bouncing",)))
    assert keys(c2) == ["alpha/0", "alpha/2"]


def test_vote_undo_and_progress(out: Path) -> None:
    c = client(out)
    assert post(c, "/api/vote", {"clip": "alpha/0", "action": "accept"}).status_code == 200
    assert post(c, "/api/vote", {"clip": "alpha/1", "action": "reject"}).status_code == 200
    r = post(c, "/api/vote", {"clip": f"{ODD}/0", "action": "relabel", "label": SCRIPT})
    assert r.status_code == 200 and r.json()["clip"]["verdict"] == {
        "status": "accepted", "label": SCRIPT, "votes": 1,
    }  # fmt: skip
    assert keys(c) == ["alpha/2", f"{ODD}/1"]
    rows = {row["label"]: row for row in c.get("/api/progress").json()["rows"]}
    assert {k: rows["bouncing"][k] for k in ("total", "accepted", "pending", "mine")} == {
        "total": 2, "accepted": 1, "pending": 1, "mine": 1,
    }  # fmt: skip
    assert (rows["spinning"]["rejected"], rows["spinning"]["pending"]) == (1, 1)
    assert (rows["pulsing"]["relabelled"], rows["pulsing"]["accepted"]) == (1, 0)
    # undo gives back the latest vote's clip, pending again
    r = post(c, "/api/undo", {})
    assert r.json()["undone"] == f"{ODD}/0" and r.json()["clip"]["verdict"]["votes"] == 0
    assert keys(c) == ["alpha/2", f"{ODD}/0", f"{ODD}/1"]
    # --all shows the voted clips too, with my vote
    everything = c.get("/api/queue", params={"all": 1}).json()["clips"]
    assert [e["key"] for e in everything] == ALL
    assert everything[2]["my_vote"] == {"action": "reject", "label": None}
    # a second vote replaces the first
    post(c, "/api/vote", {"clip": "alpha/1", "action": "accept"})
    assert verdicts.verdicts(out, catalog.all_clips(out), Rule())["alpha/1"].status == "accepted"
    # relabel as the clip's own label is an accept
    post(c, "/api/vote", {"clip": "alpha/2", "action": "relabel", "label": "bouncing"})
    with verdicts.connect(out) as con:
        last = con.execute("SELECT action, label, reviewer FROM votes ORDER BY id DESC").fetchone()
    assert last == ("accept", "bouncing", "ann")
    # bad votes
    assert post(c, "/api/vote", {"clip": "alpha/9", "action": "accept"}).status_code == 404
    assert post(c, "/api/vote", {"clip": "alpha/2", "action": "smash"}).status_code == 400
    bad = {"clip": "alpha/2", "action": "relabel", "label": "not a label"}
    assert post(c, "/api/vote", bad).status_code == 400
    assert post(c, "/api/vote", {"clip": "alpha/2", "action": "relabel"}).status_code == 400
    assert post(c, "/api/vote", {"clip": 3, "action": "accept"}).status_code == 400
    for _ in range(10):  # undo past the start is harmless
        post(c, "/api/undo", {})
    assert post(c, "/api/undo", {}).json() == {"undone": None, "clip": None}
    assert keys(c) == ALL


def test_a_vote_on_a_clip_mined_again_since_it_was_shown_is_refused(out: Path) -> None:
    c = client(out)
    shown = c.get("/api/queue").json()["clips"][0]
    stale = {"clip": shown["key"], "action": "accept", "time_start": shown["time_start"] + 1.0,
             "time_end": shown["time_end"]}  # fmt: skip
    r = post(c, "/api/vote", stale)
    assert r.status_code == 409 and "mined again" in r.text
    fresh = {**stale, "time_start": shown["time_start"]}
    assert post(c, "/api/vote", fresh).status_code == 200


def test_several_reviewers_follow_the_rule(out: Path) -> None:
    rule = Rule(votes=3, agree=2)
    ann, bob, cat, dan = (client(out, name, rule) for name in ("ann", "bob", "cat", "dan"))
    post(ann, "/api/vote", {"clip": "alpha/0", "action": "accept"})
    post(bob, "/api/vote", {"clip": "alpha/0", "action": "reject"})
    assert "alpha/0" not in keys(ann) and "alpha/0" in keys(cat)  # 1:1, still open
    post(cat, "/api/vote", {"clip": "alpha/0", "action": "reject"})
    for who, label in ((ann, "spinning"), (bob, "pulsing"), (cat, "bouncing")):
        post(who, "/api/vote", {"clip": "alpha/1", "action": "relabel", "label": label})
    post(ann, "/api/vote", {"clip": "alpha/2", "action": "accept"})
    post(bob, "/api/vote", {"clip": "alpha/2", "action": "accept"})
    found = verdicts.verdicts(out, catalog.all_clips(out), rule)
    assert found["alpha/0"].status == "rejected"
    assert (found["alpha/1"].status, found["alpha/1"].votes) == ("disputed", 3)
    assert (found["alpha/2"].status, found["alpha/2"].label) == ("accepted", "bouncing")
    # a disputed clip is still open to new reviewers; a decided one is not
    assert keys(dan) == ["alpha/1", f"{ODD}/0", f"{ODD}/1"]
    assert keys(cat) == [f"{ODD}/0", f"{ODD}/1"]
    rows = {row["label"]: row for row in dan.get("/api/progress").json()["rows"]}
    assert (rows["spinning"]["disputed"], rows["bouncing"]["accepted"]) == (1, 1)
    # bob's undo reopens alpha/2 for cat (1 accept left)
    post(bob, "/api/undo", {})
    assert "alpha/2" in keys(cat)


def test_token_type_and_host_checks(out: Path) -> None:
    c = client(out)
    vote = {"clip": "alpha/0", "action": "accept"}
    assert c.post("/api/vote", json=vote).status_code == 403
    assert c.post("/api/vote", json=vote, headers={review.TOKEN_HEADER: "guess"}).status_code == 403
    token = c.app.state.review.token  # type: ignore[attr-defined]
    form = c.post("/api/vote", data=vote, headers={review.TOKEN_HEADER: token})
    assert form.status_code == 415
    big = c.post(
        "/api/vote",
        content=b"[" + b"1," * 40_000 + b"1]",
        headers={review.TOKEN_HEADER: token, "content-type": "application/json"},
    )
    assert big.status_code == 413
    assert not (out / catalog.REVIEW_DB).exists()  # nothing was cast, nothing created
    # DNS rebinding: a request for another host name is refused
    assert c.get("/", headers={"host": "evil.example:8765"}).status_code == 400
    assert c.get("/api/queue", headers={"host": "localhost:8765"}).status_code == 200
    # every page load embeds the same token; another server has another
    page = c.get("/")
    assert page.status_code == 200 and token in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert client(out).app.state.review.token != token  # type: ignore[attr-defined]


def test_names_are_data_in_the_page(tmp_path: Path) -> None:
    out = make_mined(tmp_path / "OUT", {ODD: [Row(SCRIPT, 0.5, top5=((SCRIPT, 0.5),))]})
    c = client(out, reviewer="</script><b>x")
    page = c.get("/").text
    assert SCRIPT not in page and "</script><b>x" not in page
    config = page.split('id="config">')[1].split("</script>")[0]
    data = json.loads(config)
    assert data["labels"] == [SCRIPT] and data["reviewer"] == "</script><b>x"
    script = c.get("/static/review.js").text
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    [entry] = c.get("/api/queue").json()["clips"]
    assert entry["label"] == SCRIPT and c.get(entry["url"]).status_code == 200


def test_clip_route_serves_by_key_only(out: Path, tmp_path: Path) -> None:
    c = client(out)
    entry = c.get("/api/queue").json()["clips"][3]
    [clip] = [x for x in catalog.all_clips(out) if x.key == entry["key"]]
    data = (out / str(clip.clip_path)).read_bytes()
    r = c.get(entry["url"])
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "video/mp4"
    r = c.get(entry["url"], headers={"range": "bytes=4-11"})
    assert r.status_code == 206 and r.content == data[4:12]
    assert r.headers["content-range"] == f"bytes 4-11/{len(data)}"
    for url in ("/clips/alpha/9", "/clips/nope/0", "/clips/..%2F..%2Fetc/0",
                "/clips/../../etc/passwd", "/clips/alpha/0/../../1", "/clips/alpha/x"):  # fmt: skip
        assert c.get(url).status_code == 404, url
    # a segments.csv whose clip_path leaves OUT (or names a link out of it) serves nothing
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"secret")
    folder = out / "videos" / "alpha"
    text = (folder / "segments.csv").read_text()
    first = catalog.read_clips(folder)[0].clip_path
    assert first
    (out / "videos" / "link.mp4").symlink_to(secret)
    text = text.replace(first, "../secret.mp4", 1).replace(
        catalog.read_clips(folder)[2].clip_path or "?", "videos/link.mp4", 1
    )
    (folder / "segments.csv").write_text(text)
    for url in ("/clips/alpha/0", "/clips/alpha/2"):
        assert c.get(url).status_code == 404
    assert c.get("/clips/alpha/1").status_code == 200


def test_uncut_dropped_and_broken_clips(tmp_path: Path) -> None:
    out = make_mined(
        tmp_path / "OUT",
        {"v1": [Row("bouncing", 0.5, cut=False), Row("bouncing", 0.6)], "v2": [Row("x", 0.5)]},
    )
    (out / "videos" / "v3").mkdir()
    (out / "videos" / "v3" / "segments.csv").write_text("not,a\nsegments,file\n")
    (out / catalog.DUPLICATES_CSV).write_text(
        "group_id,kind,member,kept,similarity\ng1,clip,v1/1,0,0.99\ng1,clip,v2/0,1,1\n"
    )
    c = client(out)
    clips = c.get("/api/queue").json()["clips"]
    assert [e["key"] for e in clips] == ["v1/0", "v2/0"]  # v1/1 dropped, v3 broken
    assert clips[0]["url"] is None and c.get("/clips/v1/0").status_code == 404
    assert not clips[0]["missing"]  # never cut: nothing to watch, but nothing lost
    assert c.get("/clips/v1/1").status_code == 404
    assert post(c, "/api/vote", {"clip": "v1/1", "action": "accept"}).status_code == 404
    refused = post(c, "/api/vote", {"clip": "v1/0", "action": "accept"})
    assert refused.status_code == 409 and "nobody can watch it" in refused.text
    # a rerun of dedup while the page is open: the catalogue is read again
    (out / catalog.DUPLICATES_CSV).unlink()
    assert keys(c) == ["v1/1", "v1/0", "v2/0"]


def test_bad_out_and_arguments(mined: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such folder"):
        review.create_app(tmp_path / "missing", reviewer="ann", rule=Rule())
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no mined videos"):
        review.create_app(tmp_path / "empty", reviewer="ann", rule=Rule())
    with pytest.raises(UsageError, match="reviewer"):
        review.create_app(mined, reviewer=" ", rule=Rule())
    with pytest.raises(UsageError, match="above"):
        review.Filters(min_score=0.8, max_score=0.2)
    with pytest.raises(UsageError, match="allow-remote"):
        review.allowed_hosts("0.0.0.0", allow_remote=False)
    assert review.allowed_hosts("0.0.0.0", allow_remote=True) == ["*"]
    with pytest.raises(UsageError, match="only with --reviewers"):
        review.allowed_hosts("0.0.0.0", allow_remote=True, team=False)
    assert "[::1]" in review.allowed_hosts("::1", allow_remote=False)
    assert review.is_loopback("localhost") and review.is_loopback("127.0.0.2")
    assert not review.is_loopback("192.168.1.4") and not review.is_loopback("example.org")
    assert layout.parse_top5("a:b:0.5;bad;:0.1;c:nan;d:0.25") == (("a:b", 0.5), ("d", 0.25))


runner = CliRunner()


def test_cli_errors_are_one_line(out: Path, tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        cases = [
            ([str(tmp_path / "missing")], "no such folder"),
            ([str(out), "--votes", "1", "--agree", "2"], "need 1 <= agree <= votes"),
            ([str(out), "--host", "0.0.0.0"], "pass --allow-remote"),
            ([str(out), "--port", str(port)], "port in use"),
            ([str(out), "--min-score", "0.9", "--max-score", "0.1"], "above --max-score"),
        ]
        for args, message in cases:
            result = runner.invoke(cli_app, ["review", *args])
            assert result.exit_code == 2, (args, result.output)
            assert message in result.output and result.output.count("\n") == 1, result.output
    finally:
        taken.close()
    result = runner.invoke(cli_app, ["review", "--help"])
    assert result.exit_code == 0
    for option in ("--reviewer", "--votes", "--agree", "--all", "--allow-remote", "--port"):
        assert option in result.output


def test_real_server_on_a_free_port(out: Path) -> None:
    import httpx

    app = review.create_app(out, reviewer="ann", rule=Rule())
    sock = review.open_socket("127.0.0.1", 0)
    url = review.url_of(sock, "127.0.0.1")
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
    with review.background(app, sock):
        r = httpx.get(url + "api/queue", timeout=5)
        assert [e["key"] for e in r.json()["clips"]] == ALL
        clip = httpx.get(url.rstrip("/") + r.json()["clips"][0]["url"], timeout=5)
        assert clip.status_code == 200 and clip.headers["accept-ranges"] == "bytes"
    with pytest.raises(httpx.ConnectError):  # stopped
        httpx.get(url, timeout=2)


# -- the page in headless Chromium ---------------------------------------------------------

BROWSER = bool(shutil.which("chromium") and shutil.which("chromedriver"))
browser = pytest.mark.skipif(not BROWSER, reason="apt-get install chromium chromium-driver")


@pytest.fixture
def page_of() -> Iterator[Any]:
    """Opens the review page of an app in headless Chromium; yields (driver, url)."""
    pytest.importorskip("selenium")
    from scrapers.driver import chromium

    with contextlib.ExitStack() as stack:

        def open_page(app: Any, size: tuple[int, int] = (1200, 800)) -> tuple[Any, str]:
            sock = review.open_socket("127.0.0.1", 0)
            url = review.url_of(sock, "127.0.0.1")
            stack.enter_context(review.background(app, sock))
            driver = stack.enter_context(chromium(load_images=True))
            driver.set_window_size(*size)
            driver.get(url)
            return driver, url

        yield open_page


def wait_for(driver: Any, script: str, *, timeout: float = 10.0) -> Any:
    """Poll ``script`` (a JS expression) until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return {script};")
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {script}")
        time.sleep(0.05)


def press(driver: Any, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def plays_h264(driver: Any) -> bool:
    """Whether this Chromium decodes H.264 (Debian's does; some builds leave it out)."""
    probe = "document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.64001e\"')"
    return bool(driver.execute_script(f"return {probe};"))


def shown(driver: Any) -> str:
    return str(wait_for(driver, "document.body.dataset.state && document.body.dataset.clip"))


def settled(driver: Any) -> None:
    wait_for(driver, "document.body.dataset.inflight === '0'")


def typed(driver: Any, keys: str) -> None:
    """Type ``keys`` into whatever has the focus (the label search)."""
    press(driver, keys)


@pytest.mark.browser
@browser
def test_keyboard_review_in_chromium(out: Path, page_of: Any) -> None:
    app = review.create_app(out, reviewer="ann", rule=Rule())
    driver, _ = page_of(app)
    labels = wait_for(driver, "document.getElementById('labels').children.length && labels")
    assert labels == sorted([SCRIPT, "bouncing", ODD_LABEL, "pulsing", "spinning"])
    assert shown(driver) == "alpha/0"
    # the player plays the clip, and the next one is preloaded in the hidden player
    if plays_h264(driver):
        wait_for(driver, "document.querySelector('video:not(.hidden)').readyState >= 2")
        width = "document.querySelector('video:not(.hidden)').videoWidth"
        assert driver.execute_script(f"return {width};") == 32
        press(driver, " ")  # space pauses, and votes nothing
        wait_for(driver, "document.querySelector('video:not(.hidden)').paused")
        press(driver, ".")  # a frame on
        wait_for(driver, "document.querySelector('video:not(.hidden)').currentTime > 0")
        press(driver, "p")  # replay from the start
        wait_for(driver, "!document.querySelector('video:not(.hidden)').paused")
    wait_for(driver, "document.querySelector('video.hidden').dataset.key === 'alpha/2'")
    assert driver.find_element("id", "c-image-label").text == "bouncing"
    wait_for(driver, "document.getElementById('h-position').textContent === 'clip 1 of 5'")
    press(driver, "3")  # numbers never vote: they say so
    wait_for(driver, "document.getElementById('message').textContent.includes('press l')")
    press(driver, "a")  # alpha/0 accepted
    assert wait_for(driver, "document.body.dataset.clip === 'alpha/2'")
    press(driver, "r")  # alpha/2 rejected
    wait_for(driver, "document.body.dataset.clip === 'alpha/1'")
    # l opens the label search; a few letters in order find the label; Enter relabels
    press(driver, "l")
    wait_for(driver, "document.activeElement.id === 'label-search'")
    typed(driver, "odlbl")
    chosen = "document.querySelector('#labels li.chosen').textContent"
    wait_for(driver, f"{chosen} === {json.dumps(ODD_LABEL)}")
    typed(driver, "\n")
    wait_for(driver, f"document.body.dataset.clip === {json.dumps(ODD + '/0')}")
    assert driver.find_element("id", "c-video").text == f"{ODD} #0"
    press(driver, "a")
    wait_for(driver, f"document.body.dataset.clip === {json.dumps(ODD + '/1')}")
    press(driver, "u")  # undo: ODD/0 comes back
    wait_for(driver, f"document.body.dataset.clip === {json.dumps(ODD + '/0')}")
    press(driver, "r")
    wait_for(driver, f"document.body.dataset.clip === {json.dumps(ODD + '/1')}")
    # Esc leaves the search without voting
    press(driver, "l")
    wait_for(driver, "document.activeElement.id === 'label-search'")
    typed(driver, "spin")
    from selenium.webdriver.common.keys import Keys

    typed(driver, Keys.ESCAPE)
    wait_for(driver, "document.activeElement.id !== 'label-search'")
    press(driver, "n")  # skip the last one
    wait_for(driver, "document.body.dataset.state === 'done'")
    settled(driver)
    assert "done: no clips left" in driver.find_element("id", "done").text
    assert "1 skipped" in driver.find_element("id", "done-note").text
    found = verdicts.verdicts(out, catalog.all_clips(out), Rule())
    assert {k: (v.status, v.label) for k, v in found.items()} == {
        "alpha/0": ("accepted", "bouncing"),
        "alpha/2": ("rejected", None),
        "alpha/1": ("accepted", ODD_LABEL),
        f"{ODD}/0": ("rejected", None),
        f"{ODD}/1": ("pending", None),
    }
    with verdicts.connect(out) as con:
        rows = con.execute(
            "SELECT clip, action, reviewer, undone FROM votes ORDER BY id"
        ).fetchall()
    assert rows[3] == (f"{ODD}/0", "accept", "ann", 1) and len(rows) == 5
    # the progress table follows; n goes round again to the skipped clip
    wait_for(
        driver, "document.querySelector('#progress tr.total td:nth-child(7)').textContent === '1'"
    )
    press(driver, "n")
    wait_for(driver, f"document.body.dataset.clip === {json.dumps(ODD + '/1')}")
    # the filter controls: all clips (voted ones too), then one label only
    change = "const e = document.getElementById(arguments[0]); e.value = arguments[1];"
    change += "e.dispatchEvent(new Event('change'));"
    driver.execute_script(change, "f-all", "1")
    wait_for(driver, "document.body.dataset.clip === 'alpha/0'")
    assert driver.find_element("id", "c-verdict").text.startswith("accepted as bouncing")
    driver.execute_script(change, "f-label", "pulsing")
    wait_for(driver, f"document.body.dataset.clip === {json.dumps(ODD + '/0')}")
    press(driver, "n")
    wait_for(driver, "document.body.dataset.state === 'done'")
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


K400 = Path(__file__).resolve().parents[2] / "shared/data/labels/mmaction2_label_map_k400.txt"


def screenshot(path: Path, work: Path, *, search: str = "") -> Path:
    """Render the page on a small mined folder with visible clips, the Kinetics-400 labels
    (when ``../shared`` is there), votes of three reviewers under 2-of-3, and ``search``
    typed into the label search; save a PNG."""
    from scrapers.driver import chromium

    bigger = {
        "kitchen cam (2024-05-01)": [
            Row("spinning", 0.91, "spinning", 0.84,
                (("spinning", 0.84), ("pulsing", 0.09), ("bouncing", 0.04))),
            Row("bouncing", 0.77, "bouncing", 0.69, (("bouncing", 0.69), ("spinning", 0.2))),
            Row("pulsing", 0.72, "pulsing", 0.61, (("pulsing", 0.61), ("bouncing", 0.3))),
        ],
        "yard": [Row("sliding_left", 0.66, "sliding_right", 0.58,
                     (("sliding_right", 0.58), ("sliding_left", 0.4)))],
    }  # fmt: skip
    out = make_mined(work / "OUT", bigger, size=(240, 320), frames=24, fps=12)
    labels = review.read_labels_file(K400) if K400.is_file() else ()
    app = review.create_app(out, reviewer="ann", rule=Rule(votes=3, agree=2), labels=labels)
    clips = {c.key: c for c in catalog.all_clips(out)}
    kitchen = "kitchen cam (2024-05-01)"
    with verdicts.connect(out) as con:
        for key, votes in (
            (f"{kitchen}/1", (("bob", "accept"), ("cat", "accept"))),
            (f"{kitchen}/2", (("bob", "accept"), ("cat", "reject"), ("dan", "accept"))),
            ("yard/0", (("bob", "reject"), ("cat", "accept"), ("dan", "relabel"))),
        ):
            for who, action in votes:
                label = "sliding_left" if action == "relabel" else None
                verdicts.cast(con, clips[key], who, action, label)  # type: ignore[arg-type]
    sock = review.open_socket("127.0.0.1", 0)
    with review.background(app, sock), chromium(load_images=True) as driver:
        driver.set_window_size(1200, 800)
        driver.get(review.url_of(sock, "127.0.0.1"))
        inner = driver.execute_script("return [window.innerWidth, window.innerHeight];")
        driver.set_window_size(1200 + 1200 - inner[0], 800 + 800 - inner[1])
        if plays_h264(driver):
            wait_for(driver, "document.querySelector('video:not(.hidden)').readyState >= 2")
        wait_for(driver, "document.querySelectorAll('#progress tr').length > 2")
        if search:
            press(driver, "l")
            wait_for(driver, "document.activeElement.id === 'label-search'")
            press(driver, search)
        time.sleep(1.0)
        driver.save_screenshot(str(path))
    return path


@pytest.mark.browser
@browser
def test_screenshot_shows_the_clip(tmp_path: Path) -> None:
    from PIL import Image

    pytest.importorskip("selenium")
    path = screenshot(tmp_path / "review.png", tmp_path)
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[:2] == (800, 1200)
    # the player area is not all black: the clip shows (a bright yellow object on blue)
    stage = image[60:540, 20:780].reshape(-1, 3).astype(int)
    assert stage.std() > 10 and ((stage[:, 0] > 180) & (stage[:, 2] < 100)).sum() > 500


def test_the_page_is_files_served_from_the_package_and_runs_no_inline_code(out: Path) -> None:
    c = client(out)
    page = c.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
    scripts = page.text.split("<script")[1:]
    assert all('type="application/json"' in s or 'src="static/' in s for s in scripts)
    assert "<style" not in page.text
    for name, kind in (("review.js", "text/javascript"), ("review.css", "text/css")):
        served = c.get(f"/static/{name}")
        assert served.status_code == 200 and served.headers["content-type"].startswith(kind)
        assert len(served.text) > 1000
    for name in ("review.html", "__init__.py", "..%2F__init__.py", ".hidden.js", "nope.js"):
        assert c.get(f"/static/{name}").status_code == 404, name


if __name__ == "__main__":  # python -m tests.test_review docs/review.png
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        print(screenshot(Path(sys.argv[1]), Path(work), search="play"))
