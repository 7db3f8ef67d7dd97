"""``train-video``, ``eval-video`` and ``prepare-videos``: 3D-CNN video classifiers."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from clipminer import __version__
from clipminer.config import VideoSource, VideoTrainConfig
from clipminer.data.background import find_background
from clipminer.data.videos import (
    ClipAugment,
    ClipDataset,
    ClipSpec,
    VideoCache,
    VideoItem,
    VideoSet,
    check_readable,
    read_ucf101,
    scan_video_folder,
    split_by_name,
)
from clipminer.devices import resolve_device
from clipminer.errors import UsageError
from clipminer.fsutil import atomic_path, safe_component
from clipminer.labels import label_key
from clipminer.metrics import (
    ClassificationMetrics,
    classification_metrics,
    most_confused_pairs,
    topk_accuracy,
)
from clipminer.models import video as video_models
from clipminer.models.bundle import Bundle, InputSpec, load_bundle, save_bundle
from clipminer.report import write_classification_report, write_json
from clipminer.train import (
    EpochResult,
    FitResult,
    Progress,
    Reporter,
    fit,
    loader_kwargs,
    plain_path,
    predict_clips,
    report_dir_for,
    require_tensorboard,
    seed_everything,
    state_path_for,
    write_curves,
)

log = logging.getLogger(__name__)


def load_videos(source: VideoSource, *, labels: tuple[str, ...] | None = None) -> VideoSet:
    """Read the lists, probe every video, drop and record unreadable ones."""
    if source.ucf101 is not None:
        assert source.splits is not None
        videos = read_ucf101(source.ucf101, source.splits, source.split)
    else:
        assert source.videos is not None
        found, items, unknown = scan_video_folder(source.videos, labels=labels)
        if unknown and labels is not None:
            log.warning("%s: classes the model does not know, not used: %s", source.videos, unknown)
        if source.val_dir is not None:
            _, val, _ = scan_video_folder(source.val_dir, labels=found)
            videos = VideoSet(labels=found, train=items, val=val)
        elif source.val_fraction == 0:
            videos = VideoSet(labels=found, train=items, val=[])
        else:
            train, val = split_by_name(items, source.val_fraction)
            videos = VideoSet(labels=found, train=train, val=val)
    if source.background:
        videos = add_background_videos(videos, source)
    videos.train = check_readable(videos.train, videos.unreadable)
    videos.val = check_readable(videos.val, videos.unreadable)
    return videos


def add_background_videos(videos: VideoSet, source: VideoSource) -> VideoSet:
    """``videos`` with the videos of ``source.background`` in the background class.

    Whole videos are held out for validation as for any class; the training ones are
    repeated (each repeat gives its own random clips) until the class has twice as many
    items as the mean action.
    """
    files = find_background(source.background)
    if not files.videos:
        raise UsageError("--background: train-video takes videos; the sources hold only images")
    if files.images:
        log.warning(
            "--background: %d images not used (train-video takes videos)", len(files.images)
        )
    name = source.background_label
    labels = tuple(sorted({*videos.labels, name}))
    remap = [labels.index(label) for label in videos.labels]

    def moved(items: list[VideoItem]) -> list[VideoItem]:
        return [dataclasses.replace(item, label=remap[item.label]) for item in items]

    target = labels.index(name)
    extra = [VideoItem(path, target, _background_name(path)) for path in files.videos]
    if source.validates and source.val_fraction > 0 and len(extra) >= 2:
        extra_train, extra_val = split_by_name(extra, source.val_fraction)
    else:
        extra_train, extra_val = extra, []
    train = moved(videos.train)
    actions = [i for i in train if labels[i.label] != name]
    per_action = len(actions) / max(len({i.label for i in actions}), 1)
    repeats = max(1, round(2 * per_action / max(len(extra_train), 1)))
    return VideoSet(
        labels=labels,
        train=train + extra_train * repeats,
        val=moved(videos.val) + extra_val,
        unreadable=videos.unreadable,
        missing=videos.missing,
    )


def _background_name(path: Path) -> str:
    """A --background video's relative name (its cache entry): one safe component."""
    digest = hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:8]
    return f"background/{digest}-{safe_component(path.name)}"


@dataclass(frozen=True)
class VideoTrainResult:
    """Where the outputs went and how well the best epoch did (video level)."""

    model_path: Path
    report_dir: Path
    metrics: ClassificationMetrics | None
    """Validation metrics of the kept epoch; None when trained without validation."""
    fit: FitResult
    train_videos: int
    val_videos: int
    unreadable: int
    missing: int


def _check_set(videos: VideoSet, *, validates: bool) -> None:
    if not videos.train:
        raise UsageError("no readable training videos")
    if validates and not videos.val:
        raise UsageError("no readable validation videos")
    present = {item.label for item in videos.train}
    if len(present) < 2:
        raise UsageError(f"training videos cover only {len(present)} class; need at least 2")


def train_video(
    source: VideoSource,
    out: str | os.PathLike[str],
    *,
    config: VideoTrainConfig,
    resume: bool = False,
    reporter: Reporter | None = None,
) -> VideoTrainResult:
    """Train a video classifier; write its bundle, report (``metrics.json``, the
    confusion matrix, ``curves.png``: loss and top-1 per epoch) and training state;
    TensorBoard scalars too with ``config.fit.tensorboard``.

    The best epoch by video-level validation top-1 (``val_clips_per_video`` clips
    averaged per video; ties go to the lower validation loss) is kept in ``out``;
    without validation (``--val-fraction 0``), the last epoch.
    """
    out = Path(out)
    device = resolve_device(config.device)
    video_models.check_weights(config.arch, config.weights)
    if config.fit.tensorboard is not None:
        require_tensorboard()
    videos = load_videos(source)
    _check_set(videos, validates=source.validates)
    labels = videos.labels
    seed_everything(config.fit.seed)  # the head and random inits must not depend on history
    model, spec = _starting_model(config, labels)
    cache = VideoCache.open(config.cache, spec) if config.cache else None
    train_loader, val_loader = _loaders(videos, spec, config, cache, device)
    log.info(
        "%d classes, %d train / %d validation videos (%d unreadable, %d missing); %s",
        len(labels),
        len(videos.train),
        len(videos.val),
        len(videos.unreadable),
        len(videos.missing),
        config.arch,
    )
    best: dict[str, ClassificationMetrics] = {}
    save = _bundle_writer(out, config, source, labels, spec, best)
    result = fit(
        model,
        train_loader,
        val_loader,
        labels=labels,
        config=config.fit,
        device=device,
        on_best=save,
        on_end=None if val_loader else lambda net, epoch: save(net, epoch, None),
        state_path=state_path_for(out),
        resume=resume,
        reporter=reporter,
        identity={"arch": config.arch, "labels": list(labels), "clip": asdict(spec)},
        input_ndim=5,
    )
    metrics = best.get("metrics")
    if metrics is None and videos.val:  # resumed after the last epoch
        evaluation = evaluate_video_bundle(
            load_bundle(out, kind="video"),
            videos,
            device=device,
            clips_per_video=config.val_clips_per_video,
            workers=config.workers,
            cache=cache,
        )
        metrics = evaluation.video
    report_dir = _write_report(out, metrics, result, videos)
    return VideoTrainResult(
        model_path=out,
        report_dir=report_dir,
        metrics=metrics,
        fit=result,
        train_videos=len(videos.train),
        val_videos=len(videos.val),
        unreadable=len(videos.unreadable),
        missing=len(videos.missing),
    )


def _loaders(
    videos: VideoSet,
    spec: ClipSpec,
    config: VideoTrainConfig,
    cache: VideoCache | None,
    device: torch.device,
) -> tuple[DataLoader[Any], DataLoader[Any] | None]:
    """The training loader (augmented, shuffled by the seed) and the validation loader
    (``val_clips_per_video`` clips per video; None without validation videos)."""
    augment = ClipAugment(
        clips_per_video=config.train_clips_per_video,
        crop_scale=config.crop_scale,
        hflip=config.hflip,
        color_jitter=config.color_jitter,
    )
    train_set = ClipDataset(videos.train, spec, augment=augment, cache=cache, seed=config.fit.seed)
    common = loader_kwargs(config.workers, device)
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(train_set) > config.batch_size,
        generator=torch.Generator().manual_seed(config.fit.seed),
        **common,
    )
    val_loader = None
    if videos.val:
        val_set = ClipDataset(
            videos.val, spec, clips_per_video=config.val_clips_per_video, cache=cache
        )
        val_loader = DataLoader(val_set, batch_size=max(1, config.batch_size // 2), **common)
    return train_loader, val_loader


def _bundle_writer(
    out: Path,
    config: VideoTrainConfig,
    source: VideoSource,
    labels: tuple[str, ...],
    spec: ClipSpec,
    best: dict[str, ClassificationMetrics],
) -> Callable[[nn.Module, EpochResult, ClassificationMetrics | None], None]:
    """What saves the bundle of an epoch (the best one, or the last without validation);
    it keeps the epoch's metrics in ``best``."""
    record = _config_dict(config, source)

    def save(net: nn.Module, epoch: EpochResult, metrics: ClassificationMetrics | None) -> None:
        if metrics is not None:
            best["metrics"] = metrics
        scores = {} if metrics is None else metrics.to_dict()
        save_bundle(
            Bundle(
                kind="video",
                arch=config.arch,
                labels=labels,
                input=InputSpec(
                    size=(spec.size, spec.size),
                    mean=spec.mean,
                    std=spec.std,
                    clip_len=spec.clip_len,
                    frame_rate=spec.frame_rate,
                    crop_fraction=spec.crop_fraction,
                    channels=spec.channels,
                    scale=spec.scale,
                ),
                state_dict={k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
                metrics=scores | {"epoch": epoch.epoch, "level": "video" if scores else "none"},
                config=record,
            ),
            out,
        )

    return save


def _write_report(
    out: Path, metrics: ClassificationMetrics | None, result: FitResult, videos: VideoSet
) -> Path:
    """``metrics.json`` (and the confusion matrix when validated) and ``curves.png``."""
    report_dir = report_dir_for(out)
    extra = {
        "level": "video" if metrics else "none",
        "model": str(out),
        "best_epoch": result.best_epoch,
        "history": [asdict(h) for h in result.history],
        "unreadable_videos": [f"{p}: {why}" for p, why in videos.unreadable],
        "missing_videos": [str(p) for p in videos.missing],
        "clipminer_version": __version__,
    }
    if metrics is None:
        write_json(report_dir / "metrics.json", extra)
    else:
        write_classification_report(report_dir, metrics, extra=extra)
    write_curves(report_dir, result.history)
    return report_dir


def _starting_model(
    config: VideoTrainConfig, labels: tuple[str, ...]
) -> tuple[nn.Module, ClipSpec]:
    """The network to train and the clip settings, whose channel order, value scale,
    mean and std are those the starting weights expect: the image model's
    (``--init-from``), ImageNet's (``imagenet-inflated``), Kinetics', Caffe-style C3D
    Sports-1M input, or a bundle's own (:func:`~clipminer.models.video.build_start`)."""
    spec = config.clip
    if config.init_from is not None:
        image = load_bundle(config.init_from, kind="image")
        model, matched = video_models.from_image_bundle(config.arch, image, labels)
        log.info(
            "%s inflated from %s; classifier rows carried over for %d of %d classes",
            config.arch,
            config.init_from,
            len(matched),
            len(labels),
        )
        stats = image.input
        spec = dataclasses.replace(
            spec,
            mean=stats.mean,
            std=stats.std,
            crop_fraction=stats.crop_fraction,
            channels=stats.channels,
            scale=stats.scale,
        )
        return model, spec
    start = video_models.build_start(config.arch, num_classes=len(labels), weights=config.weights)
    if start.pixels is not None:
        spec = dataclasses.replace(spec, **dataclasses.asdict(start.pixels))
        log.info("input as the starting weights expect: %s", start.pixels)
    return start.model, spec


def _config_dict(config: VideoTrainConfig, source: VideoSource) -> dict[str, Any]:
    data = asdict(config)
    data["cache"] = None if config.cache is None else str(config.cache)
    data["init_from"] = None if config.init_from is None else str(config.init_from)
    data["fit"]["tensorboard"] = plain_path(config.fit.tensorboard)
    data["source"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(source).items()}
    return data


# -- evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoEvaluation:
    """Clip-level and video-level results of one model (or a fusion)."""

    clip_top1: float
    video: ClassificationMetrics
    probs: np.ndarray
    """float N×C video-level probabilities."""
    targets: np.ndarray

    def summary(self) -> dict[str, Any]:
        m = self.video
        return {
            "clip_top1": self.clip_top1,
            "video_top1": m.top1,
            "video_top5": m.top5,
            "video_top10": topk_accuracy(self.probs, self.targets, 10),
            "mean_class_accuracy": m.mean_class_accuracy,
            "videos": m.samples,
        }


def evaluate_video_bundle(
    bundle: Bundle,
    videos: VideoSet,
    *,
    device: torch.device,
    clips_per_video: int,
    workers: int,
    cache: VideoCache | None = None,
    batch_size: int = 4,
    progress: Progress | None = None,
) -> VideoEvaluation:
    """Score the validation videos of ``videos`` with a video bundle.

    Args:
        progress: called with (videos scored, videos in all) after each batch.
    """
    spec = bundle.input.clip_spec()
    model = video_models.load_video_model(bundle).to(device)
    dataset = ClipDataset(videos.val, spec, clips_per_video=clips_per_video, cache=cache)
    loader = DataLoader(dataset, batch_size=batch_size, **loader_kwargs(workers, device))
    clip_probs, targets = predict_clips(model, loader, device, input_ndim=5, progress=progress)
    clip_correct = clip_probs.argmax(axis=2) == targets[:, None]
    probs = clip_probs.mean(axis=1)
    return VideoEvaluation(
        clip_top1=float(clip_correct.mean()),
        video=classification_metrics(probs, targets, bundle.labels),
        probs=probs,
        targets=targets,
    )


def image_model_video_probs(
    image_model: Bundle,
    videos: VideoSet,
    labels: tuple[str, ...],
    *,
    device: str,
    sample_fps: float = 2.0,
) -> np.ndarray:
    """The single-frame model's probabilities averaged over each video's frames.

    Image labels are matched to the video labels by name; video classes the image
    model does not know get probability 0.
    """
    from clipminer.decode import iter_frames
    from clipminer.models.image import ImageScorer
    from clipminer.transforms import eval_resize_shape

    scorer = ImageScorer(image_model, device=device)
    image_index = {label_key(label): k for k, label in enumerate(scorer.labels)}
    pairs = [
        (image_index[label_key(label)], k)
        for k, label in enumerate(labels)
        if label_key(label) in image_index
    ]
    if not pairs:
        raise UsageError(
            f"the image model's labels {list(scorer.labels)[:5]} share none with the video labels"
        )
    columns = [image_col for image_col, _ in pairs]
    targets = [video_col for _, video_col in pairs]
    short = min(eval_resize_shape((1000, 1000), scorer.size, scorer.bundle.input.crop_fraction))
    out = np.zeros((len(videos.val), len(labels)), np.float32)
    for row, item in enumerate(videos.val):
        frames = np.stack(
            [f.pixels for f in iter_frames(item.path, sample_fps=sample_fps, short_side=short)]
        )
        mean = scorer(frames).mean(axis=0)
        out[row, targets] = mean[columns]
        total = out[row].sum()
        if total > 0:
            out[row] /= total
    return out


def write_class_rankings(out_dir: Path, metrics: ClassificationMetrics) -> None:
    """``best_classes.csv``, ``worst_classes.csv`` (10 each) and ``confused_pairs.csv``."""
    ranked = sorted(metrics.per_class.items(), key=lambda kv: (-kv[1], kv[0]))
    for name, rows in (("best_classes.csv", ranked[:10]), ("worst_classes.csv", ranked[::-1][:10])):
        with atomic_path(out_dir / name) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["label", "accuracy"])
            writer.writerows((label, f"{acc:.4f}") for label, acc in rows)
    with atomic_path(out_dir / "confused_pairs.csv") as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true", "predicted", "count"])
        writer.writerows(most_confused_pairs(metrics.confusion, metrics.labels, 10))


def eval_video(
    model_path: str | os.PathLike[str],
    source: VideoSource,
    out_dir: str | os.PathLike[str],
    *,
    clips_per_video: int = 10,
    fuse_image_model: str | os.PathLike[str] | None = None,
    workers: int = 2,
    device: str = "auto",
    cache: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> dict[str, VideoEvaluation]:
    """Evaluate a video bundle on the test split (UCF-101), the validation part of a
    folder, or the whole folder (``val_fraction=0``).

    Writes ``metrics.json`` (clip_top1, video_top1/5/10, mean_class_accuracy, per
    class), ``confusion.csv``/``.png``, ``best_classes.csv``, ``worst_classes.csv``
    and ``confused_pairs.csv``. With ``fuse_image_model``, ``metrics.json`` also has
    the single-frame model alone and the average of both models' probabilities.
    ``progress`` gets (videos scored, videos in all) as the video model goes.
    """
    bundle = load_bundle(model_path, kind="video")
    torch_device = resolve_device(device)
    videos = load_videos(source, labels=bundle.labels if source.videos is not None else None)
    if not source.validates:  # --videos DIR --val-fraction 0: a test folder, all of it
        videos.val, videos.train = videos.train, []
    if videos.labels != bundle.labels:
        raise UsageError(
            f"{model_path}: labels differ from the dataset's ({len(bundle.labels)} vs "
            f"{len(videos.labels)} classes)"
        )
    if not videos.val:
        raise UsageError("no readable evaluation videos")
    spec = bundle.input.clip_spec()
    video_cache = VideoCache.open(cache, spec) if cache else None
    results = {
        "video_model": evaluate_video_bundle(
            bundle,
            videos,
            device=torch_device,
            clips_per_video=clips_per_video,
            workers=workers,
            cache=video_cache,
            progress=progress,
        )
    }
    main = results["video_model"]
    if fuse_image_model is not None:
        image_bundle = load_bundle(fuse_image_model, kind="image")
        image_probs = image_model_video_probs(image_bundle, videos, bundle.labels, device=device)
        for name, probs in (
            ("image_model", image_probs),
            ("fused", (image_probs + main.probs) / 2),
        ):
            results[name] = VideoEvaluation(
                clip_top1=float("nan"),
                video=classification_metrics(probs, main.targets, bundle.labels),
                probs=probs,
                targets=main.targets,
            )
    out = Path(out_dir)
    write_classification_report(
        out,
        main.video,
        extra={
            **main.summary(),
            "model": str(model_path),
            "clips_per_video": clips_per_video,
            "by_model": {
                name: r.summary() | {"per_class_accuracy": r.video.per_class}
                for name, r in results.items()
            },
            "unreadable_videos": [f"{p}: {why}" for p, why in videos.unreadable],
            "missing_videos": [str(p) for p in videos.missing],
            "clipminer_version": __version__,
        },
    )
    write_class_rankings(out, main.video)
    return results
