"""The verdict rule: several reviewers, one verdict, whatever the order of the votes."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from clipminer.curate.catalog import Clip
from clipminer.curate.verdicts import Rule, Vote, cast, connect, decide, undo_last, verdicts
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
