import numpy as np
import pytest

from keypoints.columns import EIGHT_INDICES
from keypoints.split import holdout_count, split_rows, write_subset


def labels(full, eight_only, unlabelled=0):
    """Keypoints with `full` complete rows, then `eight_only` rows with just the 8, then rows with none."""
    rows = full + eight_only + unlabelled
    keypoints = np.full((rows, 30), np.nan, np.float32)
    keypoints[:full] = np.arange(30)
    keypoints[full : full + eight_only, EIGHT_INDICES] = 1.0
    return keypoints


def test_subsets_are_disjoint_and_cover_the_labelled_rows():
    keypoints = labels(full=40, eight_only=60, unlabelled=5)
    subsets = split_rows(keypoints, holdout_fraction=0.1, seed=3)
    train_8, holdout_8 = subsets["8"]
    train_30, holdout_30 = subsets["30"]
    assert not set(train_8) & set(holdout_8)
    assert not set(train_30) & set(holdout_30)
    assert sorted(set(train_8) | set(holdout_8)) == list(range(100))
    assert sorted(set(train_30) | set(holdout_30)) == list(range(40))
    assert len(holdout_30) == 4 and len(holdout_8) == 4 + 6


def test_rows_held_out_for_the_merge_are_never_trained_on():
    keypoints = labels(full=50, eight_only=50)
    subsets = split_rows(keypoints, holdout_fraction=0.2, seed=0)
    holdout_30 = set(subsets["30"][1])
    assert holdout_30 <= set(subsets["8"][1])
    assert not holdout_30 & set(subsets["8"][0])


def test_same_seed_same_split_other_seed_other_split():
    keypoints = labels(full=50, eight_only=50)
    first, again, other = (split_rows(keypoints, 0.2, seed) for seed in (1, 1, 2))
    for name in ("8", "30"):
        np.testing.assert_array_equal(first[name][1], again[name][1])
    assert not np.array_equal(first["30"][1], other["30"][1])


def test_holdout_count_keeps_one_row_each_side():
    assert holdout_count(5, 0.01, "split.holdout_fraction") == 1
    assert holdout_count(2, 0.9, "split.holdout_fraction") == 1
    assert holdout_count(100, 0.0, "split.holdout_fraction") == 0
    with pytest.raises(ValueError, match="train.validation_fraction must be in"):
        holdout_count(10, 1.0, "train.validation_fraction")


def test_no_held_out_rows_is_refused_rather_than_scored_as_nan():
    with pytest.raises(ValueError, match="split.holdout_fraction must be above 0"):
        split_rows(labels(full=40, eight_only=60), 0.0, 0)
    with pytest.raises(ValueError, match="no held-out rows with all 30"):
        split_rows(labels(full=1, eight_only=60), 0.1, 0)


def test_no_fully_labelled_rows_is_a_clear_error():
    with pytest.raises(ValueError, match="all 30"):
        split_rows(labels(full=0, eight_only=20), 0.1, 0)


def test_write_subset_keeps_only_the_subset_columns(tmp_path):
    images = np.arange(6 * 96 * 96, dtype=np.uint32).reshape(6, 96, 96).astype(np.uint8)
    keypoints = labels(full=6, eight_only=0)
    write_subset(tmp_path / "8", images, keypoints, np.array([0, 2, 3, 5]), np.array([1, 4]), EIGHT_INDICES)
    np.testing.assert_array_equal(np.load(tmp_path / "8" / "holdout_images.npy"), images[[1, 4]])
    np.testing.assert_array_equal(np.load(tmp_path / "8" / "train_keypoints.npy"), keypoints[[0, 2, 3, 5]][:, EIGHT_INDICES])
    np.testing.assert_array_equal(np.load(tmp_path / "8" / "holdout_rows.npy"), [1, 4])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["8"]
