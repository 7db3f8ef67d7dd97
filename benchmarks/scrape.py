"""Scraping throughput against the local engine, with 1 and 4 download workers.

Prints one JSON line per case: images saved per minute, wall time included browser
start-up, search pages, downloads, checks, hashing and filing (one browser,
politeness delay 0: the engine is on 127.0.0.1). Target: >= 300 images/minute with 4.

Warm-up, untimed: one small scrape (2 images of one action) through the same engine
first, so that neither timed case pays for first imports, the browser's first start
from a cold disk or the engine's first pages.

Usage: python benchmarks/scrape.py [--per-action 60] [--actions 4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from clipminer import synth
from scrapers.download import DownloadConfig
from scrapers.engines.local import LocalEngineServer
from scrapers.scrape import ScrapeConfig, scrape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-action", type=int, default=60)
    parser.add_argument("--actions", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="2 actions x 10 images")
    args = parser.parse_args()
    if args.quick:
        args.per_action, args.actions = 10, 2
    actions = list(synth.ACTIONS[: args.actions])
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "engine"
        synth.make_images(
            source, per_class=args.per_action + 20, size=(360, 480), seed=3, labels=tuple(actions)
        )
        with LocalEngineServer(source) as server:
            warm = ScrapeConfig(
                engine="local",
                engine_url=server.url,
                per_action=2,
                download=DownloadConfig(polite_seconds=0.0),
            )
            scrape(actions[:1], Path(work) / "warm", config=warm)
            shutil.rmtree(Path(work) / "warm")
            for workers in (1, 4):
                out = Path(work) / f"out{workers}"
                config = ScrapeConfig(
                    engine="local",
                    engine_url=server.url,
                    per_action=args.per_action,
                    download_workers=workers,
                    download=DownloadConfig(polite_seconds=0.0, per_host=workers),
                )
                started = time.perf_counter()
                summaries = scrape(actions, out, config=config)
                seconds = time.perf_counter() - started
                saved = sum(s.saved for s in summaries)
                print(
                    json.dumps(
                        {
                            "benchmark": "scrape",
                            "download_workers": workers,
                            "images_saved": saved,
                            "seconds": round(seconds, 2),
                            "images_per_minute": round(saved / seconds * 60, 1),
                            "cpus": os.cpu_count(),
                            "image_size": "480x360 JPEG",
                        }
                    ),
                    flush=True,
                )
                shutil.rmtree(out)


if __name__ == "__main__":
    main()
