"""Image model builders, weights handling and the frame scorer."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from clipminer.errors import ClipminerError, UsageError
from clipminer.models import image
from clipminer.models.bundle import Bundle, InputSpec, save_bundle
from clipminer.models.weights import WeightsUnavailableError
from clipminer.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_resize_shape


@pytest.mark.parametrize("arch", sorted(image.ARCHS))
def test_every_builder_makes_a_working_classifier(arch: str) -> None:
    model = image.BUILDERS[arch](num_classes=5, weights="none").eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 5)


def test_imagenet_weights_offline_give_a_clear_message(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as caught:
        image.build("densenet121", num_classes=3, weights="imagenet")
    message = str(caught.value)
    assert "densenet121-a639ec97.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "--weights none" in message


def test_imagenet_weights_from_the_hub_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    reference = torchvision.models.resnet18(weights=None)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    name = Path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url).name
    torch.save(reference.state_dict(), cache / name)
    # Any attempt to go online would fail this test.
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("went online"))
    model = image.build("resnet18", num_classes=4, weights="imagenet")
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    assert model.fc.out_features == 4


def test_weights_from_a_state_dict_file(tmp_path: Path) -> None:
    source = torchvision.models.resnet18(weights=None, num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    model = image.build("resnet18", num_classes=6, weights=str(tmp_path / "r18.pth"))
    assert torch.equal(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert model.fc.out_features == 6
    with pytest.raises(
        ClipminerError, match=r"r18\.pth \(state dict\): does not fit this architecture"
    ):
        image.build("densenet121", num_classes=6, weights=str(tmp_path / "r18.pth"))


def test_train_layers() -> None:
    model = image.build("resnet18", num_classes=3)
    head_only = image.set_trainable(model, "resnet18", "head")
    assert head_only == 512 * 3 + 3
    last = image.set_trainable(model, "resnet18", "last-block")
    assert head_only < last < sum(p.numel() for p in model.parameters())
    assert not model.conv1.weight.requires_grad and model.layer4[0].conv1.weight.requires_grad
    with pytest.raises(
        UsageError, match="--train-layers must be all, last-block or head, got 'middle'"
    ):
        image.set_trainable(model, "resnet18", "middle")  # type: ignore[arg-type]


def test_unknown_arch_and_too_few_classes() -> None:
    with pytest.raises(UsageError, match="unknown image architecture 'vgg'"):
        image.build("vgg", num_classes=3)
    with pytest.raises(UsageError, match="at least 2 classes"):
        image.build("resnet18", num_classes=1)


def test_scorer_matches_the_model_it_was_saved_from(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = image.build("resnet18", num_classes=3).eval()
    bundle = Bundle(
        kind="image",
        arch="resnet18",
        labels=("a", "b", "c"),
        input=InputSpec((48, 48), IMAGENET_MEAN, IMAGENET_STD),
        state_dict=model.state_dict(),
    )
    path = save_bundle(bundle, tmp_path / "m.pt")
    frames = np.random.default_rng(0).integers(0, 256, (4, 60, 80, 3), dtype=np.uint8)
    scorer = image.ImageScorer(path, device="cpu")
    probs = scorer(frames)
    assert probs.shape == (4, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    # The same preprocessing by hand: resize keeping aspect, centre crop, normalise.
    resized = eval_resize_shape((60, 80), (48, 48))
    assert resized == (55, 74)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    x = torchvision.transforms.v2.functional.resize(x, list(resized), antialias=True)
    x = torchvision.transforms.v2.functional.center_crop(x, [48, 48]).float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    with torch.no_grad():
        expected = torch.softmax(model(x), 1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        scorer(frames.astype(np.float32))


@pytest.mark.needs_cuda
def test_scorer_on_cuda_matches_cpu(tmp_path: Path) -> None:
    model = image.build("resnet18", num_classes=3).eval()
    bundle = Bundle(
        kind="image",
        arch="resnet18",
        labels=("a", "b", "c"),
        input=InputSpec((64, 64), IMAGENET_MEAN, IMAGENET_STD),
        state_dict=model.state_dict(),
    )
    frames = np.random.default_rng(1).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    cpu = image.ImageScorer(bundle, device="cpu")(frames)
    gpu = image.ImageScorer(bundle, device="cuda")(frames)
    np.testing.assert_allclose(gpu, cpu, atol=2e-2)  # mixed precision on the GPU
