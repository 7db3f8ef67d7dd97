import pytest

from clipminer.labels import label_key


@pytest.mark.parametrize(
    ("a", "b"),
    [("SlidingLeft", "sliding_left"), ("arm wrestling", "ArmWrestling"), ("yo-yo", "YoYo")],
)
def test_label_styles_meet(a: str, b: str) -> None:
    assert label_key(a) == label_key(b)


def test_different_labels_stay_apart() -> None:
    assert label_key("sliding_left") != label_key("sliding_right")
