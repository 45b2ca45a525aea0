"""The One Euro filter with params.yaml's video settings: less jitter on a still face, little lag on a moving one."""
import numpy as np
import pytest
import yaml

from conftest import PROJECT_ROOT
from keypoints.smoothing import OneEuroFilter

VIDEO = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["video"]
FPS = 30
FRAMES = 150


def default_filter():
    return OneEuroFilter(VIDEO["min_cutoff"], VIDEO["beta"], VIDEO["d_cutoff"])


def smooth(values, fps=FPS):
    one_euro = default_filter()
    return np.array([one_euro(row, index / fps) for index, row in enumerate(values)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_still_face_jitters_a_third_as_much(seed):
    noisy = 80.0 + np.random.default_rng(seed).normal(0.0, 1.5, (FRAMES, 30))
    smoothed = smooth(noisy)
    raw_jitter = np.diff(noisy, axis=0).std()
    assert np.diff(smoothed, axis=0).std() <= raw_jitter / 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_point_moving_at_constant_speed_lags_little(seed):
    truth = np.zeros((FRAMES, 30))
    truth[:, 0::2] = 100.0 + 2.0 * np.arange(FRAMES)[:, None]  # 2 px per frame to the right, 60 px/s
    truth[:, 1::2] = 80.0
    noisy = truth + np.random.default_rng(seed).normal(0.0, 1.5, truth.shape)
    smoothed = smooth(noisy)
    lag = (truth[:, 0::2] - smoothed[:, 0::2]).mean()  # the noise averages out; the lag does not
    assert 0 < lag <= 1.5
    # Without noise, the same, point by point after the first second.
    clean = smooth(truth)
    assert np.abs(truth - clean)[FPS:].max() <= 1.5


def test_first_values_pass_through_and_repeated_times_change_nothing():
    one_euro = default_filter()
    first = np.arange(30.0)
    np.testing.assert_array_equal(one_euro(first, 0.0), first)
    second = one_euro(first + 10, 1 / FPS)
    assert np.all((second > first) & (second < first + 10))
    np.testing.assert_array_equal(one_euro(first + 50, 1 / FPS), second)


def test_a_missing_value_restarts_from_the_next_one():
    one_euro = default_filter()
    one_euro(np.array([1.0, 2.0]), 0.0)
    assert np.isnan(one_euro(np.array([np.nan, 3.0]), 0.1)[0])
    assert one_euro(np.array([7.0, 3.0]), 0.2)[0] == 7.0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter(0.0, 0.1, 1.0)
    with pytest.raises(ValueError, match="beta"):
        OneEuroFilter(1.0, -1.0, 1.0)
