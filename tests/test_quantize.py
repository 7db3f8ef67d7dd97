"""``clipminer quantize`` and ``--precision``: quantized bundles made from the user's data,
loaded weights-only, and run by find-clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clipminer import synth
from clipminer.cli import app
from clipminer.decode import iter_frames
from clipminer.errors import UsageError
from clipminer.findclips import ClipMiner, VideoRelabeler, find_clips
from clipminer.layout import RUN_JSON, videos_root
from clipminer.models.bundle import load_bundle
from clipminer.models.image import ImageScorer
from clipminer.quantize import quantize_bundle

from .helpers import TrainedModels, tiny_findclips_config

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def quantized(trained_models: TrainedModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained image and video bundles quantized to int8 (torch-fx) on their own data."""
    root = tmp_path_factory.mktemp("int8")
    models = trained_models
    for name, model, data, inputs in (
        ("image", models.image, models.images, 96),
        ("video", models.video, models.clips, 24),
    ):
        out = root / f"{name}-int8.pt"
        quantize_bundle(
            model, [data], out, precision="int8", inputs=inputs, min_agreement=0.8,
            backend="torch-fx",
        )  # fmt: skip
    return root


def _frames(video: Path, size: int = 64) -> np.ndarray:
    return np.stack([f.pixels for f in iter_frames(video, sample_fps=4, size=(size, size))])


def test_quantized_bundle_loads_weights_only_and_records_the_guard(quantized: Path) -> None:
    bundle = load_bundle(quantized / "image-int8.pt", kind="image")  # weights_only=True inside
    assert bundle.precision is not None
    assert (bundle.precision["precision"], bundle.precision["backend"]) == ("int8", "torch-fx")
    assert 0.8 <= bundle.precision["agreement"] <= 1.0
    assert bundle.precision["held_out"] == 48
    assert torch.load(quantized / "video-int8.pt", weights_only=True)["precision"]["precision"] == (
        "int8"
    )


def test_int8_image_scores_agree_with_fp32(
    quantized: Path, trained_models: TrainedModels, tiny_h264: Path
) -> None:
    fp32 = ImageScorer(trained_models.image, device="cpu", precision="fp32")
    # auto: what is stored (unguarded here, so that the first frames already run int8)
    int8 = ImageScorer(quantized / "image-int8.pt", device="cpu", guard=0)
    assert (fp32.run.precision, int8.run.precision) == ("fp32", "int8")
    assert fp32.run.backend == "torch" and int8.run.backend == "torch-fx"
    frames = _frames(tiny_h264)
    a, b = fp32(frames), int8(frames)
    assert b.shape == a.shape and np.allclose(b.sum(1), 1, atol=1e-4)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.8
    assert not np.array_equal(a, b)  # it really ran another model


def test_int8_needs_a_quantized_bundle(trained_models: TrainedModels) -> None:
    with pytest.raises(UsageError, match=r"image\.pt: has no int8 weights; make them with"):
        ImageScorer(trained_models.image, device="cpu", precision="int8")


def test_bf16_refused_where_the_cpu_lacks_it(trained_models: TrainedModels) -> None:
    from clipminer.precision import supported

    if "bf16" in supported(torch.device("cpu")):
        pytest.skip("this CPU runs bf16 natively")
    with pytest.raises(UsageError, match="bf16 is not supported on cpu"):
        ImageScorer(trained_models.image, device="cpu", precision="bf16")


def test_relabeler_runs_the_int8_video_model(
    quantized: Path, trained_models: TrainedModels
) -> None:
    bundles = [load_bundle(quantized / "video-int8.pt"), load_bundle(trained_models.video)]
    relabeler = VideoRelabeler(bundles, device=torch.device("cpu"))
    assert relabeler.precision == "int8+fp32"
    fp32 = VideoRelabeler(bundles, device=torch.device("cpu"), precision="fp32")
    assert fp32.precision == "fp32"


def test_find_clips_records_the_precision_it_ran(
    quantized: Path, trained_models: TrainedModels, tiny_h264: Path, tmp_path: Path
) -> None:
    config = tiny_findclips_config(cut="none")
    miner = ClipMiner(quantized / "image-int8.pt", [quantized / "video-int8.pt"], config=config)
    [(_, result)] = find_clips(miner, [tiny_h264], tmp_path / "out")
    assert not isinstance(result, Exception), result
    run = json.loads((videos_root(tmp_path / "out") / "tiny" / RUN_JSON).read_text())
    assert run["precision"] == {"image": "int8", "video": "int8"}
    plain = ClipMiner(trained_models.image, [trained_models.video], config=config)
    assert plain.precision == {"image": "fp32", "video": "fp32"}


def test_quantize_cli_reports_the_guard_and_speed(
    trained_models: TrainedModels, tmp_path: Path
) -> None:
    video = synth.make_long_video(
        tmp_path / "calib.mp4", duration_seconds=12, size=(64, 80), fps=10, seed=5
    ).path
    out = tmp_path / "q.pt"
    args = ["quantize", str(trained_models.image), "-c", str(video), "--out", str(out)]
    result = CliRunner().invoke(
        app, [*args, "--precision", "int8", "--backend", "torch-fx", "--inputs", "16",
              "--min-agreement", "0.5"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "int8 (torch-fx), top-1 agreement with fp32" in result.output
    assert "on 8 held-out inputs" in result.output
    assert load_bundle(out).precision is not None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing", "missing: no such file or folder"),
        ("empty", "empty: no videos or images in it"),
    ],
)
def test_quantize_refuses_bad_calibration_sources(
    trained_models: TrainedModels, tmp_path: Path, source: str, message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    out = tmp_path / "q.pt"
    with pytest.raises(UsageError, match=message):
        quantize_bundle(trained_models.image, [tmp_path / source], out)
    assert not out.exists()


def test_quantize_skips_unreadable_files_and_needs_enough_inputs(
    trained_models: TrainedModels, tmp_path: Path
) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    (tmp_path / "one.png").write_bytes(b"")
    with pytest.raises(UsageError, match=r"found 0 usable clips in .*; at least 4 are needed"):
        quantize_bundle(trained_models.video, [tmp_path], tmp_path / "q.pt")
    assert not (tmp_path / "q.pt").exists()
