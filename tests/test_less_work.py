"""Less model work for the same clips: coarse-rate scoring (``--score-stride``) and early
re-label stops (``--relabel-agree``). Off, each gives the old results exactly; on, the
work drops and the answers stay where the models would have put them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipminer import synth
from clipminer.decode import Frame, Tap
from clipminer.findclips import ClipMiner, FindClipsConfig
from clipminer.mining.relabel import VideoRelabeler, clip_tap, middle_out
from clipminer.mining.results import StageTimes
from clipminer.mining.stream import ImageScoring
from clipminer.models.bundle import load_bundle
from clipminer.segments import SegmentConfig


class _Features:
    def __init__(self) -> None:
        self.last: np.ndarray | None = None

    def take(self) -> np.ndarray | None:
        last, self.last = self.last, None
        return last


class _BrightnessScorer:
    """Two classes, "dark" and "bright", from each frame's mean brightness; its
    features are the brightness itself. Counts the frames and batches it ran on."""

    labels = ("bright", "dark")

    def __init__(self) -> None:
        self.features = _Features()
        self.batches: list[int] = []

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        self.batches.append(len(pixels))
        level = pixels.reshape(len(pixels), -1).mean(1, dtype=np.float64) / 255
        self.features.last = np.stack([level, level**2], 1).astype(np.float32)
        return np.stack([level, 1 - level], 1).astype(np.float32)


def _frames(levels: list[int]) -> list[Frame]:
    return [Frame(np.full((4, 4, 3), level, np.uint8), k / 2, k) for k, level in enumerate(levels)]


def _scored(levels: list[int], *, stride: int, tolerance: float = 0.05, batch: int = 4):
    scorer = _BrightnessScorer()
    seen: list[float] = []
    scoring = ImageScoring(
        Tap(sample_fps=2.0, name="image"),
        scorer,  # type: ignore[arg-type]
        batch,
        keep_seconds=1e9,
        stages=StageTimes(),
        on_scored=lambda t, p: seen.append(t),
        stride=stride,
        tolerance=tolerance,
    )
    for frame in _frames(levels):
        scoring.push(frame)
    scoring.finish()
    assert seen == [k / 2 for k in range(len(levels))]  # every frame, in time order
    return scoring, scorer


@pytest.mark.parametrize("count", [1, 5, 19, 20, 21])
def test_stride_one_scores_every_frame_in_full_batches(count: int) -> None:
    scoring, scorer = _scored(list(range(0, 10 * count, 10))[:count], stride=1)
    assert scorer.batches == [4] * (count // 4) + ([count % 4] if count % 4 else [])
    assert scoring.model_frames == count == len(scoring.scores)


@pytest.mark.parametrize("count", [2, 7, 20, 23])
def test_a_steady_picture_is_scored_at_the_coarse_rate_only(count: int) -> None:
    scoring, _ = _scored([100] * count, stride=3)
    anchors = len(range(0, count, 3)) + (0 if (count - 1) % 3 == 0 else 1)
    assert scoring.model_frames == anchors < count or count <= 2
    assert np.allclose(np.stack(scoring.scores), [100 / 255, 155 / 255])
    assert scoring.feature_count == count


@pytest.mark.parametrize("step", [1, 5, 10, 11, 12, 13])
def test_a_change_between_anchors_is_scored_densely(step: int) -> None:
    levels = [20] * step + [240] * (26 - step)
    dense, _ = _scored(levels, stride=1)
    coarse, _ = _scored(levels, stride=3)
    assert np.array_equal(np.stack(coarse.scores), np.stack(dense.scores))
    assert coarse.model_frames < dense.model_frames
    assert np.allclose(coarse.feature_sum, dense.feature_sum)


def test_a_slow_drift_is_interpolated_within_the_tolerance() -> None:
    levels = [150 + k for k in range(40)]  # 1/255 a frame: 3 frames apart stay within 0.05
    dense, _ = _scored(levels, stride=3, tolerance=0.0)
    coarse, _ = _scored(levels, stride=3, tolerance=0.05)
    assert dense.model_frames == 40 and coarse.model_frames <= 15
    error = np.abs(np.stack(coarse.scores) - np.stack(dense.scores)).max()
    assert error <= 0.05  # (linear here: interpolation is exact)


def test_middle_out() -> None:
    assert middle_out(1) == [0]
    assert middle_out(4) == [1, 2, 0, 3]
    assert middle_out(5) == [2, 1, 3, 0, 4]


class _BrightnessClips:
    """A stand-in video model: class 0 for bright windows, class 1 for dark ones."""

    precision = "fp32"

    def __init__(self, classes: int) -> None:
        self.classes = classes

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        level = clips.float().flatten(1).mean(1)
        logits = torch.full((len(clips), self.classes), -100.0)
        logits[:, 0], logits[:, 1] = 10 * level, -10 * level
        return logits


def _relabeler(trained_models, agree: int) -> VideoRelabeler:
    bundle = load_bundle(trained_models.video, kind="video")
    relabeler = VideoRelabeler([bundle], device=torch.device("cpu"), windows=4, agree=agree)
    _, spec, columns = relabeler.models[0]
    relabeler.models = [(_BrightnessClips(len(columns)), spec, columns)]  # type: ignore[list-item]
    return relabeler


@pytest.mark.parametrize(("levels", "early_windows"), [((200, 200), 2), ((30, 220), 4)])
def test_relabel_stops_early_only_when_its_first_windows_agree(
    trained_models, levels: tuple[int, int], early_windows: int
) -> None:
    every, early = _relabeler(trained_models, 0), _relabeler(trained_models, 2)
    _, spec, _ = every.models[0]
    tap = clip_tap(spec)
    count = 4 * spec.clip_len  # four windows side by side: two dark-or-bright halves
    side = spec.size + 8
    frames = [
        Frame(np.full((side, side, 3), levels[k >= count // 2], np.uint8), k / 8, k)
        for k in range(count)
    ]
    full, quick = every({tap: frames}), early({tap: frames})
    assert (every.windows_run, early.windows_run) == (4, early_windows)
    assert quick.label == full.label
    assert quick.score == pytest.approx(full.score, abs=1e-6)


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> synth.LongVideo:
    return synth.make_long_video(
        tmp_path_factory.mktemp("walk") / "walk.mp4",
        duration_seconds=90,
        size=(120, 160),
        fps=25,
        seed=11,
    )


def _mine(models, video: Path, out: Path, **settings) -> tuple[list, dict]:
    config = FindClipsConfig(
        segment=SegmentConfig(segment_on="action"), device="cpu", cut="none", **settings
    )
    result = ClipMiner(models.image, [models.video], config=config).run(video, out)
    record = json.loads((result.out_dir / "run.json").read_text())
    return [(c.segment.label, c.video_label) for c in result.candidates], record


def test_less_work_settings_keep_the_clips_and_run_the_models_less(
    trained_models, walk: synth.LongVideo, tmp_path: Path
) -> None:
    dense, full = _mine(
        trained_models, walk.path, tmp_path / "dense", score_stride=1, relabel_agree=0
    )
    lean, less = _mine(trained_models, walk.path, tmp_path / "lean")  # the defaults
    assert (less["config"]["score_stride"], less["config"]["relabel_agree"]) == (3, 2)
    assert full["model_work"]["image_frames"] == full["frames_scored"]
    assert full["model_work"]["relabel_windows"] > 0
    assert less["frames_scored"] == full["frames_scored"]
    assert less["model_work"]["image_frames"] < 0.75 * full["model_work"]["image_frames"]
    assert less["model_work"]["relabel_windows"] < full["model_work"]["relabel_windows"]
    assert lean == dense  # the same clips, labelled alike


def test_the_timeline_draws_the_candidates_classes_and_the_highest_others(
    tmp_path: Path,
) -> None:
    """With more classes than the timeline can show, it draws the classes the candidates
    were found as or re-labelled to, then the highest-peaking others, up to the limit;
    with few classes it draws them all. The plot of 400 classes still gets written."""
    from clipminer import report
    from clipminer.mining.relabel import Relabel
    from clipminer.mining.results import Candidate
    from clipminer.segments import Segment

    labels = [f"class_{k:03d}" for k in range(400)]
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 0.1, size=(50, 400)).astype(np.float32)
    scores[10, 7] = 0.9  # highest peak
    scores[11, 300] = 0.5  # second
    found = Candidate(0, Segment("class_042", 0.6, 1.0, 3.0))
    relabelled = Candidate(
        1, Segment("class_100", 0.6, 4.0, 6.0),
        Relabel("class_399", 0.8, (("class_399", 0.8),), None, {}),
    )  # fmt: skip
    shown = report.shown_classes(labels, scores, [found, relabelled], limit=5)
    assert shown == sorted(shown) and len(shown) == 5
    assert {42, 100, 399, 7, 300} == set(shown)
    assert len(report.shown_classes(labels, scores, [], limit=10)) == 10
    assert report.shown_classes(labels[:6], scores[:, :6], [], limit=10) == list(range(6))
    png = report.write_timeline_png(
        tmp_path / "timeline.png", np.arange(50) / 2.0, scores, labels, [found, relabelled],
        segment=SegmentConfig(segment_on="class"), sample_period_seconds=0.5,
    )  # fmt: skip
    assert png.read_bytes()[:4] == b"\x89PNG"
