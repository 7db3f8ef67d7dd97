"""``clipminer review`` for a team at Kinetics scale: private links per reviewer, label
search over 700 labels, the disputed queue and agreement, the review order, clips that
cannot be shown, a database votes cannot go into, and keys or undos that come fast."""

from __future__ import annotations

import concurrent.futures
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from clipminer.curate import catalog, review, verdicts
from clipminer.curate.verdicts import Rule
from clipminer.errors import UsageError
from tests.test_review import (  # the fixtures too: mined, out, page_of
    ALL,
    BASE,
    ODD_LABEL,
    SCRIPT,
    Row,
    browser,
    client,
    keys,
    make_mined,
    mined,
    out,
    page_of,
    post,
    press,
    settled,
    shown,
    wait_for,
)

__all__ = ["mined", "out", "page_of"]  # fixtures used here by name

LABEL_MAPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "labels"


def kinetics_scale_labels(count: int = 700) -> list[str]:
    """``count`` labels: Kinetics-400's, UCF-101's and HMDB-51's when ``../shared`` is
    there, then made-up actions ("playing basketball" always among them)."""
    labels = dict.fromkeys(["playing basketball"])
    for name in ("mmaction2_label_map_k400.txt", "mmaction2_ucf101_label_map.txt",
                 "mmaction2_hmdb51_label_map.txt"):  # fmt: skip
        if (LABEL_MAPS / name).is_file():
            labels.update(dict.fromkeys(review.read_labels_file(LABEL_MAPS / name)))
    verbs = ["lifting", "throwing", "carving", "folding", "polishing", "rowing", "tying"]
    n = 0
    while len(labels) < count:
        labels.setdefault(f"{verbs[n % len(verbs)]} thing {n}")
        n += 1
    return list(labels)[:count]


def team_client(out: Path, names: tuple[str, ...] = ("ann", "bob"), **kw: Any) -> Any:
    from starlette.testclient import TestClient

    app = review.create_app(out, rule=kw.pop("rule", Rule()), reviewers=names, **kw)
    return TestClient(app, base_url=BASE)


def token_of(c: Any, name: str) -> str:
    return str(c.app.state.review.token_of(name))


# -- a team on one server ------------------------------------------------------------------


def test_each_reviewer_votes_through_their_own_link(out: Path) -> None:
    c = team_client(out)
    links = review.team_links(c.app, "http://127.0.0.1:8765/")
    assert set(links) == {"ann", "bob"} and links["ann"] != links["bob"]
    # the links stay the same for a new server over the same OUT, and OUT/review.key is
    # readable by its owner only
    again = review.team_links(team_client(out).app, "http://127.0.0.1:8765/")
    assert again == links
    assert (out / review.KEY_FILE).stat().st_mode & 0o077 == 0
    # without a link: no page, no queue, no votes
    assert c.get("/").status_code == 403 and "private link" in c.get("/").text
    assert c.get("/api/queue").status_code == 403
    assert c.get("/", params={"as": "guess"}).status_code == 403
    ann, bob = token_of(c, "ann"), token_of(c, "bob")
    page = c.get("/", params={"as": ann})
    assert page.status_code == 200 and '"reviewer": "ann"' in page.text and bob not in page.text
    vote = {"clip": "alpha/0", "action": "accept"}
    assert c.post("/api/vote", json=vote, headers={review.TOKEN_HEADER: ann}).status_code == 200
    vote["action"] = "reject"
    assert c.post("/api/vote", json=vote, headers={review.TOKEN_HEADER: bob}).status_code == 200
    with verdicts.connect(out) as con:
        rows = con.execute("SELECT reviewer, action FROM votes ORDER BY id").fetchall()
    assert rows == [("ann", "accept"), ("bob", "reject")]
    # each sees their own queue; clip files need a link too
    queue = c.get("/api/queue", headers={review.TOKEN_HEADER: ann}).json()["clips"]
    assert [e["key"] for e in queue] == ALL[1:]
    assert queue[0]["url"].endswith("?as=" + ann)
    assert c.get(queue[0]["url"]).status_code == 200
    assert c.get(queue[0]["url"].split("?")[0]).status_code == 403
    with pytest.raises(UsageError, match="given twice"):
        team_client(out, ("ann", "ann"))


@pytest.mark.browser
@browser
def test_two_reviewers_in_chromium(out: Path, page_of: Any) -> None:
    app = review.create_app(out, rule=Rule(votes=2, agree=2), reviewers=("ann", "bob"))
    driver, url = page_of(app)
    assert "private link" in driver.find_element("tag name", "body").text
    links = review.team_links(app, url)
    for name, key in (("ann", "a"), ("bob", "r")):
        driver.get(links[name])
        assert shown(driver) == "alpha/0"
        assert driver.find_element("id", "h-reviewer").text == name
        press(driver, key)
        wait_for(driver, "document.body.dataset.clip === 'alpha/2'")
        settled(driver)
    with verdicts.connect(out) as con:
        rows = con.execute("SELECT clip, reviewer, action FROM votes ORDER BY id").fetchall()
    assert rows == [("alpha/0", "ann", "accept"), ("alpha/0", "bob", "reject")]
    # 1:1 under 2 of 2: disputed, and the disputed queue offers it to settle
    driver.execute_script(
        "const e = document.getElementById('f-all'); e.value = 'disputed';"
        "e.dispatchEvent(new Event('change'));"
    )
    wait_for(driver, "document.body.dataset.clip === 'alpha/0'")
    assert driver.find_element("id", "c-verdict").text.startswith("disputed")


# -- labels at Kinetics scale ----------------------------------------------------------------


def test_labels_files_are_read_in_their_usual_forms(tmp_path: Path) -> None:
    plain = tmp_path / "k400.txt"
    plain.write_text("abseiling\nair drumming\n\n# a comment\nair drumming\n")
    assert review.read_labels_file(plain) == ("abseiling", "air drumming")
    indexed = tmp_path / "classInd.txt"
    indexed.write_bytes(b"1 ApplyEyeMakeup\r\n2 ApplyLipstick\r\n")
    assert review.read_labels_file(indexed) == ("ApplyEyeMakeup", "ApplyLipstick")
    (tmp_path / "empty.txt").write_text("\n")
    for name, message in (("empty.txt", "no labels"), ("missing.txt", "cannot read")):
        with pytest.raises(UsageError, match=message):
            review.read_labels_file(tmp_path / name)


@pytest.mark.browser
@browser
def test_label_search_finds_one_of_700_labels_by_a_few_letters(out: Path, page_of: Any) -> None:
    labels = kinetics_scale_labels(700)
    assert len(labels) == 700
    app = review.create_app(out, reviewer="ann", rule=Rule(), labels=labels)
    driver, _ = page_of(app)
    assert shown(driver) == "alpha/0"
    assert wait_for(driver, "document.getElementById('label-count').textContent") == str(
        len(set(labels) | {"bouncing", "pulsing", "spinning", ODD_LABEL, SCRIPT})
    )
    press(driver, "l")
    wait_for(driver, "document.activeElement.id === 'label-search'")
    press(driver, "plybsktb")  # letters of "playing basketball", in order
    chosen = "document.querySelector('#labels li.chosen').textContent"
    wait_for(driver, f"{chosen} === 'playing basketball'")
    # at most 12 shown, with a note of how many more match
    assert len(driver.find_elements("css selector", "#labels li:not(.more)")) <= 12
    press(driver, "\n")
    wait_for(driver, "document.body.dataset.clip === 'alpha/2'")
    settled(driver)
    with verdicts.connect(out) as con:
        rows = con.execute("SELECT clip, action, label FROM votes").fetchall()
    assert rows == [("alpha/0", "relabel", "playing basketball")]
    # arrows move the choice; the digits type into the search, never vote
    press(driver, "/")
    wait_for(driver, "document.activeElement.id === 'label-search'")
    press(driver, "ing 1")
    from selenium.webdriver.common.keys import Keys

    first = wait_for(driver, chosen)
    press(driver, Keys.ARROW_DOWN)
    wait_for(driver, f"{chosen} !== {json.dumps(first)}")
    press(driver, Keys.ESCAPE)
    settled(driver)
    with verdicts.connect(out) as con:
        assert con.execute("SELECT count(*) FROM votes").fetchone()[0] == 1


# -- clips that cannot be shown --------------------------------------------------------------


@pytest.mark.browser
@browser
@pytest.mark.parametrize(
    ("damage", "says"),
    [("missing", "clip file is missing"), ("unplayable", "the browser cannot play")],
)
def test_a_clip_that_cannot_be_shown_says_so_and_takes_no_vote(
    out: Path, page_of: Any, damage: str, says: str
) -> None:
    [clip] = [c for c in catalog.all_clips(out) if c.key == "alpha/0"]
    file = out / str(clip.clip_path)
    if damage == "missing":
        file.unlink()
    else:
        file.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all")
    app = review.create_app(out, reviewer="ann", rule=Rule())
    driver, _ = page_of(app)
    assert shown(driver) == "alpha/0"
    wait_for(driver, "document.body.dataset.playable === 'no'")
    assert says in driver.find_element("id", "unplayable").text
    for key in "ar":
        press(driver, key)
        wait_for(driver, "document.getElementById('message').textContent.includes('not taken')")
        driver.execute_script("document.getElementById('message').textContent = '';")
    assert driver.execute_script("return document.body.dataset.clip;") == "alpha/0"
    press(driver, "n")  # skipping works
    wait_for(driver, "document.body.dataset.clip === 'alpha/2'")
    wait_for(driver, "document.body.dataset.playable === 'yes'")
    settled(driver)
    assert not (out / catalog.REVIEW_DB).exists()  # no vote was sent


# -- fast keys and concurrent undos ----------------------------------------------------------


@pytest.mark.browser
@browser
def test_forty_keys_in_a_second_record_forty_votes(tmp_path: Path, page_of: Any) -> None:
    rows = [Row("bouncing", 0.99 - k / 100) for k in range(44)]
    out = make_mined(tmp_path / "OUT", {"many": rows}, frames=2)
    app = review.create_app(out, reviewer="ann", rule=Rule())
    driver, _ = page_of(app)
    assert shown(driver) == "many/0"
    press(driver, "ar" * 20)  # one send: as fast as the browser takes them
    wait_for(driver, "document.body.dataset.clip === 'many/40'", timeout=30)
    settled(driver)
    with verdicts.connect(out) as con:
        votes = con.execute("SELECT clip, action FROM votes ORDER BY id").fetchall()
    assert votes == [(f"many/{k}", "accept" if k % 2 == 0 else "reject") for k in range(40)]


def test_undos_sent_at_once_undo_one_vote_each(out: Path) -> None:
    from clipminer.curate.review import background, open_socket, url_of

    app = review.create_app(out, reviewer="ann", rule=Rule())
    token = app.state.review.token
    sock = open_socket("127.0.0.1", 0)
    url = url_of(sock, "127.0.0.1")
    import httpx

    headers = {review.TOKEN_HEADER: token}
    with background(app, sock), httpx.Client(base_url=url, headers=headers, timeout=30) as c:
        for key in ALL:
            assert c.post("/api/vote", json={"clip": key, "action": "accept"}).status_code == 200
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            undone = list(pool.map(lambda _: c.post("/api/undo", json={}).json()["undone"],
                                   range(4)))  # fmt: skip
    assert sorted(undone) == sorted(ALL[1:])  # four different votes, the first one stands
    with verdicts.connect(out) as con:
        left = con.execute("SELECT clip FROM votes WHERE undone = 0").fetchall()
    assert left == [(ALL[0],)]


# -- a database votes cannot go into ---------------------------------------------------------


def test_a_damaged_or_locked_database_is_refused_at_once(out: Path) -> None:
    import time

    (out / catalog.REVIEW_DB).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match=r"review.sqlite: damaged or not a SQLite database"):
        review.create_app(out, reviewer="ann", rule=Rule())
    (out / catalog.REVIEW_DB).unlink()
    with verdicts.connect(out):
        pass
    holder = sqlite3.connect(out / catalog.REVIEW_DB, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(UsageError, match="locked by another program"):
            review.create_app(out, reviewer="ann", rule=Rule())
        assert time.monotonic() - started < 10
    finally:
        holder.close()
    review.create_app(out, reviewer="ann", rule=Rule())  # free again


def test_a_read_only_database_or_folder_is_refused_at_once(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with verdicts.connect(out):
        pass
    db = out / catalog.REVIEW_DB
    if os.geteuid() != 0:  # root writes through permissions: pretend for root below
        db.chmod(0o444)
        with pytest.raises(UsageError, match="read-only"):
            review.create_app(out, reviewer="ann", rule=Rule())
        db.chmod(0o644)
    real = os.access
    for target in (db, out):
        monkeypatch.setattr(
            review.os, "access", lambda p, mode, t=target: False if Path(p) == t else real(p, mode)
        )
        with pytest.raises(UsageError, match=f"{target.name}: read-only"):
            review.create_app(out, reviewer="ann", rule=Rule())


# -- disputes, agreement and the review order -----------------------------------------------


def test_the_disputed_queue_and_agreement_per_label(out: Path) -> None:
    rule = Rule(votes=3, agree=2)
    ann, bob, cat = (client(out, name, rule) for name in ("ann", "bob", "cat"))
    for who, label in ((ann, "spinning"), (bob, "pulsing"), (cat, "bouncing")):
        post(who, "/api/vote", {"clip": "alpha/1", "action": "relabel", "label": label})
    for who in (ann, bob, cat):
        post(who, "/api/vote", {"clip": "alpha/0", "action": "accept"})
    assert keys(ann, disputed=1) == ["alpha/1"]  # ann voted on it, and still settles it
    assert "alpha/1" not in keys(ann)
    progress = ann.get("/api/progress").json()
    assert progress["remaining"] == 3  # alpha/2 and both clips of ODD
    agreement = progress["agreement"]
    assert agreement["bouncing"]["percent"] == pytest.approx(1.0)
    assert agreement["spinning"]["percent"] == pytest.approx(0.0)
    assert agreement["all"]["clips"] == 2
    # ann changes her vote: 2 of 3 agree, settled, and the disputed queue is empty
    post(ann, "/api/vote", {"clip": "alpha/1", "action": "relabel", "label": "pulsing"})
    assert keys(ann, disputed=1) == []
    found = verdicts.verdicts(out, catalog.all_clips(out), rule)["alpha/1"]
    assert (found.status, found.label) == ("accepted", "pulsing")


def test_uncertain_order_puts_model_disagreements_and_borderline_scores_first(
    tmp_path: Path,
) -> None:
    rows = [
        Row("run", 0.95, "run", 0.97),  # sure
        Row("run", 0.9, "jump", 0.8),  # the models disagree
        Row("jump", 0.52),  # borderline
        Row("jump", 0.7),
    ]
    out = make_mined(tmp_path / "OUT", {"v": rows})
    order = keys(client(out, order="uncertain"))
    assert order == ["v/1", "v/2", "v/3", "v/0"]
    assert keys(client(out, order="score")) == ["v/0", "v/1", "v/3", "v/2"]
    with pytest.raises(UsageError, match="--order"):
        client(out, order="random")


def test_team_reads_need_a_link_too(out: Path) -> None:
    c = team_client(out)
    assert c.get("/api/progress").status_code == 403
    ann = token_of(c, "ann")
    progress = c.get("/api/progress", headers={review.TOKEN_HEADER: ann})
    assert progress.status_code == 200 and progress.json()["remaining"] == len(ALL)
    entry = c.get("/api/queue", headers={review.TOKEN_HEADER: ann}).json()["clips"][0]
    path = entry["url"].split("?")[0]
    assert c.get(path, params={"as": "not-a-token"}).status_code == 403


def test_review_command_with_a_team_a_labels_file_and_the_stored_rule(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line: names from several --reviewers, a link each printed, a labels
    file's labels offered, the rule stored on the first start and refused when another
    one is given, until --change-rule."""
    from typer.testing import CliRunner

    from clipminer.cli import app

    served: list[dict[str, Any]] = []

    def fake_serve(out_: Path, **kw: Any) -> None:  # prints its links, serves nothing
        served.append(kw)
        app_ = review.create_app(
            out_, rule=kw["rule"], reviewers=kw["reviewers"], labels=kw["labels"],
            reviewer=kw["reviewer"],
        )  # fmt: skip
        kw["on_ready"]("http://127.0.0.1:8765/", review.team_links(app_, "http://127.0.0.1:8765/"))

    monkeypatch.setattr(review, "serve", fake_serve)
    labels = tmp_path / "labels.txt"
    labels.write_text("1 abseiling\n2 air drumming\n")
    runner = CliRunner()
    first = runner.invoke(app, [
        "review", str(out), "--reviewers", "ann,bob", "--reviewers", "cat", "--votes", "3",
        "--agree", "2", "--labels-file", str(labels),
    ])  # fmt: skip
    assert first.exit_code == 0, first.output
    assert served[0]["reviewers"] == ["ann", "bob", "cat"]
    assert served[0]["labels"] == ("abseiling", "air drumming")
    assert served[0]["rule"] == Rule(3, 2)
    for name in ("ann", "bob", "cat"):
        assert f"  {name}: http://127.0.0.1:8765/?as=" in first.output
    assert "3 votes, 2 must agree (set by ann" in first.output
    # a later start with another rule is refused in one line; --change-rule stores it
    other = runner.invoke(app, ["review", str(out), "--reviewer", "bob", "--votes", "5"])
    assert other.exit_code == 2 and "--change-rule" in other.output
    assert other.output.count("\n") == 1, other.output
    plain = runner.invoke(app, ["review", str(out), "--reviewer", "bob"])
    assert plain.exit_code == 0 and served[-1]["rule"] == Rule(3, 2)
    changed = runner.invoke(
        app, ["review", str(out), "--reviewer", "bob", "--votes", "1", "--agree", "1",
              "--change-rule"],
    )  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert served[-1]["rule"] == Rule(1, 1)
    with verdicts.connect(out) as con:
        history = con.execute("SELECT votes, agree, set_by FROM rules ORDER BY id").fetchall()
    assert history == [(3, 2, "ann"), (1, 1, "bob")]
    remote = runner.invoke(app, ["review", str(out), "--host", "0.0.0.0", "--allow-remote"])
    assert remote.exit_code == 2 and "only with --reviewers" in remote.output


def test_a_running_server_follows_a_rule_changed_by_another(out: Path) -> None:
    c = client(out, "ann", Rule(1, 1))
    verdicts.settle_rule(out, verdicts.RuleChoice(1, 1), who="ann")
    post(c, "/api/vote", {"clip": "alpha/0", "action": "accept"})
    assert "alpha/0" not in keys(c, all=0)
    verdicts.settle_rule(out, verdicts.RuleChoice(2, 2), who="bob", change=True)
    # one accept no longer decides: pending, and open to bob (not to ann, who voted)
    entry = c.get("/api/queue", params={"all": 1}).json()["clips"][0]
    assert entry["key"] == "alpha/0" and entry["verdict"]["status"] == "pending"
