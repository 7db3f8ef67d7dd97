"""The cost of reading a video from an S3 bucket against reading the same local file.

One generated H.264 MP4 (30 fps, 16:9, ``--seconds`` long, ``--height`` lines) in two
layouts: as PyAV writes it (``moov``, the index, after the media data) and remuxed with
``movflags=faststart`` (``moov`` first); the order of the top-level boxes is read from
each file and printed. Both go into a bucket of moto's S3 server on 127.0.0.1
(:class:`clipminer.testing.LoopbackS3`). Remote reads pass a :class:`FaultyProxy` with no
faults, which only counts requests, GETs and response bytes. Per layout, local and remote:

- ``probe``: :func:`clipminer.decode.probe` alone (open, index, first frame);
- ``full``: every frame, scaled to a short side of 224;
- ``2 fps``: one frame per 0.5 s at a short side of 224, as find-clips samples.

Each figure is the best of ``--repeats`` wall times, cases interleaved, after an untimed
warm-up (the local files read once, one probe of each file from both places). The remote
time includes the proxy's hop; on loopback there is no network latency, so it shows what
the ranged reads themselves cost. Traffic is that of the fastest run.

Usage: python benchmarks/store_read.py [--seconds 60] [--height 720] [--repeats 3]
       [--work bench-out]
"""

from __future__ import annotations

import argparse
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import av
from benchutil import cpu_model, video_facts

from clipminer import synth
from clipminer.decode import VideoReader, probe
from clipminer.store import READ_BLOCK_BYTES, RemoteVideo
from clipminer.testing import FaultyProxy, LoopbackS3

PASSES: dict[str, dict[str, object] | None] = {
    "probe": None,
    "full": {"short_side": 224},
    "2 fps": {"sample_fps": 2, "short_side": 224},
}
BUCKET = "store-read"


@dataclass
class Run:
    seconds: float
    requests: int = 0
    gets: int = 0
    bytes_read: int = 0


def top_level_boxes(path: Path) -> list[str]:
    """The types of an MP4's top-level boxes, in file order."""
    boxes, size = [], path.stat().st_size
    with path.open("rb") as handle:
        position = 0
        while position + 8 <= size:
            handle.seek(position)
            length, kind = struct.unpack(">I4s", handle.read(8))
            if length == 1:  # a 64-bit size follows the type
                (length,) = struct.unpack(">Q", handle.read(8))
            elif length == 0:  # the box runs to the end of the file
                length = size - position
            boxes.append(kind.decode("latin-1"))
            position += max(length, 8)
    return boxes


def remux_faststart(source: Path, dest: Path) -> None:
    """``source``'s video stream copied (no re-encoding) into ``dest`` with moov first."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    with av.open(str(source)) as src, av.open(
        str(tmp), "w", format="mp4", options={"movflags": "faststart"}
    ) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    tmp.replace(dest)


def make_inputs(work: Path, seconds: float, height: int) -> list[Path]:
    """The generated video as PyAV wrote it, and the same stream remuxed with faststart."""
    width = round(height * 16 / 9 / 2) * 2
    written = work / f"store_read_{height}p_{seconds:g}s.mp4"
    if not written.exists():
        synth.make_long_video(written, duration_seconds=seconds, size=(height, width), seed=0)
    faststart = written.with_name(f"{written.stem}_faststart.mp4")
    if not faststart.exists():
        remux_faststart(written, faststart)
    return [written, faststart]


def layout(path: Path) -> str:
    boxes = [b for b in top_level_boxes(path) if b in ("ftyp", "moov", "mdat")]
    if "moov" not in boxes or "mdat" not in boxes:
        raise SystemExit(f"{path}: no moov or mdat box ({boxes})")
    first = boxes.index("moov") < boxes.index("mdat")
    return f"{'moov first' if first else 'moov at end'} ({' '.join(boxes)})"


def work_of(pass_options: dict[str, object] | None) -> Callable[[Path | RemoteVideo], None]:
    def run(source: Path | RemoteVideo) -> None:
        if pass_options is None:
            probe(source)
            return
        with VideoReader(source, **pass_options) as reader:  # type: ignore[arg-type]
            for _ in reader:
                pass

    return run


def measure(work: Callable[[], None], proxy: FaultyProxy) -> Run:
    t = proxy.traffic
    before = (t.requests, t.gets, t.bytes_out)
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    return Run(elapsed, t.requests - before[0], t.gets - before[1], t.bytes_out - before[2])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the video")
    parser.add_argument("--height", type=int, default=720, help="lines (width is 16:9)")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for each timing")
    parser.add_argument("--work", type=Path, default=Path("bench-out"), help="video folder")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    files = make_inputs(args.work, args.seconds, args.height)
    for path in files:
        with path.open("rb") as handle:  # into the page cache, untimed
            while handle.read(1 << 24):
                pass
    facts = video_facts(files[0])
    print(f"cpu: {cpu_model()} ({os.cpu_count()} cores)")
    print(f"video: {facts.describe()}; repeats: {args.repeats} (best); decoder threads: auto; "
          f"read-ahead block: {READ_BLOCK_BYTES >> 20} MiB")  # fmt: skip
    for path in files:
        print(f"  {path.name}: {path.stat().st_size / 2**20:.2f} MiB, {layout(path)}")

    import s3fs

    best: dict[tuple[str, str, str], Run] = {}
    with LoopbackS3() as s3, FaultyProxy(s3.endpoint) as proxy:
        bucket = s3.bucket(BUCKET)
        for path in files:
            s3fs.S3FileSystem().put_file(str(path), f"{BUCKET}/{path.name}")
        s3.point_at(proxy.endpoint)
        try:
            sources = {p.name: (p, RemoteVideo(f"{bucket}/{p.name}")) for p in files}
            for local, remote in sources.values():  # warm-up: libraries, the S3 client
                probe(local), probe(remote)
            for _ in range(args.repeats):  # interleaved, so drift hits every case alike
                for name, (local, remote) in sources.items():
                    for pass_name, options in PASSES.items():
                        run = work_of(options)
                        for where, source in (("local", local), ("remote", remote)):
                            got = measure(lambda run=run, source=source: run(source), proxy)
                            key = (name, pass_name, where)
                            if key not in best or got.seconds < best[key].seconds:
                                best[key] = got
        finally:
            s3.point_at(s3.endpoint)

    head = ("file", "pass", "where", "wall s", "video s/s", "rem/loc", "reqs", "GETs",
            "MiB read", "read/size")  # fmt: skip
    rows = [head]
    for path in files:
        size = path.stat().st_size
        for pass_name in PASSES:
            local = best[(path.name, pass_name, "local")]
            for where in ("local", "remote"):
                got = best[(path.name, pass_name, where)]
                speed = "-" if pass_name == "probe" else f"{facts.duration_seconds / got.seconds:.1f}"
                remote = where == "remote"
                rows.append((
                    path.name, pass_name, where, f"{got.seconds:.3f}", speed,
                    f"{got.seconds / local.seconds:.2f}" if remote else "",
                    str(got.requests) if remote else "-", str(got.gets) if remote else "-",
                    f"{got.bytes_read / 2**20:.2f}" if remote else "-",
                    f"{got.bytes_read / size:.2f}" if remote else "-",
                ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(cell.ljust(w) if i < 3 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))))  # fmt: skip

    def ratio(path: Path, pass_name: str) -> float:
        key = (path.name, pass_name)
        return best[(*key, "remote")].seconds / best[(*key, "local")].seconds

    end, front = files
    probe_end, probe_front = best[(end.name, "probe", "remote")], best[(front.name, "probe", "remote")]
    print(
        f"measured: from the bucket, the full decode took {ratio(end, 'full'):.2f}x "
        f"({layout(end).split(' (')[0]}) and {ratio(front, 'full'):.2f}x (faststart) the local "
        f"time, the 2 fps pass {ratio(end, '2 fps'):.2f}x and {ratio(front, '2 fps'):.2f}x; "
        f"a probe made {probe_end.gets} GETs ({probe_end.bytes_read / 2**20:.2f} MiB) with moov "
        f"at the end against {probe_front.gets} ({probe_front.bytes_read / 2**20:.2f} MiB) "
        f"with faststart, {probe_end.seconds / probe_front.seconds:.2f}x its time."
    )


if __name__ == "__main__":
    main()
