"""``clipminer scrape``: actions -> search pages in headless Chromium -> images on disk.

One browser per worker, reused across its classes; downloads in a shared pool, a
bounded number in flight. Output: ``DIR/<folder>/<sha256 prefix>.<ext>`` and
``DIR/manifest.csv``, where each class's folder is a safe, bounded name that is never
the manifest's and never another class's. A class is an action (one query, from the
query template) or, with ``background``, the background class: generic queries
(:mod:`scrapers.background`) over which its images are dealt round-robin. Every
result link gets a manifest row, refused ones (``javascript:``, ``file:``) included.
A re-run resumes: URLs already in the manifest are never fetched again, and each class
continues to its target count.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import hashlib
import logging
import queue
import shutil
import tempfile
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from clipminer.errors import ClipminerError, UsageError
from clipminer.fsutil import atomic_path, safe_component, short_hash
from clipminer.labels import label_key
from scrapers.background import read_queries, round_robin
from scrapers.config import ScrapeConfig
from scrapers.download import Checked, DedupIndex, Download, Downloader
from scrapers.engines import Engine, Link, RefusedLink, engines, scheme_refusal
from scrapers.hits import EngineBlocked, ImageHit, NoResults

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
RESERVED_NAMES = frozenset({MANIFEST_NAME})
"""OUT's own files: no action's folder may be one of these."""

MANIFEST_COLUMNS = (
    "action",
    "query",
    "engine",
    "image_url",
    "page_url",
    "path",
    "sha256",
    "phash",
    "width",
    "height",
    "bytes",
    "status",
    "error",
)


@dataclass
class ManifestRow:
    """One line of ``manifest.csv``."""

    action: str
    query: str
    engine: str
    image_url: str
    page_url: str = ""
    path: str = ""
    sha256: str = ""
    phash: str = ""
    width: str = ""
    height: str = ""
    bytes: str = ""
    status: str = ""
    error: str = ""


@dataclass
class ActionSummary:
    """Counts for one action (or the background class)."""

    action: str
    found: int = 0
    saved: int = 0
    duplicates: int = 0
    failures: int = 0
    note: str = ""


@dataclass(frozen=True)
class ClassPlan:
    """One class folder to fill: an action, or the background class."""

    name: str
    """The action (or the background label): the manifest's ``action``, the folder's source."""
    queries: tuple[str, ...]
    """What is searched, as sent to the engine."""
    target: int
    """Images of the class in all; a re-run continues to it."""

    def __post_init__(self) -> None:
        if not self.queries or self.target < 1:
            raise ValueError(f"class {self.name!r} needs a query and a target of at least 1")


def class_plans(actions: Sequence[str], config: ScrapeConfig) -> list[ClassPlan]:
    """The classes to scrape: each action (in order, once), then the background class.

    Raises:
        UsageError: no class at all, an action named as the background class, or an
            unreadable background queries file.
    """
    actions = list(dict.fromkeys(actions))
    if not actions and not config.background:
        raise UsageError("no actions: give --actions FILE or --action NAME (or --background)")
    plans = [
        ClassPlan(a, (config.query_template.format(action=a),), config.per_action) for a in actions
    ]
    if config.background:
        label = config.background_label
        clash = next((a for a in actions if label_key(a) == label_key(label)), None)
        if clash is not None:
            same = "" if clash == label else " (labels match ignoring case and punctuation)"
            raise UsageError(
                f"action {clash!r} is the background class {label!r}{same}: rename it or "
                "choose another --background-label"
            )
        queries = read_queries(config.background_queries)
        plans.append(ClassPlan(label, tuple(queries), config.background_target))
    return plans


def action_folders(actions: Sequence[str]) -> dict[str, str]:
    """Each action's folder under OUT: safe, bounded, never OUT's own files, never shared.

    The folder is :func:`~clipminer.fsutil.safe_component` of the action. Where actions
    would share one (compared case-insensitively, as some file systems do), one action
    whose name is the folder verbatim keeps it (the first in sorted order) and every
    other gets ``-`` and a short hash of itself appended; so the result does not depend
    on the order of the actions.
    """
    safe = {a: safe_component(a, reserved=RESERVED_NAMES) for a in actions}
    sharing: dict[str, list[str]] = {}
    for action, folder in safe.items():
        sharing.setdefault(folder.casefold(), []).append(action)
    folders = dict(safe)
    for members in sharing.values():
        if len(members) < 2:
            continue
        keep = min((a for a in members if safe[a] == a), default=None)
        for action in members:
            if action != keep:
                hashed = f"{safe[action]}-{short_hash(action)}"
                folders[action] = safe_component(hashed, reserved=RESERVED_NAMES)
    return folders


def read_actions(path: str | Path) -> list[str]:
    """One action per line; blank lines and ``#`` comments are ignored."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such actions file")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    actions = [line.split("#", 1)[0].strip() for line in lines]
    return list(dict.fromkeys(a for a in actions if a))


class Manifest:
    """``manifest.csv``: read at start, rewritten atomically after every action."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[ManifestRow] = []
        self.lock = threading.Lock()
        if path.exists() and not path.is_file():
            raise UsageError(f"{path}: the manifest's path is taken by something not a file")
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
                    raise UsageError(
                        f"{path}: not a clipminer manifest (columns {reader.fieldnames})"
                    )
                self.rows = [ManifestRow(**row) for row in reader]

    def add(self, row: ManifestRow) -> None:
        with self.lock:
            self.rows.append(row)

    def save(self) -> None:
        with self.lock:
            rows = list(self.rows)
        with (
            atomic_path(self.path, durable=True) as tmp,
            tmp.open("w", newline="", encoding="utf-8") as handle,
        ):
            writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows(asdict(row) for row in rows)


@contextlib.contextmanager
def _engine_base(
    config: ScrapeConfig, actions: Sequence[str], generic: Sequence[str] = ()
) -> Iterator[str]:
    """The engine's base URL; for ``local`` without a URL, a server clipminer starts.

    That server has generated images of the toy actions among ``actions`` (of all of
    them if none is one; of none if there are no actions), and of synthetic scenes
    without an action for each ``generic`` query (:func:`_generic_scenes`).
    """
    engine = engines()[config.engine]
    if config.engine_url:
        yield config.engine_url
    elif config.engine != "local":
        yield engine.default_base
    else:
        from clipminer import synth
        from scrapers.engines.local import LocalEngineServer

        work = Path(tempfile.mkdtemp(prefix="clipminer-local-engine-"))
        root = work / "classes"
        try:
            root.mkdir()
            wanted = {label_key(a) for a in actions}
            known = tuple(label for label in synth.LABELS if label_key(label) in wanted)
            if actions:
                synth.make_images(
                    root,
                    per_class=max(config.per_action + 10, 20),
                    size=(160, 160),
                    seed=12345,
                    labels=known or synth.LABELS,
                )
            if generic:
                per_query = -(-config.background_target // len(generic)) + 5
                _generic_scenes(root, generic, per_query=per_query, stage=work / "stage")
            with LocalEngineServer(root) as server:
                yield server.url
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _generic_scenes(root: Path, queries: Sequence[str], *, per_query: int, stage: Path) -> None:
    """For the local engine: ``root/<query>/``, synthetic scenes without an action.

    Each query gets its own images (seeded by its text, so the same query always gets
    the same ones); a query that the engine would match to a folder already there (a
    toy action, or an earlier query spelled differently) gets none of its own.
    """
    from clipminer import synth

    taken = {label_key(p.name) for p in root.iterdir()}
    for query in queries:
        key = label_key(query)
        if not key or key in taken:
            continue
        taken.add(key)
        seed = int(short_hash(query), 16)
        made = synth.make_images(
            stage / key, per_class=per_query, size=(160, 160), seed=seed, labels=(synth.BACKGROUND,)
        )
        folder = made[synth.BACKGROUND][0].parent
        folder.rename(root / safe_component(query))


def scrape(
    actions: list[str],
    out: str | Path,
    *,
    config: ScrapeConfig,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[ActionSummary]:
    """Scrape ``per_action`` images for every action into ``out``.

    With ``config.background``, a background class follows the actions: its images
    come from the generic queries (:mod:`scrapers.background`), dealt round-robin over
    them, into ``out/<background label>/``.

    Args:
        actions: action names (folder names are made safe from them).
        out: output folder; nothing is written outside it.
        config: engine and limits.
        progress: called with (action, saved, target) as images are saved; the
            background class reports as its label.

    Returns:
        One summary per action, then one for the background class.
    """
    plans = class_plans(actions, config)
    names = [plan.name for plan in plans]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out / MANIFEST_NAME)
    index = _index_of(manifest, out)
    engine = engines()[config.engine]
    summaries = {name: ActionSummary(name) for name in names}
    todo: queue.Queue[ClassPlan] = queue.Queue()
    for plan in plans:
        todo.put(plan)
    generic = plans[-1].queries if config.background else ()
    actions = names[:-1] if config.background else names
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(_engine_base(config, actions, generic))
        # The engine's own host may be on this machine or network (a mirror, --engine local).
        engine_host = (urlsplit(base).hostname or "").lower()
        allowed = config.download.allowed_hosts | ({engine_host} if engine_host else set())
        downloader = stack.enter_context(
            Downloader(out, replace(config.download, allowed_hosts=allowed), index)
        )
        pool = stack.enter_context(
            cf.ThreadPoolExecutor(config.download_workers, thread_name_prefix="download")
        )
        job = _Job(
            engine,
            base,
            config,
            out,
            manifest,
            downloader,
            pool,
            summaries,
            stop,
            progress,
            folders=action_folders(names),
            slots=threading.BoundedSemaphore(2 * config.download_workers),
        )
        try:
            _run_browsers(job, todo, min(config.workers, len(plans)), stop)
        finally:
            manifest.save()
    if job.errors:
        raise job.errors[0]
    return [summaries[name] for name in names]


def _index_of(manifest: Manifest, out: Path) -> DedupIndex:
    """The duplicate index of the images a run before this one saved."""
    index = DedupIndex()
    for row in manifest.rows:
        if row.status == "ok" and row.path and (out / row.path).is_file():
            size = (int(row.width), int(row.height)) if row.width and row.height else (None, None)
            index.add(row.sha256, row.phash, (out / row.path).resolve(), row.action, *size)
    return index


def _run_browsers(
    job: _Job, todo: queue.Queue[ClassPlan], count: int, stop: threading.Event
) -> None:
    """``count`` browser threads take classes from ``todo`` until none is left; Ctrl-C
    stops them, each quitting its browser first."""
    browsers = [
        threading.Thread(target=job.browser_worker, args=(todo,), name=f"browser {k}", daemon=True)
        for k in range(count)
    ]
    for thread in browsers:
        thread.start()
    try:
        while any(t.is_alive() for t in browsers):
            for thread in browsers:
                thread.join(timeout=0.2)
    except KeyboardInterrupt:
        stop.set()
        for thread in browsers:
            thread.join(timeout=30)
        raise


@dataclass
class _Job:
    engine: Engine
    base: str
    config: ScrapeConfig
    out: Path
    manifest: Manifest
    downloader: Downloader
    pool: cf.ThreadPoolExecutor
    summaries: dict[str, ActionSummary]
    stop: threading.Event
    progress: Callable[[str, int, int], None] | None
    folders: dict[str, str]
    """Each class's folder under ``out`` (:func:`action_folders`)."""
    slots: threading.BoundedSemaphore
    """Downloads in flight or waiting to be filed, all classes together."""
    errors: list[Exception] = field(default_factory=list)

    def browser_worker(self, todo: queue.Queue[ClassPlan]) -> None:
        from scrapers.driver import chromium

        try:
            with chromium(page_load_timeout=self.config.page_load_timeout_seconds) as driver:
                while not self.stop.is_set():
                    try:
                        plan = todo.get_nowait()
                    except queue.Empty:
                        return
                    self.fill(driver, plan)
                    self.manifest.save()
        except Exception as exc:  # scrape() raises it in the caller's thread
            self.errors.append(exc)
            self.stop.set()

    def _done_urls(self) -> set[str]:
        """URLs not to fetch again (a refused scheme stays refused)."""
        retry = {"http_error", "timeout"} if self.config.retry_failed else set()
        with self.manifest.lock:
            return {
                r.image_url
                for r in self.manifest.rows
                if r.image_url
                and (r.status not in retry or scheme_refusal(r.image_url) is not None)
            }

    def _saved_by_query(self, name: str) -> Counter[str]:
        """The class's saved images by the query that found them (any query, old ones too)."""
        with self.manifest.lock:
            return Counter(
                r.query for r in self.manifest.rows if r.action == name and r.status == "ok"
            )

    def _links(self, driver: object, url: str, query: str) -> list[Link]:
        """The result links of one search page.

        Raises:
            ClipminerError: the page did not load, or the engine blocked the query.
        """
        from scrapers.driver import accept_consent, load

        scrolls = 3 if self.engine.scroll_pages else 0
        html = load(driver, url, scrolls=scrolls)
        reason = self.engine.blocked(html)
        if reason == "consent wall" and accept_consent(driver):
            html = load(driver, url, scrolls=scrolls)
            reason = self.engine.blocked(html)
        if reason:
            raise EngineBlocked(f"{self.engine.name}: {reason} for query {query!r}")
        return self.engine.parse(html)

    def fill(self, driver: object, plan: ClassPlan) -> None:
        """Search the class's queries until it has its target count of images.

        The images still missing are dealt round-robin over the queries
        (:func:`~scrapers.background.round_robin`); a query that comes up short (blocked,
        no results, no more new ones) is dropped and the next round deals its share to
        the others, until the class is full or no query is left.
        """
        summary = self.summaries[plan.name]
        have = self._saved_by_query(plan.name)
        summary.saved = sum(have.values())
        self._report(plan)
        problems: list[str] = []
        open_queries = list(plan.queries)
        while open_queries and summary.saved < plan.target and not self.stop.is_set():
            counts = [have[q] for q in open_queries]
            targets = round_robin(sum(counts) + plan.target - summary.saved, counts)
            still_open = []
            for query, count, target in zip(open_queries, counts, targets, strict=True):
                want = target - count
                if want > 0 and not self.stop.is_set():
                    got, problem = self._search(driver, plan, query, want)
                    have[query] += got
                    problems += [problem] if problem else []
                    if len(plan.queries) > 1:
                        self.manifest.save()
                    if got < want:
                        continue
                still_open.append(query)
            open_queries = still_open
        if len(plan.queries) == 1:
            summary.note = problems[0] if problems else ""
        else:
            summary.note = f"{len(plan.queries)} generic queries" + (
                f"; {len(problems)} blocked or empty, first: {problems[0]}" if problems else ""
            )

    def _report(self, plan: ClassPlan) -> None:
        if self.progress:
            self.progress(plan.name, self.summaries[plan.name].saved, plan.target)

    def _search(
        self, driver: object, plan: ClassPlan, query: str, want: int
    ) -> tuple[int, str | None]:
        """Read the query's result pages until ``want`` new images of the class are saved.

        Returns:
            The images saved, and why the query stopped early when the engine blocked it
            or had no results (else None).
        """
        summary = self.summaries[plan.name]
        done = self._done_urls()
        got = 0
        quiet_pages = 0
        shown: set[str] = set()  # the images of the pages read here: only these is the end
        for page in range(self.config.max_pages):
            if got >= want or self.stop.is_set():
                break
            url = self.engine.search_url(self.base, query, page)
            try:
                links = list(dict.fromkeys(self._links(driver, url, query)))
                hits = [h for h in links if isinstance(h, ImageHit)]
                if not hits and page == 0:
                    self._refuse(plan.name, query, links, done)
                    raise NoResults(f"{self.engine.name}: no image results for query {query!r}")
            except ClipminerError as exc:
                self._note(plan.name, query, url, "blocked", str(exc))
                log.warning("%s", exc)
                return got, str(exc)
            self._refuse(plan.name, query, links, done)
            keys = {url_key(h.image_url) for h in hits}
            repeated, shown = keys <= shown, shown | keys
            fresh = [h for h in hits if url_key(h.image_url) not in done]
            summary.found += len(fresh)
            if not fresh:
                quiet_pages += 1
                # a paged engine's page that an earlier run took (a resumed run): the
                # next page may hold new images; no page, or one seen here, is the end
                taken_before = bool(hits) and not repeated and not self.engine.scroll_pages
                if not taken_before and (quiet_pages >= 2 or not self.engine.scroll_pages):
                    break
                continue
            quiet_pages = 0
            for hit in fresh:
                done.add(url_key(hit.image_url))
            got = self._download(plan, query, fresh, got, want)
        return got, None

    def _refuse(self, action: str, query: str, links: list[Link], done: set[str]) -> None:
        """A manifest row for each new link whose scheme is refused; nothing is fetched."""
        summary = self.summaries[action]
        for link in links:
            if isinstance(link, RefusedLink) and url_key(link.url) not in done:
                done.add(url_key(link.url))
                summary.found += 1
                summary.failures += 1
                self.manifest.add(
                    ManifestRow(
                        action,
                        query,
                        self.engine.name,
                        url_key(link.url),
                        link.page_url or "",
                        status="http_error",
                        error=link.reason,
                    )
                )

    def _download(
        self, plan: ClassPlan, query: str, hits: list[ImageHit], got: int, want: int
    ) -> int:
        """Download hits until ``got`` reaches ``want``; file them in page order; new ``got``.

        Fetching and checking run in the pool; filing follows the engine's order, so which
        of two near-duplicates is kept never depends on which download finished first.
        In flight are never more downloads than the query still needs, nor more than
        the job's ``slots``: memory does not grow with ``per_action``.
        """
        pending = deque(hits)
        window: deque[tuple[ImageHit, cf.Future[Checked | Download]]] = deque()
        try:
            while (pending or window) and not self.stop.is_set():
                while pending and got + len(window) < want and self._take_slot(wait=not window):
                    hit = pending.popleft()
                    future = self.pool.submit(self.downloader.fetch_and_check, hit.image_url)
                    window.append((hit, future))
                if not window:
                    break
                hit, future = window.popleft()
                try:
                    fetched = future.result()
                    if isinstance(fetched, Download):
                        result = fetched
                    else:
                        result = self.downloader.file(fetched, self.folders[plan.name], plan.name)
                    del fetched, future  # the bytes go now, not when the next one comes
                finally:
                    self.slots.release()
                got = self._record(plan, query, hit, result, got)
        finally:
            for _, future in window:  # stopped: what was not filed is fetched again next run
                future.cancel()
                self.slots.release()
        return got

    def _take_slot(self, *, wait: bool) -> bool:
        if not wait:
            return self.slots.acquire(blocking=False)
        while not self.stop.is_set():
            if self.slots.acquire(timeout=0.2):
                return True
        return False

    def _record(
        self, plan: ClassPlan, query: str, hit: ImageHit, result: Download, got: int
    ) -> int:
        summary = self.summaries[plan.name]
        self.manifest.add(_row(plan.name, query, self.engine.name, hit, result, self.out))
        if result.status == "ok":
            got += 1
            summary.saved += 1
        elif result.status in ("duplicate", "near_duplicate"):
            summary.duplicates += 1
        else:
            summary.failures += 1
        self._report(plan)
        return got

    def _note(self, action: str, query: str, url: str, status: str, error: str) -> None:
        self.manifest.add(
            ManifestRow(action, query, self.engine.name, "", url, status=status, error=error)
        )


def url_key(url: str) -> str:
    """How a URL is recorded: ``data:`` URIs by their hash (they can be megabytes long)."""
    if url.startswith("data:"):
        return "data:sha256:" + hashlib.sha256(url.encode()).hexdigest()
    return url


def _row(
    action: str, query: str, engine: str, hit: ImageHit, result: Download, out: Path
) -> ManifestRow:
    error = result.error
    if hit.thumbnail and result.status == "ok":
        error = "thumbnail only (no full-size URL found)"
    return ManifestRow(
        action=action,
        query=query,
        engine=engine,
        image_url=url_key(hit.image_url),
        page_url=hit.page_url or "",
        path=result.path.relative_to(out.resolve()).as_posix() if result.path else "",
        sha256=result.sha256,
        phash=result.phash,
        width=str(result.width or ""),
        height=str(result.height or ""),
        bytes=str(result.bytes or ""),
        status=result.status,
        error=error,
    )
