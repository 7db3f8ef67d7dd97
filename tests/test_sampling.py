import pytest

from clipminer.sampling import TimestampSampler


@pytest.mark.parametrize(
    ("sample_fps", "times", "kept"),
    [
        # 30 fps source, 2 fps grid: one frame per half second, the first at or after it.
        (2, [k / 30 for k in range(61)], [0.0, 0.5, 1.0, 1.5, 2.0]),
        # Grid points that fall between frames take the next frame.
        (2, [0.0, 0.3, 0.6, 0.9, 1.2, 1.5], [0.0, 0.6, 1.2, 1.5]),
        # A long gap (variable frame rate) skips grid points, never repeats a frame.
        (2, [0.0, 0.1, 2.3, 2.4, 2.6], [0.0, 2.3, 2.6]),
        # Sampling faster than the source keeps every frame once.
        (60, [k / 10 for k in range(5)], [k / 10 for k in range(5)]),
        # Float rounding just below a grid point still counts as on it.
        (3, [0.0, 1 / 3 - 1e-9, 2 / 3 - 1e-9], [0.0, 1 / 3 - 1e-9, 2 / 3 - 1e-9]),
        # No grid: everything.
        (None, [0.0, 0.01, 0.02], [0.0, 0.01, 0.02]),
    ],
)
def test_sampler_keeps_first_frame_of_each_slot(sample_fps, times, kept):
    sampler = TimestampSampler(sample_fps)
    assert [t for t in times if sampler.keep(t)] == kept


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_sampler_rejects_bad_rates(bad):
    with pytest.raises(ValueError, match="sample_fps"):
        TimestampSampler(bad)
