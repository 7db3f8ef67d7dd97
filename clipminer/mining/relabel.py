"""Re-labelling: the video models' verdict on a segment, from the frames the pass kept.

:class:`VideoRelabeler` spreads up to ``windows`` clips of each model's length over a
segment's frames (its own decode output, :func:`clip_tap`), averages the windows and
the models, and keeps the first model's penultimate features as the clip's video
embedding. :func:`vote_both` is ``--relabel-vote both``: whether a candidate is an
action is decided by both models together, which action by the video model.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from clipminer.data.videos import ClipSpec, center_crop, to_clip_tensor
from clipminer.decode import Frame, Tap, VideoReader
from clipminer.errors import ClipminerError, UsageError
from clipminer.labels import label_key
from clipminer.memory import release_free_memory
from clipminer.models import video as video_models
from clipminer.models.bundle import Bundle, inference_network
from clipminer.models.features import HeadInputs, weights_id
from clipminer.precision import GUARD_ITEMS, Runner, for_bundle, report
from clipminer.sampling import uniform_window_starts, window_indices
from clipminer.segments import Segment
from clipminer.store import VideoPath

VIDEO_TAP = "video"
"""The name of the decode outputs that feed the video models' ring buffers."""


@dataclass(frozen=True)
class Relabel:
    """What the video model(s) say about one segment."""

    label: str
    score: float
    """Probability of ``label``, averaged over windows and models, 0..1."""
    top5: tuple[tuple[str, float], ...] = ()
    """The five most likely labels with their probabilities, best first."""
    features: np.ndarray | None = field(default=None, compare=False, repr=False)
    """The first video model's penultimate features, averaged over the windows."""
    probs: dict[str, float] = field(default_factory=dict, compare=False, repr=False)
    """Every label's probability (``top5`` when empty)."""


def vote_both(
    relabel: Relabel,
    image_labels: Sequence[str],
    image_probs: np.ndarray,
    background_labels: Collection[str],
) -> Relabel:
    """The re-label of ``--relabel-vote both``: whether a candidate is an action at all is
    decided by both models together, which action by the video model.

    The action share of each model (1 - its background probability; the image model's
    averaged over the frames it scored in the segment) is averaged: below one half the
    two together say background and the re-label is the video model's background label.
    Otherwise the label is the video model's most likely action, even where the video
    model alone would have said background, so one unsure model never drops a true action.
    """
    video = relabel.probs or dict(relabel.top5)
    background_keys = {label_key(label) for label in background_labels}

    def action_share(labels: Sequence[str], probs: Sequence[float]) -> float:
        return 1.0 - sum(
            float(p) for label, p in zip(labels, probs, strict=True)
            if label_key(label) in background_keys
        )  # fmt: skip

    share = (
        action_share(image_labels, list(image_probs))
        + action_share(list(video), list(video.values()))
    ) / 2
    actions = {label: p for label, p in video.items() if label_key(label) not in background_keys}
    if share < 0.5 or not actions:
        if label_key(relabel.label) in background_keys:
            return relabel
        name = next((label for label in video if label_key(label) in background_keys), None)
        return relabel if name is None else replace(relabel, label=name, score=video[name])
    best = max(actions, key=lambda label: actions[label])
    return replace(relabel, label=best, score=round(actions[best], 6))


class VideoRelabeler:
    """Classifies a segment with one or more video bundles (windows and models averaged).

    Args:
        bundles: video model bundles; their labels are matched by :func:`label_key`
            and the union is scored (a model that lacks a label gives it 0).
        device: torch device.
        windows: most windows of each model's clip length spread over a segment.
        precision: "auto", "fp32", "bf16" or "int8" (:func:`clipminer.precision.for_bundle`).
        guard: the least top-1 agreement with fp32 of auto's pick on the first windows.
        agree: stop once this many windows, the first from the middle out, name the same
            class (0: run every window).
    """

    def __init__(
        self,
        bundles: Sequence[Bundle],
        *,
        device: torch.device,
        windows: int = 4,
        precision: str = "auto",
        guard: float = 0.98,
        agree: int = 0,
    ) -> None:
        self.device = device
        self.windows = windows
        self.agree = agree
        self.windows_run = 0
        """Windows the video models ran on so far (all models)."""
        # Windows per forward pass. Measured on 2 CPU cores (torch 2.14), r2plus1d_18 at
        # 16 x 112: batch 1, 2, 4 ran 1.73-1.79, 1.74-1.76, 1.64 windows/s, and in a
        # 1-minute 1080p find-clips the re-label phase peaked at 1273, 1443, 1561 MiB.
        self.window_batch = 8 if device.type == "cuda" else 1
        self.models: list[tuple[Runner, ClipSpec, list[int]]] = []
        self.labels: list[str] = []
        keys: dict[str, int] = {}
        for bundle in bundles:
            if bundle.kind != "video":
                raise UsageError(
                    f"--video-model: {bundle.source or 'bundle'}: expected a video model, "
                    "got an image model"
                )
            columns = []
            for label in bundle.labels:
                key = label_key(label)
                if key not in keys:
                    keys[key] = len(self.labels)
                    self.labels.append(label)
                columns.append(keys[key])
            model = inference_network(bundle, video_models.BUILDERS, device)
            prepared = for_bundle(
                model, bundle, precision, device=device,
                guard=guard, guard_items=GUARD_ITEMS["video"],
            )  # fmt: skip
            self.models.append((prepared, bundle.input.clip_spec(), columns))
        first = self.models[0][0] if self.models else None
        self.features = (
            HeadInputs(first, video_models.head_name(bundles[0].arch)) if first else None
        )
        """Penultimate features of the first model (clip embeddings for curation)."""
        self.weights_id = weights_id(bundles[0].state_dict) if bundles else None

    def _batches(self, clips: torch.Tensor, probs: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The windows to run, in batches of ``window_batch``. With ``agree``, the first
        ``agree`` windows from the middle out come first and the rest only when those
        name different classes (``probs``, filled by the caller, holds their answers)."""
        early = 0 < self.agree < len(clips)
        order = middle_out(len(clips)) if early else list(range(len(clips)))
        groups = [order[: self.agree], order[self.agree :]] if early else [order]
        for g, group in enumerate(groups):
            if g and len(set(torch.cat(probs).argmax(dim=1).tolist())) == 1:
                return
            for first in range(0, len(group), self.window_batch):
                yield clips[group[first : first + self.window_batch]]

    @property
    def precision(self) -> str:
        """What the models run at ("int8", or "fp32+int8" when they differ)."""
        return "+".join(dict.fromkeys(model.precision for model, _, _ in self.models))

    def precision_report(self) -> list[dict[str, object]]:
        """How each model ran (:func:`clipminer.precision.report`), for ``run.json``."""
        return [report(model) for model, _, _ in self.models]

    def taps(self) -> list[Tap]:
        """One decode output per distinct (frame rate, short side) of the models."""
        return sorted(
            {clip_tap(spec) for _, spec, _ in self.models},
            key=lambda t: (t.sample_fps, t.short_side),
        )

    def decode_and_relabel(self, video: VideoPath, seg: Segment) -> Relabel | None:
        """The re-label of ``seg``, decoding only its range of ``video`` (``--rescore``)."""
        taps = self.taps()
        frames: dict[Tap, list[Frame]] = {tap: [] for tap in taps}
        reader = VideoReader(
            video, taps=taps, start_seconds=seg.time_start_seconds, end_seconds=seg.time_end_seconds
        )
        for index, frame in reader.iter_taps():
            frames[taps[index]].append(frame)
        return self(frames) if all(frames.values()) else None

    @torch.inference_mode()
    def __call__(self, frames_by_tap: dict[Tap, list[Frame]]) -> Relabel:
        """The re-label of a segment given its frames at each tap."""
        # the image model's freed activations back to the system first: the video
        # model's are of other sizes, and would otherwise grow the heap beside them
        release_free_memory(force=True)
        total = np.zeros(len(self.labels), np.float64)
        features: list[np.ndarray] = []
        for k, (model, spec, columns) in enumerate(self.models):
            frames = frames_by_tap.get(clip_tap(spec)) or []
            if not frames:
                raise ClipminerError("no frames to re-label the segment with")
            clips = segment_clips(frames, spec, self.windows)
            probs: list[torch.Tensor] = []
            for batch in self._batches(clips, probs):
                batch = batch.to(self.device).contiguous(memory_format=torch.channels_last_3d)
                logits = model(batch)
                probs.append(torch.softmax(logits.float(), dim=1).cpu())
                kept = self.features.take() if k == 0 and self.features else None
                if kept is not None:
                    features.append(kept)
            self.windows_run += sum(len(p) for p in probs)
            total[columns] += torch.cat(probs).mean(0).numpy()
            release_free_memory()
        total /= len(self.models)
        order = np.argsort(-total, kind="stable")
        top5 = tuple((self.labels[i], round(float(total[i]), 6)) for i in order[:5])
        mean = np.concatenate(features).mean(0) if features else None
        every = {label: float(p) for label, p in zip(self.labels, total, strict=True)}
        return Relabel(top5[0][0], top5[0][1], top5, mean, every)


def middle_out(count: int) -> list[int]:
    """0..count-1 ordered from the middle outwards: 4 -> [1, 2, 0, 3]."""
    centre = (count - 1) / 2
    return sorted(range(count), key=lambda k: (abs(k - centre), k))


def segment_clips(frames: Sequence[Frame], spec: ClipSpec, windows: int) -> torch.Tensor:
    """Up to ``windows`` clips of ``spec.clip_len`` frames spread evenly over ``frames``
    (the video model's tap), as model inputs N×C×T×H×W."""
    pixels = center_crop(np.stack([f.pixels for f in frames]), spec.size)
    count = min(windows, max(1, len(pixels) // spec.clip_len))
    starts = uniform_window_starts(len(pixels), spec.clip_len, count)
    return torch.stack(
        [
            to_clip_tensor(pixels[window_indices(len(pixels), spec.clip_len, s)], spec)
            for s in starts
        ]
    )


def clip_tap(spec: ClipSpec) -> Tap:
    """The decode output a video model's clips are made from."""
    return Tap(sample_fps=spec.frame_rate, short_side=spec.short_side, name=VIDEO_TAP)
