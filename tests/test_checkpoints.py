"""Published checkpoints in other layouts: C3D Sports-1M and Hara et al.'s 3D-ResNet-50.

No published file can be downloaded here: each test builds a state dict in the
published layout from the architecture's own tensors, renamed by hand (independently
of the mapping under test), and checks that every tensor lands where it came from.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from clipminer.config import ClipSpec
from clipminer.data.videos import to_clip_tensor
from clipminer.errors import ClipminerError
from clipminer.models import video
from clipminer.models.bundle import Bundle, InputSpec, load_bundle, save_bundle

C3D_POSITIONS = {
    "conv1": "features.0", "conv2": "features.3", "conv3a": "features.6",
    "conv3b": "features.8", "conv4a": "features.11", "conv4b": "features.13",
    "conv5a": "features.16", "conv5b": "features.18",
    "fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6",
}  # fmt: skip
"""Where the c3d-pretrained.pth loader of the C3D re-implementation finds each layer."""


def _as_c3d_pretrained(state: dict[str, Tensor]) -> dict[str, Tensor]:
    renamed = {}
    for key, value in state.items():
        layer, param = key.split(".")
        renamed[f"{C3D_POSITIONS[layer]}.{param}"] = value
    return renamed


def _as_hara(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """r3d_50 names -> Hara et al.'s, in a training script's checkpoint with DataParallel."""
    renamed = {}
    for key, value in state.items():
        key = key.replace("stem.0.", "conv1.").replace("stem.1.", "bn1.")
        key = re.sub(r"\.conv(\d)\.0\.", r".conv\1.", key)
        key = re.sub(r"\.conv(\d)\.1\.", r".bn\1.", key)
        renamed[f"module.{key}"] = value
    return renamed


@pytest.fixture(scope="module")
def sports1m(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Tensor]]:
    """A c3d-pretrained.pth stand-in (487 Sports-1M classes) and the tensors it holds."""
    torch.manual_seed(0)
    state = video.build("c3d", num_classes=487).state_dict()
    path = tmp_path_factory.mktemp("c3d") / "c3d-pretrained.pth"
    torch.save(_as_c3d_pretrained(state), path)
    return path, state


def test_c3d_pretrained_layout_loads_with_its_caffe_preprocessing(
    sports1m: tuple[Path, dict[str, Tensor]],
) -> None:
    path, original = sports1m
    start = video.build_start("c3d", num_classes=5, weights=str(path))
    loaded = start.model.state_dict()
    for name, tensor in original.items():
        if not name.startswith("fc8."):
            assert torch.equal(loaded[name], tensor), name
    assert loaded["fc8.weight"].shape == (5, 4096)
    assert start.pixels == video.SPORTS1M_C3D_PIXELS
    assert (start.pixels.channels, start.pixels.scale) == ("BGR", 255.0)


def test_c3d_own_layout_loads_with_the_same_preprocessing(
    tmp_path: Path, sports1m: tuple[Path, dict[str, Tensor]]
) -> None:
    _, state = sports1m
    torch.save({"state_dict": state}, tmp_path / "c3d.pickle")
    start = video.build_start("c3d", num_classes=3, weights=str(tmp_path / "c3d.pickle"))
    assert torch.equal(start.model.state_dict()["conv3b.weight"], state["conv3b.weight"])
    assert start.pixels == video.SPORTS1M_C3D_PIXELS


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"features.0.weight": torch.zeros(2, 3, 3, 3, 3)}, "features/classifier layout"),
        (video.build("fstcn", num_classes=3).state_dict(), r"\(state dict\)"),
    ],
)
def test_wrong_c3d_weights_give_one_line_naming_the_file(
    tmp_path: Path, content: dict[str, Tensor], expected: str
) -> None:
    path = tmp_path / "wrong.pth"
    torch.save(content, path)
    with pytest.raises(ClipminerError, match=f"wrong.pth.*{expected}") as caught:
        video.build_start("c3d", num_classes=3, weights=str(path))
    message = str(caught.value)
    assert "\n" not in message and "does not fit this architecture" in message


@pytest.mark.parametrize("num_classes", [400, 3])
def test_hara_resnet50_checkpoint_round_trips(tmp_path: Path, num_classes: int) -> None:
    torch.manual_seed(2)
    source = video.build("r3d_50", num_classes=400)
    for buffer in source.buffers():  # BatchNorm statistics that differ from a fresh init
        if buffer.dtype.is_floating_point:
            buffer.uniform_(0.5, 1.5)
    original = source.state_dict()
    hara = _as_hara(original)
    assert "module.layer1.0.bn1.running_var" in hara and "module.conv1.weight" in hara
    checkpoint = {"epoch": 200, "arch": "resnet-50", "state_dict": hara}
    torch.save(checkpoint, tmp_path / "r3d50_K_200ep.pth")
    start = video.build_start(
        "r3d_50", num_classes=num_classes, weights=str(tmp_path / "r3d50_K_200ep.pth")
    )
    loaded = start.model.state_dict()
    assert loaded.keys() == original.keys()
    for name, tensor in original.items():
        if num_classes == 400 or not name.startswith("fc."):
            assert torch.equal(loaded[name], tensor), name
    assert loaded["fc.weight"].shape == (num_classes, 2048)
    assert start.pixels is None  # the clip settings' Kinetics statistics are kept


def test_hara_mapping_of_single_names() -> None:
    assert video.r3d_from_hara(
        {
            "conv1.weight": torch.zeros(1),
            "bn1.running_mean": torch.zeros(1),
            "layer3.5.bn2.bias": torch.zeros(1),
            "layer4.0.downsample.1.weight": torch.zeros(1),
            "fc.bias": torch.zeros(1),
        }
    ).keys() == {
        "stem.0.weight",
        "stem.1.running_mean",
        "layer3.5.conv2.1.bias",
        "layer4.0.downsample.1.weight",
        "fc.bias",
    }


def _pixel_clip() -> np.ndarray:
    """uint8 T×H×W×3: every pixel R=10, G=20, B=30."""
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 10, 20, 30
    return frames


def test_caffe_spec_reaches_the_model_input_through_the_bundle(tmp_path: Path) -> None:
    pixels = video.SPORTS1M_C3D_PIXELS
    spec = InputSpec(
        (8, 8), pixels.mean, pixels.std, clip_len=2, frame_rate=8.0,
        channels=pixels.channels, scale=pixels.scale,
    )  # fmt: skip
    bundle = Bundle("video", "small3d", ("a", "b"), spec, {})
    loaded = load_bundle(save_bundle(bundle, tmp_path / "m.pt"), kind="video")
    clip = to_clip_tensor(_pixel_clip(), loaded.input.clip_spec())
    assert clip.shape == (3, 2, 8, 8)
    # BGR, 0..255, minus the BGR mean (90, 98, 102)
    assert clip[:, 0, 0, 0].tolist() == [30 - 90, 20 - 98, 10 - 102]
    rgb = to_clip_tensor(_pixel_clip(), ClipSpec(clip_len=2, size=8))
    assert not torch.allclose(rgb, clip)
    assert rgb[0, 0, 0, 0].item() == pytest.approx((10 / 255 - 0.43216) / 0.22803)
