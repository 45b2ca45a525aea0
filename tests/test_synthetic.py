"""The synthetic faces: exact keypoints on the drawn features, seeded, in the competition's format."""
import numpy as np
import pandas as pd
import pytest

from keypoints.columns import EIGHT_INDICES, KEYPOINT_COLUMNS, KEYPOINT_NAMES
from keypoints.parse import parse_lookup, parse_test, parse_training
from keypoints.synthetic import draw_faces, label_mask, write_competition_files


def point(keypoints, name):
    index = KEYPOINT_NAMES.index(name)
    return keypoints[..., 2 * index], keypoints[..., 2 * index + 1]


def test_same_seed_same_faces_and_other_seed_other_faces():
    images, keypoints = draw_faces(6, seed=3)
    again_images, again_keypoints = draw_faces(6, seed=3)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(keypoints, again_keypoints)
    other_images, other_keypoints = draw_faces(6, seed=4)
    assert not np.array_equal(images, other_images) and not np.array_equal(keypoints, other_keypoints)


def test_keypoints_lie_inside_the_image_and_in_anatomical_order():
    _, keypoints = draw_faces(200, seed=0)
    assert keypoints.dtype == np.float32 and keypoints.shape == (200, 30)
    assert keypoints.min() >= 0.5 and keypoints.max() <= 95.5  # within the pixel centres
    # The subject's left eye is on the image's right; brows above eyes above nose above mouth.
    left_x, left_y = point(keypoints, "left_eye_center")
    right_x, right_y = point(keypoints, "right_eye_center")
    assert np.all(left_x > right_x)
    eye_y = (left_y + right_y) / 2
    brow_y = (point(keypoints, "left_eyebrow_inner_end")[1] + point(keypoints, "right_eyebrow_inner_end")[1]) / 2
    nose_y = point(keypoints, "nose_tip")[1]
    top_lip_y = point(keypoints, "mouth_center_top_lip")[1]
    bottom_lip_y = point(keypoints, "mouth_center_bottom_lip")[1]
    assert np.all(brow_y < eye_y) and np.all(eye_y < nose_y) and np.all(nose_y < top_lip_y)
    assert np.all(top_lip_y < bottom_lip_y)
    # Near the real data's mean face (eyes about (66, 37) and (30, 37), bottom lip about (48, 78)).
    assert abs(left_x.mean() - 66) < 3 and abs(right_x.mean() - 30) < 3 and abs(bottom_lip_y.mean() - 78) < 3


def test_eye_keypoints_sit_on_the_dark_irises():
    images, keypoints = draw_faces(50, seed=1)
    rows = np.arange(len(images))
    for name in ("left_eye_center", "right_eye_center"):
        x, y = point(keypoints, name)
        # Pixel (row, column) has its centre at (column + 0.5, row + 0.5).
        row, column = np.rint(y - 0.5).astype(int), np.rint(x - 0.5).astype(int)
        at_iris = images[rows, row, column].astype(float)
        # 5 px to the side the eye is white (sclera) or skin: brighter than the iris on nearly every face.
        beside = images[rows, row, np.clip(column + 5, 0, 95)].astype(float)
        assert np.mean(at_iris < beside - 20) > 0.9, name


def test_label_mask_keeps_the_eight_everywhere_and_all_thirty_on_a_seeded_fraction():
    mask = label_mask(1000, 0.3, seed=5)
    assert mask[:, EIGHT_INDICES].all()
    full = mask.all(axis=1)
    assert full.sum() == 300
    assert not mask[~full][:, [i for i in range(30) if i not in EIGHT_INDICES]].any()
    np.testing.assert_array_equal(mask, label_mask(1000, 0.3, seed=5))
    with pytest.raises(ValueError, match="full_fraction"):
        label_mask(10, 1.5, seed=0)


def test_written_files_parse_back_exactly(tmp_path):
    write_competition_files(tmp_path, train_rows=40, test_rows=5, full_fraction=0.25, seed=2, log=lambda _: None)
    images, keypoints = parse_training(tmp_path / "training.csv", progress_every=0)
    drawn_images, drawn_keypoints = draw_faces(40, [2, 0])
    np.testing.assert_array_equal(images, drawn_images)
    labelled = np.isfinite(keypoints)
    assert labelled[:, EIGHT_INDICES].all() and labelled.all(axis=1).sum() == 10
    np.testing.assert_allclose(keypoints[labelled], drawn_keypoints[labelled], atol=1e-5)

    test_ids, test_images = parse_test(tmp_path / "test.csv", progress_every=0)
    assert test_images.shape == (5, 96, 96) and test_ids.tolist() == [1, 2, 3, 4, 5]
    lookup = parse_lookup(tmp_path / "IdLookupTable.csv", test_ids)
    assert set(lookup["ImageId"]) == {1, 2, 3, 4, 5}
    assert set(lookup["FeatureName"]) <= set(KEYPOINT_COLUMNS)
    assert lookup["RowId"].tolist() == list(range(1, len(lookup) + 1))
    header = pd.read_csv(tmp_path / "IdLookupTable.csv", nrows=0).columns.tolist()
    assert header == ["RowId", "ImageId", "FeatureName", "Location"]


def test_too_few_rows_are_refused(tmp_path):
    with pytest.raises(ValueError, match="train_rows >= 2"):
        write_competition_files(tmp_path, train_rows=1, test_rows=0, full_fraction=0.3, seed=0)
