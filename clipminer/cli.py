"""The ``clipminer`` command: a thin typer shell over the library.

Each command parses its options and calls one library function. Errors that users
can cause (:class:`~clipminer.errors.ClipminerError`) are printed as one line on
stderr with a non-zero exit; ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import os

# Decoding and torch in one process: with OpenMP threads spinning while PyAV decodes,
# a 720p minute took 77.8 s instead of 9.1 s on 2 cores. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib
import time
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
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
from typer.core import TyperGroup

from clipminer import __version__
from clipminer.errors import ClipminerError

_DEBUG_KEY = "clipminer.debug"
# Names are data: file names, actions and labels are never read as rich markup
# (``Song [official video].mp4``); styled words are built with :class:`Text`.
console = Console(soft_wrap=True, markup=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False)


def print_error(message: object, *, label: str = "error:", style: str = "red") -> None:
    """One line on stderr: a styled label, then ``message`` exactly as it is."""
    err_console.print(Text.assemble((label, style), " ", str(message)), highlight=False)


class _Group(TyperGroup):
    """Maps clipminer errors to one line on stderr and an exit code."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ClipminerError as exc:
            if ctx.meta.get(_DEBUG_KEY):
                raise
            print_error(exc)
            raise typer.Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print(Text("interrupted", style="red"))
            raise typer.Exit(code=130) from None


app = typer.Typer(
    cls=_Group,
    help="Mine labelled action clips out of long videos.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
synth_app = typer.Typer(
    cls=_Group,
    help="Generate deterministic synthetic data (images, clips, long videos).",
    no_args_is_help=True,
)
app.add_typer(synth_app, name="synth")


def _version(value: bool) -> None:
    if value:
        console.print(f"clipminer {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """clipminer: scrape, train, find clips, run nightly."""
    ctx.meta[_DEBUG_KEY] = debug
    import logging

    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
        force=True,
    )


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Any]:
    """A rich progress bar; yields a ``(done, total)`` callback for the library."""
    columns = (
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def parse_size(text: str, *, even: bool = False) -> tuple[int, int]:
    """Parse ``HxW`` (or a single number for a square) into (height, width).

    ``even`` demands even sides, as H.264 in yuv420p does.
    """
    try:
        parts = [int(p) for p in text.lower().replace("×", "x").split("x")]
    except ValueError:
        raise typer.BadParameter(f"expected HEIGHTxWIDTH such as 240x320, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 16:
        raise typer.BadParameter(f"expected HEIGHTxWIDTH, each at least 16, got {text!r}")
    if even and (parts[0] % 2 or parts[1] % 2):
        raise typer.BadParameter(f"video sides must be even (H.264 yuv420p), got {text!r}")
    return parts[0], parts[1]


SizeOption = typer.Option(metavar="HxW", help="Frame size as HEIGHTxWIDTH.")
OutOption = typer.Option("--out", "-o", help="Output folder (created if missing).")
SeedOption = typer.Option(help="Random seed; the same seed gives the same bytes.")


@app.command()
def probe(
    videos: Annotated[list[Path], typer.Argument(help="Video files to inspect.")],
    sample_fps: Annotated[
        float | None,
        typer.Option(min=0.001, help="Also decode the whole file, keeping this many frames/s."),
    ] = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per file instead of a table.")
    ] = False,
) -> None:
    """Print what clipminer reads from video files (size, rate, rotation, duration).

    A file that cannot be read gets a one-line error; the others are still shown,
    and the exit code is 1 if any failed.
    """
    import dataclasses
    import json

    from clipminer.decode import VideoReader
    from clipminer.decode import probe as probe_video

    rows: list[dict[str, Any]] = []
    failed = 0
    for path in videos:
        try:
            row = dataclasses.asdict(probe_video(path))
            row["path"] = str(path)
            if sample_fps:
                with VideoReader(path, sample_fps=sample_fps) as reader:
                    row["sampled_frames"] = sum(1 for _ in reader)
                row["problems"] = reader.stats.errors
            rows.append(row)
        except ClipminerError as exc:
            failed += 1
            print_error(exc)
    if json_lines:
        for row in rows:
            typer.echo(json.dumps(row))
    elif rows:
        table = Table("file", "size", "rot", "fps", "seconds", "frames", "codec", "audio")
        if sample_fps:
            table.add_column("sampled")
        for row in rows:
            cells = [
                Path(row["path"]).name,
                f"{row['width']}x{row['height']}",
                str(row["rotation_degrees"]),
                _cell(row["average_fps"]),
                _cell(row["duration_seconds"]),
                _cell(row["num_frames"]),
                f"{row['codec']}#{row['stream_index']}",
                "yes" if row["has_audio"] else "no",
            ]
            if sample_fps:
                cells.append(str(row["sampled_frames"]))
            table.add_row(*cells)
        console.print(table)
    if failed:
        raise typer.Exit(code=1)


def _cell(value: object) -> str:
    if isinstance(value, float) and value != value:  # NaN: not applicable
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return "?" if value is None else str(value)


@synth_app.command("images")
def synth_images(
    out: Annotated[Path, OutOption],
    per_class: Annotated[int, typer.Option(min=1, help="Images per class.")] = 40,
    size: Annotated[str, SizeOption] = "128x128",
    seed: Annotated[int, SeedOption] = 0,
) -> None:
    """An ImageFolder tree OUT/<label>/*.jpg of the toy action world (background included)."""
    from clipminer import synth

    with progress_bar("images") as update:
        written = synth.make_images(
            out, per_class=per_class, size=parse_size(size), seed=seed, progress=update
        )
    console.print(
        f"wrote {sum(map(len, written.values()))} images in {len(written)} classes to {out}"
    )


class Layout(str, Enum):
    """Folder layouts of generated clips."""

    folders = "folders"
    ucf101 = "ucf101"


@synth_app.command("clips")
def synth_clips(
    out: Annotated[Path, OutOption],
    per_class: Annotated[int, typer.Option(min=1, help="Clips per class.")] = 12,
    seconds: Annotated[float, typer.Option(min=0.1, help="Length of each clip.")] = 3.0,
    fps: Annotated[int, typer.Option(min=1, help="Frame rate.")] = 25,
    size: Annotated[str, SizeOption] = "120x160",
    layout: Annotated[
        Layout,
        typer.Option(
            help="folders: OUT/<label>/*.mp4; ucf101: OUT/videos/<Class>/v_*.avi plus "
            "OUT/splits/{classInd,trainlist01,testlist01}.txt.",
        ),
    ] = Layout.folders,
    seed: Annotated[int, SeedOption] = 0,
) -> None:
    """Short H.264 action clips, as a folder-per-class tree or a UCF-101 style tree."""
    from clipminer import synth

    with progress_bar("clips") as update:
        if layout is Layout.ucf101:
            tree = synth.make_ucf101(
                out,
                per_class=per_class,
                seconds=seconds,
                fps=fps,
                size=parse_size(size, even=True),
                seed=seed,
                progress=update,
            )
            message = f"wrote {tree.train} train and {tree.test} test clips under {tree.root}"
        else:
            written = synth.make_clips(
                out,
                per_class=per_class,
                seconds=seconds,
                fps=fps,
                size=parse_size(size, even=True),
                seed=seed,
                progress=update,
            )
            message = f"wrote {sum(map(len, written.values()))} clips to {out}"
    console.print(message)


@synth_app.command("long")
def synth_long(
    out: Annotated[Path, OutOption],
    seconds: Annotated[float, typer.Option(min=1.0, help="Length of the video.")] = 300.0,
    fps: Annotated[int, typer.Option(min=1, help="Nominal frame rate.")] = 30,
    size: Annotated[str, SizeOption] = "240x320",
    variable_frame_rate: Annotated[
        bool, typer.Option(help="Mix 1/fps and 2/fps frame intervals.")
    ] = False,
    name: Annotated[str, typer.Option(help="File name of the video inside OUT.")] = "long.mp4",
    seed: Annotated[int, SeedOption] = 0,
) -> None:
    """A long video with actions at known times; ground truth in <name>.truth.csv."""
    from clipminer import synth

    with progress_bar("frames") as update:
        video = synth.make_long_video(
            out / name,
            duration_seconds=seconds,
            fps=fps,
            size=parse_size(size, even=True),
            seed=seed,
            variable_frame_rate=variable_frame_rate,
            progress=update,
        )
    console.print(
        f"wrote {video.path} ({video.frames} frames, {len(video.segments)} actions); "
        f"ground truth in {video.truth_csv}"
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
ResumeOption = Annotated[
    bool, typer.Option(help="Continue an interrupted run from MODEL.pt.train-state.")
]
DeviceOption = typer.Option(
    help="Where the model runs: auto (CUDA when present), cpu, cuda, cuda:N."
)
WorkersOption = typer.Option(
    min=0, help="DataLoader worker processes (0: load in the main process)."
)


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
    out: Annotated[Path, typer.Option("--out", "-o", help="The model bundle to write (MODEL.pt).")],
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
    balanced: Annotated[
        bool, typer.Option(help="Sample classes equally often (for imbalanced data).")
    ] = False,
    workers: Annotated[int, WorkersOption] = 2,
    seed: TrainSeedOption = 0,
    device: Annotated[str, DeviceOption] = "auto",
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
    workers: Annotated[int, WorkersOption] = 2,
    device: Annotated[str, DeviceOption] = "auto",
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
    out: Annotated[Path, typer.Option("--out", "-o", help="The model bundle to write (MODEL.pt).")],
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
    workers: Annotated[int, WorkersOption] = 2,
    seed: TrainSeedOption = 0,
    device: Annotated[str, DeviceOption] = "auto",
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
    workers: Annotated[int, WorkersOption] = 2,
    device: Annotated[str, DeviceOption] = "auto",
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
                _cell(row[k])
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


class SegmentOn(str, Enum):
    """What the segmenter thresholds."""

    klass = "class"
    action = "action"


class CutChoice(str, Enum):
    """How clips are written."""

    reencode = "reencode"
    copy = "copy"
    none = "none"


@app.command("find-clips")
def find_clips_command(
    videos: Annotated[list[Path], typer.Argument(help="Long videos to mine.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output folder: OUT/videos/<name>/ per video (the file stem, with a short "
            "hash when it is unsafe or taken), OUT/kinetics.csv.",
        ),
    ],
    image_model: Annotated[
        Path | None,
        typer.Option(
            help="Image model bundle that scores sampled frames (required unless --rescore)."
        ),
    ] = None,
    video_model: Annotated[
        list[Path] | None,
        typer.Option(
            help="Video model bundle(s) that re-label each candidate; repeat for several (averaged)."
        ),
    ] = None,
    sample_fps: Annotated[
        float,
        typer.Option(min=0.01, help="Frames per second scored by the image model (by timestamp)."),
    ] = 2.0,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Smoothed class score that opens a segment.")
    ] = 0.5,
    threshold_low: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Score below which an open segment closes (default 0.7 x threshold).",
        ),
    ] = None,
    smooth_seconds: Annotated[
        float, typer.Option(min=0.0, help="Moving-average window over the score curves.")
    ] = 1.0,
    min_seconds: Annotated[
        float, typer.Option(min=0.0, help="Shorter segments are dropped.")
    ] = 2.0,
    max_seconds: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Longer segments are split into consecutive pieces of this length (Kinetics: 10 s); a last piece shorter than --min-seconds is dropped.",
        ),
    ] = 10.0,
    merge_gap_seconds: Annotated[
        float, typer.Option(min=0.0, help="Segments of one class this close are merged.")
    ] = 1.0,
    pad_seconds: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Added before and after each segment (never overlapping the previous one of its class).",
        ),
    ] = 0.0,
    classes: Annotated[
        list[str] | None, typer.Option(help="Mine only these labels (repeat the option).")
    ] = None,
    background_labels: Annotated[
        list[str] | None, typer.Option(help="Labels never emitted (repeat; default: background).")
    ] = None,
    segment_on: Annotated[
        SegmentOn,
        typer.Option(
            help="class: a score curve per label; action: one curve, the summed action scores (1 - background), each segment labelled by its most likely action. Use action when single frames cannot tell some classes apart and a video model re-labels."
        ),
    ] = SegmentOn.klass,
    max_clips_per_video: Annotated[
        int | None, typer.Option(min=1, help="Keep only the best-scoring segments of each video.")
    ] = None,
    cut: Annotated[
        CutChoice,
        typer.Option(
            help="reencode: frame-exact, source frame rate and audio kept; copy: stream copy from the keyframe at or before the start (fast, actual start recorded); none: manifests only."
        ),
    ] = CutChoice.reencode,
    rescore: Annotated[
        Path | None,
        typer.Option(
            help="Re-run segmentation, re-labelling and cutting from this scores.parquet of an earlier run (one VIDEO), without scoring again."
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Frames per image-model batch (default on the CPU: 4 at 224 px, more for smaller inputs; 32 on CUDA).",
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            min=16, help="Run the image model at this square size instead of its trained size."
        ),
    ] = None,
    device: Annotated[str, DeviceOption] = "auto",
    decode_device: Annotated[
        str,
        typer.Option(
            help="cpu, or cuda/cuda:N for NVDEC (falls back to the CPU when unavailable)."
        ),
    ] = "cpu",
) -> None:
    """Mine candidate action clips from long videos in one streaming pass.

    Each video is decoded once: sampled frames are scored by the image model, score
    curves become segments (smoothing, hysteresis, merge, split), each segment is
    re-labelled by the video model(s) from a ring buffer of recent frames, and clips
    are cut. Writes OUT/videos/<name>/segments.csv, scores.parquet, timeline.png, run.json,
    clips/<label>/*.mp4, and OUT/kinetics.csv. A video that fails gets a one-line
    error and the others go on; the exit code is 1 if any failed.
    """
    from clipminer.findclips import ClipMiner, FindClipsConfig, VideoResult, find_clips
    from clipminer.segments import SegmentConfig

    if image_model is None and rescore is None:
        raise typer.BadParameter("--image-model is required (unless --rescore)")
    try:
        segment = SegmentConfig(
            threshold=threshold,
            threshold_low=threshold_low,
            smooth_seconds=smooth_seconds,
            min_seconds=min_seconds,
            max_seconds=max_seconds,
            merge_gap_seconds=merge_gap_seconds,
            pad_seconds=pad_seconds,
            classes=tuple(classes) if classes else None,
            background_labels=tuple(background_labels or ["background"]),
            segment_on=segment_on.value,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    config = FindClipsConfig(
        sample_fps=sample_fps,
        segment=segment,
        max_clips_per_video=max_clips_per_video,
        cut=cut.value,
        batch_size=batch_size,
        device=device,
        decode_device=decode_device,
        image_size=image_size,
    )
    miner = ClipMiner(image_model, video_model or [], config=config)
    failed = 0
    with Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        TextColumn("{task.fields[where]}", markup=False),
        TextColumn("{task.fields[speed]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as bar:

        def progress_for(video: Path) -> Any:
            from clipminer.decode import probe

            task = bar.add_task(video.name, total=None, speed="", where="")
            started = time.perf_counter()
            try:
                source_fps = probe(video).average_fps or 0.0
            except ClipminerError:
                source_fps = 0.0  # find-clips reports the error itself

            def update(done: float, total: float) -> None:
                elapsed = max(time.perf_counter() - started, 1e-6)
                frames = f"{done * source_fps / elapsed:.0f} frames/s, " if source_fps else ""
                bar.update(
                    task,
                    completed=done,
                    total=total or None,
                    speed=f"{frames}{done / elapsed:.1f}x realtime",
                    where=f"{done:.0f}/{total:.0f} s",
                )

            return update

        def report(video: Path, outcome: Any) -> None:
            nonlocal failed
            if isinstance(outcome, VideoResult):
                labels = sorted({c.final_label for c in outcome.candidates})
                bar.console.print(
                    f"{video}: {len(outcome.candidates)} clips ({', '.join(labels) or 'none'}) "
                    f"in {outcome.seconds:.1f} s -> {outcome.out_dir}"
                )
            else:
                failed += 1
                print_error(outcome)

        find_clips(miner, videos, out, rescore=rescore, progress_for=progress_for, on_result=report)
    console.print(f"manifest: {out / 'kinetics.csv'}")
    if failed:
        raise typer.Exit(code=1)


class EngineChoice(str, Enum):
    """Image search engines."""

    bing = "bing"
    google = "google"
    duckduckgo = "duckduckgo"
    local = "local"


class SaveAsChoice(str, Enum):
    """How scraped images are stored."""

    original = "original"
    jpeg = "jpeg"


@app.command()
def scrape(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output folder: OUT/<action>/<sha256-prefix>.<ext> and OUT/manifest.csv.",
        ),
    ],
    actions: Annotated[
        Path | None,
        typer.Option(
            help="File with one action per line (blank lines and # comments ignored), e.g. the Kinetics-400 names."
        ),
    ] = None,
    action: Annotated[
        list[str] | None, typer.Option(help="An action to search for; repeat for several.")
    ] = None,
    per_action: Annotated[
        int,
        typer.Option(min=1, help="Images to keep per action (a re-run continues to this count)."),
    ] = 100,
    engine: Annotated[
        EngineChoice,
        typer.Option(
            help="bing, google, duckduckgo, or local: an offline engine clipminer starts itself, serving generated images of the toy actions."
        ),
    ] = EngineChoice.bing,
    engine_url: Annotated[
        str | None,
        typer.Option(
            help="Replace the engine's scheme and host (keeping its paths and parameters), e.g. a local mirror."
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Headless browsers in parallel, one action each at a time.")
    ] = 1,
    download_workers: Annotated[int, typer.Option(min=1, help="Parallel image downloads.")] = 4,
    query_template: Annotated[
        str, typer.Option(help="Search query; {action} is replaced by the action.")
    ] = "{action}",
    min_size: Annotated[
        int, typer.Option(min=0, help="Smallest accepted shorter side in pixels.")
    ] = 0,
    max_bytes: Annotated[
        int, typer.Option(min=1, help="Largest accepted download in bytes.")
    ] = 20_000_000,
    max_pixels: Annotated[
        int,
        typer.Option(min=1, help="Largest accepted image in pixels (decompression-bomb guard)."),
    ] = 40_000_000,
    phash_distance: Annotated[
        int,
        typer.Option(
            min=0,
            help="Perceptual-hash distance at or below which an image is a near-duplicate of one already kept (any action).",
        ),
    ] = 4,
    save_as: Annotated[
        SaveAsChoice,
        typer.Option(
            help="original: keep JPEG, PNG, GIF and WebP bytes as downloaded (other formats become JPEG); jpeg: re-encode everything as JPEG."
        ),
    ] = SaveAsChoice.original,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Read timeout of a download, seconds.")
    ] = 15.0,
    polite_seconds: Annotated[
        float, typer.Option(min=0.0, help="Least time between two requests to one host.")
    ] = 0.5,
    max_pages: Annotated[
        int, typer.Option(min=1, help="Result pages (or scrolls) read per action at most.")
    ] = 20,
    retry_failed: Annotated[
        bool,
        typer.Option(help="Fetch again URLs that failed with an HTTP error or a timeout before."),
    ] = False,
) -> None:
    """Build a Kinetics-style image dataset by searching each action in headless Chromium.

    The full-size images are downloaded outside the browser, checked and deduplicated.

    Re-running resumes: URLs already in the manifest are not fetched again. Respect the
    search engines' terms of use; --engine local works offline.
    """
    from scrapers.download import DownloadConfig
    from scrapers.scrape import ScrapeConfig, read_actions
    from scrapers.scrape import scrape as run_scrape

    names = (read_actions(actions) if actions else []) + list(action or [])
    config = ScrapeConfig(
        engine=engine.value,
        engine_url=engine_url,
        per_action=per_action,
        workers=workers,
        download_workers=download_workers,
        query_template=query_template,
        max_pages=max_pages,
        retry_failed=retry_failed,
        download=DownloadConfig(
            read_timeout_seconds=timeout,
            max_bytes=max_bytes,
            max_pixels=max_pixels,
            min_size=min_size,
            polite_seconds=polite_seconds,
            save_as=save_as.value,
            phash_distance=phash_distance,
        ),
    )
    with Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        tasks: dict[str, Any] = {}
        saved_by_action: dict[str, int] = {}
        overall = bar.add_task("all actions", total=per_action * len(names))

        def update(name: str, saved: int, target: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name[:30], total=target)
            bar.update(tasks[name], completed=min(saved, target))
            saved_by_action[name] = min(saved, target)
            bar.update(overall, completed=sum(saved_by_action.values()))

        summaries = run_scrape(names, out, config=config, progress=update)
    table = Table("action", "found", "saved", "duplicates", "failures", "note", title="scrape")
    for row in summaries:
        table.add_row(
            row.action,
            str(row.found),
            str(row.saved),
            str(row.duplicates),
            str(row.failures),
            row.note,
        )
    console.print(table)
    console.print(f"manifest: {out / 'manifest.csv'}")


class BatchEngineChoice(str, Enum):
    """Where batch runs."""

    local = "local"
    ray = "ray"


@app.command()
def batch(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Folder to mine; searched recursively (files are probed, not judged by extension alone)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output folder: per-video folders, state.sqlite, summary.csv, kinetics.csv, report.html.",
        ),
    ],
    image_model: Annotated[
        Path, typer.Option(help="Image model bundle that scores sampled frames.")
    ],
    video_model: Annotated[
        list[Path] | None,
        typer.Option(
            help="Video model bundle(s) that re-label each candidate; repeat for several."
        ),
    ] = None,
    engine: Annotated[
        BatchEngineChoice,
        typer.Option(
            help="local: this machine; ray: a Ray cluster (pip install 'clipminer[ray]')."
        ),
    ] = BatchEngineChoice.local,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local Ray).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Videos mined at once (processes, or Ray actors); each loads the models once.",
        ),
    ] = 1,
    retry_failed: Annotated[
        bool, typer.Option(help="Try videos that failed before again.")
    ] = False,
    force: Annotated[
        bool, typer.Option(help="Redo videos done with other options or models.")
    ] = False,
    sample_fps: Annotated[
        float, typer.Option(min=0.01, help="Frames per second scored by the image model.")
    ] = 2.0,
    segment_on: Annotated[
        SegmentOn, typer.Option(help="class or action (see find-clips --help).")
    ] = SegmentOn.klass,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Smoothed score that opens a segment.")
    ] = 0.5,
    threshold_low: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="Score below which a segment closes (default 0.7 x threshold)."
        ),
    ] = None,
    min_seconds: Annotated[
        float, typer.Option(min=0.0, help="Shorter segments are dropped.")
    ] = 2.0,
    max_seconds: Annotated[
        float, typer.Option(min=0.1, help="Longer segments are split into pieces of this length.")
    ] = 10.0,
    max_clips_per_video: Annotated[
        int | None, typer.Option(min=1, help="Keep only the best-scoring segments of each video.")
    ] = None,
    cut: Annotated[
        CutChoice, typer.Option(help="reencode, copy or none (see find-clips --help).")
    ] = CutChoice.reencode,
    device: Annotated[str, DeviceOption] = "auto",
) -> None:
    """Run find-clips over a folder, resumably: what is done is skipped, one bad video
    never stops the run, and a second run on the same OUT exits at once (code 3).

    State in OUT/state.sqlite; reports in OUT/summary.csv, OUT/kinetics.csv and
    OUT/report.html (open it from disk). Exit code 1 if any video failed.
    """
    from clipminer.batch import BatchConfig, Outcome, run_batch
    from clipminer.findclips import FindClipsConfig
    from clipminer.segments import SegmentConfig

    try:
        segment = SegmentConfig(
            threshold=threshold,
            threshold_low=threshold_low,
            min_seconds=min_seconds,
            max_seconds=max_seconds,
            segment_on=segment_on.value,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    config = BatchConfig(
        image_model=str(image_model),
        video_models=tuple(str(p) for p in video_model or []),
        findclips=FindClipsConfig(
            sample_fps=sample_fps,
            segment=segment,
            cut=cut.value,
            max_clips_per_video=max_clips_per_video,
            device=device,
        ),
        engine=engine.value,
        ray_address=ray_address,
        workers=workers,
        retry_failed=retry_failed,
        force=force,
    )

    def report(outcome: Outcome) -> None:
        if outcome.ok:
            console.print(
                f"done: {outcome.path} ({outcome.segments} clips, {outcome.seconds:.1f} s)"
            )
        else:
            print_error(outcome.error, label="failed:")

    summary = run_batch(folder, out, config=config, on_outcome=report)
    console.print(
        f"{summary.done} done, {summary.failed} failed, {summary.already_done} already done, "
        f"{summary.skipped} skipped; report: {out / 'report.html'}"
    )
    if summary.stale:
        print_error(
            f"{summary.stale} done videos were mined with other options or models and were "
            "left as they are; --force mines them again",
            label="note:",
            style="yellow",
        )
    if summary.failed:
        raise typer.Exit(code=1)


@app.command()
def demo(
    out: Annotated[Path, OutOption] = Path("demo-out"),
    seed: Annotated[int, SeedOption] = 0,
    small: Annotated[
        bool, typer.Option(help="A quick, tiny run (what the test suite does).")
    ] = False,
) -> None:
    """The whole pipeline on generated data, offline.

    Scrapes the local engine, trains the image and video models, mines two long videos
    with the nightly batch, and scores the clips against the ground truth."""
    from clipminer.demo import run_demo

    with progress_bar("demo") as update:
        summary = run_demo(out, seed=seed, small=small, progress=update)
    clips = summary.pop("clips", "")
    table = Table("step", "result", title="clipminer demo")
    for step, result in summary.items():
        table.add_row(step, result)
    console.print(table)
    if clips:
        console.print("clips:\n" + clips)
