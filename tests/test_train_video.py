"""train-video / eval-video / prepare-videos, and why video models exist at all."""

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
from clipminer.data.videos import ClipSpec
from clipminer.decode import iter_frames
from clipminer.models.image import ImageScorer
from clipminer.train import FitConfig, predict
from clipminer.train_image import ImageTrainConfig, train_image
from clipminer.train_video import VideoSource, VideoTrainConfig, train_video

runner = CliRunner()
PAIR = synth.MOTION_ONLY_PAIR
# Stated in the README and the issue note. small3d, 8 frames at 12.5 fps, 48 px, 10
# epochs on 12 clips per class: video-level accuracy on the held-out pair videos.
VIDEO_MODEL_MIN_PAIR_ACCURACY = 0.9
IMAGE_MODEL_MAX_PAIR_ACCURACY = 0.75


@pytest.fixture(scope="module")
def pair_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pair") / "clips"
    synth.make_clips(root, per_class=16, seconds=2.0, fps=25, size=(64, 80), seed=0, labels=PAIR)
    return root


@pytest.fixture(scope="module")
def pair_video_model(pair_clips: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("vm") / "video.pt"
    config = VideoTrainConfig(
        arch="small3d",
        clip=ClipSpec(clip_len=8, frame_rate=12.5, size=48),
        batch_size=8,
        workers=2,
        device="cpu",
        fit=FitConfig(epochs=10, lr=3e-3, seed=0),
    )
    return train_video(VideoSource(videos=pair_clips, val_fraction=0.25), out, config=config)


def test_only_a_video_model_separates_the_motion_only_pair(pair_video_model, pair_clips, tmp_path):
    video_accuracy = pair_video_model.metrics.top1
    # The single-frame model: trained on frames of the same classes, scored on every
    # held-out video's frames (averaged), like eval-video --fuse-image-model does.
    synth.make_images(tmp_path / "images", per_class=40, size=(64, 64), seed=0, labels=PAIR)
    image = train_image(
        tmp_path / "images",
        tmp_path / "image.pt",
        config=ImageTrainConfig(
            arch="resnet18",
            weights="none",
            image_size=48,
            batch_size=16,
            val_fraction=0.25,
            workers=0,
            device="cpu",
            fit=FitConfig(epochs=3),
        ),
    )
    scorer = ImageScorer(image.model_path, device="cpu")
    val_names = set(
        json.loads((pair_video_model.report_dir / "metrics.json").read_text())["per_class_accuracy"]
    )
    assert val_names == set(PAIR)
    correct = []
    for label in PAIR:
        for path in sorted((pair_clips / label).iterdir())[:4]:
            frames = np.stack([f.pixels for f in iter_frames(path, sample_fps=5)])
            correct.append(scorer.labels[int(scorer(frames).mean(0).argmax())] == label)
    image_accuracy = float(np.mean(correct))
    print(f"motion-only pair: video model {video_accuracy:.3f}, image model {image_accuracy:.3f}")
    assert video_accuracy >= VIDEO_MODEL_MIN_PAIR_ACCURACY
    assert image_accuracy <= IMAGE_MODEL_MAX_PAIR_ACCURACY


def test_video_bundle_and_report(pair_video_model) -> None:
    raw = torch.load(pair_video_model.model_path, weights_only=True)
    assert raw["kind"] == "video" and raw["labels"] == list(PAIR)
    assert raw["input"] | {} == {
        "size": [48, 48],
        "mean": list(ClipSpec().mean),
        "std": list(ClipSpec().std),
        "clip_len": 8,
        "frame_rate": 12.5,
    }
    metrics = json.loads((pair_video_model.report_dir / "metrics.json").read_text())
    assert metrics["level"] == "video" and len(metrics["history"]) == 10


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


def test_cli_ucf101_train_eval_and_cache(tmp_path: Path, pair_video_model) -> None:
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
            str(pair_video_model.model_path),
        ],
    )
    assert result.exit_code == 1  # a video bundle is not an image model
    assert "is a video model, expected a image model" in result.output
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
    for key in ("clip_top1", "video_top1", "video_top5", "video_top10", "mean_class_accuracy"):
        assert 0 <= metrics[key] <= 1
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
