"""``search-videos``: YouTube Data API v3 search per action into a candidates CSV.

The client is plain ``requests`` with urllib3's retry policy (connection errors, 429 and
5xx, exponential backoff, Retry-After honoured) against two endpoints: ``search.list``
(100 quota units a page of up to 50 ids) and ``videos.list`` (1 unit for up to 50 ids:
duration and license). The API key travels in the ``X-Goog-Api-Key`` header, never in
a URL, so no error message, log line or file can contain it.

The candidates CSV has one row per video id; a video that several actions find keeps
them all, joined by ``|`` (and its queries likewise). It is rewritten atomically after
every page, so a quota error or an invalid key stops the search with what was found
so far kept, and a rerun only tops actions up to ``per_action`` (never duplicates).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from clipminer.errors import ClipminerError, UsageError
from clipminer.fsutil import atomic_path
from clipminer.settings import setting

log = logging.getLogger(__name__)

ACTION_SEPARATOR = "|"
MAX_REDIRECTS = 5
VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A video id (YouTube's are 11 of these characters): what a search result must carry."""
"""Joins the actions (and queries) of a video that several actions found."""
CANDIDATE_COLUMNS = (
    "action", "query", "youtube_id", "title", "channel", "published_at", "duration_seconds",
    "license", "url",
)  # fmt: skip
DEFAULT_API_URL = "https://www.googleapis.com/youtube/v3"
API_KEY_ENV = "YOUTUBE_API_KEY"
SEARCH_UNITS = 100
"""Quota cost of one ``search.list`` page."""
VIDEOS_UNITS = 1
"""Quota cost of one ``videos.list`` call."""
PAGE_SIZE = 50
WATCH_URL = "https://www.youtube.com/watch?v="
_QUOTA_REASONS = frozenset(
    {"quotaExceeded", "dailyLimitExceeded", "rateLimitExceeded", "userRateLimitExceeded"}
)
_KEY_REASONS = frozenset({"keyInvalid", "keyExpired", "API_KEY_INVALID", "forbidden"})
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class ApiError(ClipminerError):
    """The Data API could not be reached or answered with an error."""


class QuotaExceeded(ApiError):  # noqa: N818
    """The API key's daily quota (or rate) is used up."""


class InvalidApiKey(ApiError):  # noqa: N818
    """The API refused the key (invalid, expired, or the Data API not enabled for it)."""

    exit_code = 2


def _rfc3339(value: str | None, name: str) -> str | None:
    """``2020-01-01`` or an RFC 3339 time -> ``2020-01-01T00:00:00Z`` (UTC)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{name} must be a date or an RFC 3339 time such as 2020-01-01 or "
            f"2020-01-01T12:00:00Z, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SearchConfig:
    """What ``search-videos`` asks for (also the ``[search]`` table of ``jobs/nightly.toml``)."""

    per_action: int = setting(
        50, "Candidates wanted per action; a rerun only tops each action up to this.", min=1
    )
    query_template: str = setting(
        "{action}", "The search text; {action} is replaced by the action name.", metavar="TEXT"
    )
    duration: Literal["any", "short", "medium", "long"] = setting(
        "any", "Video length: short (< 4 min), medium (4-20 min), long (> 20 min)."
    )
    license: Literal["any", "creativeCommon", "youtube"] = setting(
        "any", "Only videos under this license (creativeCommon for reusable datasets)."
    )
    published_after: str | None = setting(
        None, "Only videos published after this date or RFC 3339 time.", metavar="DATE"
    )
    published_before: str | None = setting(
        None, "Only videos published before this date or RFC 3339 time.", metavar="DATE"
    )
    region: str | None = setting(
        None, "Results for this country (ISO 3166-1 alpha-2, e.g. US).", metavar="CC"
    )
    language: str | None = setting(
        None, "Results most relevant to this language (ISO 639-1, e.g. en).", metavar="LANG"
    )
    safe_search: Literal["moderate", "none", "strict"] = setting(
        "moderate", "YouTube's restricted-content filter."
    )
    order: Literal["relevance", "date", "viewCount", "rating"] = setting(
        "relevance", "Result order (date finds what is new; the nightly watch list uses it)."
    )
    max_pages: int = setting(
        10,
        f"At most N result pages per action ({SEARCH_UNITS} quota units each).",
        min=1,
        max=100,
    )
    api_url: str = setting(
        DEFAULT_API_URL, "Base URL of the Data API (tests use a local fake).", metavar="URL"
    )
    timeout_seconds: float = setting(
        30.0, "Network timeout in seconds.", min=1, metavar="SECONDS", flag="timeout"
    )

    def __post_init__(self) -> None:
        if "{action}" not in self.query_template:
            raise ValueError(f"query_template must contain {{action}}, got {self.query_template!r}")
        after = _rfc3339(self.published_after, "published_after")
        before = _rfc3339(self.published_before, "published_before")
        if after and before and after >= before:
            raise ValueError(f"published_after {after} is not before published_before {before}")
        if self.region is not None and not re.fullmatch(r"[A-Za-z]{2}", self.region):
            raise ValueError(f"region must be a two-letter country code, got {self.region!r}")
        if not self.api_url.lower().startswith(("http://", "https://")):
            raise ValueError(f"api_url must be an http(s) URL, got {self.api_url!r}")

    def query(self, action: str) -> str:
        """The search text for ``action``."""
        return self.query_template.replace("{action}", action)

    def search_params(self) -> dict[str, str]:
        """The filters as ``search.list`` parameters (``any`` and unset ones left out)."""
        params = {
            "type": "video",
            "order": self.order,
            "safeSearch": self.safe_search,
            "videoDuration": self.duration,
            "videoLicense": self.license,
            "publishedAfter": _rfc3339(self.published_after, "published_after"),
            "publishedBefore": _rfc3339(self.published_before, "published_before"),
            "regionCode": self.region.upper() if self.region else None,
            "relevanceLanguage": self.language,
        }
        return {k: v for k, v in params.items() if v is not None and v != "any"}


@dataclass(frozen=True)
class Candidate:
    """One row of the candidates CSV."""

    youtube_id: str
    actions: tuple[str, ...]
    queries: tuple[str, ...]
    title: str = ""
    channel: str = ""
    published_at: str = ""
    duration_seconds: float | None = None
    license: str = ""

    def with_action(self, action: str, query: str) -> Candidate:
        """This video also found for ``action``."""
        if action in self.actions:
            return self
        return replace(self, actions=(*self.actions, action), queries=(*self.queries, query))

    def row(self) -> list[str]:
        """The CSV cells in :data:`CANDIDATE_COLUMNS` order."""
        duration = "" if self.duration_seconds is None else f"{self.duration_seconds:g}"
        return [
            ACTION_SEPARATOR.join(self.actions), ACTION_SEPARATOR.join(self.queries),
            self.youtube_id, self.title, self.channel, self.published_at, duration,
            self.license, WATCH_URL + self.youtube_id,
        ]  # fmt: skip


def parse_duration(text: str) -> float | None:
    """Seconds of an ISO 8601 duration (``PT4M13S``); None for ``P0D`` (live) or junk."""
    match = _DURATION.match(text or "")
    if not match or text in ("P", "PT"):
        return None
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    seconds = parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60
    seconds += parts.get("s", 0)
    return seconds or None


def read_actions(path: str | os.PathLike[str]) -> list[str]:
    """One action per line; blank lines and ``#`` comments are ignored."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the actions file ({exc})") from None
    return list(dict.fromkeys(a for line in lines if (a := line.split("#", 1)[0].strip())))


# -- the candidates file ----------------------------------------------------------------------


def read_candidates(path: Path) -> dict[str, Candidate]:
    """The candidates of an earlier run (empty when ``path`` does not exist)."""
    if not path.exists():
        return {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"action", "youtube_id"} - set(reader.fieldnames or [])
            if missing:
                raise UsageError(
                    f"{path}: not a candidates file (no {', '.join(sorted(missing))} column)"
                )
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None
    found: dict[str, Candidate] = {}
    for row in rows:
        video_id = (row.get("youtube_id") or "").strip()
        if not video_id:
            continue
        try:
            duration = float(row.get("duration_seconds") or "nan")
        except ValueError:
            log.warning(
                "%s: %s: duration_seconds %r is not a number (left unknown)",
                path, video_id, row.get("duration_seconds"),
            )  # fmt: skip
            duration = math.nan
        found[video_id] = Candidate(
            youtube_id=video_id,
            actions=tuple((row.get("action") or "").split(ACTION_SEPARATOR)),
            queries=tuple((row.get("query") or "").split(ACTION_SEPARATOR)),
            title=row.get("title") or "",
            channel=row.get("channel") or "",
            published_at=row.get("published_at") or "",
            duration_seconds=None if math.isnan(duration) else duration,
            license=row.get("license") or "",
        )
    return found


def write_candidates(path: Path, candidates: dict[str, Candidate]) -> None:
    """Rewrite the candidates file atomically (a crash leaves the previous one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, durable=True) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CANDIDATE_COLUMNS)
        writer.writerows(candidate.row() for candidate in candidates.values())


# -- the API ---------------------------------------------------------------------------------


class DataApi:
    """The two Data API calls search-videos makes, with retries and quota accounting."""

    def __init__(self, api_url: str, api_key: str, *, timeout_seconds: float = 30.0) -> None:
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.base = api_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.units = 0
        """Quota units spent by this client (estimated from the calls made)."""
        retry = Retry(
            total=4,
            backoff_factor=0.5,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.session.headers.update(
            {"X-Goog-Api-Key": api_key, "Accept": "application/json", "User-Agent": "clipminer"}
        )
        self._key = api_key

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def get(self, endpoint: str, params: dict[str, str], *, units: int) -> dict[str, Any]:
        """GET ``endpoint`` and return its JSON; errors become :class:`ApiError` subclasses."""
        import requests

        url = f"{self.base}/{endpoint}"
        target, query = url, params
        try:
            for _ in range(MAX_REDIRECTS + 1):
                # redirects by hand: the key header must never reach another origin
                response = self.session.get(
                    target, params=query, timeout=self.timeout_seconds, allow_redirects=False
                )
                if not response.is_redirect:
                    break
                target = urllib.parse.urljoin(response.url, response.headers["location"])
                query = {}
                if _origin(target) != _origin(url):
                    raise ApiError(
                        f"{url}: redirected to another origin ({_origin(target)}); not followed, "
                        "so the API key is not sent there"
                    )
            else:
                raise ApiError(f"{url}: more than {MAX_REDIRECTS} redirects")
        except requests.RequestException as exc:
            reason = self._redact(exc)
            raise ApiError(f"{url}: cannot reach the YouTube Data API ({reason})") from None
        self.units += units
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 200 and not isinstance(body, dict):
            raise ApiError(f"{url}: the answer is not a JSON object (cut short, or not JSON)")
        if response.status_code != 200 or not isinstance(body, dict):
            raise self._error(url, response.status_code, body)
        return body

    def _redact(self, text: object) -> str:
        return str(text).replace(self._key, "***") if self._key else str(text)

    def _error(self, url: str, status: int, body: object) -> ApiError:
        """The project error for an API error response (its reason decides the kind)."""
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        reasons = {
            str(e.get("reason", "")) for e in error.get("errors") or [] if isinstance(e, dict)
        }
        for detail in error.get("details") or []:
            if isinstance(detail, dict) and detail.get("reason"):
                reasons.add(str(detail["reason"]))
        message = " ".join(self._redact(error.get("message") or f"HTTP {status}").split())
        message = re.sub(r"<[^>]+>", "", message)  # the API puts links in its messages
        reason = ", ".join(sorted(r for r in reasons if r)) or f"HTTP {status}"
        text = f"{url}: {message} ({reason})"
        if reasons & _QUOTA_REASONS:
            return QuotaExceeded(f"quota exceeded: {text}")
        if reasons & _KEY_REASONS or "api key" in message.lower():
            return InvalidApiKey(f"the API key was refused: {text}")
        return ApiError(text)

    def search(
        self, query: str, params: dict[str, str], page_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One ``search.list`` page: (the video results, the next page token or None)."""
        request = {"part": "snippet", "q": query, "maxResults": str(PAGE_SIZE), **params}
        if page_token:
            request["pageToken"] = page_token
        body = self.get("search", request, units=SEARCH_UNITS)
        items = [
            item
            for item in body.get("items") or []
            if isinstance(item, dict) and isinstance(item.get("id"), dict)
            and isinstance(item["id"].get("videoId"), str)
            and VIDEO_ID.fullmatch(item["id"]["videoId"])
        ]  # fmt: skip
        token = body.get("nextPageToken")
        return items, token if isinstance(token, str) and token else None

    def details(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``videos.list`` (contentDetails, status) for up to 50 ids at a time, by id."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), PAGE_SIZE):
            chunk = ids[start : start + PAGE_SIZE]
            request = {"part": "contentDetails,status", "id": ",".join(chunk)}
            body = self.get("videos", request, units=VIDEOS_UNITS)
            for item in body.get("items") or []:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    found[item["id"]] = item
        return found


# -- the search --------------------------------------------------------------------------------


@dataclass
class ActionResult:
    """What the search found for one action."""

    action: str
    new: int = 0
    """Candidates this run added for the action (new videos, or known ones it also matches)."""
    total: int = 0
    """Candidates the file has for the action now."""
    pages: int = 0


@dataclass
class SearchSummary:
    """One run of :func:`search_videos`."""

    path: Path
    candidates: int = 0
    """Rows in the file now."""
    units: int = 0
    """Quota units this run spent (estimated)."""
    actions: list[ActionResult] = field(default_factory=list)


def resolve_api_key(api_key: str | None) -> str:
    """``api_key``, else ``$YOUTUBE_API_KEY``; a one-line error when neither is set."""
    key = (api_key or os.environ.get(API_KEY_ENV) or "").strip()
    if not key:
        raise UsageError(f"no API key: pass --api-key or set {API_KEY_ENV}")
    return key


def search_videos(
    actions: Sequence[str],
    out: str | os.PathLike[str],
    *,
    config: SearchConfig,
    api_key: str,
    more: bool = False,
    progress: Callable[[ActionResult, int], None] | None = None,
) -> SearchSummary:
    """Search every action and add its videos to the candidates CSV ``out``.

    Each action is topped up to ``config.per_action`` candidates (with ``more``: to
    ``per_action`` more than the file has). ``progress(result, target)`` follows each page.

    Raises:
        UsageError: no actions, or ``out`` is not a candidates file.
        QuotaExceeded, InvalidApiKey, ApiError: the search stopped; the file keeps
            everything found before (the message says how many).
    """
    names = list(dict.fromkeys(a.strip() for a in actions if a.strip()))
    if not names:
        raise UsageError("no actions: give --actions FILE or --action NAME")
    if bad := [a for a in names if ACTION_SEPARATOR in a]:
        raise UsageError(f"action {bad[0]!r}: {ACTION_SEPARATOR!r} separates actions in the CSV")
    path = Path(out)
    candidates = read_candidates(path)
    summary = SearchSummary(path)
    api = DataApi(config.api_url, api_key, timeout_seconds=config.timeout_seconds)
    try:
        for action in names:
            result = ActionResult(action)
            summary.actions.append(result)
            _search_action(api, action, config, candidates, path, result, more, progress)
    except ApiError as exc:
        summary.units = api.units
        kept = len(candidates)
        raise type(exc)(f"{exc}; {kept} candidates kept in {path}") from None
    finally:
        api.close()
    summary.candidates = len(candidates)
    summary.units = api.units
    return summary


def _count(candidates: dict[str, Candidate], action: str) -> int:
    return sum(action in c.actions for c in candidates.values())


def _search_action(
    api: DataApi,
    action: str,
    config: SearchConfig,
    candidates: dict[str, Candidate],
    path: Path,
    result: ActionResult,
    more: bool,
    progress: Callable[[ActionResult, int], None] | None,
) -> None:
    """Page through one action's results until it has enough candidates or none are left."""
    result.total = _count(candidates, action)
    target = config.per_action + (result.total if more else 0)
    query, params, token = config.query(action), config.search_params(), None
    while result.total < target and result.pages < config.max_pages:
        items, token = api.search(query, params, token)
        result.pages += 1
        unknown = [i["id"]["videoId"] for i in items if i["id"]["videoId"] not in candidates]
        details = api.details(unknown) if unknown else {}
        for item in items:
            if result.total >= target:
                break
            video_id = item["id"]["videoId"]
            known = candidates.get(video_id)
            if known is not None and action in known.actions:
                continue
            if known is None:
                candidates[video_id] = _candidate(item, details.get(video_id), action, query)
            else:
                candidates[video_id] = known.with_action(action, query)
            result.new += 1
            result.total += 1
        write_candidates(path, candidates)
        if progress:
            progress(result, target)
        if token is None:
            break


def _candidate(
    item: dict[str, Any], details: dict[str, Any] | None, action: str, query: str
) -> Candidate:
    """A new row from a search result and its ``videos.list`` details."""
    snippet = _mapping(item.get("snippet"))
    details = details or {}
    content, status = _mapping(details.get("contentDetails")), _mapping(details.get("status"))
    return Candidate(
        youtube_id=str(item["id"]["videoId"]),
        actions=(action,),
        queries=(query,),
        title=" ".join(str(snippet.get("title") or "").split()),
        channel=" ".join(str(snippet.get("channelTitle") or "").split()),
        published_at=str(snippet.get("publishedAt") or ""),
        duration_seconds=parse_duration(str(content.get("duration") or "")),
        license=str(status.get("license") or ""),
    )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _mapping(value: object) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}
