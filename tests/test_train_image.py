"""train-image / eval-image on the synthetic image world."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clipminer import synth
from clipminer.cli import app
from clipminer.data.images import load_image, scan_image_folder
from clipminer.models.bundle import load_bundle
from clipminer.models.image import ImageScorer
from clipminer.train import FitConfig
from clipminer.train_image import ImageTrainConfig, train_image

runner = CliRunner()
SINGLE_FRAME_CLASSES = ("background", "bouncing", "pulsing", "spinning")
# Stated in the README and the issue note: densenet121 from scratch, 64 px, 3 epochs,
# 40 images per class, a quarter held out. The single-frame classes reach this or more:
SINGLE_FRAME_MIN_ACCURACY = 0.9


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("img") / "images"
    synth.make_images(root, per_class=40, size=(80, 80), seed=0)
    return root


@pytest.fixture(scope="module")
def trained(images: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("model") / "image.pt"
    config = ImageTrainConfig(
        arch="densenet121",
        weights="none",
        image_size=64,
        batch_size=16,
        val_fraction=0.25,
        workers=2,
        device="cpu",
        fit=FitConfig(epochs=3, lr=1e-3, seed=0),
    )
    return train_image(images, out, config=config)


def test_single_frame_classes_are_learned_and_the_motion_pair_is_not(trained) -> None:
    per_class = trained.metrics.per_class
    print("validation per-class accuracy:", per_class, "top-1", trained.metrics.top1)
    for label in SINGLE_FRAME_CLASSES:
        assert per_class[label] >= SINGLE_FRAME_MIN_ACCURACY, (label, per_class)
    # sliding_left vs sliding_right: one frame cannot tell them apart.
    pair = (per_class["sliding_left"] + per_class["sliding_right"]) / 2
    assert pair <= 0.75, per_class
    assert trained.metrics.top1 >= 0.7


def test_outputs(trained) -> None:
    report = trained.report_dir
    metrics = json.loads((report / "metrics.json").read_text())
    for key in ("top1", "top5", "mean_class_accuracy", "per_class_accuracy", "history"):
        assert key in metrics
    assert len(metrics["history"]) == 3
    header = (report / "confusion.csv").read_text().splitlines()[0]
    assert header.split(",")[1:] == sorted(synth.LABELS)
    assert (report / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert (report / "curves.png").read_bytes()[:4] == b"\x89PNG"  # loss/top-1 per epoch
    raw = torch.load(trained.model_path, weights_only=True)
    assert raw["labels"] == sorted(synth.LABELS)
    assert raw["input"]["size"] == [64, 64]
    assert raw["config"]["arch"] == "densenet121" and raw["clipminer_version"]
    assert not [p for p in trained.model_path.parent.iterdir() if ".partial" in p.name]


def test_bundle_predicts_like_validation(trained, images: Path) -> None:
    bundle = load_bundle(trained.model_path, kind="image")
    scorer = ImageScorer(bundle, device="cpu")
    folder = scan_image_folder(images)
    items = folder.items[::8]
    frames = np.stack([load_image(i.path).permute(1, 2, 0).numpy() for i in items])
    predicted = scorer(frames).argmax(1)
    targets = np.array([i.label for i in items])
    single = np.isin([folder.labels[t] for t in targets], SINGLE_FRAME_CLASSES)
    assert (predicted[single] == targets[single]).mean() >= 0.9


def test_resume_continues_where_it_stopped(images: Path, tmp_path: Path) -> None:
    config = dict(
        arch="resnet18",
        weights="none",
        image_size=32,
        batch_size=32,
        val_fraction=0.25,
        workers=0,
        device="cpu",
    )
    out = tmp_path / "r.pt"
    first = train_image(images, out, config=ImageTrainConfig(**config, fit=FitConfig(epochs=1)))
    assert len(first.fit.history) == 1
    second = train_image(
        images, out, resume=True, config=ImageTrainConfig(**config, fit=FitConfig(epochs=2))
    )
    assert second.fit.resumed_from == 2
    assert [h.epoch for h in second.fit.history] == [1, 2]
    assert second.fit.history[0] == first.fit.history[0]


def test_cli_train_and_eval(images: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.pt"
    result = runner.invoke(
        app,
        [
            "train-image",
            str(images),
            "--out",
            str(model),
            "--arch",
            "resnet18",
            "--weights",
            "none",
            "--epochs",
            "1",
            "--image-size",
            "32",
            "--workers",
            "0",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "top-1" in result.output and model.is_file()
    # Evaluate on a folder with a class the model does not know.
    other = tmp_path / "eval"
    shutil.copytree(images / "spinning", other / "spinning")
    shutil.copytree(images / "bouncing", other / "juggling")
    result = runner.invoke(
        app,
        ["eval-image", str(model), str(other), "--out", str(tmp_path / "report"), "--workers", "0"],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["unknown_labels"] == {"juggling": 40}
    assert metrics["samples"] == 40
    assert "juggling (40 images)" in result.output


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "no such folder"),
        ({"only": 3}, "found only the class ['only']"),
        ({"a": 3, "empty": 0}, "class folder(s) ['empty'] contain no readable images"),
    ],
)
def test_cli_bad_data(tmp_path: Path, layout: dict[str, int], message: str) -> None:
    root = tmp_path / "data"
    for label, count in layout.items():
        (root / label).mkdir(parents=True)
        if count:
            synth.make_images(
                tmp_path / "src", per_class=count, size=(32, 32), labels=("bouncing",)
            )
            for path in (tmp_path / "src" / "bouncing").iterdir():
                shutil.copy(path, root / label / path.name)
    result = runner.invoke(
        app,
        [
            "train-image",
            str(root),
            "--out",
            str(tmp_path / "m.pt"),
            "--weights",
            "none",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.pt").exists()


def test_an_exported_dataset_of_clips_trains_directly(tmp_path: Path) -> None:
    """train-image DATASET/train --val-dir DATASET/val on an export's clip folders: frames
    of each clip, the frames of one clip never on both sides of a split."""
    labels = ("bouncing", "pulsing")
    synth.make_clips(tmp_path / "ds" / "train", per_class=4, seconds=1.0, fps=8,
                     size=(48, 64), labels=labels, seed=0)  # fmt: skip
    synth.make_clips(tmp_path / "ds" / "val", per_class=2, seconds=1.0, fps=8,
                     size=(48, 64), labels=labels, seed=1)  # fmt: skip
    (tmp_path / "ds" / "train" / "pulsing" / "broken.mp4").write_bytes(b"not a video")
    config = ImageTrainConfig(
        arch="resnet18", weights="none", image_size=32, batch_size=8, workers=0,
        device="cpu", fit=FitConfig(epochs=1, seed=0),
    )  # fmt: skip
    result = train_image(
        tmp_path / "ds" / "train", tmp_path / "m.pt", config=config,
        val_dir=tmp_path / "ds" / "val",
    )  # fmt: skip
    assert load_bundle(result.model_path).labels == labels
    assert (result.train_images, result.val_images) == (32, 16)  # 4 frames a clip
    # held out by clip: with no --val-dir the frames of one clip stay together
    config = ImageTrainConfig(**{**config.__dict__, "val_fraction": 0.5})
    split = train_image(tmp_path / "ds" / "train", tmp_path / "h.pt", config=config)
    assert split.val_images % 4 == 0 and split.val_images > 0
