"""``clipminer scrape``: actions -> search pages in headless Chromium -> images on disk.

One browser per worker, reused across its actions; downloads in a shared pool.
Output: ``DIR/<action>/<sha256 prefix>.<ext>`` and ``DIR/manifest.csv``. A re-run
resumes: URLs already in the manifest are never fetched again, and each action
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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from clipminer.errors import ClipminerError, UsageError
from clipminer.fsutil import atomic_path, safe_name
from clipminer.labels import label_key
from scrapers.download import DedupIndex, Download, DownloadConfig, Downloader
from scrapers.engines import Engine, engines
from scrapers.hits import EngineBlocked, ImageHit, NoResults

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class ScrapeConfig:
    """Everything ``scrape`` was asked to do."""

    engine: str = "bing"
    engine_url: str | None = None
    per_action: int = 100
    workers: int = 1
    """Browsers in parallel (one action at a time each)."""
    download_workers: int = 4
    query_template: str = "{action}"
    max_pages: int = 20
    retry_failed: bool = False
    """Fetch again the URLs whose earlier try ended in http_error or timeout."""
    download: DownloadConfig = field(default_factory=DownloadConfig)
    page_load_timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.engine not in engines():
            raise UsageError(f"--engine must be one of {sorted(engines())}, got {self.engine!r}")
        if self.per_action < 1 or self.workers < 1 or self.download_workers < 1:
            raise UsageError("--per-action, --workers and download workers must be at least 1")
        if "{action}" not in self.query_template:
            raise UsageError(
                f"--query-template must contain {{action}}, got {self.query_template!r}"
            )
        if self.engine_url is not None and not self.engine_url.startswith(("http://", "https://")):
            raise UsageError(f"--engine-url must be an http(s) URL, got {self.engine_url!r}")


@dataclass
class ActionSummary:
    """Counts for one action."""

    action: str
    found: int = 0
    saved: int = 0
    duplicates: int = 0
    failures: int = 0
    note: str = ""


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
        with atomic_path(self.path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows(asdict(row) for row in rows)


@contextlib.contextmanager
def _engine_base(config: ScrapeConfig, actions: list[str]) -> Iterator[str]:
    """The engine's base URL; for ``local`` without a URL, a server clipminer starts."""
    engine = engines()[config.engine]
    if config.engine_url:
        yield config.engine_url
    elif config.engine != "local":
        yield engine.default_base
    else:
        from clipminer import synth
        from scrapers.engines.local import LocalEngineServer

        root = Path(tempfile.mkdtemp(prefix="clipminer-local-engine-"))
        try:
            wanted = {label_key(a) for a in actions}
            known = [label for label in synth.LABELS if label_key(label) in wanted]
            synth.make_images(
                root,
                per_class=max(config.per_action + 10, 20),
                size=(160, 160),
                seed=12345,
                labels=tuple(known) or synth.LABELS,
            )
            with LocalEngineServer(root) as server:
                yield server.url
        finally:
            shutil.rmtree(root, ignore_errors=True)


def scrape(
    actions: list[str],
    out: str | Path,
    *,
    config: ScrapeConfig,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[ActionSummary]:
    """Scrape ``per_action`` images for every action into ``out``.

    Args:
        actions: action names (folder names are made safe from them).
        out: output folder; nothing is written outside it.
        config: engine and limits.
        progress: called with (action, saved, target) as images are saved.
    """
    if not actions:
        raise UsageError("no actions: give --actions FILE or --action NAME")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out / "manifest.csv")
    index = DedupIndex()
    for row in manifest.rows:
        if row.status == "ok" and row.path and (out / row.path).is_file():
            index.add(row.sha256, row.phash, (out / row.path).resolve(), row.action)
    downloader = Downloader(out, config.download, index)
    engine = engines()[config.engine]
    summaries = {a: ActionSummary(a) for a in actions}
    todo: queue.Queue[str] = queue.Queue()
    for action in actions:
        todo.put(action)
    stop = threading.Event()
    with (
        _engine_base(config, actions) as base,
        cf.ThreadPoolExecutor(config.download_workers, thread_name_prefix="download") as pool,
    ):
        job = _Job(engine, base, config, out, manifest, downloader, pool, summaries, stop, progress)
        browsers = [
            threading.Thread(
                target=job.browser_worker, args=(todo,), name=f"browser {k}", daemon=True
            )
            for k in range(min(config.workers, len(actions)))
        ]
        for thread in browsers:
            thread.start()
        try:
            while any(t.is_alive() for t in browsers):
                for thread in browsers:
                    thread.join(timeout=0.2)
        except KeyboardInterrupt:
            stop.set()
            for thread in browsers:  # each quits its browser before it ends
                thread.join(timeout=30)
            raise
        finally:
            manifest.save()
    if job.errors:
        raise job.errors[0]
    return [summaries[a] for a in actions]


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
    errors: list[ClipminerError] = field(default_factory=list)

    def browser_worker(self, todo: queue.Queue[str]) -> None:
        from scrapers.driver import chromium

        try:
            with chromium(page_load_timeout=self.config.page_load_timeout_seconds) as driver:
                while not self.stop.is_set():
                    try:
                        action = todo.get_nowait()
                    except queue.Empty:
                        return
                    self.run_action(driver, action)
                    self.manifest.save()
        except ClipminerError as exc:  # the browser could not start: the run cannot go on
            self.errors.append(exc)
            self.stop.set()

    def _done_urls(self, action: str) -> tuple[set[str], int]:
        retry = {"http_error", "timeout"} if self.config.retry_failed else set()
        with self.manifest.lock:
            done = {
                r.image_url for r in self.manifest.rows if r.status not in retry and r.image_url
            }
            saved = sum(1 for r in self.manifest.rows if r.action == action and r.status == "ok")
        return done, saved

    def run_action(self, driver: object, action: str) -> None:
        from scrapers.driver import accept_consent, load

        cfg = self.config
        summary = self.summaries[action]
        query = cfg.query_template.format(action=action)
        folder = safe_name(action)
        done, saved = self._done_urls(action)
        summary.saved = saved
        if self.progress:
            self.progress(action, saved, cfg.per_action)
        quiet_pages = 0
        for page in range(cfg.max_pages):
            if saved >= cfg.per_action or self.stop.is_set():
                break
            url = self.engine.search_url(self.base, query, page)
            try:
                html = load(driver, url, scrolls=3 if self.engine.scroll_pages else 0)
                reason = self.engine.blocked(html)
                if reason == "consent wall" and accept_consent(driver):
                    html = load(driver, url, scrolls=3 if self.engine.scroll_pages else 0)
                    reason = self.engine.blocked(html)
                if reason:
                    raise EngineBlocked(f"{self.engine.name}: {reason} for query {query!r}")
                hits = self.engine.parse(html)
                if not hits and page == 0:
                    raise NoResults(f"{self.engine.name}: no image results for query {query!r}")
            except ClipminerError as exc:
                self._note(action, query, url, "blocked", str(exc))
                summary.note = str(exc)
                log.warning("%s", exc)
                break
            fresh = [h for h in dict.fromkeys(hits) if url_key(h.image_url) not in done]
            summary.found += len(fresh)
            if not fresh:
                quiet_pages += 1
                if quiet_pages >= 2 or not self.engine.scroll_pages:
                    break
                continue
            quiet_pages = 0
            for hit in fresh:
                done.add(url_key(hit.image_url))
            saved = self._download(action, query, folder, fresh, saved)

    def _download(
        self, action: str, query: str, folder: str, hits: list[ImageHit], saved: int
    ) -> int:
        """Download hits, a batch at a time, until the action has its target count."""
        cfg = self.config
        summary = self.summaries[action]
        pending = list(hits)
        while pending and saved < cfg.per_action and not self.stop.is_set():
            wanted = cfg.per_action - saved
            batch, pending = pending[:wanted], pending[wanted:]  # never more than the target
            # Fetch and check in parallel; file in the engine's order, so which of two
            # near-duplicates is kept does not depend on which download finished first.
            futures = [
                (h, self.pool.submit(self.downloader.fetch_and_check, h.image_url)) for h in batch
            ]
            for hit, future in futures:
                fetched = future.result()
                if isinstance(fetched, Download):
                    result = fetched
                else:
                    data, image = fetched
                    with image:
                        result = self.downloader.file(data, image, folder, action)
                self.manifest.add(_row(action, query, self.engine.name, hit, result, self.out))
                if result.status == "ok":
                    saved += 1
                    summary.saved = saved
                elif result.status in ("duplicate", "near_duplicate"):
                    summary.duplicates += 1
                else:
                    summary.failures += 1
                if self.progress:
                    self.progress(action, saved, cfg.per_action)
        return saved

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
