"""The demo's pipeline on generated data, offline (``clipminer demo``).

Scrapes images of the toy actions from the local engine through headless Chromium,
trains the image model (DenseNet-121) on them and a small video model on generated
clips, generates long videos with known actions, cuts and fades (and a re-upload of
one), mines them with the nightly batch (find-clips with re-labelling and cutting,
report.html), scores the clips against the ground truth, and turns them into a dataset:
dedup, a stand-in reviewer that knows the truth, and a leak-free export. It lives with
the command line because it drives both clipminer and the scrapers, which the core
never imports.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from clipminer import synth
from clipminer.config import FindClipsConfig, VideoFitConfig
from clipminer.data.background import BUILTIN, builtin_photos
from clipminer.data.videos import ClipSpec
from clipminer.errors import UsageError
from clipminer.layout import read_segments, videos_root
from clipminer.metrics import segment_detection
from clipminer.segments import SegmentConfig
from clipminer.synth import Progress
from clipminer.train import FitConfig
from clipminer.train_image import ImageTrainConfig, ImageTrainResult, train_image
from clipminer.train_video import (
    VideoSource,
    VideoTrainConfig,
    VideoTrainResult,
    train_video,
)


@dataclass(frozen=True)
class DemoSize:
    """How much data and training the demo uses."""

    images_per_class: int
    image_epochs: int
    clips_per_class: int
    video_epochs: int
    videos: int
    video_seconds: float


FULL = DemoSize(
    images_per_class=40,
    image_epochs=4,
    clips_per_class=16,
    video_epochs=20,
    videos=4,
    video_seconds=50.0,
)
SMALL = DemoSize(
    images_per_class=12,
    image_epochs=1,
    clips_per_class=4,
    video_epochs=1,
    videos=1,
    video_seconds=20.0,
)


def _scrape_images(out: Path, per_class: int, *, seed: int) -> str:
    """Scrape the toy actions from the local engine in headless Chromium; without
    Chromium, generate the same kind of images directly (and say so)."""
    try:
        from scrapers.driver import BrowserUnavailable
        from scrapers.scrape import ScrapeConfig, scrape
    except ImportError:  # the scrape extra is not installed
        scrape = None  # type: ignore[assignment]
    if scrape is not None:
        from scrapers.download import DownloadConfig

        config = ScrapeConfig(
            engine="local",
            per_action=per_class,
            download_workers=4,
            download=DownloadConfig(polite_seconds=0.0),
        )
        try:
            rows = scrape(list(synth.LABELS), out, config=config)
            return (
                f"{sum(r.saved for r in rows)} images of {len(rows)} actions from the local "
                f"engine through headless Chromium -> {out}"
            )
        except BrowserUnavailable as exc:
            note = str(exc)
    else:
        note = "pip install 'clipminer[scrape]' to scrape"
    synth.make_images(out, per_class=per_class, size=(80, 80), seed=seed)
    return f"generated {per_class * len(synth.LABELS)} images directly ({note}) -> {out}"


def run_demo(
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    small: bool = False,
    progress: Progress | None = None,
) -> dict[str, str]:
    """Run the demo under ``out``; return a step -> result summary."""
    out = Path(out)
    size = SMALL if small else FULL
    summary: dict[str, str] = {}
    steps = 7

    def step(done: int) -> None:
        if progress:
            progress(done, steps)

    step(0)
    started = time.perf_counter()
    summary["scrape"] = _scrape_images(out / "images", size.images_per_class, seed=seed)
    step(1)
    image = _train_image(out, size, seed, summary)
    step(2)
    video = _train_video(out, size, seed, summary)
    step(4)
    longs, truth_of = _long_videos(out, size, seed)
    step(5)
    mined = out / "mined"
    clips = _mine(out, mined, longs, (image.model_path, video.model_path), summary)
    step(6)
    summary.update(_curate(mined, out / "dataset", truth_of, small=small))
    summary["clips"] = "\n".join(clips)
    summary["report"] = str(mined / "report.html")
    summary["manifest"] = str(mined / "kinetics.csv")
    summary["total time"] = f"{time.perf_counter() - started:.0f} s"
    step(7)
    return summary


def _train_image(out: Path, size: DemoSize, seed: int, summary: dict[str, str]) -> ImageTrainResult:
    """train-image on the scraped images, the builtin photos in the background class."""
    image = train_image(
        out / "images",
        out / "models" / "image.pt",
        config=ImageTrainConfig(
            arch="densenet121",
            weights="none",
            image_size=64,
            batch_size=16,
            val_fraction=0.2,
            workers=2,
            # real photographs join the background class (the open-set recipe)
            background=(BUILTIN,) if builtin_photos() else (),
            fit=FitConfig(epochs=size.image_epochs, seed=seed),
        ),
    )
    calibration = image.open_set
    open_set = (
        f"; open-set threshold {calibration.threshold:.2f} (validation precision "
        f"{calibration.precision:.2f}, recall {calibration.recall:.2f})"
        if calibration
        else ""
    )
    summary["train-image"] = (
        f"densenet121 on {image.train_images} images (background with "
        f"{len(builtin_photos())} real photographs): validation top-1 "
        f"{image.metrics.top1:.2f}{open_set} -> {image.model_path}"
    )
    return image


def _train_video(out: Path, size: DemoSize, seed: int, summary: dict[str, str]) -> VideoTrainResult:
    """train-video (small3d) on generated clips."""
    synth.make_clips(
        out / "clips", per_class=size.clips_per_class, seconds=2.0, fps=25, size=(64, 80), seed=seed
    )
    video = train_video(
        VideoSource(videos=out / "clips", val_fraction=0.25),
        out / "models" / "video.pt",
        config=VideoTrainConfig(
            arch="small3d",
            clip=ClipSpec(clip_len=8, frame_rate=12.5, size=48),
            batch_size=8,
            workers=2,
            fit=VideoFitConfig(
                epochs=size.video_epochs, lr=3e-3, seed=seed, label_smoothing=0, ema_decay=0
            ),
            # generated clips need no augmentation; one clip per video keeps the demo quick
            train_clips_per_video=1,
            crop_scale=1.0,
            color_jitter=0.0,
        ),
    )
    top1 = "n/a" if video.metrics is None else f"{video.metrics.top1:.2f}"
    summary["train-video"] = (
        f"small3d on {video.train_videos} clips: validation top-1 {top1} -> {video.model_path}"
    )
    return video


def _long_videos(
    out: Path, size: DemoSize, seed: int
) -> tuple[list[synth.LongVideo], dict[str, tuple[synth.TruthSegment, ...]]]:
    """The long videos to mine, a re-upload of the first, and the truth of each (kept out
    of the folder the batch mines)."""
    longs = [
        synth.make_long_video(
            out / "videos" / f"demo_{k + 1}.mp4",
            duration_seconds=size.video_seconds,
            size=(240, 320),
            fps=25,
            seed=seed + 100 + k,
            cuts=True,
        )
        for k in range(size.videos)
    ]
    # A re-upload of the first video (re-encoded): dedup should find it and its clips.
    copy = synth.reupload(longs[0].path, out / "videos" / f"{longs[0].path.stem}_reupload.mp4")
    truth_of = {long.path.stem: long.segments for long in longs}
    truth_of[copy.stem] = longs[0].segments
    for long in longs:
        (out / "truth").mkdir(exist_ok=True)
        long.truth_csv.replace(out / "truth" / long.truth_csv.name)
        shots = long.truth_csv.with_name(f"{long.path.stem}.shots.csv")
        shots.replace(out / "truth" / shots.name)
    return longs, truth_of


def _mine(
    out: Path,
    mined: Path,
    longs: list[synth.LongVideo],
    models: tuple[Path, Path],
    summary: dict[str, str],
) -> list[str]:
    """The nightly batch over the videos, scored against the truth; the clips' paths."""
    from clipminer.batch import BatchConfig, run_batch

    config = BatchConfig(
        image_model=str(models[0]),
        video_models=(str(models[1]),),
        findclips=FindClipsConfig(segment=SegmentConfig(segment_on="action")),
    )
    run_batch(out / "videos", mined, config=config)
    clips: list[str] = []
    for long in longs:
        rows = read_segments(videos_root(mined) / long.path.stem)
        predicted = [(r.final_label, r.time_start, r.time_end) for r in rows]
        truth = _truth_per_shot(long.segments, out / "truth" / f"{long.path.stem}.shots.csv")
        score = segment_detection(predicted, truth)
        summary[f"batch: {long.path.name}"] = (
            f"{len(rows)} clips, {score.matched} of {len(truth)} true actions found "
            f"(F1 {score.f1:.2f})"
        )
        clips += [str(mined / r.clip_path) for r in rows if r.clip_path]
    return clips


def _truth_per_shot(
    segments: tuple[synth.TruthSegment, ...], shots_csv: Path
) -> list[tuple[str, float, float]]:
    """The true actions cut at the true shot boundaries: a clip never spans a cut, so an
    action with a cut inside is two clips to find."""
    from clipminer.mining.shots import read_shots_csv, split_at_shots
    from clipminer.segments import Segment

    shots = read_shots_csv(shots_csv)
    return [
        (piece.label, piece.time_start_seconds, piece.time_end_seconds)
        for s in segments
        for piece in split_at_shots(
            Segment(s.label, 1.0, s.time_start_seconds, s.time_end_seconds),
            shots,
            min_seconds=0.5,  # a cut a frame after the action starts leaves no piece
        )
    ]


def _truth_label(segments: tuple[synth.TruthSegment, ...], start: float, end: float) -> str:
    middle = (start + end) / 2
    for seg in segments:
        if seg.time_start_seconds <= middle < seg.time_end_seconds:
            return seg.label
    return synth.BACKGROUND


def _curate(
    mined: Path,
    dataset: Path,
    truth_of: dict[str, tuple[synth.TruthSegment, ...]],
    *,
    small: bool,
) -> dict[str, str]:
    """dedup, a stand-in reviewer who knows the truth, and export."""
    from clipminer.curate.catalog import all_clips, read_duplicates
    from clipminer.curate.dedup import dedup
    from clipminer.curate.export import export
    from clipminer.curate.verdicts import Rule, cast, connect

    # The demo's videos come from one generator: distinct clips of one action reach a
    # cosine of 0.998 there, re-encoded copies 0.999 and more (clipminer.curate.dedup);
    # whole videos: since real photographs joined the background class, distinct videos
    # reach 0.977 and the re-upload 0.9972 (before: 0.9956 and 0.9993).
    found = dedup(mined, threshold=0.999, video_threshold=0.99)
    summary = {
        "dedup": (
            f"{found.clips} clips: {found.dropped_clips} near-duplicates dropped in "
            f"{found.clip_groups} groups; {found.dropped_videos} of {found.videos} videos "
            "dropped as near-duplicates of another"
        )
    }
    accepted = rejected = 0
    duplicates = read_duplicates(mined)
    with connect(mined) as con:
        for clip in all_clips(mined):
            segments = truth_of.get(clip.video)
            if segments is None or duplicates.dropped(clip):  # the page does not show those
                continue
            right = clip.label == _truth_label(segments, clip.time_start, clip.time_end)
            cast(con, clip, "truth (demo stand-in)", "accept" if right else "reject")
            accepted, rejected = accepted + right, rejected + (not right)
    summary["review"] = (
        f"{accepted} clips accepted, {rejected} rejected by a stand-in reviewer that knows "
        f"the truth ({mined / 'review.sqlite'}); people use `clipminer review {mined}`"
    )
    try:
        report = export(
            mined, dataset, rule=Rule(), splits=(1.0, 0.0, 0.0) if small else (0.5, 0.25, 0.25),
            force=True,
        )  # fmt: skip
    except UsageError as exc:  # the --small models are barely trained: maybe nothing is right
        summary["export"] = f"nothing exported: {exc}"
        return summary
    sizes = ", ".join(f"{split} {sum(n.values())}" for split, n in report.counts.items())
    summary["export"] = f"{report.total} clips ({sizes}) -> {dataset}"
    return summary
