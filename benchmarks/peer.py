"""clipminer against the research script it comes from, doing identical work on one file.

The research script's algorithm, re-implemented from its description (issue 24): decode
every frame with PyAV to a full-resolution RGB array, keep every 2nd, stack 64 of them,
convert to float at full resolution, resize bilinearly to 128x128 without keeping the
aspect, normalize, run densenet121 (batch 64), keep each frame's top class score, take
the video's top 2 frames and cut 5 s around each (ffmpeg, stream copy).

clipminer does the same job: ``find-clips`` scoring every 2nd frame (``--sample-fps``
half the frame rate) at 128 px with the same random densenet121 (400 classes), two 5 s
clips (``--segment-on action --max-clips-per-video 2 --max-seconds 5 --cut copy``: one
score curve, as the script's one top score per frame), no video model, no shot
detection (``--no-shots``: the script finds none) and every sampled frame scored
(``--score-stride 1``). A second clipminer run with its default less-work settings is
printed too: less model work, so not identical work, and labelled so.

Each side runs in a fresh process (imports and model loading counted for both), in the
order peer, clipminer, peer, clipminer (``--repeats``); the JSON lines give wall seconds,
peak RSS, the CPU model and ``speedup`` (the peer's best wall over clipminer's best).
Target: clipminer at least 2x faster.

Usage: python benchmarks/peer.py [--minutes 10] [--work bench-out/peer] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchutil import PEAK_RSS_PRELUDE, cpu_flags, cpu_model, video_facts

CLASSES = 400
BATCH, SIZE, KEEP_EVERY, TOP, CLIP_SECONDS = 64, 128, 2, 2, 5.0


def research_script(video: Path, out: Path) -> list[float]:
    """The peer's algorithm (see the module docstring); returns the clips' centre times."""
    import av
    import numpy as np
    import torch
    import torchvision
    from torch.nn import functional

    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None, num_classes=CLASSES).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    scores: list[float] = []
    times: list[float] = []
    stack: list[np.ndarray] = []

    def run() -> None:
        pixels = torch.from_numpy(np.stack(stack)).permute(0, 3, 1, 2).float() / 255
        small = functional.interpolate(pixels, size=(SIZE, SIZE), mode="bilinear")
        with torch.inference_mode():
            probs = torch.softmax(model((small - mean) / std), dim=1)
        scores.extend(probs.max(dim=1).values.tolist())
        stack.clear()

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            rgb = frame.to_ndarray(format="rgb24")
            if index % KEEP_EVERY:
                continue
            stack.append(rgb)
            times.append(float(frame.time or 0.0))
            if len(stack) == BATCH:
                run()
    if stack:
        run()
    best = sorted(np.argsort(scores)[-TOP:].tolist())
    out.mkdir(parents=True, exist_ok=True)
    for k, i in enumerate(best):
        start = max(0.0, times[i] - CLIP_SECONDS / 2)
        command = ["ffmpeg", "-v", "error", "-y", "-ss", f"{start:.3f}", "-i", str(video)]
        command += ["-t", f"{CLIP_SECONDS}", "-c", "copy", str(out / f"clip_{k}.mp4")]
        subprocess.run(command, check=True)
    return [times[i] for i in best]


def random_bundle(path: Path) -> Path:
    """A densenet121 bundle with random weights (seed 0) and 400 classes, at 128 px."""
    if path.exists():
        return path
    import torch
    import torchvision

    from clipminer.models.bundle import Bundle, InputSpec, save_bundle

    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None, num_classes=CLASSES)
    spec = InputSpec((SIZE, SIZE), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    labels = tuple(f"class_{k:03d}" for k in range(CLASSES))
    save_bundle(Bundle("image", "densenet121", labels, spec, model.state_dict()), path)
    return path


def build_video(work: Path, minutes: int) -> Path:
    """``minutes`` of synthetic 360p30 with actions (a minute repeated by stream copy)."""
    from clipminer import synth

    minute = work / "minute_360p.mp4"
    if not minute.exists():
        synth.make_long_video(minute, duration_seconds=60.0, size=(360, 640), fps=30, seed=0)
    video = work / f"peer_360p_{minutes}min.mp4"
    if not video.exists():
        synth.repeat_video(minute, video, times=minutes)
    return video


CHILD = PEAK_RSS_PRELUDE + (
    "import sys, runpy\n"
    "sys.argv = sys.argv[1:]\n"
    "sys.path.insert(0, __import__('os').path.dirname(sys.argv[0]))  # its own folder\n"
    "try:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except SystemExit as exc:\n"
    "    assert not exc.code, exc.code\n"
    "print(PEAK())\n"
)


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of ``argv`` run as a script in a fresh process."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, env=env, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(argv[:2])} failed:\n{done.stderr[-2000:]}")
    return wall, int(done.stdout.strip().splitlines()[-1]) / 1024


def clipminer_argv(video: Path, model: Path, out: Path, *, identical: bool) -> list[str]:
    fps = video_facts(video).fps or 30.0
    argv = [shutil.which("clipminer") or str(Path(sys.executable).with_name("clipminer"))]
    argv += ["find-clips", str(video), "--image-model", str(model), "--out", str(out)]
    argv += ["--sample-fps", f"{fps / KEEP_EVERY:g}", "--max-clips-per-video", str(TOP)]
    # one curve (every class is an action here), cut into 5 s pieces: the best two kept
    argv += ["--segment-on", "action", "--max-seconds", f"{CLIP_SECONDS:g}", "--min-seconds", "0"]
    argv += ["--cut", "copy", "--no-shots", "--device", "cpu"]
    if identical:
        argv += ["--score-stride", "1", "--relabel-agree", "0"]
    return argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path("bench-out/peer"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--run-peer", nargs=2, type=Path, metavar=("VIDEO", "OUT"), help="(inner)")
    args = parser.parse_args()
    if args.run_peer:
        research_script(*args.run_peer)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    video = build_video(args.work, args.minutes)
    model = random_bundle(args.work / "densenet121_random_128.pt")
    runs: dict[str, list[tuple[float, float]]] = {"peer": [], "clipminer": [], "defaults": []}
    for repeat in range(args.repeats):
        for name in runs:
            out = args.work / f"out_{name}_{repeat}"
            shutil.rmtree(out, ignore_errors=True)
            if name == "peer":
                argv = [__file__, "--run-peer", str(video), str(out)]
            else:
                argv = clipminer_argv(video, model, out, identical=name == "clipminer")
            runs[name].append(timed(argv))
            clips = len(list(out.rglob("*.mp4")))
            print(json.dumps({"case": name, "repeat": repeat, "wall_seconds": round(
                runs[name][-1][0], 1), "peak_rss_mib": round(runs[name][-1][1]), "clips": clips}),
                flush=True)  # fmt: skip
    best = {name: min(wall for wall, _ in rows) for name, rows in runs.items()}
    print(
        json.dumps(
            {
                "case": "peer",
                "cpu": cpu_model(),
                "cpu_flags": cpu_flags(),
                "video": video_facts(video).describe(),
                "best_wall_seconds": {name: round(wall, 1) for name, wall in best.items()},
                "peak_rss_mib": {
                    name: round(max(m for _, m in rows)) for name, rows in runs.items()
                },
                "speedup_identical_work": round(best["peer"] / best["clipminer"], 2),
                "speedup_clipminer_defaults": round(best["peer"] / best["defaults"], 2),
                "target_speedup": 2.0,
            }
        )
    )


if __name__ == "__main__":
    main()
