"""The cost of reading a video from an S3 bucket against reading the same local file.

One generated H.264 MP4 (30 fps, 16:9, ``--seconds`` long, ``--height`` lines) in two
layouts: as PyAV writes it (``moov``, the index, after the media data) and remuxed with
``movflags=faststart`` (``moov`` first); the top-level box order is read from each file
and printed. The generated scenes are smooth and compress to far less than footage does,
so the frames are re-encoded with film grain at ``--mbps`` (x264 average bitrate; 0 keeps
the generator's file): a file smaller than one read-ahead block is one GET however its
index lies. Both files go into a bucket of moto's S3 server on 127.0.0.1
(:class:`clipminer.testing.LoopbackS3`); remote reads pass a :class:`FaultyProxy` with no
faults, which counts requests, GETs and response bytes. Per layout, local and remote:

- ``probe``: :func:`clipminer.decode.probe` alone (open, index, first frame);
- ``full``: every frame, scaled to a short side of 224;
- ``2 fps``: one frame per 0.5 s at a short side of 224, as find-clips samples.

Each figure is the best of ``--repeats`` wall times, cases interleaved, after an untimed
warm-up (the local files read once, one probe of each file from both places); traffic is
that of the fastest run. The remote time includes the proxy's hop; loopback has no network
latency, so it shows what the ranged reads themselves cost here, not what a far store adds.

Usage: python benchmarks/store_read.py [--seconds 60] [--height 720] [--mbps 4]
       [--repeats 3] [--work bench-out]
"""

from __future__ import annotations

import argparse
import os
import struct
import time
from dataclasses import dataclass
from itertools import product
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import av
import numpy as np
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
MIB = 1 << 20


@dataclass
class Run:
    seconds: float
    requests: int
    gets: int
    bytes_read: int


def top_level_boxes(path: Path) -> list[str]:
    """The types of an MP4's top-level boxes, in file order."""
    boxes, size, position = [], path.stat().st_size, 0
    with path.open("rb") as handle:
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


def moov_first(path: Path) -> bool:
    boxes = top_level_boxes(path)
    if "moov" not in boxes or "mdat" not in boxes:
        raise SystemExit(f"{path}: no moov or mdat box ({boxes})")
    return boxes.index("moov") < boxes.index("mdat")


def regrain(source: Path, dest: Path, mbps: float) -> None:
    """``source``'s frames with film grain, x264 at ``mbps`` on average, moov at the end."""
    facts = video_facts(source)
    shape = (8, facts.height, facts.width, 3)  # eight frames of grain, in turn
    noise = np.random.default_rng(0).normal(0, 4, shape).round().astype(np.int16)
    with av.open(str(source)) as src, av.open(str(dest), "w", format="mp4") as out:
        video = src.streams.video[0]
        stream = out.add_stream("libx264", rate=video.average_rate)
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        stream.codec_context.time_base = video.time_base
        stream.bit_rate, stream.options = int(mbps * 1e6), {"preset": "veryfast"}
        for k, frame in enumerate(src.decode(video)):
            pixels = frame.to_ndarray(format="rgb24") + noise[k % 8]
            grainy = av.VideoFrame.from_ndarray(pixels.clip(0, 255).astype(np.uint8), "rgb24")
            grainy.pts, grainy.time_base = frame.pts, frame.time_base
            out.mux(stream.encode(grainy))
        out.mux(stream.encode(None))


def remux_faststart(source: Path, dest: Path) -> None:
    """``source``'s video stream copied (no re-encoding) into ``dest`` with moov first."""
    with (
        av.open(str(source)) as src,
        av.open(str(dest), "w", format="mp4", options={"movflags": "faststart"}) as out,
    ):
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


def make_inputs(work: Path, seconds: float, height: int, mbps: float) -> tuple[Path, Path]:
    """The video with moov at the end, and the same stream remuxed with moov first."""
    size = (height, round(height * 8 / 9) * 2)
    plain = work / f"store_read_{height}p_{seconds:g}s.mp4"
    if not plain.exists():
        synth.make_long_video(plain, duration_seconds=seconds, size=size, fps=30, seed=0)
    end = plain.with_name(f"{plain.stem}_{mbps:g}mbps.mp4") if mbps else plain
    front = end.with_name(f"{end.stem}_faststart.mp4")
    for path, make in ((end, lambda tmp: regrain(plain, tmp, mbps)),
                       (front, lambda tmp: remux_faststart(end, tmp))):  # fmt: skip
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp")
            make(tmp)
            tmp.replace(path)
    if moov_first(end) or not moov_first(front):
        raise SystemExit(f"expected moov last in {end.name} and first in {front.name}")
    return end, front


def measure(
    source: Path | RemoteVideo, options: dict[str, object] | None, proxy: FaultyProxy
) -> Run:
    t = proxy.traffic
    before = (t.requests, t.gets, t.bytes_out)
    started = time.perf_counter()
    if options is None:
        probe(source)
    else:
        with VideoReader(source, **options) as reader:  # type: ignore[arg-type]
            for _ in reader:
                pass
    elapsed = time.perf_counter() - started
    return Run(elapsed, t.requests - before[0], t.gets - before[1], t.bytes_out - before[2])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the video")
    parser.add_argument("--height", type=int, default=720, help="lines (width is 16:9)")
    parser.add_argument("--mbps", type=float, default=4.0, help="re-encode at this; 0: don't")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for each timing")
    parser.add_argument("--work", type=Path, default=Path("bench-out"), help="video folder")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    files = make_inputs(args.work, args.seconds, args.height, args.mbps)
    for path in files:
        path.read_bytes()  # into the page cache, untimed
    facts = video_facts(files[0])
    print(f"cpu: {cpu_model()} ({os.cpu_count()} cores)")
    grain = f"re-encoded with grain at {args.mbps:g} Mbit/s" if args.mbps else "as generated"
    print(f"video: {facts.describe()}, {grain}; repeats: {args.repeats} (best); decoder threads: "
          f"auto; read-ahead block: {READ_BLOCK_BYTES / MIB:g} MiB")  # fmt: skip
    for path in files:
        order = " ".join(b for b in top_level_boxes(path) if b in ("ftyp", "moov", "mdat"))
        where = "moov first (faststart)" if moov_first(path) else "moov at the end"
        small = path.stat().st_size <= READ_BLOCK_BYTES
        print(f"  {path.name}: {path.stat().st_size / MIB:.2f} MiB, {where}: {order}"
              + (" (within one read-ahead block)" if small else ""))  # fmt: skip

    import s3fs

    best: dict[tuple[int, str, str], Run] = {}  # (file, pass, where)
    with LoopbackS3() as s3, FaultyProxy(s3.endpoint) as proxy:
        bucket = s3.bucket(BUCKET)
        for path in files:
            s3fs.S3FileSystem().put_file(str(path), f"{BUCKET}/{path.name}")
        s3.point_at(proxy.endpoint)
        try:
            sources = [(p, RemoteVideo(f"{bucket}/{p.name}")) for p in files]
            for local, remote in sources:  # warm-up: libraries, the S3 client
                probe(local), probe(remote)
            for _ in range(args.repeats):  # interleaved, so drift hits every case alike
                for (i, pair), (name, options) in product(enumerate(sources), PASSES.items()):
                    for where, source in zip(("local", "remote"), pair, strict=True):
                        key, run = (i, name, where), measure(source, options, proxy)
                        best[key] = min(best.get(key, run), run, key=lambda r: r.seconds)
        finally:
            s3.point_at(s3.endpoint)

    def ratio(i: int, name: str) -> float:
        return best[(i, name, "remote")].seconds / best[(i, name, "local")].seconds

    def share(i: int, name: str) -> float:
        return best[(i, name, "remote")].bytes_read / files[i].stat().st_size

    rows = [("file", "pass", "where", "wall s", "video s/s", "rem/loc", "reqs", "GETs",
             "MiB read", "read/size")]  # fmt: skip
    for (i, path), name, where in product(enumerate(files), PASSES, ("local", "remote")):
        run, far = best[(i, name, where)], where == "remote"
        rows.append((
            path.name, name, where, f"{run.seconds:.3f}",
            "-" if name == "probe" else f"{facts.duration_seconds / run.seconds:.1f}",
            f"{ratio(i, name):.2f}" if far else "-",
            str(run.requests) if far else "-", str(run.gets) if far else "-",
            f"{run.bytes_read / MIB:.2f}" if far else "-", f"{share(i, name):.2f}" if far else "-",
        ))  # fmt: skip
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) if k < 3 else c.rjust(w)
                        for k, (c, w) in enumerate(zip(row, widths, strict=True))))  # fmt: skip
    end, front = best[(0, "probe", "remote")], best[(1, "probe", "remote")]
    print(
        f"measured: from the bucket, the full decode took {ratio(0, 'full'):.2f}x (moov at the "
        f"end) and {ratio(1, 'full'):.2f}x (faststart) the local time and read "
        f"{share(0, 'full'):.2f}x and {share(1, 'full'):.2f}x the file; the 2 fps pass took "
        f"{ratio(0, '2 fps'):.2f}x and {ratio(1, '2 fps'):.2f}x. A probe made {end.gets} GETs "
        f"({end.bytes_read / MIB:.2f} MiB) with moov at the end against {front.gets} "
        f"({front.bytes_read / MIB:.2f} MiB) with faststart, in {end.seconds / front.seconds:.2f}x "
        "the time."
    )


if __name__ == "__main__":
    main()
