"""The issue-13 target: an hour of 1080p H.264 through the full default find-clips pipeline.

Builds the hour by stream-copy concatenation of a 1-minute synthetic 1080p video with
actions, trains (once per work folder, then reuses) a densenet121 at 224 px and an
r2plus1d_18 at 16 x 112 px on synthetic data, runs ``clipminer find-clips`` with its
defaults (2 fps scoring, re-labelling, ``--cut reencode``) in a fresh process, and prints
one JSON line: wall time, per-stage times (from run.json), clips, peak RSS, and, measured
in the same run, the decode floor (ffmpeg with the same thread count as the pipeline's
decoder: FFmpeg's automatic choice) and the models-alone floors (the image model on as
many frames as the pass scores; the video model on as many windows as it re-labelled),
each extrapolated from a timed sample after a warm-up. Targets: wall <= 6 min for 60
minutes, <= 2.1 x the ffmpeg floor, peak RSS <= 1 GiB.

With ``--precision fp32,int8`` the models are also quantized (``clipminer quantize``,
calibrated on their training data) and the pipeline and the models-alone floors are run
at each precision in turn, one JSON line each.

``--options="--score-stride 1"`` (repeatable) runs find-clips with other settings beside
the defaults, on the same file in the same run. Each line also carries the CPU model and
its speed flags, the peak anonymous memory from ``run.json``, and what auto's precision
guard decided. Targets (issue 24): at the defaults, wall <= 3.0 x the ffmpeg floor on a
CPU with native bf16, <= 4.0 x on an AVX2-only one; peak anonymous memory <= 768 MiB.

Usage: python benchmarks/hour.py [--minutes 60] [--work bench-out/hour] [--precision fp32]
       [--options "FIND-CLIPS OPTIONS"]...
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import clipminer  # noqa: F401 - first: sets the thread environment before torch loads

# isort: split
import numpy as np
import torch
from benchutil import PEAK_RSS_PRELUDE, cpu_flags, cpu_model, video_facts

from clipminer import synth
from clipminer.config import (
    ClipSpec,
    FitConfig,
    ImageTrainConfig,
    VideoFitConfig,
    VideoSource,
    VideoTrainConfig,
)
from clipminer.errors import UsageError
from clipminer.models.bundle import load_bundle
from clipminer.models.image import ImageScorer
from clipminer.models.video import load_video_model
from clipminer.precision import cpu_has_native_bf16, for_bundle
from clipminer.quantize import quantize_bundle

RUN = PEAK_RSS_PRELUDE + (
    "import sys\n"
    "from clipminer.cli import app\n"
    "try:\n"
    "    app(sys.argv[1:], prog_name='clipminer')\n"
    "except SystemExit as exc:\n"
    "    assert not exc.code, exc.code\n"
    "print(PEAK())\n"
)


def build_minute(work: Path) -> Path:
    """1 minute of synthetic 1080p30 with actions (3 of them); made once per work folder."""
    minute = work / "minute_1080p.mp4"
    if not minute.exists():
        synth.make_long_video(minute, duration_seconds=60.0, size=(1080, 1920), fps=30, seed=0)
    return minute


def build_hour(work: Path, minutes: int) -> Path:
    """The minute repeated ``minutes`` times by stream copy."""
    minute = build_minute(work)
    hour = work / f"hour_1080p_{minutes}min.mp4"
    if not hour.exists():
        synth.repeat_video(minute, hour, times=minutes)
    return hour


def train_models(work: Path) -> tuple[Path, Path]:
    """densenet121-224 and r2plus1d_18-16x112, briefly trained on synthetic data; reused."""
    from clipminer.train_image import train_image
    from clipminer.train_video import train_video

    image, video = work / "densenet121_224.pt", work / "r2plus1d_18_16x112.pt"
    if not image.exists():
        synth.make_images(work / "images", per_class=24, size=(256, 256), seed=0)
        config = ImageTrainConfig(
            arch="densenet121", weights="none", image_size=224, batch_size=8, workers=2,
            device="cpu", fit=FitConfig(epochs=1, seed=0),
        )  # fmt: skip
        train_image(work / "images", image, config=config)
    if not video.exists():
        synth.make_clips(work / "clips", per_class=6, seconds=2.0, fps=25, size=(128, 160))
        config_v = VideoTrainConfig(
            arch="r2plus1d_18", clip=ClipSpec(clip_len=16, frame_rate=15.0, size=112),
            batch_size=4, workers=2, device="cpu", fit=VideoFitConfig(epochs=1, seed=0),
            train_clips_per_video=1,
        )  # fmt: skip
        train_video(VideoSource(videos=work / "clips", val_fraction=0.25), video, config=config_v)
    return image, video


def ffmpeg_floor(video: Path) -> float | None:
    """Seconds ffmpeg takes to decode every frame (automatic threads, as the pipeline)."""
    if shutil.which("ffmpeg") is None:
        return None
    command = ["ffmpeg", "-v", "error", "-i", str(video), "-map", "0:v:0", "-f", "null", "-"]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def image_floor(model: Path, frames: int, *, sample: int = 48, batch: int = 4) -> float:
    """Seconds the image model alone needs for ``frames`` 1080p frames (from a sample)."""
    scorer = ImageScorer(model, device="cpu")
    pixels = np.random.default_rng(0).integers(0, 255, (batch, 252, 448, 3), dtype=np.uint8)
    scorer(pixels)  # warm-up
    started = time.perf_counter()
    for _ in range(sample // batch):
        scorer(pixels)
    return (time.perf_counter() - started) / sample * frames


def video_floor(model: Path, windows: int, *, sample: int = 8, batch: int = 4) -> float:
    """Seconds the video model alone needs for ``windows`` clips (from a sample)."""
    bundle = load_bundle(model, kind="video")
    net = for_bundle(load_video_model(bundle), bundle, "auto", device=torch.device("cpu"))
    clips = torch.randn(batch, 3, 16, 112, 112).contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        net(clips)  # warm-up
        started = time.perf_counter()
        for _ in range(sample // batch):
            net(clips)
    return (time.perf_counter() - started) / sample * windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--work", type=Path, default=Path("bench-out/hour"))
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32,int8")
    parser.add_argument(
        "--min-agreement", type=float, default=0.99, help="the quantization guard (top-1 vs fp32)"
    )
    parser.add_argument(
        "--options",
        action="append",
        help="find-clips options of one run (repeat to run several settings side by side; "
        "default: the defaults)",
    )
    args = parser.parse_args()
    args.options = args.options or [""]
    torch.set_num_threads(2)
    args.work.mkdir(parents=True, exist_ok=True)
    models = {"fp32": train_models(args.work)}
    hour = build_hour(args.work, args.minutes)
    decode = ffmpeg_floor(hour)
    for precision in args.precision.split(","):
        pair = models.get(precision) or quantize(
            args.work, *models["fp32"], precision, args.min_agreement
        )
        if pair is None:
            continue
        for k, options in enumerate(args.options):
            extra = shlex.split(options)
            row = run_pipeline(args.work, hour, *pair, tag=f"{precision}_{k}", extra=extra)
            print(
                json.dumps(
                    {
                        "case": "hour",
                        "cpu": cpu_model(),
                        "cpu_flags": cpu_flags(),
                        "video": video_facts(hour).describe(),
                        "find_clips_options": extra,
                        **row,
                        "ffmpeg_decode_seconds": None if decode is None else round(decode, 1),
                        "wall_over_ffmpeg": None
                        if decode is None
                        else round(row["wall_seconds"] / decode, 2),
                        "targets": {
                            "wall_over_ffmpeg": 3.0 if cpu_has_native_bf16() else 4.0,
                            "peak_anon_mib": 768,
                        },
                    }
                ),
                flush=True,
            )


def quantize(
    work: Path, image: Path, video: Path, precision: str, min_agreement: float
) -> tuple[Path, Path] | None:
    """Both models at ``precision``, calibrated on their training data; None where the
    accuracy guard (``min_agreement`` top-1 agreement with fp32) refused one."""
    made = []
    for model, data in ((image, work / "images"), (video, work / "clips")):
        out = model.with_name(f"{model.stem}-{precision}-{min_agreement:g}.pt")
        if not out.exists():
            try:
                result = quantize_bundle(
                    model, [data], out, precision=precision, min_agreement=min_agreement
                )
            except UsageError as exc:  # the guard refused: say so, run nothing at it
                print(json.dumps({"case": "quantize", "model": model.name, "refused": str(exc)}))
                return None
            print(json.dumps({"case": "quantize", "model": model.name, **result.summary()}))
        made.append(out)
    return made[0], made[1]


def candidates(run: dict, rows: list[dict]) -> list[tuple[float, float, str]]:
    """Every candidate before the open-set decision: (start, end, label), kept or not."""
    found = [(r["time_start"], r["time_end"], r["label"]) for r in run["open_set"]["rejected"]]
    found += [(r["time_start"], r["time_end"], r["video_label"] or r["label"]) for r in rows]
    return sorted((round(float(a), 2), round(float(b), 2), label) for a, b, label in found)


def run_pipeline(
    work: Path, hour: Path, image: Path, video: Path, *, tag: str, extra: list[str]
) -> dict:
    """find-clips with its defaults in a fresh process, and the models-alone floors."""
    out = work / f"out_{hour.stem}_{tag}"
    shutil.rmtree(out, ignore_errors=True)
    command = ["find-clips", str(hour), "--image-model", str(image), "--video-model", str(video)]
    command += extra
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", RUN, *command, "--out", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    peak_mib = int(done.stdout.strip().splitlines()[-1]) / 1024
    (folder,) = (out / "videos").iterdir()
    run = json.loads((folder / "run.json").read_text())
    with (folder / "segments.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    clips = len(rows)
    windows = clips * run["config"]["relabel_windows"]
    return {
        "wall_seconds": round(wall, 1),
        "stages": run["stages"],
        "clips": clips,
        "candidates": candidates(run, rows),
        "frames_scored": run["frames_scored"],
        "peak_rss_mib": round(peak_mib),
        "run_json_memory": run.get("memory"),
        "precision_check": run.get("precision_check"),
        "image_model_alone_seconds": round(image_floor(image, run["frames_scored"]), 1),
        "video_model_alone_seconds": round(video_floor(video, windows), 1),
        "video_windows_upper_bound": windows,
        "precision": run["precision"],
    }


if __name__ == "__main__":
    main()
