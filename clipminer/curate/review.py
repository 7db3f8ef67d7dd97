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
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
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
    allow_remote: bool = setting(
        False, "Allow a --host that other machines can reach (they can vote)."
    )


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


def queue(
    snapshot: Snapshot,
    votes: dict[str, list[Vote]],
    *,
    reviewer: str,
    rule: Rule,
    filters: Filters,
    after: str | None = None,
    limit: int = QUEUE_LIMIT,
) -> tuple[list[Clip], bool]:
    """The next clips to show after the clip ``after`` (from the start when None or gone),
    and whether more follow."""
    clips = snapshot.clips
    start = 0
    if after is not None:
        keys = [c.key for c in clips]
        start = keys.index(after) + 1 if after in snapshot.by_key else 0
    chosen: list[Clip] = []
    for clip in clips[start:]:
        if not filters.matches(clip):
            continue
        if not filters.include_voted and not pending_for(votes.get(clip.key, []), reviewer, rule):
            continue
        if len(chosen) == limit:
            return chosen, True
        chosen.append(clip)
    return chosen, False


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


def clip_url(clip: Clip) -> str | None:
    """Where the page fetches the clip's file: by catalogue key, never by path."""
    if not clip.clip_path:
        return None
    return f"/clips/{quote(clip.video, safe='')}/{clip.clip_id}"


def entry(clip: Clip, extra: Extra, votes: Sequence[Vote], *, reviewer: str, rule: Rule) -> dict:
    """One clip as the page sees it (JSON)."""
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
        "url": clip_url(clip),
        "verdict": {"status": verdict.status, "label": verdict.label, "votes": verdict.votes},
        "my_vote": None if mine is None else {"action": mine.action, "label": mine.label},
    }


# -- the app ---------------------------------------------------------------------------------


@dataclass
class Review:
    """What one server knows: where, who, the rule, and its secret token."""

    out: Path
    reviewer: str
    rule: Rule
    filters: Filters
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    catalogue: Catalogue = field(init=False)

    def __post_init__(self) -> None:
        self.catalogue = Catalogue(self.out)

    def state(self) -> tuple[Snapshot, dict[str, list[Vote]]]:
        snapshot = self.catalogue.get()
        return snapshot, standing(self.out, snapshot.clips)

    def entry(self, snapshot: Snapshot, votes: dict[str, list[Vote]], key: str) -> dict:
        clip = snapshot.by_key[key]
        return entry(
            clip, snapshot.extras[key], votes.get(key, []), reviewer=self.reviewer, rule=self.rule
        )

    def queue(self, filters: Filters, after: str | None, limit: int) -> dict:
        snapshot, votes = self.state()
        clips, more = queue(
            snapshot, votes, reviewer=self.reviewer, rule=self.rule, filters=filters,
            after=after, limit=limit,
        )  # fmt: skip
        return {"clips": [self.entry(snapshot, votes, c.key) for c in clips], "more": more}

    def progress(self) -> dict:
        snapshot, votes = self.state()
        rows = progress(snapshot, votes, reviewer=self.reviewer, rule=self.rule)
        return {"labels": list(snapshot.labels), "rows": [asdict(r) for r in rows]}

    def vote(
        self, key: str, action: str, label: str | None, shown: tuple[float, float] | None = None
    ) -> dict:
        """Record a vote on ``key``; ``shown`` is the range the page showed (a re-mined
        video can give the key to another clip: then the vote is refused)."""
        snapshot = self.catalogue.get()
        clip = snapshot.by_key.get(key)
        if clip is None:
            raise UsageError(f"no clip {key!r} to vote on")
        if shown is not None and (
            abs(shown[0] - clip.time_start) > 1e-3 or abs(shown[1] - clip.time_end) > 1e-3
        ):
            raise StaleClipError(f"{key} was mined again since the page showed it; reload")
        chosen = _ACTIONS.get(action)
        if chosen is None:
            raise UsageError(f"unknown action {action!r}; choose accept, reject or relabel")
        if chosen == "relabel":
            if label not in snapshot.labels:
                raise UsageError(f"unknown label {label!r}")
            if label == clip.label:
                chosen = "accept"
        with verdicts.connect(self.out) as con:
            vote_id = verdicts.cast(con, clip, self.reviewer, chosen, label)
            votes = verdicts.standing_votes(con, [clip])
        return {"id": vote_id, "clip": self.entry(snapshot, votes, key)}

    def undo(self) -> dict:
        snapshot = self.catalogue.get()
        with verdicts.connect(self.out) as con:
            key = verdicts.undo_last(con, self.reviewer)
            votes = verdicts.standing_votes(con, snapshot.clips)
        if key is None or key not in snapshot.by_key:
            return {"undone": key, "clip": None}
        return {"undone": key, "clip": self.entry(snapshot, votes, key)}


def create_app(
    out: str | os.PathLike[str],
    *,
    reviewer: str,
    rule: Rule,
    filters: Filters | None = None,
    allowed_hosts: Sequence[str] = _LOOPBACK_NAMES,
    token: str | None = None,
) -> Starlette:
    """The review app over ``out`` for one ``reviewer``.

    ``allowed_hosts`` are the Host names it answers to (``*`` for any); ``token`` is the
    secret every POST must carry in :data:`TOKEN_HEADER` (random when None).
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.routing import Route

    out = catalog.check_mined(out)
    review = Review(
        out, check_reviewer(reviewer), rule, filters or Filters(),
        **({"token": token} if token else {}),
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
    from starlette.responses import HTMLResponse

    async def page(request: Request) -> Response:
        config = {
            "token": review.token,
            "reviewer": review.reviewer,
            "out": review.out.name,
            "rule": asdict(review.rule),
            "filters": asdict(review.filters),
            "labels": list(review.catalogue.get().labels),
        }
        html = pages.render("review.html", config=config)
        headers = {**_NO_STORE, "Content-Security-Policy": CSP, "X-Frame-Options": "DENY"}
        return HTMLResponse(html, headers=headers)

    return page


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
    """Filters from ``?label=..&min_score=..&max_score=..&all=1`` (unset ones: none)."""
    params = request.query_params
    if not any(k in params for k in ("label", "min_score", "max_score", "all")):
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
    )


def _queue(review: Review) -> Endpoint:
    from starlette.concurrency import run_in_threadpool

    async def handler(request: Request) -> Response:
        try:
            filters = filters_from_query(request, review.filters)
            limit = int(request.query_params.get("limit", QUEUE_LIMIT))
        except (UsageError, ValueError) as exc:
            return _error(str(exc), 400)
        limit = max(1, min(limit, QUEUE_LIMIT))
        after = request.query_params.get("after") or None
        return _json(await run_in_threadpool(review.queue, filters, after, limit))

    return handler


def _progress(review: Review) -> Endpoint:
    from starlette.concurrency import run_in_threadpool

    async def handler(request: Request) -> Response:
        return _json(await run_in_threadpool(review.progress))

    return handler


async def _posted(request: Request, review: Review) -> dict | Response:
    """The JSON object of a POST, or the error response when the token, type or size is
    wrong (a web page elsewhere can neither read the token nor set the header)."""
    sent = request.headers.get(TOKEN_HEADER, "")
    if not hmac.compare_digest(sent.encode(), review.token.encode()):
        return _error("missing or wrong token: reload the page", 403)
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
    return data


def _vote(review: Review) -> Endpoint:
    from starlette.concurrency import run_in_threadpool

    async def handler(request: Request) -> Response:
        data = await _posted(request, review)
        if not isinstance(data, dict):
            return data
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
            return _json(await run_in_threadpool(review.vote, key, action, label, shown))
        except StaleClipError as exc:
            return _error(str(exc), 409)
        except UsageError as exc:
            return _error(str(exc), 404 if str(exc).startswith("no clip") else 400)

    return handler


def _undo(review: Review) -> Endpoint:
    from starlette.concurrency import run_in_threadpool

    async def handler(request: Request) -> Response:
        data = await _posted(request, review)
        if not isinstance(data, dict):
            return data
        return _json(await run_in_threadpool(review.undo))

    return handler


def _clip(review: Review) -> Endpoint:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import FileResponse

    async def handler(request: Request) -> Response:
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


def allowed_hosts(host: str, *, allow_remote: bool) -> list[str]:
    """The Host names the server answers to: loopback names, plus ``host`` itself; any
    name for a wildcard address under ``allow_remote`` (nothing to compare with)."""
    if not is_loopback(host) and not allow_remote:
        raise UsageError(
            f"--host {host}: not a loopback address; pass --allow-remote to serve other machines"
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


def serve(
    out: str | os.PathLike[str],
    *,
    reviewer: str,
    rule: Rule,
    filters: Filters | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_remote: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the review page until Ctrl-C; ``on_ready`` gets its URL once it listens."""
    import uvicorn

    hosts = allowed_hosts(host, allow_remote=allow_remote)
    app = create_app(out, reviewer=reviewer, rule=rule, filters=filters, allowed_hosts=hosts)
    if not is_loopback(host):
        log.warning(
            "serving %s to other machines: anyone who can reach it can vote as %s%s",
            host, reviewer, " (any Host name is accepted)" if hosts == ["*"] else "",
        )  # fmt: skip
    sock = open_socket(host, port)
    try:
        if on_ready:
            on_ready(url_of(sock, host))
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
