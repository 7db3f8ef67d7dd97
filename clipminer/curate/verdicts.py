"""People's votes on mined clips, and the rule that turns them into verdicts.

Votes live in ``OUT/review.sqlite`` (one row per vote; an undo marks the row, never
deletes it). A vote is ``accept`` (the clip shows its label), ``reject`` (it does not),
or ``relabel`` to another label (the clip shows that action instead). Each reviewer's
latest standing vote on a clip counts once. As Kinetics asked several workers per clip,
a clip's verdict follows a :class:`Rule`: when exactly one outcome (accept as label X,
or reject) has ``agree`` votes it is decided; when two have (possible with ``agree`` at
most half of ``votes``), or ``votes`` votes agree on nothing, it is ``disputed``;
otherwise ``pending``. The order of the votes never matters. A vote cast on an earlier mining of the
video (another time range under the same key) no longer counts.

The rule is stored with the votes (table ``rules``, one row per change; the latest is
the rule), so that review and export cannot use different ones without saying so: the
first review server stores the rule it starts with (:func:`settle_rule`), later ones
and export take it (:func:`rule_for_export`), and only ``--change-rule`` changes it.
:func:`agreement` measures how far the reviewers agree (Fleiss' kappa).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from clipminer.curate.catalog import REVIEW_DB, Clip
from clipminer.errors import ClipminerError, UsageError, output_error, sqlite_disk_error
from clipminer.settings import check_declared, setting

log = logging.getLogger(__name__)

Action = Literal["accept", "reject", "relabel"]
Status = Literal["accepted", "rejected", "disputed", "pending"]
SCHEMA_VERSION = 2
"""1: votes; 2: and the history of rules (a version-1 database gains the table on open)."""
_VOTES_SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    clip TEXT NOT NULL,           -- Clip.key, <video>/<clip_id>
    time_start REAL NOT NULL,     -- the clip's range when the vote was cast
    time_end REAL NOT NULL,
    reviewer TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'relabel')),
    label TEXT,                   -- the label voted for (the clip's own for accept)
    cast_at REAL NOT NULL,        -- seconds since the epoch
    undone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS votes_clip ON votes (clip);
"""
_RULES_SCHEMA = """
CREATE TABLE IF NOT EXISTS rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    votes INTEGER NOT NULL CHECK (votes >= 1),
    agree INTEGER NOT NULL CHECK (agree BETWEEN 1 AND votes),
    set_by TEXT NOT NULL,         -- who stored it (the reviewer who started review)
    set_at REAL NOT NULL          -- seconds since the epoch
);
"""
_UPGRADES = {0: _VOTES_SCHEMA + _RULES_SCHEMA, 1: _RULES_SCHEMA}
"""The statements that bring a database of each older version to :data:`SCHEMA_VERSION`."""
_DEFAULT_HELP = " Default: the rule stored in OUT/review.sqlite, else 1."


@dataclass(frozen=True)
class Rule:
    """How many votes a clip needs (``votes``) and how many must agree (``agree``)."""

    votes: int = setting(
        1, "Votes a clip needs to be decided (with no majority then: disputed).", min=1,
        metavar="N",
    )  # fmt: skip
    agree: int = setting(
        1, "Votes that must agree (accept as one label, or reject).", min=1, metavar="N"
    )

    def __post_init__(self) -> None:
        if not 1 <= self.agree <= self.votes:
            raise UsageError(f"--agree {self.agree} --votes {self.votes}: need 1 <= agree <= votes")

    def describe(self) -> str:
        """``3 votes, 2 must agree``."""
        return f"{self.votes} vote{'s' if self.votes != 1 else ''}, {self.agree} must agree"


@dataclass(frozen=True)
class RuleChoice:
    """The rule as the command line gives it: either number may be left out (None), and
    then comes from the rule stored in ``OUT/review.sqlite``, else from :class:`Rule`'s
    default. Not giving a value differs from giving the default."""

    votes: int | None = setting(
        None, "Votes a clip needs to be decided (with no majority then: disputed)." + _DEFAULT_HELP,
        min=1, metavar="N",
    )  # fmt: skip
    agree: int | None = setting(
        None, "Votes that must agree (accept as one label, or reject)." + _DEFAULT_HELP,
        min=1, metavar="N",
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_declared(self)
        if self.votes is not None and self.agree is not None:
            Rule(self.votes, self.agree)  # both given: they must fit together

    def given(self) -> bool:
        """Whether ``--votes`` or ``--agree`` was given."""
        return self.votes is not None or self.agree is not None

    def over(self, base: Rule) -> Rule:
        """The rule chosen, taking what was not given from ``base``."""
        return Rule(
            base.votes if self.votes is None else self.votes,
            base.agree if self.agree is None else self.agree,
        )


@dataclass(frozen=True)
class RuleRecord:
    """The rule stored in ``OUT/review.sqlite``, with who stored it and when."""

    rule: Rule
    set_by: str
    set_at: float
    """Seconds since the epoch."""

    def describe(self) -> str:
        """``3 votes, 2 must agree (set by ann at 2026-12-07 10:02 UTC)``."""
        when = datetime.fromtimestamp(self.set_at, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return f"{self.rule.describe()} (set by {self.set_by} at {when})"


@dataclass(frozen=True)
class Vote:
    clip: str
    reviewer: str
    action: Action
    label: str | None
    cast_at: float


@dataclass(frozen=True)
class Verdict:
    status: Status
    label: str | None
    """The label the clip is accepted as (None unless ``accepted``)."""
    votes: int
    """Standing votes counted."""


@dataclass(frozen=True)
class Agreement:
    """How far reviewers agree on a set of clips. Only clips with at least two standing
    votes count; a vote's category is its outcome: accept as label X (for each X), or
    reject."""

    clips: int
    """Clips with at least two standing votes."""
    votes: int
    """Standing votes on those clips."""
    percent: float | None
    """Mean over those clips of the share of pairs of votes that agree, 0..1 (None
    without such clips)."""
    kappa: float | None
    """Fleiss' kappa (raters per clip may vary): ``(percent - expected) / (1 - expected)``
    where ``expected`` is the sum of the squared shares of each outcome among the votes;
    None without clips or when every vote has one outcome (expected agreement 1)."""


@contextlib.contextmanager
def connect(out: Path, *, readonly: bool = False) -> Iterator[sqlite3.Connection]:
    """``OUT/review.sqlite``, created with the schema when absent, brought up to
    :data:`SCHEMA_VERSION` when older (its votes stay). ``readonly`` (export, which never
    changes OUT): an existing database, read as it is, older schema included."""
    path = Path(out) / REVIEW_DB
    try:
        if readonly:  # on a read-only disk SQLite cannot make its WAL index: immutable
            uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
            if not os.access(path.parent, os.W_OK):
                uri += "&immutable=1"
            con = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        else:
            if not path.exists():  # the disk's own reason (read-only, full), not "unable to open"
                path.touch()
            con = sqlite3.connect(path, timeout=30, isolation_level=None)
    except OSError as exc:
        raise output_error(exc, path) from None
    except sqlite3.Error as exc:
        raise UsageError(f"{path}: cannot open ({exc})") from None
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version not in _UPGRADES and version != SCHEMA_VERSION:
            raise UsageError(f"{path}: written by a newer clipminer (schema {version})")
        if version != SCHEMA_VERSION and not readonly:  # up-to-date: nothing changes
            if version == 0:  # new
                con.execute("PRAGMA journal_mode=WAL")
            con.executescript(
                f"BEGIN IMMEDIATE; {_UPGRADES[version]}"
                f" PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
            )
        yield con
    except sqlite3.OperationalError as exc:  # the disk, or a lock held too long
        raise sqlite_disk_error(exc, path) or ClipminerError(f"{path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path}: not a review database ({exc})") from None
    finally:
        con.close()


def cast(
    con: sqlite3.Connection,
    clip: Clip,
    reviewer: str,
    action: Action,
    label: str | None = None,
    *,
    now: float | None = None,
) -> int:
    """Record one vote; returns its id. ``label`` is needed for ``relabel`` only."""
    if action == "relabel" and not label:
        raise UsageError("relabel needs the new label")
    if action == "accept":
        label = clip.label
    elif action == "reject":
        label = None
    cursor = con.execute(
        "INSERT INTO votes (clip, time_start, time_end, reviewer, action, label, cast_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (clip.key, clip.time_start, clip.time_end, reviewer, action, label,
         time.time() if now is None else now),
    )  # fmt: skip
    return int(cursor.lastrowid or 0)


def undo_last(con: sqlite3.Connection, reviewer: str) -> str | None:
    """Undo ``reviewer``'s latest standing vote; returns its clip key (None if none).

    The vote is found and marked in one write transaction, so undos sent at the same
    moment each undo a different vote (a read, then a write, let two pick the same one)."""
    with _immediate(con):
        row = con.execute(
            "SELECT id, clip FROM votes WHERE reviewer = ? AND undone = 0 ORDER BY id DESC LIMIT 1",
            (reviewer,),
        ).fetchone()
        if row is not None:
            con.execute("UPDATE votes SET undone = 1 WHERE id = ?", (row[0],))
    return None if row is None else str(row[1])


# -- the stored rule ----------------------------------------------------------------------


def stored_rule(con: sqlite3.Connection) -> RuleRecord | None:
    """The rule stored latest (None when none ever was)."""
    try:
        row = con.execute(
            "SELECT votes, agree, set_by, set_at FROM rules ORDER BY id DESC LIMIT 1"
        ).fetchone()
    except sqlite3.OperationalError as exc:  # a database from before rules were stored
        if "no such table" in str(exc):
            return None
        raise
    if row is None:
        return None
    votes, agree, set_by, set_at = row
    return RuleRecord(Rule(int(votes), int(agree)), str(set_by), float(set_at))


def set_rule(con: sqlite3.Connection, rule: Rule, who: str, *, now: float | None = None) -> None:
    """Store ``rule`` as the current one, set by ``who`` (the earlier ones stay as history)."""
    if not who.strip():
        raise UsageError(f"the verdict rule needs the name of who sets it, got {who!r}")
    con.execute(
        "INSERT INTO rules (votes, agree, set_by, set_at) VALUES (?, ?, ?, ?)",
        (rule.votes, rule.agree, who, time.time() if now is None else now),
    )


@contextlib.contextmanager
def _immediate(con: sqlite3.Connection) -> Iterator[None]:
    """A write transaction taken at once, so that a read and the write it decides are one."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if con.in_transaction:
            con.rollback()
        raise
    con.execute("COMMIT")


def settle_rule(
    out: Path, choice: RuleChoice, *, who: str, change: bool = False, create: bool = True
) -> RuleRecord:
    """The rule a review server uses, stored in ``OUT/review.sqlite`` for everyone.

    Without a stored rule the chosen one (or :class:`Rule`'s default) is stored under
    ``who``; a stored rule is kept when nothing or the same is chosen, and replaced by a
    different choice only with ``change`` (the old one stays in the history).

    Args:
        create: create the database when it does not exist; without it, a missing
            database stores nothing and the chosen rule is returned as set by ``who`` now.

    Raises:
        UsageError: a rule other than the stored one is chosen without ``change``.
    """
    path = Path(out) / REVIEW_DB
    if not create and not path.is_file():
        return RuleRecord(choice.over(Rule()), who, time.time())
    with connect(Path(out)) as con, _immediate(con):
        stored = stored_rule(con)
        rule = choice.over(stored.rule if stored else Rule())
        if stored is not None and rule == stored.rule:
            return stored
        if stored is not None and not change:
            raise UsageError(
                f"{path}: the verdict rule is {stored.describe()}, not {rule.describe()}; "
                "pass --change-rule to change it for everyone"
            )
        record = RuleRecord(rule, who, time.time())
        set_rule(con, rule, who, now=record.set_at)
    if stored is not None:
        log.warning(
            "%s: %s changed the verdict rule from %s to %s",
            path, who, stored.describe(), rule.describe(),
        )  # fmt: skip
    return record


def rule_for_export(out: Path, choice: RuleChoice, *, override: bool) -> tuple[Rule, str]:
    """The rule export uses and where it comes from: ``stored``, ``default: ...``,
    ``given ...``. Never creates ``OUT/review.sqlite``.

    Raises:
        UsageError: a rule other than the stored one is given without ``override``.
    """
    path = Path(out) / REVIEW_DB
    if not path.is_file():
        if choice.given():
            return choice.over(Rule()), "given (no votes yet)"
        return Rule(), "default: no votes yet"
    with connect(Path(out), readonly=True) as con:
        stored = stored_rule(con)
    if stored is None:  # votes from before rules were stored
        if choice.given():
            return choice.over(Rule()), "given (no rule stored)"
        return Rule(), "default: no rule stored"
    rule = choice.over(stored.rule)
    if rule == stored.rule:
        return rule, "stored"
    if not override:
        raise UsageError(
            f"{path}: the verdict rule is {stored.describe()}, but --votes/--agree give "
            f"{rule.describe()}; leave them out to use the stored rule, or pass "
            "--override-rule to export with the given one"
        )
    return rule, f"given, differs from the stored {stored.describe()}"


def standing_votes(con: sqlite3.Connection, clips: Sequence[Clip]) -> dict[str, list[Vote]]:
    """Per clip key, each reviewer's latest vote that is not undone and matches the clip's
    current range."""
    ranges = {c.key: (c.time_start, c.time_end) for c in clips}
    latest: dict[tuple[str, str], Vote] = {}
    query = (
        "SELECT clip, time_start, time_end, reviewer, action, label, cast_at FROM votes"
        " WHERE undone = 0"
    )
    keys: tuple[str, ...] = ()
    if len(ranges) <= 50:  # a few clips (a vote, an undo): through the index
        keys = tuple(ranges)
        query += f" AND clip IN ({', '.join('?' * len(keys))})" if keys else " AND 0"
    for clip, start, end, reviewer, action, label, cast_at in con.execute(
        query + " ORDER BY id", keys
    ):
        span = ranges.get(clip)
        if span is None or abs(span[0] - start) > 1e-3 or abs(span[1] - end) > 1e-3:
            continue
        latest[(clip, reviewer)] = Vote(clip, reviewer, action, label, cast_at)
    out: dict[str, list[Vote]] = {}
    for (clip, _), vote in latest.items():
        out.setdefault(clip, []).append(vote)
    return out


def _outcome(vote: Vote) -> str | None:
    """The label a vote accepts the clip as (None: reject)."""
    return vote.label if vote.action != "reject" else None


def decide(votes: Sequence[Vote], rule: Rule) -> Verdict:
    """The verdict of one clip's standing votes under ``rule``."""
    outcomes = Counter(_outcome(v) for v in votes)
    agreed = [outcome for outcome, count in outcomes.items() if count >= rule.agree]
    if len(agreed) == 1:  # two outcomes with enough votes each decide nothing
        if agreed[0] is None:
            return Verdict("rejected", None, len(votes))
        return Verdict("accepted", agreed[0], len(votes))
    undecided = len(agreed) > 1 or len(votes) >= rule.votes
    return Verdict("disputed" if undecided else "pending", None, len(votes))


def verdicts(out: Path, clips: Sequence[Clip], rule: Rule) -> dict[str, Verdict]:
    """The verdict of every clip in ``clips`` (``pending`` without votes or database)."""
    if not (Path(out) / REVIEW_DB).is_file():
        return {c.key: Verdict("pending", None, 0) for c in clips}
    with connect(Path(out), readonly=True) as con:
        standing = standing_votes(con, clips)
    return {c.key: decide(standing.get(c.key, []), rule) for c in clips}


# -- agreement ------------------------------------------------------------------------------


def _agreement_of(outcomes: Sequence[Counter[str | None]]) -> Agreement:
    """Agreement over clips given as counts of votes per outcome."""
    rated = [(counts, sum(counts.values())) for counts in outcomes]
    rated = [(counts, n) for counts, n in rated if n >= 2]
    if not rated:
        return Agreement(0, 0, None, None)
    pairs = [sum(k * (k - 1) for k in counts.values()) / (n * (n - 1)) for counts, n in rated]
    observed = math.fsum(pairs) / len(pairs)
    totals: Counter[str | None] = Counter()
    for counts, _ in rated:
        totals.update(counts)
    votes = sum(totals.values())
    expected = math.fsum((k / votes) ** 2 for k in totals.values())
    kappa = None if expected >= 1 - 1e-12 else (observed - expected) / (1 - expected)
    return Agreement(len(rated), votes, observed, kappa)


def agreement(votes: dict[str, list[Vote]], clips: Sequence[Clip]) -> dict[str, Agreement]:
    """How far reviewers agree, per mined label (``clip.label``) and over all clips
    (key ``"all"``, written last: it wins over a label named ``all``).

    Args:
        votes: standing votes per clip key (:func:`standing_votes`).
        clips: the clips to measure; those with fewer than two votes do not count.
    """
    outcomes = {c.key: Counter(_outcome(v) for v in votes.get(c.key, [])) for c in clips}
    labels: dict[str, list[Counter[str | None]]] = {}
    for clip in clips:
        labels.setdefault(clip.label, []).append(outcomes[clip.key])
    found = {label: _agreement_of(tables) for label, tables in sorted(labels.items())}
    found["all"] = _agreement_of([outcomes[c.key] for c in clips])
    return found
