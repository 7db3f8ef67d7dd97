"""The verdict rule: several reviewers, one verdict, whatever the order of the votes."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from clipminer.curate.catalog import Clip
from clipminer.curate.verdicts import (
    SCHEMA_VERSION,
    Agreement,
    Rule,
    RuleChoice,
    RuleRecord,
    Vote,
    agreement,
    cast,
    connect,
    decide,
    rule_for_export,
    set_rule,
    settle_rule,
    standing_votes,
    stored_rule,
    undo_last,
    verdicts,
)
from clipminer.errors import UsageError


def _clip(key_id: int = 0, start: float = 1.0, end: float = 4.0) -> Clip:
    return Clip("v", key_id, "run", 0.9, "run", 0.8, start, end, None, "/src/v.mp4")


def _vote(reviewer: str, action: str, label: str | None = None) -> Vote:
    label = "run" if action == "accept" else label
    return Vote("v/0", reviewer, action, label, 0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("actions", "rule", "status", "label"),
    [
        (["accept"], Rule(), "accepted", "run"),
        (["reject"], Rule(), "rejected", None),
        (["accept", "reject"], Rule(3, 2), "pending", None),
        (["accept", "reject", "accept"], Rule(3, 2), "accepted", "run"),
        (["accept", "reject", "jump"], Rule(3, 2), "disputed", None),
        (["jump", "jump", "reject"], Rule(3, 2), "accepted", "jump"),
        (["accept", "reject"], Rule(2, 1), "disputed", None),  # a tie decides nothing
        (["accept", "reject", "reject", "accept"], Rule(4, 2), "disputed", None),
    ],
)
def test_rule(actions: list[str], rule: Rule, status: str, label: str | None) -> None:
    votes = [
        _vote(f"r{k}", "relabel" if a not in ("accept", "reject") else a, a)
        for k, a in enumerate(actions)
    ]
    for order in itertools.permutations(votes):
        verdict = decide(list(order), rule)
        assert (verdict.status, verdict.label) == (status, label)


def test_random_votes_never_depend_on_their_order() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 6))
        rule = Rule(n, int(rng.integers(1, n + 1)))
        actions = rng.choice(["accept", "reject", "jump", "swim"], size=n)
        votes = [
            _vote(f"r{k}", a if a in ("accept", "reject") else "relabel", a)
            for k, a in enumerate(actions)
        ]
        first = decide(votes, rule)
        assert decide(list(reversed(votes)), rule) == first
        assert decide(list(rng.permutation(votes)), rule) == first  # type: ignore[arg-type]


def test_rule_bounds() -> None:
    with pytest.raises(UsageError, match="1 <= agree <= votes"):
        Rule(2, 3)


def test_latest_vote_per_reviewer_undo_and_stale_ranges(tmp_path: Path) -> None:
    clip = _clip()
    with connect(tmp_path) as con:
        cast(con, clip, "ann", "reject")
        cast(con, clip, "ann", "accept")  # ann changed her mind: one vote, accept
        cast(con, clip, "bob", "reject")
        assert undo_last(con, "bob") == "v/0"
        assert undo_last(con, "carl") is None
    assert verdicts(tmp_path, [clip], Rule())["v/0"].status == "accepted"
    assert verdicts(tmp_path, [clip], Rule())["v/0"].votes == 1
    # The video was mined again and clip 0 is another range now: old votes do not count.
    again = _clip(start=2.0)
    assert verdicts(tmp_path, [again], Rule())["v/0"].status == "pending"


def test_no_database_means_pending_and_reading_changes_nothing(tmp_path: Path) -> None:
    clip = _clip()
    assert verdicts(tmp_path, [clip], Rule())["v/0"].status == "pending"
    assert not (tmp_path / "review.sqlite").exists()
    with connect(tmp_path) as con:
        cast(con, clip, "ann", "accept")
    before = (tmp_path / "review.sqlite").stat().st_mtime_ns
    verdicts(tmp_path, [clip], Rule())
    assert (tmp_path / "review.sqlite").stat().st_mtime_ns == before


def test_a_broken_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "review.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(UsageError, match=r"review\.sqlite"):
        verdicts(tmp_path, [_clip()], Rule())


# -- the stored rule ------------------------------------------------------------------------

_V1_SCHEMA = """
CREATE TABLE votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, clip TEXT NOT NULL, time_start REAL NOT NULL,
    time_end REAL NOT NULL, reviewer TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'relabel')), label TEXT,
    cast_at REAL NOT NULL, undone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX votes_clip ON votes (clip);
PRAGMA user_version=1;
"""
_DEC_7 = datetime(2026, 12, 7, 10, 2, 30, tzinfo=timezone.utc).timestamp()


def _version_1_database(out: Path, clip: Clip) -> None:
    """review.sqlite as clipminer wrote it before rules were stored: ann accepted, bob
    rejected."""
    con = sqlite3.connect(out / "review.sqlite", isolation_level=None)
    con.executescript(_V1_SCHEMA)
    cast(con, clip, "ann", "accept")
    cast(con, clip, "bob", "reject")
    con.close()


def _history(out: Path) -> list[tuple[int, int, str]]:
    with sqlite3.connect(out / "review.sqlite") as con:
        return con.execute("SELECT votes, agree, set_by FROM rules ORDER BY id").fetchall()


def test_a_version_1_database_is_migrated_in_place_and_keeps_its_votes(tmp_path: Path) -> None:
    clip = _clip()
    _version_1_database(tmp_path, clip)
    with connect(tmp_path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert stored_rule(con) is None
        assert [v.reviewer for v in standing_votes(con, [clip])["v/0"]] == ["ann", "bob"]
    assert verdicts(tmp_path, [clip], Rule(2, 1))["v/0"].status == "disputed"
    assert rule_for_export(tmp_path, RuleChoice(), override=False) == (
        Rule(), "default: no rule stored"
    )  # fmt: skip
    settle_rule(tmp_path, RuleChoice(3, 2), who="ann")
    assert _history(tmp_path) == [(3, 2, "ann")]
    assert verdicts(tmp_path, [clip], Rule(3, 2))["v/0"].votes == 2


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "review.sqlite") as con:
        con.execute("PRAGMA user_version=3")
    with pytest.raises(UsageError, match=r"review\.sqlite: written by a newer clipminer"):
        settle_rule(tmp_path, RuleChoice(), who="ann")


def test_rule_record_describes_itself() -> None:
    record = RuleRecord(Rule(3, 2), "ann", _DEC_7)
    assert record.describe() == "3 votes, 2 must agree (set by ann at 2026-12-07 10:02 UTC)"
    assert Rule().describe() == "1 vote, 1 must agree"


def test_rule_choice_tells_not_given_from_given_as_one() -> None:
    assert not RuleChoice().given()
    assert RuleChoice(votes=1).given() and RuleChoice(agree=1).given()
    assert RuleChoice().over(Rule(3, 2)) == Rule(3, 2)
    assert RuleChoice(votes=5).over(Rule(3, 2)) == Rule(5, 2)
    assert RuleChoice(agree=3).over(Rule(3, 2)) == Rule(3, 3)
    with pytest.raises(UsageError, match="need 1 <= agree <= votes"):
        RuleChoice(2, 3)
    with pytest.raises(UsageError, match="need 1 <= agree <= votes"):
        RuleChoice(agree=4).over(Rule(3, 2))
    with pytest.raises(UsageError, match="--votes must be an integer >= 1"):
        RuleChoice(votes=0)


def test_settle_rule_first_start_same_different_and_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "review.sqlite"
    # A server that must not create the database stores nothing.
    assert settle_rule(tmp_path, RuleChoice(3, 2), who="ann", create=False).rule == Rule(3, 2)
    assert not path.exists()
    # The first start stores its rule under its reviewer.
    first = settle_rule(tmp_path, RuleChoice(3, 2), who="ann")
    assert (first.rule, first.set_by) == (Rule(3, 2), "ann")
    with connect(tmp_path) as con:
        assert stored_rule(con) == first
    # Later starts with nothing, the same, or half of the same take the stored one.
    for choice in (RuleChoice(), RuleChoice(3, 2), RuleChoice(votes=3), RuleChoice(agree=2)):
        assert settle_rule(tmp_path, choice, who="bob") == first
    assert _history(tmp_path) == [(3, 2, "ann")]
    # A different one is refused, naming the file, the stored rule, who and when, the flag.
    with pytest.raises(UsageError) as refused:
        settle_rule(tmp_path, RuleChoice(votes=1, agree=1), who="bob")
    message = str(refused.value)
    assert str(path) in message and first.describe() in message
    assert "1 vote, 1 must agree" in message and "--change-rule" in message
    assert "\n" not in message
    assert _history(tmp_path) == [(3, 2, "ann")]
    # --change-rule stores it for everyone; the history keeps the old one.
    changed = settle_rule(tmp_path, RuleChoice(votes=5), who="bob", change=True)
    assert (changed.rule, changed.set_by) == (Rule(5, 2), "bob")
    assert _history(tmp_path) == [(3, 2, "ann"), (5, 2, "bob")]
    assert "bob changed the verdict rule from 3 votes, 2 must agree" in caplog.text
    assert "to 5 votes, 2 must agree" in caplog.text
    assert settle_rule(tmp_path, RuleChoice(), who="ann") == changed
    # change with the same rule adds no history
    settle_rule(tmp_path, RuleChoice(5, 2), who="cid", change=True)
    assert len(_history(tmp_path)) == 2


def test_set_rule_needs_a_name(tmp_path: Path) -> None:
    with connect(tmp_path) as con, pytest.raises(UsageError, match="who sets it"):
        set_rule(con, Rule(), " ")


def test_rule_for_export(tmp_path: Path) -> None:
    assert rule_for_export(tmp_path, RuleChoice(), override=False) == (
        Rule(), "default: no votes yet"
    )  # fmt: skip
    assert rule_for_export(tmp_path, RuleChoice(2, 2), override=False)[0] == Rule(2, 2)
    assert not (tmp_path / "review.sqlite").exists()  # export never creates it
    with connect(tmp_path) as con:
        set_rule(con, Rule(3, 2), "ann", now=_DEC_7)
    assert rule_for_export(tmp_path, RuleChoice(), override=False) == (Rule(3, 2), "stored")
    assert rule_for_export(tmp_path, RuleChoice(3, 2), override=False) == (Rule(3, 2), "stored")
    with pytest.raises(UsageError) as refused:
        rule_for_export(tmp_path, RuleChoice(1, 1), override=False)
    message = str(refused.value)
    assert "review.sqlite" in message and "--override-rule" in message
    assert "3 votes, 2 must agree (set by ann at 2026-12-07 10:02 UTC)" in message
    assert "1 vote, 1 must agree" in message
    rule, source = rule_for_export(tmp_path, RuleChoice(1, 1), override=True)
    assert rule == Rule(1, 1)
    assert source == "given, differs from the stored 3 votes, 2 must agree (set by ann at " \
        "2026-12-07 10:02 UTC)"  # fmt: skip


# -- agreement ------------------------------------------------------------------------------

WIKIPEDIA_FLEISS = [
    # 10 clips x 14 reviewers; columns: reject, then relabel as a, b, c, d
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def _votes_from_table(
    table: list[list[int]], labels: Sequence[str] = ()
) -> tuple[dict[str, list[Vote]], list[Clip]]:
    """Clip i gets table[i][j] votes for outcome j (0: reject, then relabel as a, b, ...)."""
    clips, votes = [], {}
    for i, row in enumerate(table):
        clip = _clip(i)
        if labels:
            clip = replace(clip, image_label=labels[i], video_label=labels[i])
        clips.append(clip)
        outcomes = [None if j == 0 else "abcd"[j - 1] for j, k in enumerate(row) for _ in range(k)]
        votes[clip.key] = [
            Vote(clip.key, f"r{n}", "reject" if o is None else "relabel", o, 0.0)
            for n, o in enumerate(outcomes)
        ]
    return votes, clips


def test_fleiss_kappa_of_the_textbook_example() -> None:
    """Wikipedia's worked example: P = 0.378, Pe = 0.213, kappa = 0.210."""
    votes, clips = _votes_from_table(WIKIPEDIA_FLEISS)
    found = agreement(votes, clips)
    assert set(found) == {"run", "all"}
    overall = found["all"]
    assert (overall.clips, overall.votes) == (10, 140)
    assert overall.percent == pytest.approx(0.378, abs=5e-4)
    assert overall.kappa == pytest.approx(0.210, abs=5e-4)
    assert found["run"] == overall


def _figures(found: Agreement) -> tuple[object, ...]:
    return (found.clips, found.votes, found.percent, found.kappa)


def test_agreement_with_varying_reviewers_per_clip_and_per_label() -> None:
    # run clip: accept, accept, reject (3 votes); jump clip: 2 x accept (2 votes);
    # swim clip: one vote, not counted
    run, jump, swim = _clip(0), _clip(1), _clip(2)
    jump = replace(jump, image_label="jump", video_label="jump")
    swim = replace(swim, image_label="swim", video_label="swim")
    votes = {
        "v/0": [Vote("v/0", "a", "accept", "run", 0), Vote("v/0", "b", "accept", "run", 0),
                Vote("v/0", "c", "reject", None, 0)],
        "v/1": [Vote("v/1", "a", "accept", "jump", 0), Vote("v/1", "b", "accept", "jump", 0)],
        "v/2": [Vote("v/2", "a", "reject", None, 0)],
    }  # fmt: skip
    found = agreement(votes, [run, jump, swim])
    # all: P = (1/3 + 1) / 2, Pe = (2/5)^2 + (1/5)^2 + (2/5)^2 = 9/25
    # kappa = (2/3 - 9/25) / (1 - 9/25) = 23/48
    assert _figures(found["all"]) == (2, 5, pytest.approx(2 / 3), pytest.approx(23 / 48))
    # run alone: P = 1/3, Pe = 5/9, kappa = -0.5
    assert _figures(found["run"]) == (1, 3, pytest.approx(1 / 3), pytest.approx(-0.5))
    # jump: every vote one outcome: agreement 1, kappa undefined
    assert found["jump"] == Agreement(1, 2, 1.0, None)
    assert found["swim"] == Agreement(0, 0, None, None)


@pytest.mark.parametrize(
    ("table", "percent", "kappa"),
    [
        ([[1, 1, 0, 0, 0], [1, 1, 0, 0, 0]], 0.0, -1.0),  # always split: worse than chance
        ([[2, 0, 0, 0, 0], [0, 2, 0, 0, 0]], 1.0, 1.0),  # always agree, on two outcomes
        ([[3, 0, 0, 0, 0], [2, 0, 0, 0, 0]], 1.0, None),  # one outcome only: kappa undefined
        ([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]], None, None),  # no clip has two votes
        ([], None, None),
    ],
)
def test_agreement_edge_cases(
    table: list[list[int]], percent: float | None, kappa: float | None
) -> None:
    votes, clips = _votes_from_table(table)
    overall = agreement(votes, clips)["all"]
    assert overall.percent == (None if percent is None else pytest.approx(percent))
    assert overall.kappa == (None if kappa is None else pytest.approx(kappa))


def test_reading_for_export_leaves_a_version_1_database_as_it_was(tmp_path: Path) -> None:
    """Export never changes OUT: its reads neither migrate nor create review.sqlite."""
    clip = _clip()
    assert verdicts(tmp_path, [clip], Rule())["v/0"].status == "pending"
    assert not (tmp_path / "review.sqlite").exists()
    _version_1_database(tmp_path, clip)
    before = (tmp_path / "review.sqlite").read_bytes()
    assert rule_for_export(tmp_path, RuleChoice(), override=False)[1] == "default: no rule stored"
    assert verdicts(tmp_path, [clip], Rule(2, 1))["v/0"].status == "disputed"
    assert (tmp_path / "review.sqlite").read_bytes() == before
    with connect(tmp_path, readonly=True) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
