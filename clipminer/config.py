"""Run settings that cross module boundaries, importable without torch or PyAV.

:class:`FindClipsConfig` is the one find-clips configuration: ``find-clips`` and
``batch`` generate their options from its fields and the ``[findclips]`` table of
``jobs/nightly.toml`` uses the same names (:mod:`clipminer.settings`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from clipminer.errors import UsageError
from clipminer.mining.shots import DetectorName as ShotDetectorName
from clipminer.segments import SegmentConfig
from clipminer.settings import check_declared, from_flat, setting

CutMode = Literal["reencode", "copy", "none"]
Engine = Literal["local", "ray"]
Precision = Literal["auto", "fp32", "bf16", "int8"]
"""A ``--precision`` value (:mod:`clipminer.precision`)."""
PRECISIONS: tuple[str, ...] = get_args(Precision)
RelabelVote = Literal["both", "video"]
OpenSetMode = Literal["auto", "off"]
X264Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"]
"""x264 speed presets offered for ``--cut reencode`` (``benchmarks/cut_settings.py``)."""


@dataclass(frozen=True)
class FindClipsConfig:
    """Everything find-clips was asked to do."""

    sample_fps: float = setting(
        2.0, "Frames per second scored by the image model (by timestamp).", min=0.01
    )
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    max_clips_per_video: int | None = setting(
        None, "Keep only the best-scoring segments of each video.", min=1
    )
    cut: CutMode = setting(
        "reencode",
        "reencode: frame-exact, source frame rate and audio kept (AAC/MP3 audio copied); "
        "copy: stream copy from the "
        "keyframe at or before the start (fast, actual start recorded); none: manifests only.",
    )
    cut_preset: X264Preset = setting(
        "veryfast",
        "x264 preset of --cut reencode. Measured against veryfast at CRF 18 on 9 sources: "
        "superfast 0.56-0.78x the CPU for 1.3-2.4x bigger files, faster 1.3-1.75x the CPU "
        "for 0.8-1.1x the size.",
    )
    cut_crf: int = setting(
        18,
        "x264 quality of --cut reencode (lower is better; 18 is near transparent).",
        min=0,
        max=51,
    )
    batch_size: int | None = setting(
        None,
        "Frames per image-model batch (default on the CPU: 4 at 224 px, twice that in bf16, "
        "more for smaller inputs; 32 on CUDA).",
        min=1,
    )
    """Default on the CPU 4 at 224 px, more for smaller inputs (4 x (224 / size)^2, at
    most 32: the same activation memory), measured as fast end to end as 8 or 16 at 224 px
    with the peak under 1 GiB on 1080p; 32 on CUDA."""
    device: str = setting(
        "auto", "Where the models run: auto (CUDA when present), cpu, cuda, cuda:N."
    )
    decode_device: str = setting(
        "cpu", "cpu, or cuda/cuda:N to decode with NVDEC (falls back to the CPU when unavailable)."
    )
    image_size: int | None = setting(
        None, "Run the image model at this square size instead of its trained size.", min=16
    )
    relabel_windows: int = setting(
        4, "Most windows of the video model's clip length averaged over a segment.", min=1
    )
    relabel_agree: int = setting(
        2,
        "Stop re-labelling a segment once its first windows (taken from the middle out) "
        "all name the same class and this many have run; 0: run every window.",
        min=0,
    )
    score_stride: int = setting(
        3,
        "Score every Nth sampled frame first, and the frames between two of them only "
        "where those two differ (another top class, or a class probability by more than "
        "--score-tolerance); elsewhere interpolate. 1: score every sampled frame.",
        min=1,
    )
    score_tolerance: float = setting(
        0.05,
        "How far apart (largest difference of one class's probability) two scored frames "
        "may be for the frames between them to be interpolated (--score-stride > 1).",
        min=0.0,
        max=1.0,
    )
    relabel_vote: RelabelVote = setting(
        "both",
        "both: whether a candidate is an action is decided by the image model's scores over "
        "the segment and the video model's together (their action shares averaged), which "
        "action by the video model; video: the video model alone (its background drops it).",
    )
    open_set: OpenSetMode = setting(
        "auto",
        "auto: drop candidates whose open-set score (the label's probability, the image "
        "model's over the segment averaged with the video model's) is below the threshold "
        "calibrated when the image model was trained; off: keep them (the score is still "
        "written to segments.csv).",
    )
    open_set_threshold: float | None = setting(
        None,
        "Open-set threshold to use instead of the image model's calibrated one (0..1; "
        "higher: fewer, surer clips).",
        min=0.0,
        max=1.0,
    )
    shots: bool = setting(
        True,
        "Find hard cuts and fades in the frames the pass decodes and split or trim the "
        "segments there, so that no clip spans two shots (boundaries in shots.csv).",
    )
    shot_detector: ShotDetectorName = setting(
        "adaptive",
        "PySceneDetect detector watching every source frame for cuts: adaptive (a change "
        "of hue, saturation and brightness that stands out from its neighbours'), content "
        "(that change above a fixed threshold) or histogram (the brightness histogram's "
        "change).",
    )
    shot_threshold: float | None = setting(
        None,
        "The shot detector's threshold on its own scale (default: PySceneDetect's): "
        "adaptive 3.0 (ratio), content 27 (0-255), histogram 0.2 (0-1). Lower finds more cuts.",
        min=0.0001,
        max=255.0,
    )
    precision: Precision = setting(
        "auto",
        "Inference precision of both models: auto (the fastest this machine runs natively: "
        "the int8 weights of a bundle made by `clipminer quantize`, else bf16 on CPUs with "
        "AVX512_BF16/AMX and on CUDA, else fp32; checked against fp32 at the start of the "
        "run, see --precision-guard), fp32, bf16, int8 (a quantized bundle).",
    )
    low_memory: bool = setting(
        False,
        "Hand big freed blocks (1 MiB and up) back to the system at once: peak anonymous "
        "memory about 110 MiB lower on 1080p (566-590 instead of 677-705 MiB), about 17% "
        "slower. For many batch workers on one machine; it holds for the whole process.",
    )
    precision_guard: float = setting(
        0.98,
        "With --precision auto, the first 64 frames and 8 re-label windows also run in "
        "fp32; if fewer than this share agree on the top class, the model falls back to "
        "fp32 (one line says so; run.json records it). 0: no check.",
        min=0.0,
        max=1.0,
    )

    def __post_init__(self) -> None:
        check_declared(self)  # objects built in code meet the declarations too


def findclips_config(values: dict[str, Any], *, where: str) -> FindClipsConfig:
    """A :class:`FindClipsConfig` from flat snake_case settings (the command line's
    options or the ``[findclips]`` table of ``nightly.toml``); unknown keys are refused."""
    return from_flat(FindClipsConfig, values, where=where)


@dataclass(frozen=True)
class BatchConfig:
    """What ``batch`` was asked to do: the command's options and nightly's ``[batch]``
    table (``findclips`` is every find-clips setting; the models are given apart)."""

    image_model: str = ""
    video_models: tuple[str, ...] = ()
    findclips: FindClipsConfig = field(default_factory=FindClipsConfig)
    engine: Engine = setting("local", "local: this machine; ray: a Ray cluster (clipminer[ray]).")
    ray_address: str | None = setting(
        None, "Ray cluster address (default: start a local Ray).", metavar="ADDR"
    )
    workers: int = setting(1, "Videos mined at once (processes, or Ray actors).", min=1)
    retry_failed: bool = setting(False, "Try videos that failed before again.")
    force: bool = setting(False, "Redo videos done with other options or models.")

    def options_hash(self) -> str:
        """Changes when anything that shapes the outputs changes (options or models)."""
        models = [_file_digest(p) for p in (self.image_model, *self.video_models)]
        settings = json.dumps(asdict(self.findclips), sort_keys=True, default=str)
        return hashlib.sha256(f"{settings}|{models}".encode()).hexdigest()[:16]


def _file_digest(name: str) -> str:
    """A hash of a model file's content; of a model in the store, its fingerprint."""
    from clipminer import store

    if store.is_url(name):
        return store.stat(name).fingerprint[:16]
    path = Path(name)
    if not path.is_file():
        raise UsageError(f"{path}: no such model file")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


Int8Backend = Literal["auto", "openvino", "torch-fx"]


@dataclass(frozen=True)
class QuantizeConfig:
    """What ``quantize`` tries and what it accepts."""

    precision: Precision = setting(
        "auto",
        "auto keeps the fastest mode that passes the guard (fp32 when none does); an "
        "explicit mode that fails it is an error.",
    )
    inputs: int | None = setting(
        None, "Frames (image model, default 400) or clips (video, 48).", min=4, metavar="N"
    )
    min_agreement: float = setting(
        0.99, "Least top-1 agreement with fp32 on held-out inputs.", min=0.0, max=1.0
    )
    backend: Int8Backend = setting(
        "auto", "int8 backend: auto (OpenVINO when installed, else torch-fx), openvino, torch-fx."
    )


# -- curation ----------------------------------------------------------------------------

ExportInclude = Literal["accepted", "all"]


@dataclass(frozen=True)
class ExportConfig:
    """How ``export`` makes the dataset (the vote rule is stored in ``review.sqlite``;
    see :func:`clipminer.curate.verdicts.rule_for_export`)."""

    splits: str = setting(
        "0.8,0.1,0.1",
        "Split ratios summing to 1; 0 leaves a split out. No source video or duplicate "
        "group is ever in two splits.",
        metavar="TRAIN,VAL,TEST",
    )
    include: ExportInclude = setting(
        "accepted",
        "accepted: clips reviewers accepted; all: every clip not rejected (the mined label "
        "where nobody voted). Dropped duplicates never go in.",
    )
    rejected_as: str | None = setting(
        None, "Also export the clips reviewers rejected, as this class (e.g. background: "
        "a model trained on the dataset then learns what is not an action, the mistakes "
        "the miner made; the open-set judge reads that label).", metavar="LABEL",
    )  # fmt: skip
    webdataset: bool = setting(
        False, "Also write WebDataset tar shards: shards/<split>-000000.tar ..."
    )
    shard_size: int = setting(1000, "Clips per WebDataset shard.", min=1, metavar="N")
    seed: int = setting(0, "Random seed of the split; the same seed, the same split.")
    hardlink: bool = setting(
        False, "Hard-link the clip files instead of copying them (copies across disks)."
    )
    force: bool = setting(
        False, "Replace a dataset exported before (once the new one is complete)."
    )


# -- curation (dedup) ------------------------------------------------------------------------

DedupSpace = Literal["image", "video"]


@dataclass(frozen=True)
class DedupConfig:
    """What ``dedup`` compares: the command's options and nightly's ``[dedup]`` table.

    The thresholds are cosine similarities from which two clips (videos) are
    near-duplicates: the research package's 0.97, which measurements here support on
    real footage and not on generated. ``benchmarks/dedup_margin.py`` (the 11 real
    videos of ../shared/data, each re-uploaded at 3/4 size and x264 CRF 32, 6 s each,
    densenet121 of the demo): copies 0.979-0.998 to their originals (median 0.998),
    different videos at most 0.960 (median 0.67). On the demo's generated videos, which
    all come from one generator, copies scored 0.999-0.9998 and distinct clips of one
    action up to 0.998 (the demo runs at 0.999). A classifier's features gather by
    class, so check ``similarity`` in duplicates.csv on your own footage and set the
    thresholds from it.
    """

    threshold: float = setting(
        0.97,
        "Clips whose embeddings have cosine >= this are near-duplicates.",
        min=0.0,
        max=1.0,
        metavar="COS",
    )
    video_threshold: float = setting(
        0.97,
        "Source videos whose mean frame embeddings have cosine >= this are near-duplicates "
        "(every clip of a dropped video is dropped).",
        min=0.0,
        max=1.0,
        metavar="COS",
    )
    space: DedupSpace = setting(
        "image", "Compare the image model's embeddings or the video model's."
    )
    within_videos: bool = setting(
        False,
        "Also group near-duplicate clips of the same video (replays, repeated footage). "
        "Off by default: consecutive moments of one scene look alike.",
    )


# -- training ----------------------------------------------------------------------------

Schedule = Literal["cosine", "onecycle"]
Channels = Literal["RGB", "BGR"]
"""Channel order a model's weights expect (decoded frames are always RGB)."""
TrainLayers = Literal["all", "last-block", "head"]


@dataclass(frozen=True)
class FitConfig:
    """Optimisation settings."""

    epochs: int = setting(10, "Passes over the training data.", min=1)
    lr: float = setting(1e-3, "Peak learning rate of AdamW.", above=0.0)
    weight_decay: float = setting(0.05, "AdamW weight decay.", min=0.0)
    label_smoothing: float = setting(
        0.0, "Label smoothing of the cross-entropy loss.", min=0.0, max=0.99
    )
    schedule: Schedule = setting("cosine", "Learning-rate schedule, stepped per batch.")
    grad_accum_steps: int = setting(
        1, "Steps whose gradients are summed per update.", min=1, flag="grad_accum"
    )
    amp: bool = setting(True, "Mixed precision on CUDA (ignored on the CPU).")
    seed: int = setting(0, "Random seed.")
    ema_decay: float = setting(
        0.0,
        "Validate and keep an exponential moving average of the weights, updated every step "
        "with this decay (0: off; 0.99 averages about the last 100 steps).",
        min=0.0,
        max=0.9999,
    )
    tensorboard: Path | None = setting(
        None,
        "Also write each epoch's loss, top-1 and learning rate as TensorBoard scalars to this "
        "folder (needs `pip install tensorboard`).",
        metavar="DIR",
    )

    def __post_init__(self) -> None:
        check_declared(self)


@dataclass(frozen=True)
class VideoFitConfig(FitConfig):
    """Optimisation settings of video training: the small-data recipe's defaults."""

    epochs: int = setting(15, "Passes over the training data.", min=1)
    label_smoothing: float = setting(
        0.1, "Label smoothing of the cross-entropy loss.", min=0.0, max=0.99
    )
    ema_decay: float = setting(
        0.98,
        "Validate and keep an exponential moving average of the weights, updated every step "
        "with this decay (0: off; 0.98 averages about the last 50 steps).",
        min=0.0,
        max=0.9999,
    )


@dataclass(frozen=True)
class ImageTrainConfig:
    """Everything ``train-image`` was asked to do (recorded in the bundle)."""

    arch: str = setting(
        "densenet121",
        "densenet121, densenet161, densenet169, densenet201, resnet18, resnet50 or "
        "mobilenet_v3_large.",
        metavar="ARCH",
    )
    weights: str = setting(
        "imagenet",
        "imagenet (torchvision weights: hub cache, or download), none (random init), or a "
        "PATH to a torchvision state dict or a clipminer bundle.",
        metavar="WEIGHTS",
    )
    train_layers: TrainLayers = setting(
        "all", "Fine-tune all layers, only the last feature block and the head, or the head."
    )
    image_size: int = setting(224, "Square input size in pixels.", min=16)
    batch_size: int = setting(32, "Images per step.", min=1)
    val_fraction: float = setting(
        0.1,
        "Share of each class held out for validation, chosen by content hash (stable across "
        "re-runs).",
        min=0.0,
        max=0.99,
    )
    balanced: bool = setting(False, "Sample classes equally often (for imbalanced data).")
    background: tuple[str, ...] = setting(
        (),
        "Non-action footage for the background class: a video, an image, a folder of them "
        "(searched recursively), or `builtin` (photographs shipped with scikit-image and "
        "matplotlib); repeat for several. Frames are spread evenly over each video; "
        "validation holds out whole sources.",
        metavar="SRC",
    )
    background_label: str = setting(
        "background", "Name of the background class (--background adds to it).", metavar="LABEL"
    )
    frames_per_clip: int = setting(
        4, "Class folders may hold video clips besides images (an export's DATASET/train "
        "and DATASET/val): this many frames evenly spaced in each clip are trained on, the "
        "frames of one clip on one side of the split.", min=4, metavar="N",
    )  # fmt: skip
    background_images: int | None = setting(
        None,
        "Background images to take from --background (default: twice the mean action "
        "class, at least 64).",
        min=1,
    )
    target_precision: float = setting(
        0.9,
        "Open-set calibration: the precision asked of action predictions on the validation "
        "images (held-out background included); the threshold that reaches it and the recall "
        "it leaves are stored in the model and used by find-clips.",
        min=0.01,
        max=1.0,
    )
    workers: int = setting(2, "DataLoader worker processes (0: load in the main process).", min=0)
    device: str = setting(
        "auto",
        "Where the model runs: auto (CUDA when present), cpu, cuda, cuda:N.",
        metavar="DEVICE",
    )
    fit: FitConfig = field(default_factory=FitConfig)

    def __post_init__(self) -> None:
        check_declared(self)
        if not self.background_label.strip():
            raise UsageError("--background-label must not be empty")


@dataclass(frozen=True)
class ClipSpec:
    """How clips are cut from a video for a model."""

    clip_len: int = setting(16, "Frames per clip.", min=1)
    frame_rate: float = setting(15.0, "Frames per second clips are sampled at.", min=0.1)
    size: int = setting(112, "Square crop side in pixels.", min=8, flag="frame_size")
    mean: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
    std: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)
    crop_fraction: float = 0.875
    """The crop keeps this share of the short side (travels in the bundle's input spec)."""
    channels: Channels = "RGB"
    """Channel order the model takes; mean and std are in this order."""
    scale: float = 1.0
    """Pixels are scaled to 0..scale before the mean is subtracted (255: Caffe weights)."""

    @property
    def short_side(self) -> int:
        """Frames are decoded with this short side (128 for a 112 crop), then cropped."""
        return round(self.size / self.crop_fraction / 2) * 2

    def __post_init__(self) -> None:
        if self.clip_len < 1 or self.frame_rate <= 0 or self.size < 8:
            raise UsageError(f"bad clip settings: {self}")
        if self.channels not in ("RGB", "BGR") or not self.scale > 0:
            raise UsageError(f"bad clip pixel settings: {self.channels!r}, scale {self.scale}")


@dataclass(frozen=True)
class VideoSource:
    """Where labelled videos come from: UCF-101 official splits or a folder tree."""

    ucf101: Path | None = setting(
        None, "UCF-101 root: <Class>/v_<Class>_gXX_cYY.avi.", metavar="DIR"
    )
    splits: Path | None = setting(
        None,
        "With --ucf101: folder with classInd.txt, trainlistNN.txt, testlistNN.txt.",
        metavar="DIR",
    )
    split: int = setting(1, "UCF-101 split 1, 2 or 3.", min=1, max=3)
    videos: Path | None = setting(
        None,
        "Instead of UCF-101: a folder with one sub-folder of videos per class.",
        metavar="DIR",
    )
    val_dir: Path | None = setting(
        None, "With --videos: validate on this folder instead of a split.", metavar="DIR"
    )
    val_fraction: float = setting(
        0.2,
        "With --videos: share of each class held out (by file name); 0 trains on every "
        "video and keeps the last epoch (evaluate on a separate test set with eval-video).",
        min=0.0,
        max=0.99,
    )
    background: tuple[str, ...] = setting(
        (),
        "Non-action videos for the background class: a video or a folder of them (searched "
        "recursively); repeat for several. Each is a training video of that class (random "
        "clips from all of it), repeated to balance the actions; validation holds out whole "
        "videos.",
        metavar="SRC",
    )
    background_label: str = setting(
        "background", "Name of the background class (--background adds to it).", metavar="LABEL"
    )

    def __post_init__(self) -> None:
        if (self.ucf101 is None) == (self.videos is None):
            raise UsageError("give either --ucf101 ROOT --splits DIR or --videos DIR")
        if self.ucf101 is not None and self.splits is None:
            raise UsageError(
                "--ucf101 needs --splits DIR (classInd.txt, trainlistNN.txt, testlistNN.txt)"
            )
        if not 0 <= self.val_fraction < 1:
            raise UsageError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_fraction == 0 and self.ucf101 is not None:
            raise UsageError("--val-fraction 0 is for --videos; UCF-101 validates on its test list")

    @property
    def validates(self) -> bool:
        """Whether training has a validation part (to choose the best epoch on)."""
        return self.ucf101 is not None or self.val_dir is not None or self.val_fraction > 0


@dataclass(frozen=True)
class VideoTrainConfig:
    """Everything ``train-video`` was asked to do (recorded in the bundle).

    The defaults are a recipe for few labelled videos: several randomly placed clips
    per video per epoch, random resized crops and colour jitter, label smoothing,
    warm-up and cosine decay, weight decay, and an average of the weights validated on
    several clips per video, so that the kept epoch does not chase one noisy video.
    """

    arch: str = setting(
        "r2plus1d_18",
        "c3d, small3d, r3d_18, mc3_18, r2plus1d_18, r3d_50, slowfast_r18, lrcn, fstcn, or an "
        "image network inflated to 3D: densenet121_3d, resnet18_3d, resnet50_3d.",
        metavar="ARCH",
    )
    weights: str = setting(
        "none",
        "none, kinetics400 (torchvision weights for r3d_18, mc3_18, r2plus1d_18), "
        "imagenet-inflated (torchvision's ImageNet weights inflated, for the *_3d archs), or a "
        "PATH: torchvision state dict, clipminer bundle (its preprocessing is kept), C3D "
        "Sports-1M (c3d-pretrained.pth features/classifier or conv1..fc8 names; BGR 0-255 "
        "mean-subtracted input is recorded), Hara et al. 3D-ResNet-50 checkpoint for r3d_50.",
        metavar="WEIGHTS",
    )
    init_from: Path | None = setting(
        None,
        "Start from a trained image model, inflated to 3D (densenet121 -> densenet121_3d, "
        "resnet18 -> resnet18_3d, resnet50 -> resnet50_3d); classes are matched by name and "
        "the image model's preprocessing is kept.",
        metavar="IMAGE.pt",
    )
    clip: ClipSpec = field(default_factory=ClipSpec)
    batch_size: int = setting(8, "Clips per step.", min=1)
    train_clips_per_video: int = setting(
        4, "Randomly placed clips taken from each training video per epoch.", min=1
    )
    val_clips_per_video: int = setting(3, "Clips averaged per validation video.", min=1)
    crop_scale: float = setting(
        0.4,
        "Random resized crops cover at least this share of the frame's area (1: plain random "
        "crops of the model's size, no resizing).",
        min=0.05,
        max=1.0,
    )
    color_jitter: float = setting(
        0.3,
        "Strength of the random brightness, contrast and saturation change, one per clip (0: off).",
        min=0.0,
        max=1.0,
    )
    hflip: bool = setting(
        False, "Random horizontal flips (off by default: they swap left/right motions)."
    )
    workers: int = setting(2, "DataLoader worker processes (0: load in the main process).", min=0)
    device: str = setting(
        "auto",
        "Where the model runs: auto (CUDA when present), cpu, cuda, cuda:N.",
        metavar="DEVICE",
    )
    cache: Path | None = setting(
        None, "A cache made by prepare-videos (same frame rate and size).", metavar="DIR"
    )
    fit: VideoFitConfig = field(default_factory=VideoFitConfig)

    def __post_init__(self) -> None:
        check_declared(self)
        if self.init_from is not None and self.weights != "none":
            raise UsageError(
                f"--init-from and --weights {self.weights} both give starting weights; keep one"
            )
