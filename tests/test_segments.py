"""The segmenter, with tables of score curves and the segments they must give."""

from __future__ import annotations

import numpy as np
import pytest

from clipminer.segments import (
    OnlineSegmenter,
    Segment,
    SegmentConfig,
    clamp,
    decision_curves,
    segment_series,
    top_segments,
)

LABELS = ("jump", "run", "background")


def curve(spec: str, fps: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """A score series from a string, one character per sample at ``fps``:
    'j' jump high, 'r' run high, 'b'/'.' background, 'h' jump half-way (0.45)."""
    table = {
        "j": (0.9, 0.05, 0.05),
        "r": (0.05, 0.9, 0.05),
        "b": (0.05, 0.05, 0.9),
        ".": (0.05, 0.05, 0.9),
        "h": (0.45, 0.05, 0.5),
    }
    probs = np.array([table[c] for c in spec])
    return np.arange(len(spec)) / fps, probs


def run(spec: str, **config) -> list[tuple[str, float, float]]:
    times, probs = curve(spec)
    cfg = SegmentConfig(**({"smooth_seconds": 0.0, "min_seconds": 0.0} | config))
    return [
        (s.label, s.time_start_seconds, s.time_end_seconds)
        for s in segment_series(times, probs, LABELS, cfg, sample_period_seconds=0.5)
    ]


@pytest.mark.parametrize(
    ("spec", "config", "expected"),
    [
        # One run of 4 samples at 2 fps: each sample covers ±0.25 s.
        ("..jjjj..", {}, [("jump", 0.75, 2.75)]),
        # Background is never emitted; two classes side by side.
        ("jjjrrr..", {}, [("jump", 0.0, 1.25), ("run", 1.25, 2.75)]),
        # Hysteresis: 'h' (0.45) keeps an open segment (low 0.35) but cannot open one.
        ("..jjhhjj..", {}, [("jump", 0.75, 3.75)]),
        ("..hhhh..", {}, []),
        ("..jjhhjj..", {"threshold_low": 0.5}, [("jump", 0.75, 1.75), ("jump", 2.75, 3.75)]),
        # A gap of one sample (0.5 s) is bridged with merge_gap 1 s, not with 0.
        ("jjj.jjj...", {"merge_gap_seconds": 1.0}, [("jump", 0.0, 3.25)]),
        ("jjj.jjj...", {"merge_gap_seconds": 0.0}, [("jump", 0.0, 1.25), ("jump", 1.75, 3.25)]),
        # Too short.
        ("..jj....jjjjjj..", {"min_seconds": 2.0}, [("jump", 3.75, 6.75)]),
        # Longer than max: consecutive pieces of max_seconds, the short remainder dropped.
        (
            "j" * 25 + "...",
            {"max_seconds": 5.0, "min_seconds": 3.0},
            [("jump", 0.0, 5.0), ("jump", 5.0, 10.0)],
        ),
        (
            "j" * 25 + "...",
            {"max_seconds": 5.0, "min_seconds": 1.0},
            [("jump", 0.0, 5.0), ("jump", 5.0, 10.0), ("jump", 10.0, 12.25)],
        ),
        # Padding, never overlapping the previous segment of the class.
        (
            "...jj.jj......",
            {"pad_seconds": 1.0, "merge_gap_seconds": 0.0},
            [("jump", 0.25, 3.25), ("jump", 3.25, 4.75)],
        ),
        # Only the requested classes.
        ("jjjrrr..", {"classes": ("run",)}, [("run", 1.25, 2.75)]),
        # Nothing but background.
        ("........", {}, []),
    ],
)
def test_segment_table(spec: str, config: dict, expected: list) -> None:
    assert run(spec, **config) == expected


def test_smoothing_removes_a_single_spike() -> None:
    assert run("....j....", smooth_seconds=2.0) == []
    assert run("....j....", smooth_seconds=0.0) == [("jump", 1.75, 2.25)]
    # Edges soften: the first and last samples of the run average in background.
    assert run("..jjjjjj..", smooth_seconds=1.0) == [("jump", 0.75, 3.75)]


def test_online_matches_batch_and_emits_early() -> None:
    times, probs = curve("..jjjj" + "." * 30 + "rrrr..")
    cfg = SegmentConfig(smooth_seconds=1.0, min_seconds=0.5, merge_gap_seconds=1.0)
    segmenter = OnlineSegmenter(LABELS, cfg, 0.5)
    first_seen = {}
    online = []
    for t, p in zip(times, probs, strict=True):
        for seg in segmenter.push(float(t), p):
            first_seen[seg.label] = t
            online.append(seg)
    online += segmenter.finish()
    assert online == segment_series(times, probs, LABELS, cfg)
    # The jump closed long before the video ended: bounded latency.
    assert first_seen["jump"] - online[0].time_end_seconds <= cfg.latency_seconds(0.5)


def test_score_is_the_mean_smoothed_class_score() -> None:
    times, probs = curve("..jjjj..")
    [seg] = segment_series(times, probs, LABELS, SegmentConfig(smooth_seconds=0, min_seconds=0))
    assert seg.score == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"threshold": 0}, "threshold"),
        ({"threshold": 0.5, "threshold_low": 0.6}, "threshold_low"),
        ({"max_seconds": 1, "min_seconds": 2}, "max_seconds"),
        ({"pad_seconds": -1}, "pad_seconds"),
    ],
)
def test_bad_config(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentConfig(**config)


def test_unknown_class_and_time_order() -> None:
    with pytest.raises(ValueError, match="not labels of the model"):
        OnlineSegmenter(LABELS, SegmentConfig(classes=("swim",)), 0.5)
    segmenter = OnlineSegmenter(LABELS, SegmentConfig(), 0.5)
    segmenter.push(1.0, np.array([0.1, 0.1, 0.8]))
    with pytest.raises(ValueError, match="times must increase"):
        segmenter.push(1.0, np.array([0.1, 0.1, 0.8]))


def test_clamp_and_top() -> None:
    seg = Segment("jump", 0.8, 5.0, 12.0)
    assert clamp(seg, 10.0) == Segment("jump", 0.8, 5.0, 10.0)
    assert clamp(seg, 4.0) is None and clamp(seg, None) is seg
    segs = [Segment("a", 0.5, 0, 1), Segment("b", 0.9, 2, 3), Segment("c", 0.7, 4, 5)]
    assert [s.label for s in top_segments(segs, 2)] == ["b", "c"]


def test_action_mode_finds_what_a_single_frame_splits_between_classes() -> None:
    # An image model that cannot tell jump from run gives each about half.
    split = np.array([[0.05, 0.05, 0.9]] * 3 + [[0.48, 0.44, 0.08]] * 6 + [[0.05, 0.05, 0.9]] * 3)
    times = np.arange(len(split)) / 2.0
    by_class = SegmentConfig(smooth_seconds=0, min_seconds=0)
    assert segment_series(times, split, LABELS, by_class) == []
    by_action = SegmentConfig(smooth_seconds=0, min_seconds=0, segment_on="action")
    [seg] = segment_series(times, split, LABELS, by_action)
    assert (seg.label, seg.time_start_seconds, seg.time_end_seconds) == ("jump", 1.25, 4.25)
    assert seg.score == pytest.approx(0.92)


def test_action_mode_respects_classes() -> None:
    times, probs = curve("..jjjj..rrrr..")
    cfg = SegmentConfig(smooth_seconds=0, min_seconds=0, segment_on="action", classes=("run",))
    assert [(s.label, s.time_start_seconds) for s in segment_series(times, probs, LABELS, cfg)] == [
        ("run", 3.75)
    ]


@pytest.mark.parametrize("mode", ["class", "action"])
def test_decision_curves_are_what_the_segmenter_thresholds(mode: str) -> None:
    """Every segment opens where the plotted curve first reaches the threshold and closes
    where it falls below the low one (what the timeline draws is what decided)."""
    rng = np.random.default_rng(4)
    raw = rng.dirichlet(np.ones(len(LABELS)) * 0.4, size=200)
    probs = np.repeat(raw, 3, axis=0)[:200]  # runs of 3 samples: segments of several samples
    times = np.arange(len(probs)) / 2.0
    config = SegmentConfig(
        smooth_seconds=2, min_seconds=0, max_seconds=1000, merge_gap_seconds=0,
        segment_on=mode, threshold=0.6, threshold_low=0.4,
    )  # fmt: skip
    curves = decision_curves(LABELS, probs, config, 0.5)
    assert set(curves) == ({"action"} if mode == "action" else {"jump", "run"})
    segments = segment_series(times, probs, LABELS, config)
    assert len(segments) >= 5
    for seg in segments:
        curve_of = curves["action" if mode == "action" else seg.label]
        first = round((seg.time_start_seconds + 0.25) * 2)
        last = round((seg.time_end_seconds - 0.25) * 2)
        assert curve_of[first] >= 0.6 and (first == 0 or curve_of[first - 1] < 0.6)
        assert (curve_of[first : last + 1] >= 0.4).all()
        assert last == len(times) - 1 or curve_of[last + 1] < 0.4
