"""Video classifiers: keyword-only builders in one plain dict.

Every model takes float input (B, C, T, H, W) and returns logits (B, num_classes).
Variation is passed as classes (``block=Bottleneck``, ``conv_makers=[...]``), as in
torchvision's ``VideoResNet``, which four of them reuse.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torchvision.models as tvm
import torchvision.models.video as tvv
from torch import Tensor, nn
from torchvision.models import WeightsEnum
from torchvision.models.video.resnet import Bottleneck, Conv3DSimple, VideoResNet

from clipminer.errors import BundleError, ClipminerError, UsageError
from clipminer.models import image as image_models
from clipminer.models.bundle import Bundle, build_from_bundle
from clipminer.models.inflate import (
    TimePlan,
    copy_head_rows,
    inflate_modules,
    inflate_state_dict,
    match_labels,
)
from clipminer.models.weights import build_pretrained, load_matching, read_weights
from clipminer.transforms import IMAGENET_MEAN, IMAGENET_STD, PixelNorm

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
KINETICS_PIXELS = PixelNorm(KINETICS_MEAN, KINETICS_STD)
"""torchvision's Kinetics-400 video weights: RGB in 0..1, Kinetics mean and std."""
IMAGENET_PIXELS = PixelNorm(IMAGENET_MEAN, IMAGENET_STD)
"""ImageNet weights (inflated too): RGB in 0..1, ImageNet mean and std."""
SPORTS1M_C3D_PIXELS = PixelNorm(
    mean=(90.0, 98.0, 102.0), std=(1.0, 1.0, 1.0), channels="BGR", scale=255.0
)
"""Caffe-style input of the C3D Sports-1M weights: BGR, 0..255, the mean (in BGR order)
subtracted, no division; 112 × 112 crops of frames resized to 128 × 171."""


# -- C3D (Tran et al. 2015) -------------------------------------------------------------


class C3D(nn.Module):
    """C3D: 8 conv3d layers (3×3×3), 5 pools, fc6/fc7 of 4096, for 3×16×112×112 clips.

    Layer names follow the Sports-1M weights' usual port (conv1 .. conv5b, fc6 .. fc8),
    so those state dicts load directly. An adaptive pool before fc6 (identity at
    16×112×112) lets smaller clips run too.
    """

    def __init__(self, *, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> nn.Conv3d:
            return nn.Conv3d(cin, cout, kernel_size=3, padding=1)

        self.conv1, self.conv2 = conv(3, 64), conv(64, 128)
        self.conv3a, self.conv3b = conv(128, 256), conv(256, 256)
        self.conv4a, self.conv4b = conv(256, 512), conv(512, 512)
        self.conv5a, self.conv5b = conv(512, 512), conv(512, 512)
        self.pool1 = nn.MaxPool3d((1, 2, 2), (1, 2, 2))
        self.pool = nn.MaxPool3d((2, 2, 2), (2, 2, 2), ceil_mode=True)
        self.pool5 = nn.MaxPool3d((2, 2, 2), (2, 2, 2), padding=(0, 1, 1), ceil_mode=True)
        self.fit = nn.AdaptiveAvgPool3d((1, 4, 4))
        self.fc6, self.fc7 = nn.Linear(8192, 4096), nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.relu, self.dropout = nn.ReLU(inplace=True), nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        r = self.relu
        x = self.pool1(r(self.conv1(x)))
        x = self.pool(r(self.conv2(x)))
        x = self.pool(r(self.conv3b(r(self.conv3a(x)))))
        x = self.pool(r(self.conv4b(r(self.conv4a(x)))))
        x = self.pool5(r(self.conv5b(r(self.conv5a(x)))))
        x = self.fit(x).flatten(1)
        x = self.dropout(r(self.fc6(x)))
        x = self.dropout(r(self.fc7(x)))
        return self.fc8(x)


# -- the small lecture 3D-CNN ------------------------------------------------------------


class Small3D(nn.Module):
    """Three conv3d-BN-ReLU-pool blocks (32, 64, 128 channels), global pool, linear head."""

    def __init__(self, *, num_classes: int, width: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for k, cout in enumerate((width, 2 * width, 4 * width)):
            layers += [
                nn.Conv3d(cin, cout, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm3d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool3d((1, 2, 2) if k == 0 else (2, 2, 2), ceil_mode=True),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.pool(self.features(x)).flatten(1)))


# -- 3D-ResNet-50 (Hara et al. 2018) -----------------------------------------------------


class HaraStem(nn.Sequential):
    """7×7×7 convolution, stride (1, 2, 2), then a 3×3×3 max pool of stride 2."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=3, stride=2, padding=1),
        )


def r3d_50(*, num_classes: int) -> nn.Module:
    """3D ResNet-50: bottleneck blocks [3, 4, 6, 3], projection shortcuts (type B)."""
    return VideoResNet(
        block=Bottleneck,
        conv_makers=[Conv3DSimple] * 4,
        layers=[3, 4, 6, 3],
        stem=HaraStem,
        num_classes=num_classes,
    )


# -- SlowFast on 3D ResNet-18 ------------------------------------------------------------


class _Block(nn.Module):
    """A 3D residual block whose first convolution has temporal extent ``kt``."""

    def __init__(self, cin: int, cout: int, *, kt: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(
            cin, cout, (kt, 3, 3), (1, stride, stride), (kt // 2, 1, 1), bias=False
        )
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, (1, 3, 3), 1, (0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv3d(cin, cout, 1, (1, stride, stride), bias=False), nn.BatchNorm3d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class SlowFast(nn.Module):
    """SlowFast (Feichtenhofer et al. 2019) on a ResNet-18 layout.

    The slow pathway sees every ``alpha``-th frame with full width; the fast pathway
    sees every frame with ``beta`` of the width; time-strided convolutions carry the
    fast features into the slow pathway after the stem and after each stage. The slow
    pathway is temporally 1×1 until the third stage, as in the paper.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        alpha: int = 4,
        beta: float = 1 / 8,
        depths: tuple[int, ...] = (2, 2, 2, 2),
    ) -> None:
        super().__init__()
        self.alpha = alpha
        slow_w = [64, 64, 128, 256, 512]
        fast_w = [max(4, int(w * beta)) for w in slow_w]
        self.slow_stem = self._stem(slow_w[0], kt=1)
        self.fast_stem = self._stem(fast_w[0], kt=5)
        self.laterals = nn.ModuleList(
            nn.Conv3d(f, 2 * f, (5, 1, 1), (alpha, 1, 1), (2, 0, 0), bias=False) for f in fast_w[:4]
        )
        self.slow_stages = nn.ModuleList()
        self.fast_stages = nn.ModuleList()
        for i, depth in enumerate(depths):
            stride = 1 if i == 0 else 2
            slow_in = slow_w[i] + 2 * fast_w[i]
            self.slow_stages.append(
                self._stage(slow_in, slow_w[i + 1], depth, stride, kt=1 if i < 2 else 3)
            )
            self.fast_stages.append(self._stage(fast_w[i], fast_w[i + 1], depth, stride, kt=3))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(slow_w[-1] + fast_w[-1], num_classes)

    @staticmethod
    def _stem(width: int, *, kt: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv3d(3, width, (kt, 7, 7), (1, 2, 2), (kt // 2, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        )

    @staticmethod
    def _stage(cin: int, cout: int, depth: int, stride: int, *, kt: int) -> nn.Sequential:
        blocks = [_Block(cin, cout, kt=kt, stride=stride)]
        blocks += [_Block(cout, cout, kt=kt, stride=1) for _ in range(depth - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        slow = self.slow_stem(x[:, :, :: self.alpha])
        fast = self.fast_stem(x)
        for lateral, slow_stage, fast_stage in zip(
            self.laterals, self.slow_stages, self.fast_stages, strict=True
        ):
            side = lateral(fast)
            if side.shape[2] != slow.shape[2]:  # clip lengths not divisible by alpha
                side = nn.functional.adaptive_avg_pool3d(side, (slow.shape[2], *side.shape[3:]))
            slow = slow_stage(torch.cat([slow, side], dim=1))
            fast = fast_stage(fast)
        features = torch.cat([self.pool(slow).flatten(1), self.pool(fast).flatten(1)], dim=1)
        return self.fc(self.dropout(features))


# -- LRCN (Donahue et al. 2015) -----------------------------------------------------------


class LRCN(nn.Module):
    """A 2D CNN (ResNet-18 trunk) on every frame, an LSTM over time, a linear head."""

    def __init__(self, *, num_classes: int, hidden: int = 256) -> None:
        super().__init__()
        trunk = tvm.resnet18(weights=None)
        trunk.fc = nn.Identity()
        self.cnn = trunk
        self.lstm = nn.LSTM(512, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        features = self.cnn(frames).view(b, t, -1)
        outputs, _ = self.lstm(features)
        return self.fc(outputs.mean(dim=1))


# -- FstCN (Sun et al. 2015) --------------------------------------------------------------


class FstCN(nn.Module):
    """Factorised spatio-temporal CNN: shared spatial (1×3×3) convolutions on every
    frame, then temporal (3×1×1) convolutions across frames, fused with a spatial
    branch on the middle frame's features."""

    def __init__(self, *, num_classes: int, width: int = 64) -> None:
        super().__init__()

        def spatial(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv3d(cin, cout, (1, 3, 3), padding=(0, 1, 1), bias=False),
                nn.BatchNorm3d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool3d((1, 2, 2)),
            ]

        self.spatial = nn.Sequential(
            *spatial(3, width), *spatial(width, 2 * width), *spatial(2 * width, 4 * width)
        )
        c = 4 * width
        self.temporal = nn.Sequential(
            nn.Conv3d(c, c, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(c),
            nn.ReLU(inplace=True),
            nn.Conv3d(c, c, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(c),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(2 * c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        features = self.spatial(x)
        middle = features[:, :, features.shape[2] // 2 : features.shape[2] // 2 + 1]
        fused = torch.cat(
            [self.pool(self.temporal(features)).flatten(1), self.pool(middle).flatten(1)], dim=1
        )
        return self.fc(self.dropout(fused))


# -- image networks inflated to 3D (I3D) ---------------------------------------------------

LATE_STAGES = ("layer3.", "layer4.", "features.transition2.", "features.transition3.")
"""Where inflated networks downsample time along with space (8 frames end as 2)."""


def _plan(name: str, layer: nn.Module) -> TimePlan:
    """k×k convolutions span 3 frames (1×1 stay 1×1×1); time is strided in the late stages."""
    late = name.startswith(LATE_STAGES)
    if isinstance(layer, nn.Conv2d):
        spatial = (
            layer.kernel_size[0] if isinstance(layer.kernel_size, tuple) else layer.kernel_size
        )
        stride = layer.stride[0] if isinstance(layer.stride, tuple) else layer.stride
        return TimePlan(kernel=1 if spatial == 1 else 3, stride=2 if late and stride > 1 else 1)
    if isinstance(layer, nn.AvgPool2d):
        return TimePlan(stride=2 if late else 1)
    return TimePlan()


class DenseNet3D(nn.Module):
    """torchvision's DenseNet with every layer inflated; same state-dict names."""

    def __init__(self, net: tvm.DenseNet) -> None:
        super().__init__()
        self.features = inflate_modules(net.features, _plan, "features.")
        self.classifier = net.classifier

    def forward(self, x: Tensor) -> Tensor:
        features = nn.functional.relu(self.features(x))
        return self.classifier(nn.functional.adaptive_avg_pool3d(features, 1).flatten(1))


def densenet121_3d(*, num_classes: int) -> nn.Module:
    """DenseNet-121 inflated to 3D (the default image model's video twin)."""
    return DenseNet3D(tvm.densenet121(weights=None, num_classes=num_classes))


def resnet18_3d(*, num_classes: int) -> nn.Module:
    """ResNet-18 inflated to 3D: its stem max-pool kept, so it takes resnet18 weights."""
    return inflate_modules(tvm.resnet18(weights=None, num_classes=num_classes), _plan)


def resnet50_3d(*, num_classes: int) -> nn.Module:
    """ResNet-50 inflated to 3D; it takes resnet50 weights."""
    return inflate_modules(tvm.resnet50(weights=None, num_classes=num_classes), _plan)


# -- the table ---------------------------------------------------------------------------


def _torchvision(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    def build(*, num_classes: int) -> nn.Module:
        return builder(weights=None, num_classes=num_classes)

    build.__doc__ = f"torchvision's {builder.__name__}."
    return build


def c3d(*, num_classes: int) -> nn.Module:
    """C3D (Tran et al. 2015)."""
    return C3D(num_classes=num_classes)


def small3d(*, num_classes: int) -> nn.Module:
    """The small lecture 3D-CNN, for small data and small inputs."""
    return Small3D(num_classes=num_classes)


def slowfast_r18(*, num_classes: int) -> nn.Module:
    """SlowFast with ResNet-18 pathways (alpha 4, beta 1/8)."""
    return SlowFast(num_classes=num_classes)


def lrcn(*, num_classes: int) -> nn.Module:
    """LRCN: ResNet-18 frame features and an LSTM."""
    return LRCN(num_classes=num_classes)


def fstcn(*, num_classes: int) -> nn.Module:
    """FstCN: factorised spatial and temporal convolutions."""
    return FstCN(num_classes=num_classes)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "c3d": c3d,
    "small3d": small3d,
    "r3d_18": _torchvision(tvv.r3d_18),
    "mc3_18": _torchvision(tvv.mc3_18),
    "r2plus1d_18": _torchvision(tvv.r2plus1d_18),
    "r3d_50": r3d_50,
    "slowfast_r18": slowfast_r18,
    "lrcn": lrcn,
    "fstcn": fstcn,
    "densenet121_3d": densenet121_3d,
    "resnet18_3d": resnet18_3d,
    "resnet50_3d": resnet50_3d,
}
"""Keyword-only builders by name: ``BUILDERS["r2plus1d_18"](num_classes=101)``."""


@dataclass(frozen=True)
class _Pretrained:
    build: Callable[..., nn.Module]
    weights: WeightsEnum


KINETICS400: dict[str, _Pretrained] = {
    "r3d_18": _Pretrained(tvv.r3d_18, tvv.R3D_18_Weights.KINETICS400_V1),
    "mc3_18": _Pretrained(tvv.mc3_18, tvv.MC3_18_Weights.KINETICS400_V1),
    "r2plus1d_18": _Pretrained(tvv.r2plus1d_18, tvv.R2Plus1D_18_Weights.KINETICS400_V1),
}

INFLATED_FROM: dict[str, str] = {
    "densenet121_3d": "densenet121",
    "resnet18_3d": "resnet18",
    "resnet50_3d": "resnet50",
}
"""The image architecture each inflated video architecture takes its weights from."""

HEADS: dict[str, str] = {"c3d": "fc8", "densenet121_3d": "classifier"}
"""Name of the final Linear layer where it is not ``fc``."""


def head_name(arch: str) -> str:
    """Attribute of the classifier layer of ``arch``."""
    return HEADS.get(arch, "fc")


def build(arch: str, *, num_classes: int, weights: str = "none") -> nn.Module:
    """Build ``arch`` with a ``num_classes`` head.

    Args:
        arch: a key of :data:`BUILDERS`.
        num_classes: size of the head.
        weights: "none", "kinetics400" (torchvision weights for r3d_18, mc3_18,
            r2plus1d_18: hub cache, or a download when online), "imagenet-inflated"
            (torchvision's ImageNet weights of the image network an inflated arch comes
            from, inflated), or a PATH to a torchvision state dict, a clipminer bundle, or
            a published layout of :data:`FOREIGN_LAYOUTS` (C3D Sports-1M as conv1 .. fc8
            or features.N / classifier.N, Hara et al.'s 3D-ResNet-50); the head is
            re-initialised when its class count differs.
    """
    _check_arch(arch, num_classes)
    check_weights(arch, weights)
    head = head_name(arch)
    if weights == "kinetics400":
        spec = KINETICS400[arch]
        model = build_pretrained(spec.build, spec.weights, option="kinetics400", arch=arch)
        old = model.get_submodule(head)
        assert isinstance(old, nn.Linear)
        model.register_module(head, nn.Linear(old.in_features, num_classes))
        return model
    if weights == "imagenet-inflated":
        image_arch = INFLATED_FROM[arch]
        spec2d = image_models.ARCHS[image_arch]
        net = build_pretrained(
            spec2d.build, spec2d.imagenet, option="imagenet-inflated", arch=image_arch
        )
        return inflate(arch, net.state_dict(), num_classes=num_classes, source="ImageNet")
    model = BUILDERS[arch](num_classes=num_classes)
    if weights != "none":
        load_weights_file(model, arch, weights)
    return model


# -- published checkpoints in other layouts ---------------------------------------------

_C3D_SEQUENTIAL = {
    "features": {0: "conv1", 3: "conv2", 6: "conv3a", 8: "conv3b", 11: "conv4a",
                 13: "conv4b", 16: "conv5a", 18: "conv5b"},
    "classifier": {0: "fc6", 3: "fc7", 6: "fc8"},
}  # fmt: skip
"""``nn.Sequential`` positions of C3D's layers in ``c3d-pretrained.pth``."""

_HARA_BLOCK = re.compile(r"^(layer\d+\.\d+)\.(conv|bn)(\d)\.(.+)$")


def c3d_from_sequential(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``features.N.*`` / ``classifier.N.*`` (the widely shared ``c3d-pretrained.pth``)
    -> clipminer's ``conv1`` .. ``fc8`` names; other names are kept."""
    renamed = {}
    for key, value in state.items():
        group, _, rest = key.partition(".")
        index, _, param = rest.partition(".")
        layer = _C3D_SEQUENTIAL.get(group, {}).get(int(index)) if index.isdigit() else None
        renamed[f"{layer}.{param}" if layer else key] = value
    return renamed


def _hara_name(key: str) -> str:
    """One Hara et al. 3D-ResNet name -> the torchvision ``VideoResNet`` one."""
    head, _, param = key.partition(".")
    if head in ("conv1", "bn1"):
        return f"stem.{0 if head == 'conv1' else 1}.{param}"
    match = _HARA_BLOCK.match(key)
    if match is None:
        return key  # layerN.M.downsample.*, fc.*: the same names
    block, kind, number, param = match.groups()
    return f"{block}.conv{number}.{0 if kind == 'conv' else 1}.{param}"


def r3d_from_hara(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Hara et al.'s 3D-ResNet names (``conv1``, ``bn1``, ``layer1.0.conv1``,
    ``layer1.0.bn1``, ..., ``fc``) -> ``r3d_50``'s (``stem.0``, ``stem.1``,
    ``layer1.0.conv1.0``, ``layer1.0.conv1.1``, ..., ``fc``)."""
    return {_hara_name(key): value for key, value in state.items()}


@dataclass(frozen=True)
class ForeignLayout:
    """A published checkpoint layout that loads into one architecture."""

    name: str
    """Shown in messages."""
    marker: str
    """A tensor name only this layout has."""
    convert: Callable[[Mapping[str, Tensor]], dict[str, Tensor]]
    """Its names -> the architecture's."""
    pixels: PixelNorm | None = None
    """The preprocessing its weights were trained with; None: the clip settings'."""


FOREIGN_LAYOUTS: dict[str, tuple[ForeignLayout, ...]] = {
    "c3d": (
        ForeignLayout(
            "C3D Sports-1M, features/classifier", "features.0.weight",
            c3d_from_sequential, SPORTS1M_C3D_PIXELS,
        ),
        ForeignLayout("C3D Sports-1M, conv1 .. fc8", "conv1.weight", dict, SPORTS1M_C3D_PIXELS),
    ),
    "r3d_50": (ForeignLayout("Hara et al. 3D-ResNet", "bn1.weight", r3d_from_hara),),
}  # fmt: skip
"""Plain state dicts of other code bases each architecture takes, by a marker name."""


def foreign_layout(arch: str, state: Mapping[str, Tensor]) -> ForeignLayout | None:
    """The published layout ``state`` is in, if it is one ``arch`` takes."""
    return next((lay for lay in FOREIGN_LAYOUTS.get(arch, ()) if lay.marker in state), None)


def load_weights_file(model: nn.Module, arch: str, path: str) -> PixelNorm | None:
    """Load the weights at ``path`` into ``model`` (an ``arch``), the head excepted when
    its class count differs.

    Returns:
        The preprocessing the weights expect: a clipminer bundle's recorded one, a
        published layout's, or None when unknown (a plain state dict).

    Raises:
        ClipminerError: one line naming ``path``, its layout and the tensors that do
            not fit.
    """
    found = read_weights(path)
    state, pixels = found.state_dict, None
    source = f"{path} ({found.description})"
    if found.input is not None:
        spec = found.input
        pixels = PixelNorm(spec.mean, spec.std, channels=spec.channels, scale=spec.scale)
    elif (layout := foreign_layout(arch, state)) is not None:
        state, pixels = layout.convert(state), layout.pixels
        source = f"{path} (state dict, {layout.name} layout)"
    load_matching(model, state, source=source, head_prefixes=(f"{head_name(arch)}.",))
    return pixels


@dataclass(frozen=True)
class StartingModel:
    """A network to train and the preprocessing its starting weights expect."""

    model: nn.Module
    pixels: PixelNorm | None
    """None: random or unknown weights; keep the clip settings' mean and std."""


def build_start(arch: str, *, num_classes: int, weights: str = "none") -> StartingModel:
    """:func:`build`, with the preprocessing the weights were trained with (Kinetics or
    ImageNet statistics, Caffe-style input for C3D Sports-1M, a bundle's own)."""
    if weights == "kinetics400":
        return StartingModel(build(arch, num_classes=num_classes, weights=weights), KINETICS_PIXELS)
    if weights == "imagenet-inflated":
        return StartingModel(build(arch, num_classes=num_classes, weights=weights), IMAGENET_PIXELS)
    if weights == "none":
        return StartingModel(build(arch, num_classes=num_classes), None)
    _check_arch(arch, num_classes)
    model = BUILDERS[arch](num_classes=num_classes)
    return StartingModel(model, load_weights_file(model, arch, weights))


def _check_arch(arch: str, num_classes: int) -> None:
    if arch not in BUILDERS:
        raise UsageError(f"unknown video architecture {arch!r}; choose from {sorted(BUILDERS)}")
    if num_classes < 2:
        raise UsageError(f"a video classifier needs at least 2 classes, got {num_classes}")


def check_weights(arch: str, weights: str) -> None:
    """Refuse an unknown ``arch`` or named ``weights`` it has none of, before any work."""
    _check_arch(arch, 2)
    if weights == "kinetics400" and arch not in KINETICS400:
        raise UsageError(
            f"--weights kinetics400 exists for {sorted(KINETICS400)}, not {arch}; "
            "use --weights none or a PATH"
        )
    if weights == "imagenet-inflated" and arch not in INFLATED_FROM:
        raise UsageError(
            "--weights imagenet-inflated needs an inflated architecture "
            f"({', '.join(INFLATED_FROM)}), not {arch}"
        )


def inflate(
    arch: str,
    state: dict[str, Tensor],
    *,
    num_classes: int,
    source: str,
    rows: list[tuple[int, int]] | None = None,
) -> nn.Module:
    """An inflated ``arch`` from the state dict of the image network it comes from.

    Args:
        arch: a key of :data:`INFLATED_FROM`.
        state: the 2D network's tensors (torchvision names).
        num_classes: size of the new head.
        source: names the weights in errors.
        rows: (2D row, 3D row) classifier rows to copy; other rows are freshly initialised.

    Raises:
        BundleError: the tensors do not fit the architecture.
    """
    _check_arch(arch, num_classes)
    model = BUILDERS[arch](num_classes=num_classes)
    head = head_name(arch)
    try:
        inflated = inflate_state_dict(state, model.state_dict(), skip=(f"{head}.",))
        load_matching(model, inflated, source=source, head_prefixes=(f"{head}.",))
        head_layer = model.get_submodule(head)
        assert isinstance(head_layer, nn.Linear)
        copy_head_rows(head_layer, state, f"{head}.", rows or [])
    except (ValueError, ClipminerError) as exc:
        raise BundleError(f"{source}: does not inflate into {arch}: {exc}") from None
    return model


def from_image_bundle(
    arch: str, image: Bundle, labels: tuple[str, ...]
) -> tuple[nn.Module, tuple[str, ...]]:
    """``arch`` inflated from a trained image bundle (``train-video --init-from``).

    Classes are matched by :func:`~clipminer.labels.label_key`; a video class the image
    model does not know gets a freshly initialised classifier row.

    Returns:
        The model and the video labels whose classifier rows came from the image model.

    Raises:
        BundleError: ``image`` is not an image bundle or its weights do not inflate.
        UsageError: its architecture does not inflate into ``arch``.
    """
    name = image.source or "image model"
    if image.kind != "image":
        raise BundleError(f"{name}: --init-from needs an image model, got a {image.kind} model")
    expected = {v: k for k, v in INFLATED_FROM.items()}.get(image.arch)
    if expected is None:
        raise UsageError(
            f"{name}: a {image.arch} image model does not inflate; --init-from takes "
            f"{', '.join(INFLATED_FROM.values())} image models"
        )
    if expected != arch:
        raise UsageError(
            f"{name}: a {image.arch} image model inflates into --arch {expected}, not {arch}"
        )
    rows = match_labels(image.labels, labels)
    model = inflate(arch, image.state_dict, num_classes=len(labels), source=str(name), rows=rows)
    return model, tuple(labels[row] for _, row in rows)


def load_video_model(bundle: Bundle) -> nn.Module:
    """The network of a video bundle, weights loaded, in eval mode.

    Raises:
        BundleError: not a video bundle, an unknown arch, or weights that do not fit.
    """
    if bundle.kind != "video":
        raise BundleError(
            f"{bundle.source or 'bundle'}: expected a video model, got an image model"
        )
    return build_from_bundle(bundle, BUILDERS)
