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
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from clipminer.curate.catalog import REVIEW_DB, Clip
from clipminer.errors import ClipminerError, UsageError, output_error, sqlite_disk_error
from clipminer.settings import setting

Action = Literal["accept", "reject", "relabel"]
Status = Literal["accepted", "rejected", "disputed", "pending"]
SCHEMA_VERSION = 1
_SCHEMA = """
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


@contextlib.contextmanager
def connect(out: Path) -> Iterator[sqlite3.Connection]:
    """``OUT/review.sqlite``, created with the schema when absent."""
    path = Path(out) / REVIEW_DB
    try:
        if not path.exists():  # the disk's own reason (read-only, full), not "unable to open"
            path.touch()
        con = sqlite3.connect(path, timeout=30, isolation_level=None)
    except OSError as exc:
        raise output_error(exc, path) from None
    except sqlite3.Error as exc:
        raise UsageError(f"{path}: cannot open ({exc})") from None
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise UsageError(f"{path}: written by a newer clipminer (schema {version})")
        if version == 0:  # new: readers of an existing database change nothing
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)
            con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
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
    """Undo ``reviewer``'s latest standing vote; returns its clip key (None if none)."""
    row = con.execute(
        "SELECT id, clip FROM votes WHERE reviewer = ? AND undone = 0 ORDER BY id DESC LIMIT 1",
        (reviewer,),
    ).fetchone()
    if row is None:
        return None
    con.execute("UPDATE votes SET undone = 1 WHERE id = ?", (row[0],))
    return str(row[1])


def standing_votes(con: sqlite3.Connection, clips: Sequence[Clip]) -> dict[str, list[Vote]]:
    """Per clip key, each reviewer's latest vote that is not undone and matches the clip's
    current range."""
    ranges = {c.key: (c.time_start, c.time_end) for c in clips}
    latest: dict[tuple[str, str], Vote] = {}
    for clip, start, end, reviewer, action, label, cast_at in con.execute(
        "SELECT clip, time_start, time_end, reviewer, action, label, cast_at FROM votes"
        " WHERE undone = 0 ORDER BY id"
    ):
        span = ranges.get(clip)
        if span is None or abs(span[0] - start) > 1e-3 or abs(span[1] - end) > 1e-3:
            continue
        latest[(clip, reviewer)] = Vote(clip, reviewer, action, label, cast_at)
    out: dict[str, list[Vote]] = {}
    for (clip, _), vote in latest.items():
        out.setdefault(clip, []).append(vote)
    return out


def decide(votes: Sequence[Vote], rule: Rule) -> Verdict:
    """The verdict of one clip's standing votes under ``rule``."""
    outcomes = Counter(v.label if v.action != "reject" else None for v in votes)
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
    with connect(Path(out)) as con:
        standing = standing_votes(con, clips)
    return {c.key: decide(standing.get(c.key, []), rule) for c in clips}
