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

from clipminer.curate import catalog, verdicts
from clipminer.curate.catalog import Clip
from clipminer.curate.verdicts import Action, Rule, Vote
from clipminer.errors import ClipminerError, UsageError
from clipminer.layout import SEGMENTS_CSV, read_segments

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
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

    labels: tuple[str, ...] = ()
    """Only clips mined as one of these labels (all when empty)."""
    min_score: float | None = None
    """Only clips whose score (:func:`clip_score`) is at least this."""
    max_score: float | None = None
    """Only clips whose score is at most this."""
    include_voted: bool = False
    """Also clips that are decided or that this reviewer voted on (``--all``)."""

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
        nonce = secrets.token_urlsafe(16)
        config = {
            "token": review.token,
            "reviewer": review.reviewer,
            "out": review.out.name,
            "rule": asdict(review.rule),
            "filters": asdict(review.filters),
            "labels": list(review.catalogue.get().labels),
        }
        html = PAGE.replace("{{nonce}}", nonce).replace("{{config}}", script_json(config))
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "media-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'"
        )
        headers = {**_NO_STORE, "Content-Security-Policy": csp, "X-Frame-Options": "DENY"}
        return HTMLResponse(html, headers=headers)

    return page


def script_json(data: Any) -> str:
    """JSON that is safe inside a ``<script type="application/json">`` element."""
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


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


# -- the page --------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>clipminer review</title><link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style nonce="{{nonce}}">
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #f4f4f2; color: #222; }
header { display: flex; gap: 1.5em; align-items: baseline; padding: .5em 1em;
  background: #2d3a4a; color: #fff; }
header h1 { font-size: 16px; margin: 0; }
header .muted { color: #c8d0da; }
main { display: grid; grid-template-columns: minmax(0, 1fr) 380px; gap: 1em; padding: 1em; }
#stage { background: #111; border-radius: 6px; height: max(200px, calc(100vh - 290px));
  position: relative;
  display: flex; align-items: center; justify-content: center; overflow: hidden; }
#stage video { width: 100%; height: 100%; object-fit: contain; background: #111; }
#stage video.hidden, .hidden { display: none !important; }
#done { color: #eee; font-size: 22px; text-align: center; }
#done small { display: block; font-size: 14px; color: #aaa; margin-top: .5em; }
#info { display: grid; grid-template-columns: 1fr 1fr 1fr; gap: 1em; margin-top: .6em; }
.card { background: #fff; border-radius: 6px; padding: .6em .8em;
  box-shadow: 0 1px 2px rgba(0,0,0,.12); }
.card h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: #667;
  margin: 0 0 .3em; }
.big { font-size: 16px; font-weight: 600; overflow-wrap: anywhere; }
.score { color: #555; }
#top5 { list-style: none; margin: 0; padding: 0; }
#top5 li { display: grid; grid-template-columns: 1fr 3.5em; gap: .4em; position: relative; }
#top5 li .bar { position: absolute; left: 0; bottom: 0; height: 3px; background: #6a9fd8; }
#keys { margin-top: .6em; display: flex; flex-wrap: wrap; gap: .5em; align-items: center; }
button { font: inherit; padding: .3em .8em; border: 1px solid #bbb; border-radius: 4px;
  background: #fff; cursor: pointer; }
kbd { font: 12px ui-monospace, monospace; border: 1px solid #aaa; border-bottom-width: 2px;
  border-radius: 3px; padding: 0 .35em; background: #fafafa; }
.note { font-size: 12px; color: #667; margin: .4em 0 0; }
#message { min-height: 1.4em; color: #a33; margin-top: .4em; }
#labels { list-style: none; margin: 0; padding: 0; max-height: 210px; overflow-y: auto;
  columns: 2; }
#labels li { cursor: pointer; padding: 1px 2px; overflow-wrap: anywhere; }
#labels li:hover { background: #eef; }
#labels li.current { font-weight: 600; }
#labels .n { display: inline-block; min-width: 1.8em; color: #667; }
aside .card { margin-bottom: 1em; }
aside label { display: block; margin: .2em 0; }
#f-label { width: 100%; }
input[type=number] { width: 5em; }
table { border-collapse: collapse; width: 100%; font-size: 12px; }
th, td { padding: 1px 4px; text-align: right; }
th:first-child, td:first-child { text-align: left; overflow-wrap: break-word; }
tr.total td { border-top: 1px solid #ccc; font-weight: 600; }
.verdict-accepted { color: #1a7f37; } .verdict-rejected { color: #b42318; }
.verdict-disputed { color: #b54708; }
</style></head>
<body data-inflight="0">
<script type="application/json" id="config">{{config}}</script>
<header><h1>clipminer review</h1><span id="h-out" class="muted"></span>
<span>reviewer: <b id="h-reviewer"></b></span><span id="h-rule" class="muted"></span>
<span id="h-position" class="muted"></span></header>
<main><section>
<div id="stage">
<video id="player-a" autoplay loop muted controls playsinline preload="auto"></video>
<video id="player-b" class="hidden" loop muted playsinline preload="auto"></video>
<div id="done" class="hidden">done: no clips left<small id="done-note"></small></div>
</div>
<div id="info">
<div class="card"><h2>clip</h2><div class="big" id="c-video"></div>
<div id="c-range" class="score"></div><div id="c-verdict"></div></div>
<div class="card"><h2>image model</h2><div class="big" id="c-image-label"></div>
<div class="score" id="c-image-score"></div></div>
<div class="card"><h2>video model</h2><div class="big" id="c-video-label"></div>
<div class="score" id="c-video-score"></div><ol id="top5"></ol></div>
</div>
<div id="keys">
<button id="b-accept"><kbd>a</kbd> accept</button>
<button id="b-reject"><kbd>r</kbd> reject</button>
<span><kbd>1</kbd>&ndash;<kbd>9</kbd> relabel</span>
<button id="b-undo"><kbd>u</kbd> undo</button>
<button id="b-skip"><kbd>n</kbd>/<kbd>space</kbd> skip</button>
<span id="digits"></span>
</div>
<div id="message" role="status"></div>
</section>
<aside>
<div class="card"><h2>relabel as</h2><ol id="labels"></ol>
<p class="note">Press the label's number, or click it. With 10 or more labels type the
whole number; <kbd>Enter</kbd> ends it, <kbd>Esc</kbd> clears it.</p></div>
<div class="card"><h2>filters</h2>
<label>label <select id="f-label" multiple size="3"></select></label>
<label>score from <input id="f-min" type="number" step="0.05" min="0" max="1">
to <input id="f-max" type="number" step="0.05" min="0" max="1"></label>
<label>show <select id="f-all"><option value="0">not yet reviewed by me</option>
<option value="1">all clips</option></select></label></div>
<div class="card"><h2>progress</h2><table><thead><tr><th>label</th><th>total</th>
<th title="accepted">acc</th><th title="accepted as another label">rel</th>
<th title="rejected">rej</th><th title="disputed">disp</th><th>pending</th>
<th title="clips with my vote">mine</th></tr></thead><tbody id="progress"></tbody></table>
</div>
</aside></main>
<script nonce="{{nonce}}">
'use strict';
const cfg = JSON.parse(document.getElementById('config').textContent);
const $ = (id) => document.getElementById(id);
const players = [$('player-a'), $('player-b')];
let front = 0;
let labels = cfg.labels;
let list = [];
let cursor = null;
let exhausted = false;
let fetching = null;
let generation = 0;
let skipped = 0;
let reviewed = 0;
let digits = '';
let chain = Promise.resolve();
let inflight = 0;

function text(el, value) { el.textContent = value == null ? '' : String(value); }
function fmt(x) { return x == null ? '' : Number(x).toFixed(2); }
function say(message) { text($('message'), message); }
function busy(delta) { inflight += delta; document.body.dataset.inflight = String(inflight); }

function filterParams() {
  const p = new URLSearchParams();
  for (const o of $('f-label').selectedOptions) p.append('label', o.value);
  if ($('f-min').value !== '') p.set('min_score', $('f-min').value);
  if ($('f-max').value !== '') p.set('max_score', $('f-max').value);
  p.set('all', $('f-all').value);
  return p;
}

async function call(url, body) {
  busy(1);
  try {
    const init = body === undefined ? {} : {method: 'POST', body: JSON.stringify(body),
      headers: {'Content-Type': 'application/json', 'X-Clipminer-Token': cfg.token}};
    const r = await fetch(url, init);
    const data = await r.json();
    if (!r.ok) throw new Error(data.error || r.statusText);
    return data;
  } finally { busy(-1); }
}

function more() {
  if (exhausted) return Promise.resolve();
  if (fetching) return fetching;
  const gen = generation;
  const p = filterParams();
  p.set('limit', '20');
  if (cursor) p.set('after', cursor);
  fetching = call('/api/queue?' + p).then((data) => {
    if (gen !== generation) return;
    for (const e of data.clips) if (!list.some((x) => x.key === e.key)) list.push(e);
    if (data.clips.length) cursor = data.clips[data.clips.length - 1].key;
    exhausted = !data.more;
  }, (err) => say('cannot load clips: ' + err.message)).finally(() => { fetching = null; });
  return fetching;
}

function load(video, e) {
  if (video.dataset.key === (e ? e.key : '')) return;
  video.dataset.key = e ? e.key : '';
  if (e && e.url) { video.src = e.url; video.load(); }
  else { video.removeAttribute('src'); video.load(); }
}

function render(e) {
  $('done').classList.add('hidden');
  const back = players[1 - front];
  if (back.dataset.key === e.key) front = 1 - front;
  const shown = players[front], hidden = players[1 - front];
  load(shown, e);
  shown.classList.remove('hidden'); shown.controls = true; shown.autoplay = true;
  hidden.classList.add('hidden'); hidden.controls = false; hidden.autoplay = false;
  hidden.pause();
  shown.play().catch(() => {});
  text($('c-video'), e.video + ' #' + e.clip_id);
  let range = fmt(e.time_start) + '\u2013' + fmt(e.time_end) + ' s';
  if (e.clip_start != null && e.clip_end != null &&
      (Math.abs(e.clip_start - e.time_start) > 0.01 || Math.abs(e.clip_end - e.time_end) > 0.01))
    range += ' (file ' + fmt(e.clip_start) + '\u2013' + fmt(e.clip_end) + ' s)';
  if (!e.url) range += ' (no clip file)';
  text($('c-range'), range);
  const v = e.verdict;
  let verdict = v.status + (v.label ? ' as ' + v.label : '') + ', ' + v.votes + ' vote(s)';
  if (e.my_vote) verdict += '; mine: ' + e.my_vote.action +
    (e.my_vote.action === 'relabel' ? ' ' + e.my_vote.label : '');
  text($('c-verdict'), verdict);
  $('c-verdict').className = 'verdict-' + v.status;
  text($('c-image-label'), e.image_label);
  text($('c-image-score'), 'score ' + fmt(e.image_score));
  text($('c-video-label'), e.video_label == null ? '(no video model)' : e.video_label);
  text($('c-video-score'), e.video_score == null ? '' : 'score ' + fmt(e.video_score));
  const top = $('top5');
  top.replaceChildren();
  for (const [label, p] of e.top5) {
    const li = document.createElement('li');
    const name = document.createElement('span'); text(name, label);
    const value = document.createElement('span'); text(value, fmt(p));
    const bar = document.createElement('span'); bar.className = 'bar';
    bar.style.width = Math.max(0, Math.min(100, p * 100)) + '%';
    li.append(name, value, bar); top.append(li);
  }
  for (const li of $('labels').children) {
    li.classList.toggle('current', li.dataset.label === e.label);
  }
  text($('h-position'), reviewed + ' reviewed, ' + skipped + ' skipped here');
}

function done() {
  for (const p of players) { p.pause(); p.classList.add('hidden'); }
  $('done').classList.remove('hidden');
  text($('done-note'), skipped ? skipped + ' skipped: press n to go round again' : '');
  for (const id of ['c-video', 'c-range', 'c-verdict', 'c-image-label', 'c-image-score',
    'c-video-label', 'c-video-score']) text($(id), '');
  $('top5').replaceChildren();
  document.body.dataset.state = 'done';
}

async function show() {
  if (!list.length && !exhausted) await more();
  const e = list[0];
  if (!e) { done(); return; }
  document.body.dataset.state = 'clip';
  document.body.dataset.clip = e.key;
  render(e);
  load(players[1 - front], list[1]);
  if (list.length < 5 && !exhausted) more().then(() => {
    if (list[0] === e) load(players[1 - front], list[1]);
  });
}

function restart() {
  generation += 1; list = []; cursor = null; exhausted = false; fetching = null; skipped = 0;
  show();
}

function vote(action, label) {
  const e = list[0];
  if (!e) return;
  list.shift(); reviewed += 1; show();
  const body = {clip: e.key, action: action, label: label,
                time_start: e.time_start, time_end: e.time_end};
  chain = chain.then(() => call('/api/vote', body))
    .then(() => { say(''); refresh(); },
      (err) => { say('vote not saved: ' + err.message); list.unshift(e); reviewed -= 1; show(); });
}

function undo() {
  chain = chain.then(() => call('/api/undo', {})).then((data) => {
    if (!data.clip) { say(data.undone ? 'undone (clip no longer shown)' : 'nothing to undo'); }
    else {
      list = list.filter((x) => x.key !== data.clip.key);
      list.unshift(data.clip); reviewed = Math.max(0, reviewed - 1); say('undone'); show();
    }
    refresh();
  }, (err) => say('undo failed: ' + err.message));
}

function skip() {
  if (!list.length) { if (exhausted) restart(); return; }
  list.shift(); skipped += 1; show();
}

function relabel(n) {
  const label = labels[n - 1];
  if (label === undefined) { say('no label ' + n); return; }
  vote('relabel', label);
}

function typeDigit(d) {
  digits = digits === '0' ? d : digits + d;
  const n = parseInt(digits, 10);
  if (n > 0 && n * 10 > labels.length) { digits = ''; relabel(n); }
  text($('digits'), digits ? 'label ' + digits + '\u2026' : '');
}

function renderLabels() {
  const ol = $('labels');
  ol.replaceChildren();
  labels.forEach((label, i) => {
    const li = document.createElement('li');
    li.dataset.label = label;
    const n = document.createElement('span'); n.className = 'n'; text(n, i + 1);
    li.append(n, document.createTextNode(label));
    li.addEventListener('click', () => relabel(i + 1));
    ol.append(li);
  });
  const select = $('f-label');
  const chosen = new Set([...select.selectedOptions].map((o) => o.value));
  if (!select.options.length) for (const l of cfg.filters.labels) chosen.add(l);
  select.replaceChildren();
  for (const label of labels) {
    const o = document.createElement('option'); o.value = label; text(o, label);
    o.selected = chosen.has(label); select.append(o);
  }
}

function refresh() {
  return call('/api/progress').then((data) => {
    if (JSON.stringify(data.labels) !== JSON.stringify(labels)) {
      labels = data.labels; renderLabels();
    }
    const body = $('progress');
    body.replaceChildren();
    const keys = ['total', 'accepted', 'relabelled', 'rejected', 'disputed', 'pending', 'mine'];
    const sums = {label: 'all'};
    for (const row of data.rows) {
      const tr = document.createElement('tr');
      for (const k of ['label', ...keys]) {
        const td = document.createElement('td'); text(td, row[k]); tr.append(td);
        if (k !== 'label') sums[k] = (sums[k] || 0) + row[k];
      }
      body.append(tr);
    }
    const tr = document.createElement('tr'); tr.className = 'total';
    for (const k of ['label', ...keys]) {
      const td = document.createElement('td'); text(td, sums[k] || 0); tr.append(td);
    }
    body.append(tr);
  }, (err) => say('cannot load progress: ' + err.message));
}

document.addEventListener('keydown', (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t && ['INPUT', 'SELECT', 'TEXTAREA'].includes(t.tagName)) {
    if (ev.key === 'Escape' || ev.key === 'Enter') t.blur();
    return;
  }
  const k = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  let handled = true;
  if (/^[0-9]$/.test(k)) typeDigit(k);
  else if (k === 'Enter' && digits) {
    const n = parseInt(digits, 10); digits = ''; text($('digits'), ''); relabel(n);
  } else if (k === 'Escape') { digits = ''; text($('digits'), ''); }
  else if (k === 'a') vote('accept', null);
  else if (k === 'r') vote('reject', null);
  else if (k === 'u') undo();
  else if (k === 'n' || k === ' ') skip();
  else handled = false;
  if (handled) ev.preventDefault();
});

for (const [id, fn] of [['b-accept', () => vote('accept', null)],
  ['b-reject', () => vote('reject', null)], ['b-undo', undo], ['b-skip', skip]]) {
  $(id).addEventListener('click', (ev) => { ev.currentTarget.blur(); fn(); });
}
for (const id of ['f-label', 'f-min', 'f-max', 'f-all']) {
  $(id).addEventListener('change', () => restart());
}

text($('h-out'), cfg.out);
text($('h-reviewer'), cfg.reviewer);
text($('h-rule'), cfg.rule.votes > 1 ?
  'rule: ' + cfg.rule.agree + ' of ' + cfg.rule.votes + ' votes agree' : 'rule: one vote decides');
if (cfg.filters.min_score != null) $('f-min').value = cfg.filters.min_score;
if (cfg.filters.max_score != null) $('f-max').value = cfg.filters.max_score;
$('f-all').value = cfg.filters.include_voted ? '1' : '0';
renderLabels();
refresh();
show();
</script>
</body></html>
"""
