"""Video model zoo: shapes, backward, save/load, weights."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from clipminer.errors import ClipminerError, UsageError
from clipminer.models import video
from clipminer.models.bundle import Bundle, InputSpec, load_bundle, save_bundle
from clipminer.models.weights import WeightsUnavailableError


@pytest.mark.parametrize("arch", sorted(video.BUILDERS))
def test_forward_backward_and_round_trip(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = video.build(arch, num_classes=4)
    x = torch.randn(2, 3, 8, 32, 32)
    out = model(x)
    assert out.shape == (2, 4)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    bundle = Bundle(
        kind="video",
        arch=arch,
        labels=("a", "b", "c", "d"),
        input=InputSpec(
            (32, 32), video.KINETICS_MEAN, video.KINETICS_STD, clip_len=8, frame_rate=10.0
        ),
        state_dict=model.state_dict(),
    )
    loaded = load_bundle(save_bundle(bundle, tmp_path / "m.pt"), kind="video")
    again = video.BUILDERS[arch](num_classes=4).eval()
    again.load_state_dict(loaded.state_dict)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))


def test_c3d_takes_its_canonical_input_and_sports1m_weights(tmp_path: Path) -> None:
    model = video.build("c3d", num_classes=487).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 112, 112)).shape == (1, 487)
    sports = {k: v for k, v in model.state_dict().items()}
    assert {"conv1.weight", "conv3a.weight", "conv5b.bias", "fc6.weight", "fc8.weight"} <= set(
        sports
    )
    torch.save(sports, tmp_path / "c3d.pickle")
    tuned = video.build("c3d", num_classes=5, weights=str(tmp_path / "c3d.pickle"))
    assert torch.equal(tuned.conv5b.weight, model.conv5b.weight)
    assert torch.equal(tuned.fc7.weight, model.fc7.weight)
    assert tuned.fc8.out_features == 5


def test_state_dict_of_another_architecture_is_refused(tmp_path: Path) -> None:
    torch.save(video.build("small3d", num_classes=3).state_dict(), tmp_path / "s.pt")
    with pytest.raises(
        ClipminerError, match=r"s\.pt \(state dict\): does not fit this architecture"
    ):
        video.build("r3d_18", num_classes=3, weights=str(tmp_path / "s.pt"))


def test_kinetics_weights_offline_and_unsupported(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError, match=r"r2plus1d_18-91a641e6\.pth.*--weights none"):
        video.build("r2plus1d_18", num_classes=3, weights="kinetics400")
    with pytest.raises(UsageError, match="kinetics400 exists for"):
        video.build("c3d", num_classes=3, weights="kinetics400")


def test_unknown_arch() -> None:
    with pytest.raises(UsageError, match="unknown video architecture"):
        video.build("i3d", num_classes=3)
