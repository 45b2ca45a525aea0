import math

import numpy as np
import pandas as pd
import pytest

from keypoints.columns import EIGHT_COLUMNS, EIGHT_INDICES, KEYPOINT_COLUMNS
from keypoints.evaluate import mae, rmse, score
from keypoints.predict import merge, submission


def test_merge_puts_model_8_columns_in_place():
    predictions_30 = np.zeros((3, 30), np.float32)
    predictions_8 = np.arange(24, dtype=np.float32).reshape(3, 8) + 1
    merged = merge(predictions_30, predictions_8)
    np.testing.assert_array_equal(merged[:, EIGHT_INDICES], predictions_8)
    others = [i for i in range(30) if i not in EIGHT_INDICES]
    assert not merged[:, others].any()
    assert not predictions_30.any(), "merge must not modify its input"
    assert [KEYPOINT_COLUMNS[i] for i in EIGHT_INDICES][0] == "left_eye_center_x"


def test_merge_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="rows"):
        merge(np.zeros((3, 30)), np.zeros((2, 8)))
    with pytest.raises(ValueError, match="expects"):
        merge(np.zeros((3, 8)), np.zeros((3, 8)))


def test_submission_follows_the_lookup_table_and_clips_to_the_image():
    keypoints = np.tile(np.linspace(-5, 100, 30, dtype=np.float32), (2, 1))
    keypoints[1] += 1
    lookup = pd.DataFrame(
        {"RowId": [1, 2, 3], "ImageId": [7, 7, 3], "FeatureName": ["left_eye_center_x", "mouth_center_bottom_lip_y", "nose_tip_x"]}
    )
    frame = submission(lookup, np.array([3, 7]), keypoints)
    assert list(frame.columns) == ["RowId", "Location"]
    assert frame["RowId"].tolist() == [1, 2, 3]
    nose_x = KEYPOINT_COLUMNS.index("nose_tip_x")
    assert frame["Location"].tolist() == [0.0, 96.0, pytest.approx(keypoints[0, nose_x], abs=1e-4)]


def test_submission_names_missing_images():
    lookup = pd.DataFrame({"RowId": [1], "ImageId": [9], "FeatureName": ["nose_tip_x"]})
    with pytest.raises(ValueError, match="9"):
        submission(lookup, np.array([1, 2]), np.zeros((2, 30)))


def test_rmse_and_mae_on_known_values_ignore_unlabelled():
    truth = np.array([[0.0, 0.0], [np.nan, 1.0]])
    predictions = np.array([[3.0, 4.0], [50.0, 1.0]])
    assert rmse(predictions, truth) == pytest.approx(math.sqrt((9 + 16 + 0) / 3))
    assert mae(predictions, truth) == pytest.approx((3 + 4 + 0) / 3)
    assert math.isnan(rmse(predictions[:, :1] * np.nan, truth[:, :1]))


def test_score_is_flat_and_per_keypoint():
    truth = np.zeros((4, 8))
    predictions = np.zeros((4, 8))
    predictions[:, 0] = 2.0  # left eye x off by 2 px
    summary, per_keypoint = score("model_8", predictions, truth, EIGHT_COLUMNS)
    assert summary["model_8_rmse"] == pytest.approx(math.sqrt(4 / 8))
    assert per_keypoint["model_8_rmse_left_eye_center"] == pytest.approx(math.sqrt(2))
    assert per_keypoint["model_8_mae_left_eye_center"] == pytest.approx(1.0)
    assert per_keypoint["model_8_rmse_nose_tip"] == 0.0
    assert len(per_keypoint) == 8
    assert all(isinstance(value, float) for value in {**summary, **per_keypoint}.values())


def test_unflip_maps_a_mirrored_face_s_keypoints_back_onto_the_face():
    """augment's flip (proved on drawn faces in test_augment) gives the keypoints of the mirrored
    image; unflip must turn them back into the original face's, for both models' columns."""
    import tensorflow as tf

    from keypoints.augment import affine_transform
    from keypoints.columns import columns_for, flip_order
    from keypoints.predict import flip_averaged, unflip

    rng = np.random.default_rng(0)
    for outputs in (8, 30):
        keypoints = rng.uniform(20, 75, (4, outputs)).astype(np.float32)
        images = rng.integers(0, 256, (4, 96, 96, 1)).astype(np.float32)
        zeros = tf.zeros([4])
        _, mirrored, kept = affine_transform(images, keypoints, tf.fill([4], True), zeros, zeros, zeros,
                                             tf.ones([4]), order=flip_order(columns_for(outputs)))
        assert kept.numpy().all()
        assert np.abs(mirrored.numpy() - keypoints).max() > 5, "a flip moves the keypoints"
        np.testing.assert_allclose(unflip(mirrored.numpy()), keypoints, atol=1e-4)
        np.testing.assert_allclose(flip_averaged(keypoints + 1, mirrored.numpy()), keypoints + 0.5, atol=1e-4)


def centroid_model(outputs):
    """A Keras model whose every (x, y) pair is the brightness centroid of the face, in keypoint
    coordinates (pixel i's centre at i + 0.5): it moves exactly as the face moves."""
    import keras

    def centroid(images):
        weights = images[..., 0] / keras.ops.sum(images, axis=(1, 2, 3))[:, None, None]
        centres = keras.ops.arange(96, dtype="float32") + 0.5
        x = keras.ops.sum(weights * centres[None, None, :], axis=(1, 2))
        y = keras.ops.sum(weights * centres[None, :, None], axis=(1, 2))
        return keras.ops.tile(keras.ops.stack([x, y], axis=1), [1, outputs // 2])

    inputs = keras.Input((96, 96, 1))
    return keras.Model(inputs, keras.layers.Lambda(centroid, output_shape=(outputs,))(inputs))


def blob(x0, y0, size=9):
    image = np.zeros((1, 96, 96), np.uint8)
    image[0, y0:y0 + size, x0:x0 + size] = 200
    return image


def test_a_shifted_view_is_the_face_moved_and_its_keypoints_are_moved_back():
    from keypoints.predict import shift_back, shifted

    model, face = centroid_model(8), blob(30, 50)
    plain = model.predict(face[..., None].astype(np.float32), verbose=0)
    np.testing.assert_allclose(plain[0, :2], [34.5, 54.5], atol=1e-3)
    for dx, dy in ((6, 0), (-6, 0), (0, 4), (3, -5)):
        view = shifted(face[..., None].astype(np.float32), dx, dy, np.concatenate)
        assert view.shape == (1, 96, 96, 1)
        np.testing.assert_array_equal(view[..., 0], blob(30 + dx, 50 + dy))  # moved right by dx, down by dy
        moved = model.predict(view, verbose=0)
        np.testing.assert_allclose(moved[0, :2], [34.5 + dx, 54.5 + dy], atol=1e-3)
        np.testing.assert_allclose(shift_back(moved, dx, dy), plain, atol=1e-3)
    # The uncovered border repeats the edge pixels, as augment's shifts fill it.
    edge = np.arange(96, dtype=np.float32)[None, None, :, None] * np.ones((1, 96, 1, 1), np.float32)
    np.testing.assert_array_equal(shifted(edge, 3, 0, np.concatenate)[0, 0, :5, 0], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(shifted(edge, -3, 0, np.concatenate)[0, 0, -5:, 0], [94, 95, 95, 95, 95])


def test_shift_averaging_of_a_model_that_follows_the_face_gives_its_plain_answer():
    """Each view's answer moved back is the plain answer for a model that moves with the face, so
    their average is too; a model that ignores the face gets its constant answer minus nothing."""
    from keypoints.predict import predict, shift_views

    assert shift_views(0) == [(0, 0)] and shift_views(6) == [(0, 0), (6, 0), (-6, 0), (0, 6), (0, -6)]
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match="predict.shift_average"):
            shift_views(bad)
    face = blob(40, 20)
    plain = predict(centroid_model(30), face, 4, flip_average=False)
    np.testing.assert_allclose(predict(centroid_model(30), face, 4, False, shift_average=6), plain, atol=1e-3)
    np.testing.assert_allclose(predict(centroid_model(30), face, 4, True, shift_average=6), plain, atol=1e-3)


def test_scoring_no_held_out_rows_is_an_error_not_nan():
    with pytest.raises(ValueError, match="model_8: no labelled held-out values.*split.holdout_fraction"):
        score("model_8", np.zeros((0, 8)), np.zeros((0, 8)), EIGHT_COLUMNS)
