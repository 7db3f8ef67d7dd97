"""``clipminer quantize``: a bundle's model at low precision, calibrated on the user's data.

Calibration inputs come from the files the user names (videos, images, or folders of
them), prepared exactly as find-clips prepares them: frames for an image model, clips of
the model's length and frame rate for a video model. They are split in two, alternately:
one half calibrates int8, the other is held out for the accuracy guard (top-1 agreement
with fp32, :func:`clipminer.precision.resolve`). The result is the same bundle with a
``precision`` entry, which loads with ``torch.load(weights_only=True)`` and which
find-clips runs under ``--precision auto`` (the default) or ``int8``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from clipminer.config import Int8Backend
from clipminer.data.images import IMAGE_SUFFIXES, load_image
from clipminer.data.videos import VIDEO_SUFFIXES, ClipSpec
from clipminer.decode import VideoReader, probe
from clipminer.errors import ClipminerError, UsageError
from clipminer.findclips import segment_clips
from clipminer.models import video as video_models
from clipminer.models.bundle import Bundle, load_bundle, save_bundle
from clipminer.models.image import ImageScorer
from clipminer.precision import check_precision, items_per_second, prepare, resolve

log = logging.getLogger(__name__)
CPU = torch.device("cpu")
Progress = Callable[[float, float], None]


@dataclass(frozen=True)
class QuantizeResult:
    """What :func:`quantize_bundle` made and measured."""

    path: Path
    precision: str
    backend: str
    agreement: float
    """Top-1 agreement with fp32 on the held-out inputs."""
    speedup: float
    """Inputs per second against fp32, on one calibration batch."""
    calibration: int
    held_out: int
    seconds: float

    def summary(self) -> dict[str, object]:
        """The figures, rounded, for JSON and logs."""
        return {
            "precision": self.precision,
            "backend": self.backend,
            "agreement": round(self.agreement, 4),
            "held_out": self.held_out,
            "speedup": round(self.speedup, 2),
            "seconds": round(self.seconds, 1),
        }


def quantize_bundle(
    model_path: str | os.PathLike[str],
    sources: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    precision: str = "auto",
    inputs: int | None = None,
    min_agreement: float = 0.99,
    backend: Int8Backend = "auto",
    progress: Progress | None = None,
) -> QuantizeResult:
    """Quantize the bundle at ``model_path`` on inputs from ``sources``; save to ``out``.

    Args:
        model_path: an image or video bundle.
        sources: videos, images or folders of them (searched recursively; hidden files
            skipped). Images calibrate image models only.
        out: where the quantized bundle goes (written atomically).
        precision: "auto" (the fastest mode that passes the guard), "int8", "bf16" or
            "fp32".
        inputs: frames (image model, default 400) or clips (video model, default 48),
            half for calibration and half held out.
        min_agreement: the least top-1 agreement with fp32 accepted on held-out inputs.
        backend: the int8 backend ("auto": OpenVINO when installed, else torch-fx).
        progress: called with (inputs gathered, inputs wanted).

    Raises:
        UsageError: no usable inputs, an unknown mode, or the guard failed for an
            explicit mode.
        BundleError: the model file is not a bundle.
    """
    start = time.perf_counter()
    mode = check_precision(precision)
    if not 0 < min_agreement <= 1:
        raise UsageError(f"--min-agreement must be in (0, 1], got {min_agreement}")
    bundle = load_bundle(model_path)
    wanted = inputs or (400 if bundle.kind == "image" else 48)
    if wanted < 4:
        raise UsageError(f"--inputs must be at least 4 (half calibrate, half check), got {wanted}")
    model, items = _model_with_inputs(bundle, sources, wanted, progress)
    batch = 8 if bundle.kind == "image" else 2
    calibration = _batches(items[0::2], batch)
    held_out = _batches(items[1::2], batch)
    chosen = resolve(
        model,
        mode,
        device=CPU,
        example=calibration[0],
        calibration=calibration,
        held_out=held_out,
        min_agreement=min_agreement,
        int8_backend=backend,
    )
    reference = prepare(model, "fp32", device=CPU)
    agreement = 1.0 if chosen.agreement is None else chosen.agreement
    fp32_speed = items_per_second(reference, calibration[0])
    speedup = items_per_second(chosen, calibration[0]) / fp32_speed
    state = {
        **chosen.state(),
        "agreement": agreement,
        "held_out": len(items[1::2]),
        "speedup": round(speedup, 3),
    }
    path = save_bundle(replace(bundle, precision=state), out)
    return QuantizeResult(
        path=path,
        precision=chosen.precision,
        backend=chosen.backend,
        agreement=agreement,
        speedup=speedup,
        calibration=len(items[0::2]),
        held_out=len(items[1::2]),
        seconds=time.perf_counter() - start,
    )


def _model_with_inputs(
    bundle: Bundle,
    sources: Sequence[str | os.PathLike[str]],
    wanted: int,
    progress: Progress | None,
) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    """The fp32 network and up to ``wanted`` inputs for it from ``sources`` (at least 4)."""
    files = _source_files(sources, images=bundle.kind == "image")
    model, gather = _model_and_inputs(bundle)
    items = gather(files, wanted, progress)
    if len(items) < 4:
        raise UsageError(
            f"found {len(items)} usable {_unit(bundle)} in {', '.join(map(str, sources))}; "
            "at least 4 are needed (half calibrate, half check)"
        )
    return model, items


def _unit(bundle: Bundle) -> str:
    return "frames" if bundle.kind == "image" else "clips"


def _batches(items: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    return [torch.cat(items[i : i + size]) for i in range(0, len(items), size)]


def _source_files(sources: Sequence[str | os.PathLike[str]], *, images: bool) -> list[Path]:
    """The videos (and images, for an image model) under ``sources``, sorted per source."""
    suffixes = VIDEO_SUFFIXES | (IMAGE_SUFFIXES if images else frozenset())
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(
                p
                for p in source.rglob("*")
                if p.is_file()
                and p.suffix.lower() in suffixes
                and not any(part.startswith(".") for part in p.relative_to(source).parts)
            )
            if not found:
                raise UsageError(f"{source}: no {'videos or images' if images else 'videos'} in it")
            files.extend(found)
        elif source.is_file():
            files.append(source)
        else:
            raise UsageError(f"{source}: no such file or folder")
    return files


Gather = Callable[[list[Path], int, Progress | None], list[torch.Tensor]]


def _model_and_inputs(bundle: Bundle) -> tuple[torch.nn.Module, Gather]:
    """The fp32 model of ``bundle`` and the function that gathers its inputs."""
    if bundle.kind == "image":
        scorer = ImageScorer(bundle, device="cpu", precision="fp32")

        def frames(files: list[Path], wanted: int, progress: Progress | None) -> list[torch.Tensor]:
            return _gather(files, wanted, progress, lambda f, n: _frame_inputs(scorer, f, n))

        return scorer.model, frames
    spec = bundle.input.clip_spec()
    model = video_models.load_video_model(bundle).eval()

    def clips(files: list[Path], wanted: int, progress: Progress | None) -> list[torch.Tensor]:
        return _gather(files, wanted, progress, lambda f, n: _clip_inputs(spec, f, n))

    return model, clips


def _gather(
    files: list[Path],
    wanted: int,
    progress: Progress | None,
    read: Callable[[Path, int], Iterator[torch.Tensor]],
) -> list[torch.Tensor]:
    """Up to ``wanted`` inputs, an even share from each file (from files spread over the
    list when there are more than ``wanted``); unreadable files are logged and skipped
    (their share goes to the files after them)."""
    if len(files) > wanted:
        files = [files[i * len(files) // wanted] for i in range(wanted)]
    items: list[torch.Tensor] = []
    for index, path in enumerate(files):
        share = math.ceil((wanted - len(items)) / (len(files) - index))
        try:
            items.extend(read(path, share))
        except (ClipminerError, OSError, ValueError) as exc:
            log.warning("%s: skipped (%s)", path, exc)
        if progress:
            progress(len(items), wanted)
    return items


def _frame_inputs(scorer: ImageScorer, path: Path, count: int) -> Iterator[torch.Tensor]:
    """Up to ``count`` model inputs (1×C×H×W) from an image or frames spread over a video."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = load_image(path, size_hint=max(scorer.size))
        yield scorer.inputs(image.permute(1, 2, 0)[None])
        return
    duration = probe(path).duration_seconds or 0.0
    fps = min(2.0, count / duration) if duration > 0 else 1.0
    short_side = round(max(scorer.size) / scorer.bundle.input.crop_fraction)
    with VideoReader(path, sample_fps=fps, short_side=short_side) as reader:
        for taken, frame in enumerate(reader):
            if taken >= count:
                break
            yield scorer.inputs(frame.pixels[None])


def _clip_inputs(spec: ClipSpec, path: Path, count: int) -> Iterator[torch.Tensor]:
    """Up to ``count`` model inputs (1×C×T×H×W): consecutive clips of the model's length
    and frame rate, every k-th one so that they spread over the video."""
    duration = probe(path).duration_seconds or 0.0
    available = int(duration * spec.frame_rate) // spec.clip_len
    stride = max(1, available // max(count, 1))
    frames = []
    chunk = taken = 0
    with VideoReader(path, sample_fps=spec.frame_rate, short_side=spec.short_side) as reader:
        for frame in reader:
            frames.append(frame)
            if len(frames) < spec.clip_len:
                continue
            if chunk % stride == 0:
                yield segment_clips(frames, spec, 1)
                taken += 1
                if taken >= count:
                    return
            frames = []
            chunk += 1
