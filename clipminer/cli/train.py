"""Training and evaluation: ``train-image``, ``eval-image``, ``train-video``, ``eval-video``,
``prepare-videos``. Their settings are declared on the dataclasses in
:mod:`clipminer.config`; the options are generated from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from clipminer.cli.common import (
    Device,
    ModelOut,
    Out,
    Workers,
    app,
    cell,
    columns,
    console,
    err_console,
    flag,
    print_error,
    progress_bar,
    settings_options,
)
from clipminer.config import ImageTrainConfig, VideoSource, VideoTrainConfig

ImageFolderArg = Annotated[
    Path,
    typer.Argument(
        metavar="DATA_DIR",
        help="Folder with one sub-folder of images (or video clips: an export's "
        "DATASET/train) per class.",
    ),
]
Resume = Annotated[bool, flag("Continue an interrupted run from MODEL.pt.train-state.")]
VIDEO_METRICS = ("clip_top1", "video_top1", "video_top5", "video_top10", "mean_class_accuracy")


class BarReporter:
    """Draws a progress bar per epoch with the running loss and accuracy, and one for
    its validation pass."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: Any = None
        self._val_task: Any = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        loss = TextColumn("{task.fields[stats]}", markup=False)
        self._bar = Progress(*columns(MofNCompleteColumn(), loss), console=err_console)
        self._bar.start()
        self._task = self._bar.add_task(
            f"epoch {epoch}/{epochs}", total=steps, stats="loss -  acc -"
        )
        self._val_task = None

    def step(self, loss: float, top1: float) -> None:
        if self._bar is not None:
            stats = f"loss {loss:.4f}  acc {top1:.3f}"
            self._bar.update(self._task, advance=1, stats=stats)

    def validate(self, done: int, total: int) -> None:
        if self._bar is None:
            return
        if self._val_task is None:
            self._val_task = self._bar.add_task("  validation", total=total or None, stats="")
        self._bar.update(self._val_task, completed=done, total=total or None)

    def end_epoch(self, result: Any, best: bool) -> None:
        if self._bar is not None:
            self._bar.stop()
        err_console.print(
            Text.assemble(
                f"epoch {result.epoch}: train loss {result.train_loss:.4f}, train top-1 "
                f"{result.train_top1:.3f}, val top-1 {result.val_top1:.3f}, "
                f"{result.seconds:.1f} s",
                ("  best, saved" if best else "", "green"),
            )
        )


def _print_metrics(title: str, metrics: Any, unit: str = "images") -> None:
    table = Table("class", "accuracy", title=title)
    for label, accuracy in metrics.per_class.items():
        table.add_row(label, f"{accuracy:.3f}")
    console.print(table)
    console.print(
        f"top-1 {metrics.top1:.3f}  top-5 {metrics.top5:.3f}  "
        f"mean class accuracy {metrics.mean_class_accuracy:.3f}  ({metrics.samples} {unit})"
    )


@app.command("train-image")
@settings_options(ImageTrainConfig, into="config")
def train_image_command(
    data_dir: ImageFolderArg,
    out: ModelOut,
    val_dir: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Validate on this folder instead of a split."),
    ] = None,
    resume: Resume = False,
    *,
    config: ImageTrainConfig,
) -> None:
    """Fine-tune an image classifier (DenseNet-121 by default) on an image folder.

    Keeps the best epoch by validation top-1 in MODEL.pt (a clipminer bundle with the
    labels and preprocessing), writes metrics.json, confusion.csv and confusion.png to
    MODEL_report/, and the resumable state to MODEL.pt.train-state.
    """
    from clipminer.train_image import train_image

    result = train_image(
        data_dir, out, config=config, val_dir=val_dir, resume=resume, reporter=BarReporter()
    )
    _print_metrics(f"validation, best epoch {result.fit.best_epoch}", result.metrics)
    skipped = f", {result.skipped} unreadable skipped" if result.skipped else ""
    console.print(
        f"{result.train_images} train / {result.val_images} validation images{skipped}; "
        f"model: {result.model_path}; report: {result.report_dir}"
    )


@app.command("eval-image")
def eval_image_command(
    model: Annotated[
        Path, typer.Argument(metavar="MODEL", help="An image model bundle (MODEL.pt).")
    ],
    data_dir: Annotated[
        Path,
        typer.Argument(metavar="DATA_DIR", help="Folder with one sub-folder of images per class."),
    ],
    out: Out,
    batch_size: Annotated[int, typer.Option(min=1, metavar="N", help="Images per batch.")] = 32,
    workers: Workers = 2,
    device: Device = "auto",
) -> None:
    """Evaluate an image model on a labelled folder (metrics and confusion in OUT).

    Class folders the model does not know are reported and left out of the metrics.
    """
    from clipminer.train_image import eval_image

    result = eval_image(model, data_dir, out, batch_size=batch_size, workers=workers, device=device)
    _print_metrics(f"{model} on {data_dir}", result.metrics)
    if result.unknown_labels:
        unknown = ", ".join(f"{k} ({v} images)" for k, v in result.unknown_labels.items())
        print_error(
            f"not scored, unknown to the model: {unknown}", label="warning:", style="yellow"
        )
    console.print(f"report: {result.out_dir}")


@app.command("train-video")
@settings_options(VideoTrainConfig, into="config")
@settings_options(VideoSource, into="source")
def train_video_command(
    out: ModelOut,
    resume: Resume = False,
    *,
    source: VideoSource,
    config: VideoTrainConfig,
) -> None:
    """Train a 3D-CNN video classifier on UCF-101 splits or a folder per class.

    Clips are decoded on the fly in DataLoader workers; the best epoch by video-level
    validation top-1 is kept in MODEL.pt (the last one with --val-fraction 0), with a
    report in MODEL_report/. The defaults are a recipe for few labelled videos (several
    jittered clips per video, random resized crops, colour jitter, label smoothing,
    warm-up and cosine decay, an average of the weights); --init-from IMAGE.pt starts
    from a trained image model inflated to 3D.
    """
    from clipminer.train_video import train_video

    result = train_video(source, out, config=config, resume=resume, reporter=BarReporter())
    if result.metrics is None:
        console.print(f"no validation: kept the last epoch ({result.fit.history[-1].epoch})")
    else:
        best = f"validation (video level), best epoch {result.fit.best_epoch}"
        _print_metrics(best, result.metrics, "videos")
    problems = ""
    if result.unreadable or result.missing:
        problems = f", {result.unreadable} unreadable and {result.missing} missing videos skipped"
    console.print(
        f"{result.train_videos} train / {result.val_videos} validation videos{problems}; "
        f"model: {result.model_path}; report: {result.report_dir}"
    )


@app.command("eval-video")
@settings_options(VideoSource, into="source")
def eval_video_command(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="A video model bundle.")],
    out: Out,
    clips_per_video: Annotated[
        int, typer.Option(min=1, metavar="N", help="Windows per video, spread uniformly.")
    ] = 10,
    fuse_image_model: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Also report this image model alone (frames averaged) and fused with the "
            "video model.",
        ),
    ] = None,
    cache: Annotated[
        Path | None, typer.Option(metavar="DIR", help="A cache made by prepare-videos.")
    ] = None,
    workers: Workers = 2,
    device: Device = "auto",
    *,
    source: VideoSource,
) -> None:
    """Evaluate a video model on the UCF-101 test list or a folder's validation part.

    Writes metrics.json (clip_top1, video_top1/5/10, mean_class_accuracy, per class),
    confusion.csv/png, best_classes.csv, worst_classes.csv and confused_pairs.csv.
    """
    from clipminer.train_video import eval_video

    with progress_bar("videos") as update:
        results = eval_video(
            model, source, out, clips_per_video=clips_per_video,
            fuse_image_model=fuse_image_model, workers=workers, device=device, cache=cache,
            progress=update,
        )  # fmt: skip
    table = Table("model", "clip top-1", "video top-1", "top-5", "top-10", "mean class acc.")
    for name, result in results.items():
        row = result.summary()
        table.add_row(name, *(cell(row[k]) for k in VIDEO_METRICS))
    console.print(table)
    console.print(f"report: {out}")


@app.command("prepare-videos")
@settings_options(VideoSource, into="source")
def prepare_videos_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Cache folder (re-running resumes).")
    ],
    frame_rate: Annotated[
        float, typer.Option(min=0.1, metavar="FPS", help="Frame rate the model trains at.")
    ] = 15.0,
    frame_size: Annotated[
        int, typer.Option(min=8, metavar="PX", help="Crop size the model trains at.")
    ] = 112,
    *,
    source: VideoSource,
) -> None:
    """Re-encode the videos once at the training rate and size: a train-video cache.

    Pass the same --frame-rate and --frame-size to train-video with --cache.
    """
    from clipminer.data.videos import ClipSpec, prepare_videos
    from clipminer.train_video import load_videos

    videos = load_videos(source)
    spec = ClipSpec(frame_rate=frame_rate, size=frame_size)
    with progress_bar("videos") as update:
        written, kept, failed = prepare_videos(
            videos.train + videos.val, out, spec, progress=update
        )
    console.print(
        f"cache {out}: {written} written, {kept} already there, {len(failed)} failed, "
        f"{len(videos.unreadable)} unreadable skipped"
    )
    if failed:
        raise typer.Exit(code=1)
