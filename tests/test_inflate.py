"""I3D inflation: image networks become video networks that agree with them on still clips."""

from __future__ import annotations

import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from clipminer.errors import BundleError, UsageError
from clipminer.models import image, video
from clipminer.models.bundle import Bundle, InputSpec
from clipminer.models.inflate import TimeAvgPool3d, TimeConv3d, match_labels
from clipminer.models.weights import WeightsUnavailableError, hub_cache_file
from clipminer.transforms import IMAGENET_MEAN, IMAGENET_STD

PAIRS = sorted(video.INFLATED_FROM.items())


@pytest.fixture(autouse=True)
def _no_denormals() -> Iterator[None]:
    """Random DenseNet activations decay into denormal floats, 30x slower on the CPU."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


def _trained_like(arch: str, num_classes: int) -> nn.Module:
    """A 2D network with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    net = image.build(arch, num_classes=num_classes)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.mark.parametrize(("arch3d", "arch2d"), PAIRS)
def test_a_still_clip_gives_the_image_models_logits(arch3d: str, arch2d: str) -> None:
    net2d = _trained_like(arch2d, 3)
    net3d = video.inflate(
        arch3d, net2d.state_dict(), num_classes=3, source="test", rows=[(0, 0), (1, 1), (2, 2)]
    ).eval()
    frame = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = net2d(frame)
        for frames in (1, 5):  # odd lengths pool too
            clip = frame.unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous()
            got = net3d(clip)
            assert got.shape == (2, 3)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert expected.std() > 0.05  # the agreement is not between two constant outputs


@pytest.mark.parametrize(("arch3d", "arch2d"), PAIRS[:1])
def test_a_moving_clip_differs_from_its_first_frame(arch3d: str, arch2d: str) -> None:
    net2d = _trained_like(arch2d, 3)
    net3d = video.inflate(arch3d, net2d.state_dict(), num_classes=3, source="test").eval()
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(net3d(clip), net2d(clip[:, :, 0]), atol=1e-3)


def test_time_padding_repeats_edge_frames_and_pools_any_length() -> None:
    conv = TimeConv3d(1, 1, (3, 1, 1), stride=(1, 1, 1), space_padding=(0, 0), bias=False)
    nn.init.constant_(conv.weight, 1 / 3)
    ramp = torch.arange(4.0).view(1, 1, 4, 1, 1)
    assert conv(ramp).flatten().tolist() == pytest.approx([1 / 3, 1, 2, 8 / 3])
    pool = TimeAvgPool3d((2, 1, 1), (2, 1, 1))
    assert pool(torch.arange(3.0).view(1, 1, 3, 1, 1)).flatten().tolist() == [0.5, 2.0]


def _image_bundle(arch: str, labels: tuple[str, ...]) -> Bundle:
    net = _trained_like(arch, len(labels))
    spec = InputSpec((32, 32), IMAGENET_MEAN, IMAGENET_STD)
    return Bundle("image", arch, labels, spec, net.state_dict(), source="img.pt")


def test_labels_match_by_name_and_new_classes_get_fresh_rows() -> None:
    bundle = _image_bundle("resnet18", ("SlidingLeft", "bouncing", "walking the dog"))
    labels = ("bouncing", "pulsing", "sliding_left")
    assert match_labels(bundle.labels, labels) == [(1, 0), (0, 2)]
    model, matched = video.from_image_bundle("resnet18_3d", bundle, labels)
    assert matched == ("bouncing", "sliding_left")
    fc = bundle.state_dict["fc.weight"]
    torch.testing.assert_close(model.fc.weight[0], fc[1])
    torch.testing.assert_close(model.fc.weight[2], fc[0])
    assert not any(torch.allclose(model.fc.weight[1], row) for row in fc)  # fresh
    torch.testing.assert_close(model.fc.bias[[0, 2]], bundle.state_dict["fc.bias"][[1, 0]])


def test_init_from_refuses_what_does_not_inflate() -> None:
    bundle = _image_bundle("resnet18", ("a", "b"))
    with pytest.raises(
        UsageError,
        match=r"img\.pt: a resnet18 image model inflates into --arch resnet18_3d, not r3d_18",
    ):
        video.from_image_bundle("r3d_18", bundle, ("a", "b"))
    mobile = Bundle("image", "mobilenet_v3_large", ("a", "b"), bundle.input, {}, source="m.pt")
    with pytest.raises(
        UsageError, match=r"m\.pt: a mobilenet_v3_large image model does not inflate"
    ):
        video.from_image_bundle("resnet18_3d", mobile, ("a", "b"))
    broken = Bundle(
        "image",
        "resnet18",
        ("a", "b"),
        bundle.input,
        {"fc.weight": torch.zeros(2, 7)},
        source="b.pt",
    )
    with pytest.raises(BundleError, match=r"b\.pt: does not inflate into resnet18_3d"):
        video.from_image_bundle("resnet18_3d", broken, ("a", "b"))
    with pytest.raises(UsageError, match="needs an inflated architecture"):
        video.build("small3d", num_classes=2, weights="imagenet-inflated")


def test_imagenet_inflated_from_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    cached = hub_cache_file(image.ARCHS["resnet18"].imagenet)
    with pytest.raises(WeightsUnavailableError, match=f"Download .* and put it at {cached}"):
        video.build("resnet18_3d", num_classes=4, weights="imagenet-inflated")
    cached.parent.mkdir(parents=True, exist_ok=True)
    net = _trained_like("resnet18", 1000)
    torch.save(net.state_dict(), cached)
    model = video.build("resnet18_3d", num_classes=4, weights="imagenet-inflated")
    assert model.fc.out_features == 4
    stem = net.state_dict()["conv1.weight"]
    torch.testing.assert_close(model.conv1.weight.sum(dim=2), stem)
    torch.testing.assert_close(model.conv1.weight[:, :, 0] * 3, stem)
