"""What several benchmarks share: facts about a video read from the file itself, the peak
memory of a child process, and small models trained on synthetic data.

Only clipminer's public API is used here and in the benchmarks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipminer.decode import probe

PEAK_RSS_PRELUDE = (
    "def PEAK():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            return int(line.split()[1])\n"
)
"""Defines ``PEAK()`` in a child: its own VmHWM in KiB (``ru_maxrss`` would carry the
parent's size across exec)."""


@dataclass(frozen=True)
class VideoFacts:
    """A video as its file describes it, for the JSON lines."""

    duration_seconds: float
    frames: int | None
    width: int
    height: int
    fps: float | None
    codec: str

    def describe(self) -> str:
        fps = f"{self.fps:.3g} fps" if self.fps else "unknown fps"
        frames = f", {self.frames} frames" if self.frames else ""
        return (
            f"{self.width}x{self.height} {fps} {self.codec}, {self.duration_seconds:.1f} s{frames}"
        )


def video_facts(path: Path) -> VideoFacts:
    """Duration, frame count, size and rate from :func:`clipminer.decode.probe`."""
    info = probe(path)
    if info.duration_seconds is None:
        raise SystemExit(f"{path}: the file declares no duration")
    return VideoFacts(
        duration_seconds=info.duration_seconds,
        frames=info.num_frames,
        width=info.width,
        height=info.height,
        fps=info.average_fps,
        codec=info.codec,
    )


def child_peak_rss_mib(code: str, *args: str) -> float:
    """Run ``code`` (which ends by printing ``PEAK()``) in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_PRELUDE + code, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


@dataclass(frozen=True)
class SmallModels:
    """Trained bundles and their validation top-1 (from the bundles themselves)."""

    image: Path
    video: Path
    image_top1: float
    video_top1: float


def train_small_models(
    work: Path,
    *,
    image_arch: str = "resnet18",
    image_size: int = 64,
    images_per_class: int = 40,
    image_epochs: int = 4,
    video_size: int = 48,
    clip_len: int = 8,
    frame_rate: float = 12.5,
    clips_per_class: int = 16,
    video_epochs: int = 12,
    seed: int = 0,
) -> SmallModels:
    """An image model and a small3d video model, each on its own synthetic data of all six
    classes. Trained once per ``work`` folder and reused: training is not what is timed."""
    from clipminer import synth
    from clipminer.config import VideoFitConfig
    from clipminer.data.videos import ClipSpec
    from clipminer.models.bundle import load_bundle
    from clipminer.train import FitConfig
    from clipminer.train_image import ImageTrainConfig, train_image
    from clipminer.train_video import VideoSource, VideoTrainConfig, train_video

    work.mkdir(parents=True, exist_ok=True)
    image_model, video_model = work / "image.pt", work / "video.pt"
    if not image_model.exists():
        side = max(96, image_size + image_size // 2)
        synth.make_images(work / "images", per_class=images_per_class, size=(side, side), seed=seed)
        train_image(
            work / "images",
            image_model,
            config=ImageTrainConfig(
                arch=image_arch,
                weights="none",
                image_size=image_size,
                batch_size=16,
                val_fraction=0.2,
                workers=2,
                device="cpu",
                fit=FitConfig(epochs=image_epochs, lr=1e-3, seed=seed),
            ),
        )
    if not video_model.exists():
        synth.make_clips(
            work / "clips",
            per_class=clips_per_class,
            seconds=2.0,
            fps=25,
            size=(64, 80),
            seed=seed,
        )
        train_video(
            VideoSource(videos=work / "clips", val_fraction=0.2),
            video_model,
            config=VideoTrainConfig(
                arch="small3d",
                clip=ClipSpec(clip_len=clip_len, frame_rate=frame_rate, size=video_size),
                batch_size=8,
                workers=2,
                device="cpu",
                fit=VideoFitConfig(
                    epochs=video_epochs, lr=3e-3, seed=seed, label_smoothing=0, ema_decay=0
                ),
                train_clips_per_video=1,
                crop_scale=1.0,
                color_jitter=0.0,
            ),
        )
    return SmallModels(
        image=image_model,
        video=video_model,
        image_top1=float(load_bundle(image_model, kind="image").metrics["top1"]),
        video_top1=float(load_bundle(video_model, kind="video").metrics["top1"]),
    )


def score_segments(
    result: Any,
    expected: list[tuple[str, float, float]],
    *,
    relabelled: bool,
    pair_labels: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Segment precision, recall and F1 at temporal IoU >= 0.5 with the correct label of a
    find-clips ``result`` against ``expected`` (label, start, end), before or after
    re-labelling; with ``pair_labels``, also how many of their true segments were found."""
    from clipminer.metrics import segment_detection

    predicted = [
        (
            c.final_label if relabelled else c.segment.label,
            c.segment.time_start_seconds,
            c.segment.time_end_seconds,
        )
        for c in result.candidates
    ]
    d = segment_detection(predicted, expected, min_tiou=0.5)
    figures: dict[str, Any] = {
        "precision": round(d.precision, 3),
        "recall": round(d.recall, 3),
        "f1": round(d.f1, 3),
        "matched": d.matched,
        "predicted": d.predicted,
        "truth": d.truth,
    }
    if pair_labels:
        pair = [t for t in expected if t[0] in pair_labels]
        found = segment_detection(
            [p for p in predicted if p[0] in pair_labels], pair, min_tiou=0.5
        ).matched
        figures["motion_pair_found"] = f"{found}/{len(pair)}"
    return figures


SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
"""The CPU flags that decide which precisions run natively (AVX2-only machines differ
from those with AVX512_BF16 and AMX)."""


def cpu_flags() -> list[str]:
    """Which of :data:`SPEED_FLAGS` this CPU has (from /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [flag for flag in SPEED_FLAGS if flag in have]
    except OSError:
        pass
    return []


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, printed beside every speed figure."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def parse_settings(text: str) -> dict[str, object]:
    """``name=value,name=value`` (a benchmark's ``--settings``) as a dict of find-clips
    settings; numbers become numbers, the settings check the rest."""
    settings: dict[str, object] = {}
    for item in filter(str.strip, text.split(",")):
        name, _, value = item.partition("=")
        try:
            settings[name.strip()] = json.loads(value)
        except ValueError:
            settings[name.strip()] = value.strip()
    return settings
