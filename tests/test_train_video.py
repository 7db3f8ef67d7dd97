"""train-video / eval-video / prepare-videos, and why video models exist at all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from clipminer import synth
from clipminer.cli import app
from clipminer.config import VideoTrainConfig
from clipminer.data.videos import ClipSpec
from clipminer.errors import UsageError
from clipminer.models import image as image_models
from clipminer.models.bundle import Bundle, InputSpec, load_bundle, save_bundle
from clipminer.train import EpochResult, WeightAverage, predict
from clipminer.train_video import VideoSource, eval_video

from .helpers import TrainedModels, train_small_models

runner = CliRunner()
PAIR = synth.MOTION_ONLY_PAIR
# Stated in the README and the issue note. small3d, 8 frames at 12.5 fps, 48 px, 10
# epochs on 12 clips per class: video-level accuracy on the held-out pair videos.
VIDEO_EPOCHS = 10
VIDEO_MODEL_MIN_PAIR_ACCURACY = 0.9
IMAGE_MODEL_MAX_PAIR_ACCURACY = 0.75


@pytest.fixture(scope="module")
def pair_models(tmp_path_factory: pytest.TempPathFactory) -> TrainedModels:
    """The suite's small models on the motion-only pair alone, a quarter held out."""
    return train_small_models(
        tmp_path_factory.mktemp("pair"),
        labels=PAIR,
        val_fraction=0.25,
        image_epochs=3,
        video_epochs=VIDEO_EPOCHS,
    )


def test_only_a_video_model_separates_the_motion_only_pair(
    pair_models: TrainedModels, tmp_path: Path
) -> None:
    video_accuracy = pair_models.video_result.metrics.top1
    # Both models on the same held-out videos, as eval-video --fuse-image-model scores
    # them: the single-frame model averages its scores over each video's frames.
    results = eval_video(
        pair_models.video,
        VideoSource(videos=pair_models.clips, val_fraction=0.25),
        tmp_path / "eval",
        fuse_image_model=pair_models.image,
        workers=0,
        device="cpu",
    )
    held_out = results["video_model"].video
    assert held_out.samples == pair_models.video_result.val_videos == 8
    assert set(held_out.per_class) == set(PAIR)
    image_accuracy = results["image_model"].video.top1
    print(f"motion-only pair: video model {video_accuracy:.3f}, image model {image_accuracy:.3f}")
    assert video_accuracy >= VIDEO_MODEL_MIN_PAIR_ACCURACY
    assert held_out.top1 >= VIDEO_MODEL_MIN_PAIR_ACCURACY  # eval-video agrees with training
    assert image_accuracy <= IMAGE_MODEL_MAX_PAIR_ACCURACY


def test_video_bundle_and_report(pair_models: TrainedModels) -> None:
    raw = torch.load(pair_models.video, weights_only=True)
    assert raw["kind"] == "video" and raw["labels"] == sorted(PAIR)
    assert raw["input"] | {} == {
        "size": [48, 48],
        "mean": list(ClipSpec().mean),
        "std": list(ClipSpec().std),
        "clip_len": 8,
        "frame_rate": 12.5,
        "crop_fraction": ClipSpec().crop_fraction,
        "channels": "RGB",
        "scale": 1.0,
    }
    metrics = json.loads((pair_models.video_result.report_dir / "metrics.json").read_text())
    assert metrics["level"] == "video" and len(metrics["history"]) == VIDEO_EPOCHS


def test_predict_averages_clips_per_video() -> None:
    class Mean(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # logits from the clip's mean value
            m = x.mean(dim=(1, 2, 3, 4))
            return torch.stack([m, -m], dim=1) * 100

    # Video 0: two clips say class 0, one says class 1 -> class 0. Video 1: the reverse.
    inputs = torch.tensor([[1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]]).view(2, 3, 1, 1, 1, 1)
    inputs = inputs.expand(2, 3, 3, 2, 2, 2)
    probs, targets = predict(
        Mean(), [(inputs, torch.tensor([0, 1]))], torch.device("cpu"), input_ndim=5
    )
    np.testing.assert_allclose(probs, [[2 / 3, 1 / 3], [1 / 3, 2 / 3]], atol=1e-6)
    assert targets.tolist() == [0, 1]


def test_cli_ucf101_train_eval_and_cache(tmp_path: Path, tiny_models: tuple[Path, Path]) -> None:
    synth.make_ucf101(
        tmp_path / "ucf",
        per_class=8,
        seconds=1.2,
        fps=25,
        size=(64, 80),
        labels=(*PAIR, "spinning"),
    )
    # A video that cannot be read is skipped and counted, never fatal.
    bad = tmp_path / "ucf" / "videos" / "Spinning" / "v_Spinning_g02_c01.avi"
    bad.write_text("this is not a video")
    ucf = [
        "--ucf101",
        str(tmp_path / "ucf" / "videos"),
        "--splits",
        str(tmp_path / "ucf" / "splits"),
    ]
    small = [
        "--clip-len",
        "4",
        "--frame-rate",
        "10",
        "--frame-size",
        "32",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    result = runner.invoke(
        app,
        [
            "prepare-videos",
            *ucf,
            "--out",
            str(tmp_path / "cache"),
            "--frame-rate",
            "10",
            "--frame-size",
            "32",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "23 written" in result.output and "1 unreadable skipped" in result.output
    model = tmp_path / "m.pt"
    result = runner.invoke(
        app,
        [
            "train-video",
            *ucf,
            "--out",
            str(model),
            "--arch",
            "small3d",
            "--epochs",
            "1",
            "--cache",
            str(tmp_path / "cache"),
            *small,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 unreadable and 0 missing videos skipped" in result.output
    result = runner.invoke(
        app,
        [
            "eval-video",
            str(model),
            *ucf,
            "--out",
            str(tmp_path / "eval"),
            "--clips-per-video",
            "2",
            "--workers",
            "0",
            "--fuse-image-model",
            str(tiny_models[1]),
        ],
    )
    assert result.exit_code == 1  # a video bundle is not an image model
    assert "is a video model, expected an image model" in result.output
    result = runner.invoke(
        app,
        [
            "eval-video",
            str(model),
            *ucf,
            "--out",
            str(tmp_path / "eval"),
            "--clips-per-video",
            "2",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # The figures agree with the confusion matrix written beside them: 12 test videos
    # (4 per class; the unreadable one is a training video), 2 clips each.
    confusion = pd.read_csv(tmp_path / "eval" / "confusion.csv", index_col=0)
    assert list(confusion.index) == list(confusion.columns)
    assert set(confusion.index) == set(metrics["per_class_accuracy"])
    counts = confusion.to_numpy()
    assert counts.sum() == metrics["videos"] == 12
    assert counts.sum(axis=1).tolist() == [4, 4, 4]
    per_class = np.diag(counts) / counts.sum(axis=1)
    assert metrics["video_top1"] == pytest.approx(np.trace(counts) / 12)
    assert metrics["per_class_accuracy"] == pytest.approx(
        dict(zip(confusion.index, per_class, strict=True))
    )
    assert metrics["mean_class_accuracy"] == pytest.approx(per_class.mean())
    # Three classes: the true one is always among the top 5 and top 10.
    assert metrics["video_top5"] == metrics["video_top10"] == 1.0
    assert metrics["clip_top1"] * 24 == pytest.approx(round(metrics["clip_top1"] * 24))
    best = (tmp_path / "eval" / "best_classes.csv").read_text().splitlines()
    assert best[1].split(",")[1] == f"{per_class.max():.4f}"
    for name in (
        "confusion.csv",
        "confusion.png",
        "best_classes.csv",
        "worst_classes.csv",
        "confused_pairs.csv",
    ):
        assert (tmp_path / "eval" / name).is_file()


def test_cli_bad_video_data(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train-video", "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 2 and "give either --ucf101" in result.output
    result = runner.invoke(
        app, ["train-video", "--videos", str(tmp_path / "none"), "--out", str(tmp_path / "m.pt")]
    )
    assert result.exit_code == 2 and "no such folder" in result.output
    assert "Traceback" not in result.output
    shutil.rmtree(tmp_path, ignore_errors=True)


RECIPE_REFUSALS = [
    (["--crop-scale", "0"], "Invalid value for '--crop-scale'"),
    (["--train-clips-per-video", "0"], "Invalid value for '--train-clips-per-video'"),
    (["--color-jitter", "2"], "Invalid value for '--color-jitter'"),
    (["--ema-decay", "1"], "Invalid value for '--ema-decay'"),
    (["--label-smoothing", "-0.1"], "Invalid value for '--label-smoothing'"),
    (["--init-from", "img.pt", "--weights", "kinetics400"], "--init-from and --weights"),
    (["--weights", "imagenet-inflated"], "needs an inflated architecture"),
]


@pytest.mark.parametrize(("options", "message"), RECIPE_REFUSALS)
def test_cli_refuses_bad_recipe_options(tmp_path: Path, options: list[str], message: str) -> None:
    (tmp_path / "v" / "a").mkdir(parents=True)
    source = ["--videos", str(tmp_path / "v"), "--arch", "small3d"]
    result = runner.invoke(app, ["train-video", *source, "--out", str(tmp_path / "m.pt"), *options])
    assert result.exit_code != 0
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_recipe_is_the_default_and_documented() -> None:
    config = VideoTrainConfig()
    assert config.train_clips_per_video > 1 and config.crop_scale < 1 and config.color_jitter > 0
    assert config.fit.label_smoothing > 0 and config.fit.ema_decay > 0
    assert config.fit.weight_decay > 0 and config.fit.schedule == "cosine"
    result = runner.invoke(app, ["train-video", "--help"], terminal_width=200)
    help_text = " ".join(result.output.split())
    for option in ("--init-from", "--train-clips-per-video", "--crop-scale", "--color-jitter"):
        assert option in help_text
    assert "--ema-decay" in help_text and "imagenet-inflated" in help_text


def test_val_fraction_zero_is_for_folders() -> None:
    with pytest.raises(UsageError, match="--val-fraction 0 is for --videos"):
        VideoSource(ucf101=Path("u"), splits=Path("s"), val_fraction=0)


def test_weight_average_follows_the_weights_with_a_ramped_decay() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update(model)  # decay min(0.9, 2/11)
    assert float(average.model.weight) == pytest.approx(1 - 2 / 11)
    for _ in range(200):
        average.update(model)
    assert float(average.model.weight) == pytest.approx(1.0, abs=1e-6)
    assert not average.model.weight.requires_grad


def test_init_from_an_image_model_with_other_labels(tmp_path: Path) -> None:
    """Classes are matched by name across naming styles; a class the image model lacks
    gets a fresh classifier row; preprocessing comes from the image model; with
    --val-fraction 0 every video trains and the last epoch is kept."""
    labels = ("bouncing", "sliding_left", "spinning")
    synth.make_clips(
        tmp_path / "clips", per_class=2, seconds=0.5, fps=8, size=(40, 40), labels=labels
    )
    image_labels = ("Sliding Left", "waving", "Bouncing")
    torch.manual_seed(1)
    net = image_models.build("resnet18", num_classes=3)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    spec = InputSpec((32, 32), mean, std)
    save_bundle(
        Bundle("image", "resnet18", image_labels, spec, net.state_dict()), tmp_path / "img.pt"
    )
    model = tmp_path / "v.pt"
    result = runner.invoke(
        app,
        [
            "train-video", "--videos", str(tmp_path / "clips"), "--val-fraction", "0",
            "--arch", "resnet18_3d", "--init-from", str(tmp_path / "img.pt"), "--out", str(model),
            "--clip-len", "2", "--frame-rate", "4", "--frame-size", "32", "--epochs", "1",
            "--lr", "1e-9", "--train-clips-per-video", "1", "--batch-size", "6",
            "--workers", "0", "--device", "cpu",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "no validation: kept the last epoch (1)" in result.output
    bundle = load_bundle(model, kind="video")
    assert bundle.arch == "resnet18_3d" and bundle.labels == labels
    assert bundle.input.mean == pytest.approx(mean) and bundle.input.std == pytest.approx(std)
    assert bundle.metrics["level"] == "none" and bundle.config["init_from"] == str(
        tmp_path / "img.pt"
    )
    rows = bundle.state_dict["fc.weight"]
    image_rows = net.state_dict()["fc.weight"]
    torch.testing.assert_close(rows[0], image_rows[2], atol=1e-5, rtol=0)  # bouncing
    torch.testing.assert_close(rows[1], image_rows[0], atol=1e-5, rtol=0)  # sliding_left
    assert all(not torch.allclose(rows[2], row, atol=1e-3) for row in image_rows)  # spinning
    stem = bundle.state_dict["conv1.weight"]
    assert stem.shape == (64, 3, 3, 7, 7)
    assert (stem.sum(dim=2) - net.state_dict()["conv1.weight"]).abs().max() < 1e-3
    folder = ["--videos", str(tmp_path / "clips"), "--val-fraction", "0", "--workers", "0"]
    result = runner.invoke(app, ["eval-video", str(model), *folder, "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["videos"] == 6  # all


# -- watching training: validation progress, curves, TensorBoard --------------------------


class Recorder:
    """A reporter that keeps what :func:`fit` told it."""

    def __init__(self) -> None:
        self.validations: list[tuple[int, int]] = []
        self.epochs: list[int] = []

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def step(self, loss: float, top1: float) -> None:
        pass

    def validate(self, done: int, total: int) -> None:
        self.validations.append((done, total))

    def end_epoch(self, result: EpochResult, best: bool) -> None:
        self.epochs.append(result.epoch)


@pytest.fixture(scope="module")
def tiny_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of three 1-second 32 px clips."""
    root = tmp_path_factory.mktemp("tiny-clips") / "clips"
    synth.make_clips(root, per_class=3, seconds=1.0, fps=8, size=(32, 32), labels=PAIR)
    return root


TINY_TRAIN = [
    "--arch", "small3d", "--clip-len", "4", "--frame-rate", "8", "--frame-size", "16",
    "--batch-size", "2", "--workers", "0", "--device", "cpu", "--epochs", "2",
    "--train-clips-per-video", "1", "--val-clips-per-video", "1", "--val-fraction", "0.34",
]  # fmt: skip


def test_two_tiny_epochs_draw_curves_and_report_validation_progress(
    tiny_clips: Path, tmp_path: Path
) -> None:
    from clipminer.config import VideoFitConfig
    from clipminer.train_video import train_video

    recorder = Recorder()
    result = train_video(
        VideoSource(videos=tiny_clips, val_fraction=0.34),
        tmp_path / "tiny.pt",
        config=VideoTrainConfig(
            arch="small3d",
            clip=ClipSpec(clip_len=4, frame_rate=8.0, size=16),
            batch_size=2,
            workers=0,
            device="cpu",
            train_clips_per_video=1,
            val_clips_per_video=1,
            fit=VideoFitConfig(epochs=2),
        ),
        reporter=recorder,
    )
    curves = result.report_dir / "curves.png"
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert recorder.epochs == [1, 2]
    every_video = (result.val_videos, result.val_videos)
    assert result.val_videos == 2 and recorder.validations.count(every_video) == 2
    seen: list[tuple[int, int]] = []
    eval_video(
        result.model_path,
        VideoSource(videos=tiny_clips, val_fraction=0.34),
        tmp_path / "eval",
        workers=0,
        device="cpu",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == every_video and all(t == 2 for _, t in seen)


def test_tensorboard_option(tiny_clips: Path, tmp_path: Path) -> None:
    import importlib.util

    board = tmp_path / "tb"
    out = tmp_path / "m.pt"
    args = ["train-video", "--videos", str(tiny_clips), "--out", str(out), *TINY_TRAIN]
    result = runner.invoke(app, [*args, "--tensorboard", str(board)])
    if importlib.util.find_spec("tensorboard") is None:
        assert result.exit_code != 0
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "pip install tensorboard" in lines[0], result.output
        assert not out.exists()  # refused before any work
    else:
        assert result.exit_code == 0, result.output
        assert list(board.glob("events.out.tfevents.*"))
