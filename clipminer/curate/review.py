"""``clipminer review OUT``: a local web page where people accept, reject or relabel clips.

One small ASGI app (Starlette, served by uvicorn) over what find-clips left in ``OUT``
(:mod:`~clipminer.curate.catalog`). Votes go to ``OUT/review.sqlite`` through
:mod:`~clipminer.curate.verdicts`, one row per key press, with the reviewer's name and
the time; the verdict of a clip follows a :class:`~clipminer.curate.verdicts.Rule`, so
several reviewers can vote on the same clips (``--votes 3 --agree 2``).

A clip is *pending for a reviewer* when its verdict is still open (``pending``, or
``disputed``: more votes may still decide it) and that reviewer has no standing vote on
it; clips that ``clipminer dedup`` dropped are never shown. The queue walks the clips in
catalogue order (video folder by name, then clip id).

The server only listens on a loopback address unless told otherwise, answers only to
its own host name (a DNS-rebinding guard), and takes votes only with a random token
that is embedded in its page (so no other web page can post votes to it). Label and
file names are data: the page sets them with ``textContent``, never as HTML.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hmac
import ipaddress
import json
import logging
import math
import os
import secrets
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from clipminer import pages
from clipminer.curate import catalog, verdicts
from clipminer.curate.catalog import Clip
from clipminer.curate.verdicts import Action, Rule, Vote
from clipminer.errors import ClipminerError, UsageError
from clipminer.layout import SEGMENTS_CSV, read_segments
from clipminer.settings import setting

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
Order = Literal["score", "uncertain"]


@dataclass(frozen=True)
class ServeConfig:
    """Where ``review`` serves the page, and as whom it records the votes."""

    host: str = setting(
        DEFAULT_HOST,
        "Address to listen on; one that is not loopback needs --allow-remote.",
        metavar="ADDR",
    )
    port: int = setting(
        DEFAULT_PORT, "Port to listen on (0: any free port).", min=0, max=65535, metavar="N"
    )
    reviewer: str | None = setting(
        None, "Your name, stored with every vote (default: $USER).", metavar="NAME"
    )
    reviewers: tuple[str, ...] = setting(
        (), "Serve a team: one private link per reviewer is printed, and each vote is "
        "recorded under the name its link names (comma-separated, or repeat the option). "
        "The links stay the same across restarts.", metavar="NAME,...",
    )  # fmt: skip
    allow_remote: bool = setting(
        False, "Allow a --host that other machines can reach; needs --reviewers (each "
        "person votes only through their own link).",
    )  # fmt: skip
    order: Order = setting(
        "score", "The order clips are offered in: score (the most confident first) or "
        "uncertain (first the clips whose image and video models disagree, then those "
        "whose score sits nearest 0.5: the votes that teach the models most).",
    )  # fmt: skip
    labels_file: Path | None = setting(
        None, "More labels to relabel clips to, one per line (a Kinetics or UCF-101 "
        "label map; a leading index number is dropped), beside the models' labels.",
        metavar="FILE",
    )  # fmt: skip


TOKEN_HEADER = "X-Clipminer-Token"
"""The header that carries the server's token on every POST."""
QUEUE_LIMIT = 50
"""The most clips one ``/api/queue`` answer holds."""
MAX_BODY_BYTES = 64 * 1024
MAX_NAME_CHARS = 100
OPEN_STATUSES = frozenset({"pending", "disputed"})
"""Verdicts that more votes may still change: such clips stay in the queue."""
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_ACTIONS: dict[str, Action] = {"accept": "accept", "reject": "reject", "relabel": "relabel"}


# -- what the page shows ------------------------------------------------------------------


class StaleClipError(UsageError):
    """A vote on a clip the page showed before its video was mined again."""


class NoSuchClipError(UsageError):
    """A vote on a key OUT does not have (any more)."""


class MissingClipError(UsageError):
    """A vote on a clip whose file is gone (nobody could have watched it)."""


@dataclass(frozen=True)
class Filters:
    """Which clips the queue offers."""

    labels: tuple[str, ...] = setting(
        (), "Only show clips mined as this label; repeat for several.", metavar="LABEL",
        flag="label",
    )  # fmt: skip
    min_score: float | None = setting(
        None, "Only clips scoring at least this (the video model's score when it re-labelled).",
    )  # fmt: skip
    max_score: float | None = setting(None, "Only clips scoring at most this.")
    include_voted: bool = setting(
        False, "Also show clips already decided or voted on by you.", flag="all"
    )
    disputed: bool = setting(
        False, "Only the disputed clips (votes that the rule cannot decide), to settle "
        "them: each reviewer's new vote replaces their earlier one.",
    )  # fmt: skip

    def __post_init__(self) -> None:
        for name in ("min_score", "max_score"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise UsageError(f"--{name.replace('_', '-')} {value}: not a number")
        low, high = self.min_score, self.max_score
        if low is not None and high is not None and low > high:
            raise UsageError(f"--min-score {low} is above --max-score {high}")

    def matches(self, clip: Clip) -> bool:
        """Whether ``clip``'s label and score pass (voting state is not looked at here)."""
        if self.labels and clip.label not in self.labels:
            return False
        score = clip_score(clip)
        if self.min_score is not None and score < self.min_score:
            return False
        return self.max_score is None or score <= self.max_score


def clip_score(clip: Clip) -> float:
    """The score of the clip's label: the video model's when it re-labelled, else the
    image model's."""
    if clip.video_label and clip.video_score is not None:
        return clip.video_score
    return clip.image_score


@dataclass(frozen=True)
class Extra:
    """What ``segments.csv`` says about a clip beyond :class:`~catalog.Clip`."""

    top5: tuple[tuple[str, float], ...] = ()
    """The video model's five best labels and their probabilities."""
    clip_start: float | None = None
    """Where the cut clip file really starts (keyframe-aligned cuts start earlier)."""
    clip_end: float | None = None


@dataclass(frozen=True)
class Snapshot:
    """The reviewable clips of OUT at one moment."""

    clips: tuple[Clip, ...]
    """In catalogue order, without the clips dedup dropped."""
    by_key: dict[str, Clip]
    extras: dict[str, Extra]
    labels: tuple[str, ...]
    """Every label in OUT (image labels, video labels, top-5 labels), sorted: the labels
    a clip can be relabelled to."""


def load_snapshot(out: Path) -> Snapshot:
    """Read the catalogue, the top-5 columns and ``duplicates.csv`` of ``out``."""
    dropped = catalog.read_duplicates(out)
    clips: list[Clip] = []
    extras: dict[str, Extra] = {}
    for folder in catalog.video_folders(out):
        try:
            rows = read_segments(folder)
        except UsageError as exc:
            log.warning("%s", exc)
            continue
        for row in rows:
            clip = catalog.clip_of(folder.name, row)
            if not dropped.dropped(clip):
                clips.append(clip)
                extras[clip.key] = Extra(row.video_top5, row.clip_start, row.clip_end)
    labels: set[str] = set()
    for clip in clips:
        labels.update(x for x in (clip.image_label, clip.video_label) if x)
        labels.update(label for label, _ in extras[clip.key].top5)
    return Snapshot(tuple(clips), {c.key: c for c in clips}, extras, tuple(sorted(labels)))


class Catalogue:
    """The snapshot of OUT, read again when a ``segments.csv`` or ``duplicates.csv``
    changes (a rerun of find-clips or dedup while the page is open)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._stamp: tuple[Any, ...] | None = None
        self._snapshot: Snapshot | None = None

    def _signature(self) -> tuple[Any, ...]:
        stamps = []
        for path in (
            self.out / catalog.DUPLICATES_CSV,
            *(f / SEGMENTS_CSV for f in catalog.video_folders(self.out)),
        ):
            with contextlib.suppress(OSError):
                stat = path.stat()
                stamps.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(stamps)

    def get(self) -> Snapshot:
        """The current snapshot."""
        with self._lock:
            stamp = self._signature()
            if self._snapshot is None or stamp != self._stamp:
                self._snapshot, self._stamp = load_snapshot(self.out), stamp
            return self._snapshot


def standing(out: Path, clips: Sequence[Clip]) -> dict[str, list[Vote]]:
    """Standing votes per clip key (none when nobody voted yet: no database is made)."""
    if not (out / catalog.REVIEW_DB).is_file():
        return {}
    with verdicts.connect(out) as con:
        return verdicts.standing_votes(con, clips)


def pending_for(votes: Sequence[Vote], reviewer: str, rule: Rule) -> bool:
    """Whether a clip with these standing votes still waits for ``reviewer``'s vote."""
    if any(v.reviewer == reviewer for v in votes):
        return False
    return verdicts.decide(votes, rule).status in OPEN_STATUSES


def uncertainty(clip: Clip) -> tuple[bool, float]:
    """How unsure the models are of ``clip`` (sorts descending): whether the image and
    video models named different labels, then how near 0.5 its score sits."""
    disagree = bool(clip.video_label) and clip.video_label != clip.image_label
    return disagree, -abs(clip_score(clip) - 0.5)


def ordered(clips: Sequence[Clip], order: Order) -> list[Clip]:
    """``clips`` in the review order (ties keep the catalogue order)."""
    if order == "uncertain":
        return sorted(clips, key=uncertainty, reverse=True)
    if order == "score":
        return sorted(clips, key=clip_score, reverse=True)
    raise UsageError(f"--order {order!r}: choose score or uncertain")


def wanted(
    clip: Clip, votes: Sequence[Vote], *, reviewer: str, rule: Rule, filters: Filters
) -> bool:
    """Whether the queue offers ``clip`` to ``reviewer`` under ``filters``."""
    if not filters.matches(clip):
        return False
    if filters.disputed:
        return verdicts.decide(votes, rule).status == "disputed"
    return filters.include_voted or pending_for(votes, reviewer, rule)


def queue(
    snapshot: Snapshot,
    votes: dict[str, list[Vote]],
    *,
    reviewer: str,
    rule: Rule,
    filters: Filters,
    after: str | None = None,
    limit: int = QUEUE_LIMIT,
    order: Order = "score",
) -> tuple[list[Clip], bool]:
    """The next clips to show after the clip ``after`` (from the start when None or gone),
    and whether more follow."""
    clips = ordered(snapshot.clips, order)
    start = 0
    if after is not None and after in snapshot.by_key:
        start = [c.key for c in clips].index(after) + 1
    chosen: list[Clip] = []
    for clip in clips[start:]:
        if not wanted(clip, votes.get(clip.key, []), reviewer=reviewer, rule=rule, filters=filters):
            continue
        if len(chosen) == limit:
            return chosen, True
        chosen.append(clip)
    return chosen, False


def remaining(
    snapshot: Snapshot, votes: dict[str, list[Vote]], *, reviewer: str, rule: Rule,
    filters: Filters,
) -> int:  # fmt: skip
    """How many clips the queue still offers ``reviewer`` under ``filters``."""
    return sum(
        wanted(c, votes.get(c.key, []), reviewer=reviewer, rule=rule, filters=filters)
        for c in snapshot.clips
    )


@dataclass
class LabelProgress:
    """How far review of one mined label has come."""

    label: str
    total: int = 0
    accepted: int = 0
    """Accepted as this label."""
    relabelled: int = 0
    """Accepted as another label."""
    rejected: int = 0
    disputed: int = 0
    pending: int = 0
    mine: int = 0
    """Clips this reviewer has a standing vote on."""


def progress(
    snapshot: Snapshot, votes: dict[str, list[Vote]], *, reviewer: str, rule: Rule
) -> list[LabelProgress]:
    """Per mined label (in label order): counts of clips by verdict under ``rule``."""
    rows: dict[str, LabelProgress] = {}
    for clip in snapshot.clips:
        row = rows.setdefault(clip.label, LabelProgress(clip.label))
        standing_votes = votes.get(clip.key, [])
        verdict = verdicts.decide(standing_votes, rule)
        row.total += 1
        if verdict.status == "accepted":
            if verdict.label == clip.label:
                row.accepted += 1
            else:
                row.relabelled += 1
        elif verdict.status == "rejected":
            row.rejected += 1
        elif verdict.status == "disputed":
            row.disputed += 1
        else:
            row.pending += 1
        row.mine += any(v.reviewer == reviewer for v in standing_votes)
    return [rows[label] for label in sorted(rows)]


def clip_url(clip: Clip, token: str | None = None) -> str | None:
    """Where the page fetches the clip's file: by catalogue key, never by path (with a
    team, the reviewer's link token too: a video element cannot send headers)."""
    if not clip.clip_path:
        return None
    url = f"/clips/{quote(clip.video, safe='')}/{clip.clip_id}"
    return f"{url}?as={quote(token, safe='')}" if token else url


def entry(
    clip: Clip, extra: Extra, votes: Sequence[Vote], *, reviewer: str, rule: Rule,
    token: str | None = None, playable: bool = True,
) -> dict:  # fmt: skip
    """One clip as the page sees it (JSON); ``playable``: its clip file is there."""
    verdict = verdicts.decide(votes, rule)
    mine = next((v for v in votes if v.reviewer == reviewer), None)
    return {
        "key": clip.key,
        "video": clip.video,
        "clip_id": clip.clip_id,
        "label": clip.label,
        "score": clip_score(clip),
        "image_label": clip.image_label,
        "image_score": clip.image_score,
        "video_label": clip.video_label,
        "video_score": clip.video_score,
        "top5": [list(pair) for pair in extra.top5],
        "time_start": clip.time_start,
        "time_end": clip.time_end,
        "clip_start": extra.clip_start,
        "clip_end": extra.clip_end,
        "url": clip_url(clip, token) if playable else None,
        "missing": bool(clip.clip_path) and not playable,
        "verdict": {"status": verdict.status, "label": verdict.label, "votes": verdict.votes},
        "my_vote": None if mine is None else {"action": mine.action, "label": mine.label},
    }


# -- the app ---------------------------------------------------------------------------------


@dataclass
class Review:
    """What one server knows: where, the rule, the order, and who may vote.

    ``tokens`` maps each secret to its reviewer. Alone, the one token is embedded in the
    page (it keeps other web pages out); with a team (``team``), each reviewer's token
    is in their link, and the server takes a request as coming from the reviewer whose
    token it carries.
    """

    out: Path
    rule: Rule
    filters: Filters
    tokens: dict[str, str]
    team: bool = False
    order: Order = "score"
    extra_labels: tuple[str, ...] = ()
    rule_note: str = ""
    """Who set the rule and when (shown in the page)."""
    catalogue: Catalogue = field(init=False)

    def __post_init__(self) -> None:
        self.catalogue = Catalogue(self.out)

    @property
    def token(self) -> str:
        """The first reviewer's token (the only one when serving one reviewer)."""
        return next(iter(self.tokens))

    @property
    def reviewer(self) -> str:
        return self.tokens[self.token]

    def reviewer_of(self, token: str | None) -> str | None:
        """The reviewer whose token this is (constant-time comparisons), else None."""
        found = None
        for known, name in self.tokens.items():
            if token is not None and hmac.compare_digest(token.encode(), known.encode()):
                found = name
        return found

    def token_of(self, reviewer: str) -> str:
        return next(t for t, name in self.tokens.items() if name == reviewer)

    def labels(self, snapshot: Snapshot) -> tuple[str, ...]:
        """The labels a clip can be relabelled to: OUT's and the labels file's."""
        return tuple(sorted({*snapshot.labels, *self.extra_labels}))

    def state(self) -> tuple[Snapshot, dict[str, list[Vote]]]:
        snapshot = self.catalogue.get()
        self.follow_rule()
        return snapshot, standing(self.out, snapshot.clips)

    def follow_rule(self) -> None:
        """Take the rule stored in ``review.sqlite`` now: another server's
        ``--change-rule`` holds here from the next request on."""
        if (self.out / catalog.REVIEW_DB).is_file():
            with verdicts.connect(self.out, readonly=True) as con:
                stored = verdicts.stored_rule(con)
            if stored is not None:
                self.rule = stored.rule

    def entry(
        self, snapshot: Snapshot, votes: dict[str, list[Vote]], key: str, reviewer: str
    ) -> dict:
        clip = snapshot.by_key[key]
        return entry(
            clip, snapshot.extras[key], votes.get(key, []), reviewer=reviewer, rule=self.rule,
            token=self.token_of(reviewer) if self.team else None,
            playable=catalog.clip_file(self.out, clip) is not None,
        )  # fmt: skip

    def queue(self, reviewer: str, filters: Filters, after: str | None, limit: int) -> dict:
        snapshot, votes = self.state()
        clips, more = queue(
            snapshot, votes, reviewer=reviewer, rule=self.rule, filters=filters,
            after=after, limit=limit, order=self.order,
        )  # fmt: skip
        return {
            "clips": [self.entry(snapshot, votes, c.key, reviewer) for c in clips],
            "more": more,
        }

    def progress(self, reviewer: str, filters: Filters) -> dict:
        snapshot, votes = self.state()
        rows = progress(snapshot, votes, reviewer=reviewer, rule=self.rule)
        left = remaining(snapshot, votes, reviewer=reviewer, rule=self.rule, filters=filters)
        return {
            "labels": list(self.labels(snapshot)),
            "rows": [asdict(r) for r in rows],
            "remaining": left,
            "agreement": {
                label: asdict(a) for label, a in verdicts.agreement(votes, snapshot.clips).items()
            },
        }

    def vote(
        self, reviewer: str, key: str, action: str, label: str | None,
        shown: tuple[float, float] | None = None,
    ) -> dict:  # fmt: skip
        """Record a vote on ``key``; ``shown`` is the range the page showed (a re-mined
        video can give the key to another clip: then the vote is refused)."""
        snapshot = self.catalogue.get()
        self.follow_rule()
        clip = snapshot.by_key.get(key)
        if clip is None:
            raise NoSuchClipError(f"no clip {key!r} to vote on")
        if shown is not None and (
            abs(shown[0] - clip.time_start) > 1e-3 or abs(shown[1] - clip.time_end) > 1e-3
        ):
            raise StaleClipError(f"{key} was mined again since the page showed it; reload")
        if catalog.clip_file(self.out, clip) is None:
            raise MissingClipError(f"{key}: its clip file is missing, so nobody can watch it")
        chosen = _ACTIONS.get(action)
        if chosen is None:
            raise UsageError(f"unknown action {action!r}; choose accept, reject or relabel")
        if chosen == "relabel":
            if label not in self.labels(snapshot):
                raise UsageError(f"unknown label {label!r}")
            if label == clip.label:
                chosen = "accept"
        with verdicts.connect(self.out) as con:
            vote_id = verdicts.cast(con, clip, reviewer, chosen, label)
            votes = verdicts.standing_votes(con, [clip])
        return {"id": vote_id, "clip": self.entry(snapshot, votes, key, reviewer)}

    def undo(self, reviewer: str) -> dict:
        snapshot = self.catalogue.get()
        with verdicts.connect(self.out) as con:
            key = verdicts.undo_last(con, reviewer)
            votes = verdicts.standing_votes(con, snapshot.clips)
        if key is None or key not in snapshot.by_key:
            return {"undone": key, "clip": None}
        return {"undone": key, "clip": self.entry(snapshot, votes, key, reviewer)}


def create_app(
    out: str | os.PathLike[str],
    *,
    reviewer: str | None = None,
    rule: Rule,
    filters: Filters | None = None,
    allowed_hosts: Sequence[str] = _LOOPBACK_NAMES,
    token: str | None = None,
    reviewers: Sequence[str] = (),
    order: Order = "score",
    labels: Sequence[str] = (),
    rule_note: str = "",
) -> Starlette:
    """The review app over ``out``: for one ``reviewer``, or for a team (``reviewers``:
    each votes through a private link, :func:`team_links`).

    ``allowed_hosts`` are the Host names it answers to (``*`` for any); ``token`` is the
    secret every POST of the lone reviewer must carry in :data:`TOKEN_HEADER` (random
    when None); ``labels`` are more labels to relabel to.
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.routing import Route

    out = catalog.check_mined(out)
    check_database(out)
    if reviewers:
        names = [check_reviewer(name) for name in reviewers]
        if len(set(names)) != len(names):
            raise UsageError(f"--reviewers {','.join(names)}: a name is given twice")
        tokens = {team_token(out, name): name for name in names}
    else:
        tokens = {token or secrets.token_urlsafe(32): check_reviewer(reviewer or "")}
    ordered([], order)  # refuses an unknown order now, not at the first request
    review = Review(
        out, rule, filters or Filters(), tokens, team=bool(reviewers), order=order,
        extra_labels=tuple(labels), rule_note=rule_note,
    )  # fmt: skip
    routes = [
        Route("/", _page(review)),
        Route("/static/{name}", _static),
        Route("/api/queue", _queue(review)),
        Route("/api/progress", _progress(review)),
        Route("/api/vote", _vote(review), methods=["POST"]),
        Route("/api/undo", _undo(review), methods=["POST"]),
        Route("/clips/{video}/{clip_id:int}", _clip(review)),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))],
        exception_handlers={ClipminerError: _unavailable},
    )
    app.state.review = review
    return app


# -- a team on one server ------------------------------------------------------------------

KEY_FILE = "review.key"
"""``OUT/review.key``: the secret the reviewers' link tokens are made from (mode 0600)."""


def _team_secret(out: Path) -> bytes:
    """OUT's team secret, made once (so links survive a restart) and readable only by
    its owner."""
    path = out / KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        secret = path.read_bytes().strip()
        if len(secret) >= 32:
            return secret
        raise UsageError(f"{path}: damaged (too short); delete it to make new links")
    secret = secrets.token_hex(32).encode()
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secret + b"\n")
        os.link(tmp, path)  # fails if another server made one meanwhile: use that one
    except FileExistsError:
        return _team_secret(out)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the team's secret ({exc.strerror})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return secret


def team_token(out: Path, reviewer: str) -> str:
    """The secret in ``reviewer``'s link: the same for the same OUT and name."""
    digest = hmac.new(_team_secret(out), reviewer.encode(), "sha256").digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def team_links(app: Starlette, url: str) -> dict[str, str]:
    """Each reviewer's private link to the page served at ``url``."""
    review: Review = app.state.review
    return {name: f"{url}?as={quote(token, safe='')}" for token, name in review.tokens.items()}


def check_database(out: Path) -> None:
    """Refuse at once, in one line, a ``review.sqlite`` that votes cannot go into:
    read-only (the file, or its folder, where SQLite keeps its journal), locked by
    another program, or not a SQLite database."""
    path = out / catalog.REVIEW_DB
    if not path.exists():
        if not os.access(out, os.W_OK):
            raise UsageError(f"{out}: read-only folder, {catalog.REVIEW_DB} cannot be made")
        return
    if not os.access(path, os.W_OK) or not os.access(out, os.W_OK):
        where = path if not os.access(path, os.W_OK) else out
        raise UsageError(f"{where}: read-only, so votes cannot be saved")
    try:
        con = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=2)
    except sqlite3.Error as exc:
        raise UsageError(f"{path}: cannot open ({exc})") from None
    try:
        con.execute("PRAGMA user_version").fetchone()
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise UsageError(
                f"{path}: locked by another program for over 2 s (another review server, "
                "or an export?); try again when it is done"
            ) from None
        raise UsageError(f"{path}: cannot write ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path}: damaged or not a SQLite database ({exc})") from None
    finally:
        con.close()


def check_reviewer(name: str) -> str:
    """A reviewer name: 1 to 100 printable characters."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise UsageError(
            f"--reviewer {name!r}: give a name of 1 to {MAX_NAME_CHARS} printable characters"
        )
    return name


Endpoint = Callable[["Request"], Any]
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _json(data: Any, status: int = 200) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(data, status_code=status, headers=_NO_STORE)


def _error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


async def _unavailable(request: Request, exc: Exception) -> Response:
    """What no handler answered itself (review.sqlite's disk full or read-only, a lock
    held too long): the one-line error, for the page to show, and in the log."""
    log.error("%s", exc)
    return _error(str(exc), 503)


def _page(review: Review) -> Endpoint:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import HTMLResponse

    async def page(request: Request) -> Response:
        headers = {**_NO_STORE, "Content-Security-Policy": CSP, "X-Frame-Options": "DENY"}
        token = review.token
        if review.team:
            given = request.query_params.get("as")
            if review.reviewer_of(given) is None:
                return HTMLResponse(NOT_YOUR_LINK, status_code=403, headers=headers)
            token = str(given)
        config = {
            "token": token,
            "reviewer": review.tokens[token],
            "team": review.team,
            "out": review.out.name,
            "rule": asdict(review.rule),
            "rule_note": review.rule_note,
            "order": review.order,
            "filters": asdict(review.filters),
            "labels": list(review.labels(await run_in_threadpool(review.catalogue.get))),
        }
        html = pages.render("review.html", config=config)
        return HTMLResponse(html, headers=headers)

    return page


NOT_YOUR_LINK = (
    "<!doctype html><title>clipminer review</title><p>This review server serves a team: "
    "open the private link that was made for you (ask whoever started it).</p>"
)


CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; media-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
"""The page runs only its own script and style files (no inline code at all)."""


def _static(request: Request) -> Response:
    """The page's CSS and JavaScript, from the package (:mod:`clipminer.pages`)."""
    found = pages.static(request.path_params["name"])
    if found is None:
        return _error("no such file", 404)
    from starlette.responses import Response as Body

    body, media_type = found
    return Body(body, media_type=media_type, headers=_NO_STORE)


def filters_from_query(request: Request, default: Filters) -> Filters:
    """Filters from ``?label=..&min_score=..&max_score=..&all=1&disputed=1`` (unset
    ones: none)."""
    params = request.query_params
    if not any(k in params for k in ("label", "min_score", "max_score", "all", "disputed")):
        return default

    def number(name: str) -> float | None:
        text = params.get(name, "").strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"{name}={text!r}: not a number") from None

    return Filters(
        labels=tuple(x for x in params.getlist("label") if x),
        min_score=number("min_score"),
        max_score=number("max_score"),
        include_voted=params.get("all", "") in ("1", "true", "yes"),
        disputed=params.get("disputed", "") in ("1", "true", "yes"),
    )


def _reader(request: Request, review: Review) -> str | None:
    """Who asks: the reviewer whose token the request carries (header, or ``as`` in the
    query); without one, the lone reviewer (reading only: votes need the token)."""
    token = request.headers.get(TOKEN_HEADER) or request.query_params.get("as")
    if token:
        return review.reviewer_of(token)
    return None if review.team else review.reviewer


_NOT_YOURS = "missing or wrong token: open your own link (or reload the page)"


def _queue(review: Review) -> Endpoint:
    from starlette.concurrency import run_in_threadpool

    async def handler(request: Request) -> Response:
        reviewer = _reader(request, review)
        if reviewer is None:
            return _error(_NOT_YOURS, 403)
        try:
            filters = filters_from_query(request, review.filters)
            limit = int(request.query_params.get("limit", QUEUE_LIMIT))
        except (UsageError, ValueError) as exc:
            return _error(str(exc), 400)
        limit = max(1, min(limit, QUEUE_LIMIT))
        after = request.query_params.get("after") or None
        return _json(await run_in_threadpool(review.queue, reviewer, filters, after, limit))

    return handler


def _progress(review: Review) -> Endpoint:
    from starlette.concurrency import run_in_threadpool

    async def handler(request: Request) -> Response:
        reviewer = _reader(request, review)
        if reviewer is None:
            return _error(_NOT_YOURS, 403)
        try:
            filters = filters_from_query(request, review.filters)
        except UsageError as exc:
            return _error(str(exc), 400)
        return _json(await run_in_threadpool(review.progress, reviewer, filters))

    return handler


async def _posted(request: Request, review: Review) -> tuple[str, dict] | Response:
    """The reviewer and JSON object of a POST, or the error response when the token,
    type or size is wrong (a web page elsewhere can neither read the token nor set the
    header)."""
    reviewer = review.reviewer_of(request.headers.get(TOKEN_HEADER, ""))
    if reviewer is None:
        return _error(_NOT_YOURS, 403)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _error("send application/json", 415)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _error("request too large", 413)
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return _error("not JSON", 400)
    if not isinstance(data, dict):
        return _error("expected a JSON object", 400)
    return reviewer, data


def _vote(review: Review) -> Endpoint:
    from starlette.concurrency import run_in_threadpool

    async def handler(request: Request) -> Response:
        posted = await _posted(request, review)
        if not isinstance(posted, tuple):
            return posted
        reviewer, data = posted
        key, action, label = data.get("clip"), data.get("action"), data.get("label")
        if not isinstance(key, str) or not isinstance(action, str):
            return _error("expected {clip, action, label}", 400)
        if label is not None and not isinstance(label, str):
            return _error("label must be a string", 400)
        start, end = data.get("time_start"), data.get("time_end")
        shown = None
        if isinstance(start, int | float) and isinstance(end, int | float):
            shown = (float(start), float(end))
        try:
            return _json(await run_in_threadpool(review.vote, reviewer, key, action, label, shown))
        except (StaleClipError, MissingClipError) as exc:
            return _error(str(exc), 409)
        except NoSuchClipError as exc:
            return _error(str(exc), 404)
        except UsageError as exc:
            return _error(str(exc), 400)

    return handler


def _undo(review: Review) -> Endpoint:
    from starlette.concurrency import run_in_threadpool

    async def handler(request: Request) -> Response:
        posted = await _posted(request, review)
        if not isinstance(posted, tuple):
            return posted
        return _json(await run_in_threadpool(review.undo, posted[0]))

    return handler


def _clip(review: Review) -> Endpoint:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse

    async def handler(request: Request) -> Response:
        if _reader(request, review) is None:
            return _error(_NOT_YOURS, 403)
        key = f"{request.path_params['video']}/{request.path_params['clip_id']}"
        snapshot = await run_in_threadpool(review.catalogue.get)
        clip = snapshot.by_key.get(key)
        path = None if clip is None else catalog.clip_file(review.out, clip)
        if path is None:
            return _error("no such clip file", 404)
        # FileResponse answers Range requests (206), so the player can seek.
        return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": "no-cache"})

    return handler


# -- serving ---------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, *, allow_remote: bool, team: bool = True) -> list[str]:
    """The Host names the server answers to: loopback names, plus ``host`` itself; any
    name for a wildcard address under ``allow_remote`` (nothing to compare with).
    Other machines are served only to a team (``team``: every vote through a private
    link), never under one name anybody who loads the page could vote as."""
    if not is_loopback(host) and not allow_remote:
        raise UsageError(
            f"--host {host}: not a loopback address; pass --allow-remote to serve other machines"
        )
    if not is_loopback(host) and not team:
        raise UsageError(
            f"--host {host} --allow-remote: serve other machines only with --reviewers "
            "NAME,... (each person gets a private link; without, anyone could vote as you)"
        )
    bare = host.strip("[]")
    if bare in ("0.0.0.0", "::"):
        return ["*"]
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(bare).version == 6:
            return [*_LOOPBACK_NAMES, f"[{bare}]"]
    return [*_LOOPBACK_NAMES, host.lower()]


def open_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free one); one-line errors."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: choose 0 to 65535")
    bare = host.strip("[]")
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: cannot resolve ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"{host}:{port}: port in use (pick another --port, or 0)") from None
        raise UsageError(f"{host}:{port}: cannot listen ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    """The page's address for a socket opened on ``host``."""
    port = sock.getsockname()[1]
    bare = host.strip("[]")
    name = f"[{bare}]" if ":" in bare else bare
    if bare in ("0.0.0.0", "::"):
        name = "127.0.0.1"
    return f"http://{name}:{port}/"


@contextlib.contextmanager
def background(app: Starlette, sock: socket.socket) -> Iterator[None]:
    """Serve ``app`` on ``sock`` from a thread (tests, screenshots); stopped on exit."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            threading.Event().wait(0.02)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def read_labels_file(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Labels, one per line (blank lines and ``#`` comments skipped); a leading index
    number, as in UCF-101's ``classInd.txt`` (``1 ApplyEyeMakeup``), is dropped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--labels-file {path}: cannot read ({exc})") from None
    labels: dict[str, None] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        first, _, rest = line.partition(" ")
        name = rest.strip() if first.isdigit() and rest.strip() else line
        if len(name) > MAX_NAME_CHARS or not name.isprintable():
            raise UsageError(f"--labels-file {path}: {name[:40]!r} is not a usable label")
        labels.setdefault(name)
    if not labels:
        raise UsageError(f"--labels-file {path}: no labels in it")
    return tuple(labels)


def serve(
    out: str | os.PathLike[str],
    *,
    reviewer: str,
    rule: Rule,
    filters: Filters | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_remote: bool = False,
    reviewers: Sequence[str] = (),
    order: Order = "score",
    labels: Sequence[str] = (),
    rule_note: str = "",
    on_ready: Callable[[str, dict[str, str]], None] | None = None,
) -> None:
    """Serve the review page until Ctrl-C; ``on_ready`` gets its URL and, with a team,
    each reviewer's link, once it listens."""
    import uvicorn

    hosts = allowed_hosts(host, allow_remote=allow_remote, team=bool(reviewers))
    app = create_app(
        out, reviewer=reviewer, rule=rule, filters=filters, allowed_hosts=hosts,
        reviewers=reviewers, order=order, labels=labels, rule_note=rule_note,
    )  # fmt: skip
    if not is_loopback(host):
        log.warning(
            "serving %s to other machines: anyone with a reviewer's link can vote as that "
            "reviewer%s", host, " (any Host name is accepted)" if hosts == ["*"] else "",
        )  # fmt: skip
    sock = open_socket(host, port)
    try:
        if on_ready:
            url = url_of(sock, host)
            base = url
            if host.strip("[]") in ("0.0.0.0", "::"):  # links others can open
                base = f"http://{socket.gethostname()}:{sock.getsockname()[1]}/"
            on_ready(url, team_links(app, base) if reviewers else {})
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
