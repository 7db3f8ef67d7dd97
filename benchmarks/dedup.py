"""Near-duplicate search speed and memory: exact tiled numpy products against usearch.

For each size (default 10k and 100k) random unit vectors of ``--dim`` (1024: the image
model's pooled feature size) get ``--planted`` near-duplicate pairs (cosine 0.96-0.99);
each method finds every pair over 0.95 in a fresh child process, so that its peak RSS
is its own: VmHWM from /proc/self/status, reset by /proc/self/clear_refs after the
vectors were made (so it counts the vectors, n x dim float32, but not the generator's
temporaries); ``rss_with_vectors_mib`` is the RSS before the search. Reported: clips/s (all
pairs of n clips, or n / seconds), the pairs found and the recall of the planted ones.

``--incremental N`` also times ``clipminer.curate.dedup.dedup`` on a generated OUT of N
clips (100 per video): the first run, a rerun after one new video with the pair cache
(``OUT/.dedup``), and the same rerun without it, to show whether the cache pays off.

Prints one JSON line.

Usage: python benchmarks/dedup.py [--sizes 10000,100000] [--dim 1024] [--planted 100]
       [--methods exact,usearch] [--incremental 10000] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clipminer.curate import catalog
from clipminer.curate.dedup import dedup, neighbour_pairs

THRESHOLD = 0.95
SEGMENT_COLUMNS = (
    "video", "clip_id", "label", "score", "time_start", "time_end", "video_label",
    "video_score", "clip_path", "video_top5", "clip_start", "clip_end",
)  # fmt: skip


def planted_vectors(n: int, dim: int, planted: int, seed: int = 0) -> tuple[np.ndarray, set]:
    """Random unit vectors; the last ``planted`` rows are near-copies of the first ones."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pairs = set()
    for k in range(planted):
        cos = 0.96 + 0.03 * k / max(planted - 1, 1)
        noise = rng.standard_normal(dim).astype(np.float32)
        noise -= (noise @ x[k]) * x[k]
        noise /= np.linalg.norm(noise)
        x[n - 1 - k] = cos * x[k] + np.sqrt(1 - cos * cos) * noise
        pairs.add((k, n - 1 - k))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, pairs


def peak_rss_mib() -> float:
    with open("/proc/self/status") as status:  # noqa: PTH123
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib() -> float:
    with open("/proc/self/status") as status:  # noqa: PTH123
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: ``5`` to clear_refs), so that the peak is
    the search's own, not the generator's temporaries."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(n: int, dim: int, planted: int, method: str) -> None:
    """One measurement, printed as JSON on the child's stdout."""
    x, truth = planted_vectors(n, dim, planted)
    vectors_rss = rss_mib()
    reset = reset_peak_rss()
    started = time.perf_counter()
    pairs, used = neighbour_pairs(x, THRESHOLD, method=method)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    found = set(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True))
    print(
        json.dumps(
            {
                "method": used,
                "seconds": round(seconds, 2),
                "clips_per_second": round(n / seconds),
                "pairs": len(found),
                "recall": round(len(truth & found) / max(len(truth), 1), 4),
                "peak_rss_mib": round(peak_rss_mib()),
                "peak_rss_since": "search start" if reset else "process start",
                "rss_with_vectors_mib": round(vectors_rss),
            }
        )
    )


def measure(n: int, dim: int, planted: int, method: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", f"{n},{dim},{planted},{method}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_video(out: Path, name: str, vectors: np.ndarray) -> None:
    folder = out / "videos" / name
    folder.mkdir(parents=True)
    with (folder / "segments.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SEGMENT_COLUMNS)
        for i in range(len(vectors)):
            writer.writerow([name, i, "run", 0.5, i, i + 1, "run", 0.5, "", "", i, i + 1])
    (folder / "run.json").write_text(json.dumps({"embedding_models": {"image": "bench"}}))
    catalog.write_embeddings(
        folder / "embeddings.npy",
        list(range(len(vectors))),
        vectors,
        None,
        image_of_video=vectors.mean(0),
    )


def incremental(clips: int, dim: int, planted: int) -> dict:
    """dedup() on a generated OUT: first run, rerun after one new video with and without
    the cache."""
    per_video = 100
    x, _ = planted_vectors(clips + per_video, dim, planted, seed=1)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        out = Path(tmp)
        for v in range(clips // per_video):
            write_video(out, f"v{v:05d}", x[v * per_video : (v + 1) * per_video])
        first = dedup(out, threshold=THRESHOLD)
        write_video(out, "new", x[clips : clips + per_video])
        cached = dedup(out, threshold=THRESHOLD)
        shutil.rmtree(out / ".dedup")
        uncached = dedup(out, threshold=THRESHOLD)
        assert cached.clip_groups == uncached.clip_groups
        return {
            "clips": clips,
            "first_run_seconds": round(first.seconds, 2),
            "rerun_one_new_video_seconds": round(cached.seconds, 2),
            "rerun_without_cache_seconds": round(uncached.seconds, 2),
            "clip_groups": cached.clip_groups,
            "method": first.method,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="numbers of clips, comma-separated")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--planted", type=int, default=100, help="planted duplicate pairs")
    parser.add_argument("--methods", default="exact,usearch")
    parser.add_argument(
        "--incremental", type=int, default=0, metavar="N", help="also time dedup() on N clips"
    )
    parser.add_argument("--quick", action="store_true", help="2000 clips of dim 128: a check")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n, dim, planted, method = args.child.split(",")
        child(int(n), int(dim), int(planted), method)
        return
    if args.quick:
        args.sizes, args.dim, args.incremental = "2000", 128, 2000
    figures: dict = {
        "dim": args.dim,
        "threshold": THRESHOLD,
        "planted_pairs": args.planted,
        "cpus": os.cpu_count(),
        "peak_rss": "VmHWM of a child process per measurement, reset after generating the "
        "vectors (vectors included)",
        "runs": [],
    }
    for size in (int(s) for s in args.sizes.split(",")):
        for method in args.methods.split(","):
            result = measure(size, args.dim, args.planted, method)
            figures["runs"].append({"clips": size, **result})
            print(json.dumps(figures["runs"][-1]), file=sys.stderr, flush=True)
    if args.incremental:
        figures["incremental"] = incremental(args.incremental, args.dim, args.planted)
    figures["load_avg_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
