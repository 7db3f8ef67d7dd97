import numpy as np
import pytest

from clipminer.metrics import (
    classification_metrics,
    confusion_matrix,
    most_confused_pairs,
    segment_detection,
    temporal_iou,
    topk_accuracy,
)


def test_known_answers() -> None:
    probs = np.array(
        [
            [0.7, 0.2, 0.1],  # true 0, predicted 0
            [0.1, 0.6, 0.3],  # true 0, predicted 1 (0 is third)
            [0.2, 0.5, 0.3],  # true 1, predicted 1
            [0.6, 0.1, 0.3],  # true 2, predicted 0 (2 is second)
        ]
    )
    targets = np.array([0, 0, 1, 2])
    assert topk_accuracy(probs, targets, 1) == pytest.approx(0.5)
    assert topk_accuracy(probs, targets, 2) == pytest.approx(0.75)
    assert topk_accuracy(probs, targets, 5) == pytest.approx(1.0)
    confusion = confusion_matrix(probs.argmax(1), targets, 3)
    np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 1, 0], [1, 0, 0]])
    metrics = classification_metrics(probs, targets, ["a", "b", "c"])
    assert metrics.per_class == {"a": 0.5, "b": 1.0, "c": 0.0}
    assert metrics.mean_class_accuracy == pytest.approx(0.5)
    assert most_confused_pairs(confusion, ["a", "b", "c"]) == [("a", "b", 1), ("c", "a", 1)]
    assert metrics.to_dict()["most_confused"][0] == {"true": "a", "predicted": "b", "count": 1}


def test_classes_without_samples_are_left_out_of_the_mean() -> None:
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    metrics = classification_metrics(probs, np.array([0, 0]), ["a", "b", "c"])
    assert metrics.per_class == {"a": 0.5}
    assert metrics.mean_class_accuracy == pytest.approx(0.5)


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="N×2"):
        classification_metrics(np.zeros((3, 3)), np.zeros(3, int), ["a", "b"])


def test_temporal_iou_and_detection() -> None:
    assert temporal_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert temporal_iou((0, 1), (2, 3)) == 0
    truth = [("a", 0, 10), ("b", 20, 30), ("a", 40, 50)]
    predicted = [("a", 1, 10), ("b", 21, 29), ("a", 44, 60), ("b", 0, 10)]
    score = segment_detection(predicted, truth)
    # (a 44-60 vs 40-50: IoU 6/20 < 0.5; b 0-10 has no b truth there)
    assert (score.matched, score.precision, score.recall) == (2, 0.5, 2 / 3)
    assert score.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # One truth segment cannot be matched twice.
    assert segment_detection([("a", 0, 10), ("a", 0, 9)], [("a", 0, 10)]).matched == 1
