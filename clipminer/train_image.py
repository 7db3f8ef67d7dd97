"""``train-image`` and ``eval-image``: the image classifier on an ImageFolder tree."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from clipminer import __version__
from clipminer.config import ImageTrainConfig
from clipminer.data.background import (
    BackgroundFiles,
    find_background,
    hold_out_a_video,
    sample_background,
)
from clipminer.data.images import (
    ImageDataset,
    ImageFolder,
    ImageItem,
    scan_image_folder,
    split_by_hash,
)
from clipminer.data.videos import VIDEO_SUFFIXES
from clipminer.devices import resolve_device
from clipminer.errors import UsageError
from clipminer.metrics import ClassificationMetrics
from clipminer.models import image as image_models
from clipminer.models.bundle import Bundle, InputSpec, load_bundle, save_bundle
from clipminer.openset import Calibration, action_mask, calibrate, prototypes, similarity
from clipminer.report import write_classification_report
from clipminer.train import (
    EpochResult,
    FitResult,
    Reporter,
    evaluate,
    fit,
    loader_kwargs,
    plain_path,
    report_dir_for,
    require_tensorboard,
    seed_everything,
    state_path_for,
    write_curves,
)
from clipminer.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageTrainResult:
    """Where the outputs went and how well the best epoch did."""

    model_path: Path
    report_dir: Path
    metrics: ClassificationMetrics
    fit: FitResult
    train_images: int
    val_images: int
    skipped: int
    open_set: Calibration | None = None
    """The calibrated open-set threshold stored in the bundle."""


def _check_classes(folder: ImageFolder) -> None:
    counts = folder.counts()
    empty = [label for label, n in counts.items() if n == 0]
    if empty:
        raise UsageError(
            f"{folder.root}: class folder(s) {empty} contain no readable images or video clips "
            f"({len(folder.skipped)} unreadable files skipped)"
        )
    if len(folder.labels) < 2:
        raise UsageError(
            f"{folder.root}: found only the class {list(folder.labels)}; a classifier needs at "
            "least 2 class folders"
        )


def train_image(
    data_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: ImageTrainConfig,
    val_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
) -> ImageTrainResult:
    """Train an image classifier on a folder-per-class tree and write its bundle.

    Writes ``out`` (the best epoch's bundle), ``<stem>_report/`` with
    ``metrics.json``, ``confusion.csv``, ``confusion.png``, ``curves.png`` (loss and
    top-1 per epoch), TensorBoard scalars with ``config.fit.tensorboard``, and the resumable
    training state ``<out>.train-state``.
    """
    out = Path(out)
    device = resolve_device(config.device)
    if config.fit.tensorboard is not None:
        require_tensorboard()
    scratch = tempfile.TemporaryDirectory(prefix="clipminer-frames-")
    with scratch:
        frames = functools.partial(
            add_clip_frames, scratch=Path(scratch.name), per_clip=config.frames_per_clip,
            short_side=2 * config.image_size,
        )  # fmt: skip
        folder = frames(scan_image_folder(data_dir))
        if config.background:
            folder = add_background(folder, config, Path(scratch.name))
        val_folder = None
        if val_dir is not None:
            val_folder = frames(scan_image_folder(val_dir, labels=folder.labels))
        return _train_image(
            folder, data_dir, out, config, val_dir, resume, reporter, device, val_folder
        )


def add_clip_frames(
    folder: ImageFolder, *, scratch: Path, per_clip: int, short_side: int
) -> ImageFolder:
    """``folder`` with frames of the video clips in its class folders (an export's
    ``DATASET/train``, say): ``per_clip`` frames evenly spaced in each, written to
    ``scratch``; the frames of one clip fall on one side of the split together."""
    items = list(folder.items)
    for index, label in enumerate(folder.labels):
        class_dir = folder.root / label
        clips = (
            tuple(
                sorted(
                    p for p in class_dir.iterdir()
                    if p.is_file() and not p.name.startswith(".")
                    and p.suffix.lower() in VIDEO_SUFFIXES
                )
            )
            if class_dir.is_dir() else ()
        )  # fmt: skip
        if not clips:
            continue
        target = scratch / "clips" / f"{folder.root.name}-{index}"
        try:
            sampled = sample_background(
                BackgroundFiles(clips, ()), target, count=per_clip * len(clips),
                short_side=short_side, purpose=f"a clip of {label!r}",
            )  # fmt: skip
        except UsageError:
            log.warning("%s: none of its %d video clips could be read", class_dir, len(clips))
            continue
        for image in sampled:  # "clip:": never taken for a held-out background source
            digest = hashlib.sha256(image.path.read_bytes()).hexdigest()
            group = "clip:" + image.group.removeprefix("video:")
            items.append(ImageItem(image.path, index, digest, group=group))
        log.info("%s: %d frames of %d clips", class_dir, len(sampled), len(clips))
    return replace(folder, items=items)


def add_background(folder: ImageFolder, config: ImageTrainConfig, scratch: Path) -> ImageFolder:
    """``folder`` with images of ``config.background`` added to the background class
    (frames of videos are written to ``scratch``; each video is one split group)."""
    files = find_background(config.background)
    actions = [n for label, n in folder.counts().items() if label != config.background_label]
    mean = sum(actions) / max(len(actions), 1)
    count = config.background_images or max(64, round(2 * mean))
    sampled = sample_background(files, scratch, count=count, short_side=2 * config.image_size)
    labels = tuple(sorted({*folder.labels, config.background_label}))
    remap = [labels.index(label) for label in folder.labels]
    items = [replace(item, label=remap[item.label]) for item in folder.items]
    target = labels.index(config.background_label)
    for image in sampled:
        digest = hashlib.sha256(image.path.read_bytes()).hexdigest()
        items.append(ImageItem(image.path, target, digest, group=image.group))
    log.info(
        "background: %d images from %d videos and %d image files",
        len(sampled),
        len(files.videos),
        len(files.images),
    )
    return replace(folder, labels=labels, items=items)


def _train_image(
    folder: ImageFolder,
    data_dir: str | os.PathLike[str],
    out: Path,
    config: ImageTrainConfig,
    val_dir: str | os.PathLike[str] | None,
    resume: bool,
    reporter: Reporter | None,
    device: torch.device,
    val_folder: ImageFolder | None = None,
) -> ImageTrainResult:
    _check_classes(folder)
    labels = folder.labels
    train_items, val_items = _split(folder, data_dir, config, val_dir, val_folder)
    size = (config.image_size, config.image_size)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    train_loader, val_loader = _loaders(train_items, val_items, config, device)
    seed_everything(config.fit.seed)  # the head and random inits must not depend on history
    model = image_models.build(config.arch, num_classes=len(labels), weights=config.weights)
    trainable = image_models.set_trainable(model, config.arch, config.train_layers)
    log.info(
        "%s: %d classes, %d train / %d val images, %d skipped; %s with %d trainable parameters",
        data_dir,
        len(labels),
        len(train_items),
        len(val_items),
        len(folder.skipped),
        config.arch,
        trainable,
    )
    record: dict[str, Any] = {"config": _config_dict(config, data_dir, val_dir)}
    best: dict[str, ClassificationMetrics] = {}

    def save_best(net: nn.Module, epoch: EpochResult, metrics: ClassificationMetrics) -> None:
        best["metrics"] = metrics
        bundle = Bundle(
            kind="image",
            arch=config.arch,
            labels=labels,
            input=InputSpec(size=size, mean=mean, std=std),
            state_dict={k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
            metrics=metrics.to_dict() | {"epoch": epoch.epoch, "val_loss": epoch.val_loss},
            config=record["config"],
        )
        save_bundle(bundle, out)

    result = fit(
        model,
        train_loader,
        val_loader,
        labels=labels,
        config=config.fit,
        device=device,
        on_best=save_best,
        state_path=state_path_for(out),
        resume=resume,
        identity={"arch": config.arch, "labels": list(labels), "image_size": config.image_size},
        reporter=reporter,
    )
    metrics = best.get("metrics")
    bundle = load_bundle(out, kind="image")
    if metrics is None:  # resumed after the last epoch: report the saved best
        metrics = evaluate(
            image_models.model_from_bundle(bundle).to(device), val_loader, device, labels
        )
    open_set, protos = calibrate_open_set(
        bundle, train_items, val_loader, device=device, config=config
    )
    table = open_set.to_dict() | {"prototypes": torch.from_numpy(protos)}
    save_bundle(replace(bundle, open_set=table), out)
    report_dir = _write_report(out, metrics, result, folder, open_set)
    return ImageTrainResult(
        model_path=out,
        report_dir=report_dir,
        metrics=metrics,
        fit=result,
        train_images=len(train_items),
        val_images=len(val_items),
        skipped=len(folder.skipped),
        open_set=open_set,
    )


def _write_report(
    out: Path,
    metrics: ClassificationMetrics,
    result: FitResult,
    folder: ImageFolder,
    open_set: Calibration,
) -> Path:
    """``metrics.json``, the confusion matrix and ``curves.png`` beside the model."""
    report_dir = report_dir_for(out)
    write_classification_report(
        report_dir,
        metrics,
        extra={
            "model": str(out),
            "best_epoch": result.best_epoch,
            "history": [asdict(h) for h in result.history],
            "skipped_images": [f"{p}: {why}" for p, why in folder.skipped],
            "open_set": open_set.to_dict(),
            "clipminer_version": __version__,
        },
    )
    write_curves(report_dir, result.history)
    return report_dir


def _split(
    folder: ImageFolder,
    data_dir: str | os.PathLike[str],
    config: ImageTrainConfig,
    val_dir: str | os.PathLike[str] | None,
    val_folder: ImageFolder | None = None,
) -> tuple[list[ImageItem], list[ImageItem]]:
    """(train, validation) images: a hashed split of the folder (a whole background
    video held out), or the folder and ``val_dir`` (scanned already: ``val_folder``)."""
    labels = folder.labels
    if val_dir is None:
        train_items, val_items = split_by_hash(folder.items, config.val_fraction)
        if config.background and config.val_fraction > 0:
            target = labels.index(config.background_label)
            train_items, val_items = hold_out_a_video(train_items, val_items, target)
        if not val_items:
            raise UsageError("--val-fraction 0 leaves no validation images; give --val-dir")
        return train_items, val_items
    val_folder = val_folder or scan_image_folder(val_dir, labels=labels)
    if val_folder.unknown:
        raise UsageError(f"{val_dir}: classes not in {data_dir}: {sorted(val_folder.unknown)}")
    return folder.items, val_folder.items


def _loaders(
    train_items: list[ImageItem],
    val_items: list[ImageItem],
    config: ImageTrainConfig,
    device: torch.device,
) -> tuple[DataLoader[Any], DataLoader[Any]]:
    """The training loader (augmented; class-balanced with ``balanced``) and the
    validation loader."""
    size = (config.image_size, config.image_size)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    train_set = ImageDataset(
        train_items, train_transform(size, mean, std), size_hint=2 * config.image_size
    )
    val_set = ImageDataset(
        val_items, eval_transform(size, mean, std), size_hint=2 * config.image_size
    )
    sampler = None
    if config.balanced:
        counts = Counter(item.label for item in train_items)
        weights = [1.0 / counts[item.label] for item in train_items]
        sampler = WeightedRandomSampler(weights, num_samples=len(train_items), replacement=True)
    common = loader_kwargs(config.workers, device)
    generator = torch.Generator().manual_seed(config.fit.seed)
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=len(train_set) > config.batch_size,
        generator=generator,
        **common,
    )
    val_loader = DataLoader(val_set, batch_size=config.batch_size, shuffle=False, **common)
    return train_loader, val_loader


PROTOTYPE_IMAGES_PER_CLASS = 200
"""Training images per class whose features make its prototype (a stable sample)."""


def calibrate_open_set(
    bundle: Bundle,
    train_items: Sequence[ImageItem],
    val_loader: DataLoader[Any],
    *,
    device: torch.device,
    config: ImageTrainConfig,
) -> tuple[Calibration, np.ndarray]:
    """The open-set calibration (:mod:`clipminer.openset`): the threshold on the probability
    of each validation image's predicted label, and the class prototypes (from up to
    :data:`PROTOTYPE_IMAGES_PER_CLASS` training images per class, in their validation
    transform) with the lowest similarity of a validation image of an action to its own."""
    model = image_models.model_from_bundle(bundle).to(device)
    head = image_models.ARCHS[bundle.arch].head if bundle.arch in image_models.ARCHS else "fc"
    by_class: dict[int, list[ImageItem]] = {}
    for item in sorted(train_items, key=lambda item: item.sha256):
        by_class.setdefault(item.label, []).append(item)
    sample = [i for items in by_class.values() for i in items[:PROTOTYPE_IMAGES_PER_CLASS]]
    transform = eval_transform(bundle.input.size, bundle.input.mean, bundle.input.std)
    loader = DataLoader(
        ImageDataset(sample, transform, size_hint=2 * max(bundle.input.size)),
        batch_size=val_loader.batch_size or 32,
    )
    train_features, _, _ = _features(model, loader, head, device)
    protos = prototypes(train_features, np.array([i.label for i in sample]), len(bundle.labels))
    features, probs, truth = _features(model, val_loader, head, device)
    predicted = probs.argmax(1)
    action = action_mask(bundle.labels, (config.background_label,))
    calibration = calibrate(
        probs[np.arange(len(probs)), predicted],
        predicted,
        truth,
        action,
        target_precision=config.target_precision,
    )
    actions = np.flatnonzero(action[truth])
    if len(actions):
        lowest = min(similarity(features[k : k + 1], protos, truth[k]) for k in actions)
        calibration = replace(calibration, similarity_threshold=round(lowest - 1e-6, 6))
    log.info("open-set calibration on the validation images: %s", calibration)
    return calibration, protos


@torch.inference_mode()
def _features(
    model: nn.Module, loader: DataLoader[Any], head: str, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pooled features N×D, probabilities N×K, targets N) of every image of ``loader``."""
    kept: list[torch.Tensor] = []
    hook = model.get_submodule(head).register_forward_hook(
        lambda _m, inputs, _o: kept.append(inputs[0].detach().flatten(1).float().cpu())
    )
    probs, targets = [], []
    try:
        for images, labels in loader:
            probs.append(torch.softmax(model(images.to(device)).float(), 1).cpu())
            targets.append(torch.as_tensor(labels))
    finally:
        hook.remove()
    if not probs:
        return np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32), np.zeros(0, int)
    return torch.cat(kept).numpy(), torch.cat(probs).numpy(), torch.cat(targets).numpy()


def _config_dict(config: ImageTrainConfig, data_dir: object, val_dir: object) -> dict[str, Any]:
    data = asdict(config)
    data["data_dir"] = str(data_dir)
    data["val_dir"] = None if val_dir is None else str(val_dir)
    data["fit"]["tensorboard"] = plain_path(config.fit.tensorboard)
    return data


@dataclass(frozen=True)
class ImageEvalResult:
    """Metrics of a model on a labelled folder, and what could not be scored."""

    metrics: ClassificationMetrics
    unknown_labels: dict[str, int]
    """Class folders the model does not know, with their image counts (not scored)."""
    skipped: int
    out_dir: Path


def eval_image(
    model_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    workers: int = 2,
    device: str = "auto",
) -> ImageEvalResult:
    """Evaluate an image bundle on any labelled folder; write the metrics files.

    Class folders whose label the model does not know are reported in
    ``metrics.json`` (``unknown_labels``) and left out of the metrics.
    """
    bundle = load_bundle(model_path, kind="image")
    torch_device = resolve_device(device)
    folder = scan_image_folder(data_dir, labels=bundle.labels)
    if not folder.items:
        raise UsageError(
            f"{data_dir}: no readable images of the model's classes "
            f"(model knows {list(bundle.labels)[:10]}{'...' if len(bundle.labels) > 10 else ''})"
        )
    if folder.unknown:
        log.warning("%s: classes the model does not know, not scored: %s", data_dir, folder.unknown)
    dataset = ImageDataset(
        folder.items,
        eval_transform(bundle.input.size, bundle.input.mean, bundle.input.std),
        size_hint=2 * max(bundle.input.size),
    )
    loader = DataLoader(dataset, batch_size=batch_size, **loader_kwargs(workers, torch_device))
    model = image_models.model_from_bundle(bundle).to(torch_device)
    metrics = evaluate(model, loader, torch_device, bundle.labels)
    out_dir = Path(out_dir)
    write_classification_report(
        out_dir,
        metrics,
        extra={
            "model": str(model_path),
            "data_dir": str(data_dir),
            "unknown_labels": folder.unknown,
            "skipped_images": [f"{p}: {why}" for p, why in folder.skipped],
            "clipminer_version": __version__,
        },
    )
    return ImageEvalResult(
        metrics=metrics, unknown_labels=folder.unknown, skipped=len(folder.skipped), out_dir=out_dir
    )
