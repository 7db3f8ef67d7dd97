"""Fit and evaluate loops shared by the image and the video models.

AdamW with a cosine or one-cycle schedule stepped per optimiser step, label
smoothing, gradient accumulation, channels-last memory, mixed precision and pinned
memory on CUDA, and optionally an exponential moving average of the weights (what is
validated and saved). After each epoch the model is evaluated; the caller saves the
best (top-1, then validation loss on ties). Each epoch's scalars go to TensorBoard with
``FitConfig.tensorboard`` (an optional package).
The full training state (weights, optimiser, scheduler, epoch, history) goes to a
separate file after every epoch, so an interrupted run resumes where it stopped;
that file holds only tensors and plain types and loads with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from clipminer.config import FitConfig, Schedule  # noqa: F401 - re-exported
from clipminer.devices import to_channels_last
from clipminer.errors import ClipminerError, UsageError
from clipminer.fsutil import atomic_path
from clipminer.metrics import ClassificationMetrics, classification_metrics
from clipminer.models.bundle import safe_load

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochResult:
    """What one epoch did."""

    epoch: int
    """1-based."""
    train_loss: float
    train_top1: float
    val_top1: float
    val_loss: float
    seconds: float
    lr: float


Progress = Callable[[int, int], None]
"""Called with (samples done, samples in all) as a pass goes."""


class Reporter(Protocol):
    """Receives progress from :func:`fit`; the CLI draws bars from it."""

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, loss: float, top1: float) -> None: ...
    def validate(self, done: int, total: int) -> None:
        """Validation samples scored so far this epoch, of ``total``."""

    def end_epoch(self, result: EpochResult, best: bool) -> None: ...


class LogReporter:
    """Logs one line per epoch."""

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def step(self, loss: float, top1: float) -> None:
        pass

    def validate(self, done: int, total: int) -> None:
        pass

    def end_epoch(self, result: EpochResult, best: bool) -> None:
        log.info(
            "epoch %d: loss %.4f, train top-1 %.3f, val top-1 %.3f%s",
            result.epoch,
            result.train_loss,
            result.train_top1,
            result.val_top1,
            " (best)" if best else "",
        )


@dataclass
class FitResult:
    """History and the best epoch of a run."""

    history: list[EpochResult] = field(default_factory=list)
    best_epoch: int = 0
    best_top1: float = -1.0
    best_loss: float = math.inf
    resumed_from: int = 0

    def improves(self, top1: float, loss: float) -> bool:
        """Whether an epoch beats the best so far: a higher top-1, or the same top-1
        with a lower validation loss."""
        return (top1, -loss) > (self.best_top1, -self.best_loss)


class WeightAverage:
    """An exponential moving average of a model's weights and floating-point buffers
    (BatchNorm statistics); integer buffers are copied.

    The decay ramps up from 0.1 (``(1 + n) / (10 + n)`` after n updates), so the
    first steps do not drag the average towards the initial weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for mine, theirs in zip(
            self.model.state_dict().values(), model.state_dict().values(), strict=True
        ):
            if mine.dtype.is_floating_point:
                mine.lerp_(theirs.detach(), 1 - decay)
            else:
                mine.copy_(theirs)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to ``device`` (asynchronously from pinned memory) in channels-last layout."""
    batch = batch.to(device, non_blocking=device.type == "cuda")
    if batch.ndim == 4:
        return batch.contiguous(memory_format=torch.channels_last)
    if batch.ndim == 5:
        return batch.contiguous(memory_format=torch.channels_last_3d)
    return batch


def _autocast(device: torch.device, enabled: bool) -> torch.autocast:
    dtype = torch.bfloat16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled and device.type == "cuda")


def _make_scheduler(
    optimizer: torch.optim.Optimizer, config: FitConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=max(1, total_steps)
        )
    warmup = max(1, min(100, total_steps // 20))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _freeze_frozen_batchnorm(model: nn.Module) -> None:
    """Keep BatchNorm statistics fixed in layers whose parameters are frozen."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


@torch.inference_mode()
def predict_clips(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    *,
    amp: bool = True,
    input_ndim: int = 4,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities of every clip (float32 N×K×C) and targets (int N).

    Items are single inputs (K = 1) or stacks of K clips or crops of one sample
    (``input_ndim + 1`` dimensions per batch), scored in one batch.

    Args:
        input_ndim: dimensions of a batch the model takes (4 images, 5 videos).
        progress: called after each batch with (samples done, samples in all; 0 when
            the loader does not know).
    """
    model.eval()
    probs, targets = [], []
    total, done = _sample_count(loader), 0
    for inputs, labels in loader:
        stacked = inputs.ndim == input_ndim + 1
        batch, clips = inputs.shape[0], inputs.shape[1] if stacked else 1
        flat = inputs.flatten(0, 1) if stacked else inputs
        with _autocast(device, amp):
            logits = model(_to_device(flat, device))
        p = torch.softmax(logits.float(), dim=1).view(batch, clips, -1)
        probs.append(p.cpu().numpy())
        targets.append(np.asarray(labels))
        done += batch
        if progress is not None:
            progress(done, max(total, done))
    if not probs:
        return np.zeros((0, 1, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(probs), np.concatenate(targets).astype(np.int64)


def _sample_count(loader: Iterable[Any]) -> int:
    """Samples a loader yields in all: its dataset's length, else 0 (unknown)."""
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset) if dataset is not None else 0
    except TypeError:  # an iterable dataset
        return 0


def predict(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    *,
    amp: bool = True,
    input_ndim: int = 4,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities per sample (float32 N×C, clips averaged) and targets (int N)."""
    clip_probs, targets = predict_clips(
        model, loader, device, amp=amp, input_ndim=input_ndim, progress=progress
    )
    return clip_probs.mean(axis=1), targets


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    labels: tuple[str, ...],
    *,
    amp: bool = True,
    input_ndim: int = 4,
) -> ClassificationMetrics:
    """Metrics of ``model`` over ``loader``."""
    probs, targets = predict(model, loader, device, amp=amp, input_ndim=input_ndim)
    if len(targets) == 0:
        raise ClipminerError("evaluation set is empty")
    return classification_metrics(probs, targets, labels)


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """Write the resumable state atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a state written by :func:`save_training_state` (weights_only)."""
    data = safe_load(path)
    if not isinstance(data, dict) or "epoch" not in data:
        raise ClipminerError(f"{path}: not a clipminer training state")
    return data


@dataclass
class _Run:
    """What one training run steps together, saves after each epoch and resumes from."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    average: WeightAverage | None
    identity: dict[str, Any]
    """What must not change across a resume (architecture, labels...)."""

    @classmethod
    def start(
        cls,
        model: nn.Module,
        config: FitConfig,
        device: torch.device,
        batches: int,
        identity: dict[str, Any],
    ) -> _Run:
        """The model seeded and on ``device``; AdamW over its trainable parameters, the
        schedule over ``batches`` per epoch, a gradient scaler for fp16 on CUDA, and the
        weight average when asked for."""
        seed_everything(config.seed)
        to_channels_last(model.to(device))
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ClipminerError("no trainable parameters (check --train-layers)")
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = max(1, math.ceil(batches / config.grad_accum_steps))
        scheduler = _make_scheduler(optimizer, config, steps_per_epoch * config.epochs)
        use_scaler = config.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
        scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        average = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
        return cls(model, optimizer, scheduler, scaler, average, identity)

    def train_epoch(
        self,
        loader: DataLoader[Any],
        criterion: nn.Module,
        config: FitConfig,
        device: torch.device,
        reporter: Reporter,
    ) -> tuple[float, int, int]:
        """One pass over ``loader``: (summed loss, correct, seen)."""
        model, optimizer, scaler = self.model, self.optimizer, self.scaler
        total_loss, correct, seen = 0.0, 0, 0
        optimizer.zero_grad(set_to_none=True)
        for step, (inputs, targets) in enumerate(loader, start=1):
            inputs = _to_device(inputs, device)
            targets = targets.to(device, non_blocking=device.type == "cuda")
            with _autocast(device, config.amp):
                logits = model(inputs)
                loss = criterion(logits.float(), targets)
            scaler.scale(loss / config.grad_accum_steps).backward()
            if step % config.grad_accum_steps == 0 or step == len(loader):
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                if self.average is not None:
                    self.average.update(model)
            batch = len(targets)
            total_loss += float(loss.detach()) * batch
            correct += int((logits.detach().argmax(1) == targets).sum())
            seen += batch
            reporter.step(total_loss / seen, correct / seen)
        return total_loss, correct, seen

    def state(self, epoch: int, result: FitResult) -> dict[str, Any]:
        """The resumable state after ``epoch``."""
        average = self.average
        return {
            "epoch": epoch,
            "identity": self.identity,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": [asdict(h) for h in result.history],
            "best_epoch": result.best_epoch,
            "best_top1": result.best_top1,
            "best_loss": result.best_loss,
            "torch_rng": torch.get_rng_state(),
            **(
                {}
                if average is None
                else {"average": average.model.state_dict(), "average_updates": average.updates}
            ),
        }

    def restore(self, state_path: Path | None, result: FitResult, epochs: int) -> int:
        """Continue from ``state_path`` (its identity must match); the epoch to start at."""
        if state_path is None or not state_path.exists():
            raise ClipminerError(f"--resume: no training state at {state_path}")
        state = load_training_state(state_path)
        if state.get("identity") != self.identity:
            raise ClipminerError(
                f"{state_path}: was written for {state.get('identity')}, not {self.identity}; "
                "start a new run without --resume"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        result.history = [EpochResult(**h) for h in state["history"]]
        result.best_epoch, result.best_top1 = state["best_epoch"], state["best_top1"]
        result.best_loss = state.get("best_loss", math.inf)
        if self.average is not None and "average" in state:
            self.average.model.load_state_dict(state["average"])
            self.average.updates = state["average_updates"]
        start = result.resumed_from = state["epoch"] + 1
        torch.set_rng_state(state["torch_rng"])
        log.info("resuming at epoch %d of %d", start, epochs)
        return start


def fit(
    model: nn.Module,
    train_loader: DataLoader[Any],
    val_loader: DataLoader[Any] | None,
    *,
    labels: tuple[str, ...],
    config: FitConfig,
    device: torch.device,
    on_best: Callable[[nn.Module, EpochResult, ClassificationMetrics], None],
    on_end: Callable[[nn.Module, EpochResult], None] | None = None,
    state_path: Path | None = None,
    resume: bool = False,
    identity: dict[str, Any] | None = None,
    reporter: Reporter | None = None,
    input_ndim: int = 4,
) -> FitResult:
    """Train ``model`` and call ``on_best`` whenever validation improves.

    An epoch improves when its top-1 is higher than the best so far, or equal with a
    lower validation loss. With ``config.ema_decay`` the moving average of the weights
    is what is validated and passed to ``on_best`` and ``on_end``.

    Args:
        model: its trainable parameters are those with ``requires_grad``.
        train_loader: yields (inputs, label indices).
        val_loader: the same for validation; None: no validation (``on_best`` is never
            called; keep the model ``on_end`` gets).
        labels: class names, in index order.
        config: optimisation settings.
        device: where to train.
        on_best: called with the model, the epoch and its validation metrics.
        on_end: called with the model and the last epoch after training.
        state_path: where the resumable training state goes after each epoch.
        resume: continue from ``state_path``; its ``identity`` must match.
        identity: what must not change across a resume (architecture, labels...).
        reporter: progress sink; default logs a line per epoch.
        input_ndim: dimensions of a training batch (4 images, 5 videos); validation
            items may stack several clips (one more dimension), averaged per item.
    """
    reporter = reporter or LogReporter()
    run = _Run.start(model, config, device, len(train_loader), identity or {})
    optimizer, average = run.optimizer, run.average
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    result = FitResult()
    start_epoch = run.restore(state_path, result, config.epochs) if resume else 1
    board = open_tensorboard(config.tensorboard) if config.tensorboard is not None else None
    for epoch in range(start_epoch, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        _freeze_frozen_batchnorm(model)
        reporter.start_epoch(epoch, config.epochs, len(train_loader))
        total_loss, correct, seen = run.train_epoch(
            train_loader, criterion, config, device, reporter
        )
        evaluated = model if average is None else average.model
        metrics, val_loss = _validate(
            evaluated, val_loader, labels, device, config.amp, input_ndim, reporter.validate
        )
        epoch_result = EpochResult(
            epoch, total_loss / max(seen, 1), correct / max(seen, 1),
            math.nan if metrics is None else metrics.top1, val_loss,
            time.perf_counter() - started, float(optimizer.param_groups[0]["lr"]),
        )  # fmt: skip
        result.history.append(epoch_result)
        if board is not None:
            log_epoch(board, epoch_result)
        best = metrics is not None and result.improves(metrics.top1, val_loss)
        if best and metrics is not None:
            result.best_epoch, result.best_top1, result.best_loss = epoch, metrics.top1, val_loss
            on_best(evaluated, epoch_result, metrics)
        reporter.end_epoch(epoch_result, best)
        if state_path is not None:
            save_training_state(state_path, run.state(epoch, result))
    if board is not None:
        board.close()
    if on_end is not None and result.history:
        on_end(model if average is None else average.model, result.history[-1])
    return result


def _validate(
    model: nn.Module,
    loader: DataLoader[Any] | None,
    labels: tuple[str, ...],
    device: torch.device,
    amp: bool,
    input_ndim: int,
    progress: Progress,
) -> tuple[ClassificationMetrics | None, float]:
    """Metrics and mean negative log-likelihood over ``loader`` (None, NaN without one)."""
    if loader is None:
        return None, math.nan
    probs, targets = predict(
        model, loader, device, amp=amp, input_ndim=input_ndim, progress=progress
    )
    if len(targets) == 0:
        raise ClipminerError("validation set is empty")
    loss = nn.functional.nll_loss(
        torch.log(torch.from_numpy(probs).clamp_min(1e-8)), torch.from_numpy(targets)
    )
    return classification_metrics(probs, targets, labels), float(loss)


TENSORBOARD_HINT = "pip install tensorboard (or clipminer[tensorboard])"


def require_tensorboard() -> None:
    """Refuse ``--tensorboard`` before any work when the package is missing.

    Raises:
        UsageError: one line saying what to install.
    """
    if importlib.util.find_spec("tensorboard") is None:
        raise UsageError(f"--tensorboard needs the tensorboard package: {TENSORBOARD_HINT}")


def open_tensorboard(log_dir: Path) -> SummaryWriter:
    """A TensorBoard event writer in ``log_dir`` (created).

    Raises:
        UsageError: the tensorboard package is not installed.
    """
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    log_dir.mkdir(parents=True, exist_ok=True)
    return SummaryWriter(log_dir=str(log_dir))


def log_epoch(board: SummaryWriter, result: EpochResult) -> None:
    """One epoch's scalars: loss and top-1 (train, and val when validated), lr, seconds."""
    scalars = {
        "loss/train": result.train_loss,
        "loss/val": result.val_loss,
        "top1/train": result.train_top1,
        "top1/val": result.val_top1,
        "lr": result.lr,
        "epoch_seconds": result.seconds,
    }
    for tag, value in scalars.items():
        if not math.isnan(value):
            board.add_scalar(tag, value, result.epoch)
    board.flush()


def write_curves(report_dir: Path, history: Sequence[EpochResult]) -> Path:
    """``curves.png`` in ``report_dir``: loss and top-1 per epoch, train and validation."""
    from clipminer.report import write_training_curves

    return write_training_curves(
        report_dir / "curves.png",
        epochs=[h.epoch for h in history],
        train_loss=[h.train_loss for h in history],
        val_loss=[h.val_loss for h in history],
        train_top1=[h.train_top1 for h in history],
        val_top1=[h.val_top1 for h in history],
    )


def plain_path(path: Path | None) -> str | None:
    """A path as a bundle's config records it (plain types load weights-only)."""
    return None if path is None else str(path)


def report_dir_for(model_path: Path) -> Path:
    """Reports of a training run go beside the model: ``<stem>_report/``."""
    return model_path.with_name(f"{model_path.stem}_report")


def state_path_for(model_path: Path) -> Path:
    """The resumable training state beside the model: ``<name>.train-state``."""
    return model_path.with_name(f"{model_path.name}.train-state")


def loader_kwargs(workers: int, device: torch.device) -> dict[str, Any]:
    """DataLoader settings: worker processes, pinned memory on CUDA."""
    kwargs: dict[str, Any] = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        kwargs["persistent_workers"] = True
        kwargs["prefetch_factor"] = 4
    return kwargs
