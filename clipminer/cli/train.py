"""Training and evaluation: ``train-image``, ``eval-image``, ``train-video``, ``eval-video``,
``prepare-videos``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from clipminer.cli.common import (
    Device,
    ModelOut,
    Workers,
    app,
    cell,
    console,
    err_console,
    flag,
    print_error,
    progress_bar,
)


class TrainLayersChoice(str, Enum):
    """Which layers train-image fine-tunes."""

    all = "all"
    last_block = "last-block"
    head = "head"


class ScheduleChoice(str, Enum):
    """Learning-rate schedules."""

    cosine = "cosine"
    onecycle = "onecycle"


EpochsOption = Annotated[int, typer.Option(min=1, help="Passes over the training data.")]
LrOption = Annotated[float, typer.Option(min=0.0, help="Peak learning rate of AdamW.")]
WeightDecayOption = Annotated[float, typer.Option(min=0.0, help="AdamW weight decay.")]
LabelSmoothingOption = Annotated[
    float, typer.Option(min=0.0, max=0.99, help="Label smoothing of the cross-entropy loss.")
]
TrainSeedOption = Annotated[int, typer.Option(help="Random seed.")]
ResumeOption = Annotated[bool, flag("Continue an interrupted run from MODEL.pt.train-state.")]


class BarReporter:
    """Draws a progress bar per epoch with the running loss and accuracy."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: Any = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self._bar = Progress(
            TextColumn(f"[bold]epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.3f}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=steps, loss=float("nan"), acc=0.0)

    def step(self, loss: float, top1: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, loss=loss, acc=top1)

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
def train_image_command(
    data_dir: Annotated[
        Path, typer.Argument(help="Folder with one sub-folder of images per class.")
    ],
    out: ModelOut,
    arch: Annotated[
        str,
        typer.Option(
            help="densenet121, densenet161, densenet169, densenet201, resnet18, resnet50 "
            "or mobilenet_v3_large."
        ),
    ] = "densenet121",
    weights: Annotated[
        str,
        typer.Option(
            help="imagenet (torchvision weights: hub cache, or download), none (random "
            "init), or a PATH to a torchvision state dict or a clipminer bundle."
        ),
    ] = "imagenet",
    train_layers: Annotated[
        TrainLayersChoice,
        typer.Option(
            help="Fine-tune all layers, only the last feature block and the head, or only the head."
        ),
    ] = TrainLayersChoice.all,
    epochs: EpochsOption = 10,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per step.")] = 32,
    lr: LrOption = 1e-3,
    weight_decay: WeightDecayOption = 0.05,
    schedule: Annotated[
        ScheduleChoice, typer.Option(help="Learning-rate schedule, stepped per batch.")
    ] = ScheduleChoice.cosine,
    label_smoothing: LabelSmoothingOption = 0.0,
    image_size: Annotated[int, typer.Option(min=16, help="Square input size in pixels.")] = 224,
    val_fraction: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.99,
            help="Share of each class held out for validation, chosen by content hash "
            "(stable across re-runs).",
        ),
    ] = 0.1,
    val_dir: Annotated[
        Path | None, typer.Option(help="Validate on this folder instead of a split.")
    ] = None,
    balanced: Annotated[bool, flag("Sample classes equally often (for imbalanced data).")] = False,
    workers: Workers = 2,
    seed: TrainSeedOption = 0,
    device: Device = "auto",
    resume: ResumeOption = False,
) -> None:
    """Fine-tune a torchvision image classifier (DenseNet-121 by default) on an image folder.

    Keeps the best epoch by validation top-1 in MODEL.pt (a clipminer bundle with the
    labels and preprocessing), writes metrics.json, confusion.csv and confusion.png to
    MODEL_report/, and the resumable state to MODEL.pt.train-state.
    """
    from clipminer.train import FitConfig
    from clipminer.train_image import ImageTrainConfig, train_image

    config = ImageTrainConfig(
        arch=arch,
        weights=weights,
        train_layers=train_layers.value,
        image_size=image_size,
        batch_size=batch_size,
        val_fraction=val_fraction,
        balanced=balanced,
        workers=workers,
        device=device,
        fit=FitConfig(
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            schedule=schedule.value,
            label_smoothing=label_smoothing,
            seed=seed,
        ),
    )
    result = train_image(
        data_dir, out, config=config, val_dir=val_dir, resume=resume, reporter=BarReporter()
    )
    _print_metrics(f"validation, best epoch {result.fit.best_epoch}", result.metrics)
    console.print(
        f"{result.train_images} train / {result.val_images} validation images"
        f"{f', {result.skipped} unreadable skipped' if result.skipped else ''}; "
        f"model: {result.model_path}; report: {result.report_dir}"
    )


@app.command("eval-image")
def eval_image_command(
    model: Annotated[Path, typer.Argument(help="An image model bundle (MODEL.pt).")],
    data_dir: Annotated[
        Path, typer.Argument(help="Folder with one sub-folder of images per class.")
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for metrics.json, confusion.csv, confusion.png."),
    ],
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 32,
    workers: Workers = 2,
    device: Device = "auto",
) -> None:
    """Evaluate an image model on a labelled folder.

    Class folders the model does not know are reported and left out of the metrics.
    """
    from clipminer.train_image import eval_image

    result = eval_image(model, data_dir, out, batch_size=batch_size, workers=workers, device=device)
    _print_metrics(f"{model} on {data_dir}", result.metrics)
    if result.unknown_labels:
        print_error(
            "not scored, unknown to the model: "
            + ", ".join(f"{k} ({v} images)" for k, v in result.unknown_labels.items()),
            label="warning:",
            style="yellow",
        )
    console.print(f"report: {result.out_dir}")


UcfRootOption = Annotated[
    Path | None, typer.Option("--ucf101", help="UCF-101 root: <Class>/v_<Class>_gXX_cYY.avi.")
]
SplitsOption = Annotated[
    Path | None,
    typer.Option(help="Folder with classInd.txt, trainlistNN.txt, testlistNN.txt (with --ucf101)."),
]
SplitOption = Annotated[int, typer.Option(min=1, max=3, help="UCF-101 split 1, 2 or 3.")]
VideosOption = Annotated[
    Path | None,
    typer.Option(
        "--videos", help="Instead of UCF-101: a folder with one sub-folder of videos per class."
    ),
]
ValDirOption = Annotated[
    Path | None, typer.Option(help="With --videos: validate on this folder instead of a split.")
]
ValFractionOption = Annotated[
    float,
    typer.Option(
        min=0.01, max=0.99, help="With --videos: share of each class held out (by file name)."
    ),
]
CacheOption = Annotated[
    Path | None, typer.Option(help="A cache made by prepare-videos (same frame rate and size).")
]


def _video_source(
    ucf101: Path | None,
    splits: Path | None,
    split: int,
    videos: Path | None,
    val_dir: Path | None,
    val_fraction: float,
) -> Any:
    from clipminer.train_video import VideoSource

    return VideoSource(
        ucf101=ucf101,
        splits=splits,
        split=split,
        videos=videos,
        val_dir=val_dir,
        val_fraction=val_fraction,
    )


@app.command("train-video")
def train_video_command(
    out: ModelOut,
    arch: Annotated[
        str,
        typer.Option(
            help="c3d, small3d, r3d_18, mc3_18, r2plus1d_18, r3d_50, slowfast_r18, lrcn or fstcn."
        ),
    ] = "r2plus1d_18",
    ucf101: UcfRootOption = None,
    splits: SplitsOption = None,
    split: SplitOption = 1,
    videos: VideosOption = None,
    val_dir: ValDirOption = None,
    val_fraction: ValFractionOption = 0.2,
    weights: Annotated[
        str,
        typer.Option(
            help="none, kinetics400 (torchvision weights for r3d_18, mc3_18, r2plus1d_18), "
            "or a PATH: torchvision state dict, C3D Sports-1M state dict, clipminer bundle."
        ),
    ] = "none",
    clip_len: Annotated[int, typer.Option(min=1, help="Frames per clip.")] = 16,
    frame_rate: Annotated[
        float, typer.Option(min=0.1, help="Frames per second clips are sampled at.")
    ] = 15.0,
    frame_size: Annotated[int, typer.Option(min=8, help="Square crop size in pixels.")] = 112,
    epochs: EpochsOption = 10,
    batch_size: Annotated[int, typer.Option(min=1, help="Clips per step.")] = 8,
    grad_accum: Annotated[
        int, typer.Option(min=1, help="Steps whose gradients are summed per update.")
    ] = 1,
    lr: LrOption = 1e-3,
    weight_decay: WeightDecayOption = 0.05,
    schedule: Annotated[
        ScheduleChoice, typer.Option(help="Learning-rate schedule.")
    ] = ScheduleChoice.cosine,
    label_smoothing: LabelSmoothingOption = 0.0,
    val_clips_per_video: Annotated[
        int, typer.Option(min=1, help="Clips averaged per validation video.")
    ] = 3,
    hflip: Annotated[
        bool,
        typer.Option(
            help="Random horizontal flips (off by default: they swap left/right motions)."
        ),
    ] = False,
    cache: CacheOption = None,
    workers: Workers = 2,
    seed: TrainSeedOption = 0,
    device: Device = "auto",
    resume: ResumeOption = False,
) -> None:
    """Train a 3D-CNN video classifier on UCF-101 (official splits) or a folder per class.

    Clips are decoded on the fly in DataLoader workers; the best epoch by video-level
    validation top-1 is kept in MODEL.pt, with a report in MODEL_report/.
    """
    from clipminer.data.videos import ClipSpec
    from clipminer.train import FitConfig
    from clipminer.train_video import VideoTrainConfig, train_video

    source = _video_source(ucf101, splits, split, videos, val_dir, val_fraction)
    config = VideoTrainConfig(
        arch=arch,
        weights=weights,
        clip=ClipSpec(clip_len=clip_len, frame_rate=frame_rate, size=frame_size),
        batch_size=batch_size,
        val_clips_per_video=val_clips_per_video,
        hflip=hflip,
        workers=workers,
        device=device,
        cache=cache,
        fit=FitConfig(
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            schedule=schedule.value,
            label_smoothing=label_smoothing,
            grad_accum_steps=grad_accum,
            seed=seed,
        ),
    )
    result = train_video(source, out, config=config, resume=resume, reporter=BarReporter())
    _print_metrics(
        f"validation (video level), best epoch {result.fit.best_epoch}", result.metrics, "videos"
    )
    problems = ""
    if result.unreadable or result.missing:
        problems = f", {result.unreadable} unreadable and {result.missing} missing videos skipped"
    console.print(
        f"{result.train_videos} train / {result.val_videos} validation videos{problems}; "
        f"model: {result.model_path}; report: {result.report_dir}"
    )


@app.command("eval-video")
def eval_video_command(
    model: Annotated[Path, typer.Argument(help="A video model bundle (MODEL.pt).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the metrics files.")],
    ucf101: UcfRootOption = None,
    splits: SplitsOption = None,
    split: SplitOption = 1,
    videos: VideosOption = None,
    val_dir: ValDirOption = None,
    val_fraction: ValFractionOption = 0.2,
    clips_per_video: Annotated[
        int, typer.Option(min=1, help="Windows per video, spread uniformly.")
    ] = 10,
    fuse_image_model: Annotated[
        Path | None,
        typer.Option(
            help="Also report this image model alone (frames averaged) and fused with "
            "the video model."
        ),
    ] = None,
    cache: CacheOption = None,
    workers: Workers = 2,
    device: Device = "auto",
) -> None:
    """Evaluate a video model on the UCF-101 test list or a folder's validation part.

    Writes metrics.json (clip_top1, video_top1/5/10, mean_class_accuracy, per class),
    confusion.csv/png, best_classes.csv, worst_classes.csv and confused_pairs.csv.
    """
    from clipminer.train_video import eval_video

    source = _video_source(ucf101, splits, split, videos, val_dir, val_fraction)
    results = eval_video(
        model,
        source,
        out,
        clips_per_video=clips_per_video,
        fuse_image_model=fuse_image_model,
        workers=workers,
        device=device,
        cache=cache,
    )
    table = Table("model", "clip top-1", "video top-1", "top-5", "top-10", "mean class acc.")
    for name, result in results.items():
        row = result.summary()
        table.add_row(
            name,
            *(
                cell(row[k])
                for k in (
                    "clip_top1",
                    "video_top1",
                    "video_top5",
                    "video_top10",
                    "mean_class_accuracy",
                )
            ),
        )
    console.print(table)
    console.print(f"report: {out}")


@app.command("prepare-videos")
def prepare_videos_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Cache folder (re-running resumes).")],
    ucf101: UcfRootOption = None,
    splits: SplitsOption = None,
    split: SplitOption = 1,
    videos: VideosOption = None,
    frame_rate: Annotated[
        float, typer.Option(min=0.1, help="Frame rate the model trains at.")
    ] = 15.0,
    frame_size: Annotated[int, typer.Option(min=8, help="Crop size the model trains at.")] = 112,
) -> None:
    """Re-encode every video once at the training frame rate and size (a cache for train-video).

    Pass the same --frame-rate and --frame-size to train-video with --cache.
    """
    from clipminer.data.videos import ClipSpec, prepare_videos

    source = _video_source(ucf101, splits, split, videos, None, 0.2)
    videos_set = source.load()
    spec = ClipSpec(frame_rate=frame_rate, size=frame_size)
    with progress_bar("videos") as update:
        written, kept, failed = prepare_videos(
            videos_set.train + videos_set.val, out, spec, progress=update
        )
    console.print(
        f"cache {out}: {written} written, {kept} already there, {len(failed)} failed, "
        f"{len(videos_set.unreadable)} unreadable skipped"
    )
    if failed:
        raise typer.Exit(code=1)
