"""The input pipeline: flips, affine transforms and their keypoints agree pixel for pixel."""
import numpy as np
import pytest
import tensorflow as tf

from keypoints import columns
from keypoints.augment import FIRST, LAST, affine_transform, make_dataset
from keypoints.columns import flip_order


def flip_images(images):
    """Numpy reference: mirror (N, 96, 96) or (N, 96, 96, 1) images left to right."""
    return np.asarray(images)[:, :, ::-1, ...].copy()


def flip_keypoints(keypoints, columns):
    """Numpy reference: x -> 96 - x (pixel i spans [i, i + 1)), then left/right columns swap names."""
    keypoints = np.array(keypoints, dtype=np.float32)
    keypoints[:, 0::2] = 96 - keypoints[:, 0::2]
    return keypoints[:, flip_order(columns)]

EIGHT = columns.EIGHT_COLUMNS
ALL = columns.KEYPOINT_COLUMNS
# Eight-column faces: left eye on the image right, as in the real data; every value is distinct. Each
# keypoint is the centre of a pixel: pixel (row, column) has its centre at (column + 0.5, row + 0.5).
FACE = np.array([66, 37, 30, 37, 48, 60, 47, 78], dtype=np.float32) + 0.5
DOT_VALUES = [250, 200, 150, 100]  # left eye, right eye, nose tip, bottom lip


def dotted_face(keypoints=FACE, values=DOT_VALUES):
    image = np.zeros((96, 96), np.uint8)
    for (x, y), value in zip(keypoints.reshape(-1, 2), values):
        image[int(y), int(x)] = value
    return image


def blob(x, y, sigma=1.5):
    """A smooth bright spot centred at sub-pixel (x, y), pixel i's centre at coordinate i + 0.5."""
    grid_y, grid_x = np.mgrid[0:96, 0:96] + 0.5
    return 200.0 * np.exp(-((grid_x - x) ** 2 + (grid_y - y) ** 2) / (2 * sigma**2))


def centroid(image):
    grid_y, grid_x = np.mgrid[0:96, 0:96] + 0.5
    weights = np.clip(image, 0, None)
    return (grid_x * weights).sum() / weights.sum(), (grid_y * weights).sum() / weights.sum()


def batches(dataset):
    images, keypoints = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(keypoints)


def transform(images, keypoints, flip=False, shift=(0.0, 0.0), degrees=0.0, scale=1.0, names=EIGHT):
    count = len(images)
    result = affine_transform(
        tf.constant(np.asarray(images, np.float32)[..., None]), tf.constant(keypoints, tf.float32),
        flip=tf.fill([count], flip), shift_x=tf.fill([count], float(shift[0])),
        shift_y=tf.fill([count], float(shift[1])), angle=tf.fill([count], float(np.deg2rad(degrees))),
        scale=tf.fill([count], float(scale)), order=flip_order(names),
    )
    return result[0].numpy()[..., 0], result[1].numpy(), result[2].numpy()


def test_flip_twice_is_identity_for_numpy_helpers_and_pipeline():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 96, 96), dtype=np.uint8)
    keypoints = rng.uniform(0.5, 95.5, (3, 30)).astype(np.float32)
    assert np.array_equal(flip_images(flip_images(images)), images)
    assert np.allclose(flip_keypoints(flip_keypoints(keypoints, ALL), ALL), keypoints)
    once_images, once_keypoints, _ = transform(images, keypoints, flip=True, names=ALL)
    assert np.array_equal(once_images, flip_images(images))
    assert np.allclose(once_keypoints, flip_keypoints(keypoints, ALL), atol=1e-5)
    twice_images, twice_keypoints, _ = transform(once_images, once_keypoints, flip=True, names=ALL)
    assert np.array_equal(twice_images, images)
    assert np.allclose(twice_keypoints, keypoints, atol=1e-5)


def test_flip_keypoints_swaps_left_and_right_names():
    flipped = flip_keypoints(FACE[None], EIGHT)[0]
    # The subject's left eye of the mirrored face is the old right eye, mirrored: again on the image right.
    assert flipped[:4].tolist() == [96 - 30.5, 37.5, 96 - 66.5, 37.5]
    assert flipped[4:].tolist() == [96 - 48.5, 60.5, 96 - 47.5, 78.5]
    order = flip_order(ALL)
    assert ALL[order[ALL.index("mouth_left_corner_x")]] == "mouth_right_corner_x"
    assert ALL[order[ALL.index("nose_tip_y")]] == "nose_tip_y"


def test_pipeline_flip_puts_each_named_keypoint_on_its_own_dot():
    images = np.repeat(dotted_face()[None], 32, axis=0)
    keypoints = np.repeat(FACE[None], 32, axis=0)
    flipped_images, flipped_keypoints = batches(
        make_dataset(images, keypoints, EIGHT, 16, training=True, seed=3, augment={"flip": True}))
    mirrored = 0
    for image, points in zip(flipped_images[..., 0], flipped_keypoints):
        is_mirrored = points[0] != FACE[0]
        # In a mirrored face the subject's left eye is the image of the old right eye: its dot is 200.
        values = [200, 250, 150, 100] if is_mirrored else DOT_VALUES
        for (x, y), value in zip(points.reshape(-1, 2), values):
            assert x - 0.5 == np.round(x - 0.5) and y - 0.5 == np.round(y - 0.5)
            assert image[int(y), int(x)] == value
        assert points[0] > 48 > points[2]  # left_eye_center on the image right, right_eye_center left
        mirrored += bool(is_mirrored)
    assert 0 < mirrored < 32  # both outcomes of the coin occur
    assert np.array_equal(flip_images(images[:1])[0], flipped_images[np.flatnonzero(flipped_keypoints[:, 0] == 65.5)[0], ..., 0])


def test_labels_of_another_pixel_convention_flip_onto_their_dots_once_parse_converts_them():
    """Data labelled with pixel i's centre at i + 1 (parse.pixel_centre: 1.0): converted to the project's
    convention, the flip puts every keypoint on its dot; taken as they are, every mirrored x is 1 px off
    (the models learnt half of that as a bias on the real faces)."""
    images = np.repeat(dotted_face()[None], 32, axis=0)
    one_based = np.repeat(FACE[None] + 0.5, 32, axis=0)
    for labels, data_x_error in ((columns.to_project_convention(one_based, 1.0), 0.0), (one_based, -1.0)):
        flipped_images, flipped_keypoints = batches(
            make_dataset(images, labels, EIGHT, 16, training=True, seed=3, augment={"flip": True}))
        mirrored = np.flatnonzero(flipped_keypoints[:, 0] != labels[0, 0])
        assert 0 < len(mirrored) < 32
        for index in mirrored:
            # The subject's left eye of a mirrored face is the old right eye's dot (200), and so on.
            for (x, y), value in zip(flipped_keypoints[index].reshape(-1, 2), [200, 250, 150, 100]):
                (row,), (column,) = np.nonzero(flipped_images[index, ..., 0] == value)
                if data_x_error:  # unconverted labels are in the data's convention: the dot's x is column + 1
                    assert (x - (column + 1.0), y - (row + 1.0)) == (data_x_error, 0.0)
                else:
                    assert (x, y) == (column + 0.5, row + 0.5)
    back = columns.to_data_convention(columns.to_project_convention(one_based, 1.0), 1.0)
    np.testing.assert_array_equal(back, one_based)


@pytest.mark.parametrize("shift, degrees", [((7, -4), 0.0), ((0, 0), 90.0), ((-3, 11), -90.0)])
def test_single_bright_pixel_lands_on_transformed_keypoint(shift, degrees):
    # Integer-valued moves keep the pixel whole: no interpolation, so the location check is exact.
    point = np.array([[20.5, 31.5]], np.float32)  # the centre of pixel (row 31, column 20)
    image = np.zeros((1, 96, 96), np.uint8)
    image[0, 31, 20] = 255
    moved_image, moved_point, kept = transform(image, point, shift=shift, degrees=degrees, names=["a_x", "a_y"])
    angle = np.deg2rad(degrees)
    x, y = 20.5 - 48, 31.5 - 48  # about the image centre, (48, 48)
    expected = (48 + shift[0] + np.cos(angle) * x - np.sin(angle) * y,
                48 + shift[1] + np.sin(angle) * x + np.cos(angle) * y)
    assert kept[0]
    assert np.allclose(moved_point[0], expected, atol=1e-4)
    row, column = np.unravel_index(np.argmax(moved_image[0]), (96, 96))
    assert (column, row) == tuple(np.round(np.array(expected) - 0.5).astype(int))
    assert moved_image[0, row, column] > 254


@pytest.mark.parametrize("flip, shift, degrees, scale", [
    (False, (2.5, -3.25), 0.0, 1.0),
    (False, (0, 0), 0.0, 1.3),
    (False, (0, 0), 23.0, 1.0),
    (True, (3.5, -2.25), 17.0, 0.9),
])
def test_blob_centroid_follows_subpixel_keypoint_transform(flip, shift, degrees, scale):
    point = np.array([[58.3, 40.7]], np.float32)
    moved_image, moved_point, kept = transform(blob(58.3, 40.7)[None], point, flip=flip, shift=shift,
                                               degrees=degrees, scale=scale, names=["a_x", "a_y"])
    angle = np.deg2rad(degrees)
    x, y = (48 - 58.3 if flip else 58.3 - 48), 40.7 - 48
    expected = (48 + shift[0] + scale * (np.cos(angle) * x - np.sin(angle) * y),
                48 + shift[1] + scale * (np.sin(angle) * x + np.cos(angle) * y))
    assert kept[0]
    assert np.allclose(moved_point[0], expected, atol=1e-3)
    assert np.allclose(centroid(moved_image[0]), expected, atol=0.05)


def test_examples_pushed_out_of_the_image_stay_untransformed():
    images = np.round(np.stack([blob(60, 40), blob(60, 40)]), 3).astype(np.float32)  # no denormals: TF flushes them
    points = np.array([[60.0, 40.0], [60.0, 40.0]], np.float32)
    count = 2
    moved_images, moved_points, kept = [value.numpy() for value in affine_transform(
        tf.constant(images[..., None], tf.float32), tf.constant(points),
        flip=tf.constant([False, False]), shift_x=tf.constant([10.0, 40.0]), shift_y=tf.zeros([count]),
        angle=tf.zeros([count]), scale=tf.ones([count]), order=[0, 1])]
    assert kept.tolist() == [True, False]
    assert np.allclose(moved_points[0], [70, 40])
    assert np.array_equal(moved_points[1], points[1]) and np.array_equal(moved_images[1, ..., 0], images[1])

    # Through the pipeline, a huge shift: every example is either untouched or fully inside.
    rng = np.random.default_rng(1)
    source = rng.integers(0, 256, (24, 96, 96), dtype=np.uint8)
    keypoints = np.tile(FACE, (24, 1)) + np.arange(24, dtype=np.float32)[:, None] * 0.01
    out_images, out_keypoints = batches(
        make_dataset(source, keypoints, EIGHT, 8, training=True, seed=0, augment={"shift": 200}))
    assert ((out_keypoints >= FIRST) & (out_keypoints <= LAST)).all()
    untouched = 0
    for image, points in zip(out_images[..., 0], out_keypoints):
        match = np.flatnonzero(np.all(keypoints == points, axis=1))
        if len(match):
            untouched += 1
            assert np.array_equal(image, source[match[0]])
    assert untouched >= 20  # a +-200 px shift almost never keeps a face inside


def test_brightness_and_contrast_stay_in_range_and_vary():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (16, 96, 96), dtype=np.uint8)
    keypoints = np.tile(FACE, (16, 1))
    out, out_keypoints = batches(make_dataset(images, keypoints, EIGHT, 8, training=True, seed=0,
                                              augment={"brightness": 0.5, "contrast": 0.5}))
    assert out.min() >= 0 and out.max() <= 255 and not np.array_equal(out.astype(np.uint8), out)
    assert np.array_equal(out_keypoints, keypoints)

    grey = np.full((16, 96, 96), 128, np.uint8)
    brighter, _ = batches(make_dataset(grey, keypoints, EIGHT, 8, training=True, seed=0, augment={"brightness": 0.2}))
    levels = brighter.reshape(16, -1)
    assert np.ptp(levels, axis=1).max() < 1e-3  # one shift per image
    assert np.abs(levels[:, 0] - 128).max() <= 0.2 * 255 + 1e-3 and len(np.unique(levels[:, 0])) == 16
    contrasted, _ = batches(make_dataset(grey, keypoints, EIGHT, 8, training=True, seed=0, augment={"contrast": 0.9}))
    assert np.allclose(contrasted, 128)  # contrast pivots on the image's own mean


def test_all_zero_augmentation_is_identity_up_to_order():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (10, 96, 96), dtype=np.uint8)
    keypoints = rng.uniform(10, 85, (10, 30)).astype(np.float32)
    zero = {"flip": False, "shift": 0, "rotation": 0, "scale": 0, "brightness": 0, "contrast": 0}
    out_images, out_keypoints = batches(make_dataset(images, keypoints, ALL, 4, training=True, seed=5, augment=zero))
    order = [int(np.flatnonzero(keypoints[:, 0] == value)[0]) for value in out_keypoints[:, 0]]
    assert sorted(order) == list(range(10)) and order != list(range(10))
    assert np.array_equal(out_images[..., 0], images[order]) and np.array_equal(out_keypoints, keypoints[order])


def test_each_epoch_is_a_function_of_seed_and_epoch_alone():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (20, 96, 96), dtype=np.uint8)
    keypoints = rng.uniform(30, 65, (20, 8)).astype(np.float32)
    augment = {"flip": True, "shift": 3, "rotation": 8, "scale": 0.05, "brightness": 0.1, "contrast": 0.1}

    def epochs(seed, first=0, end=3):
        dataset = make_dataset(images, keypoints, EIGHT, 8, training=True, seed=seed, augment=augment, epochs=(first, end))
        out_images, out_keypoints = batches(dataset)
        return [(out_images[i:i + 20], out_keypoints[i:i + 20]) for i in range(0, len(out_images), 20)]

    first, again, other = epochs(7), epochs(7), epochs(8)
    assert len(first) == 3
    for epoch in range(3):
        assert np.array_equal(first[epoch][0], again[epoch][0]) and np.array_equal(first[epoch][1], again[epoch][1])
    assert not np.allclose(first[0][1], first[1][1])  # reshuffled and re-augmented each epoch
    assert not np.allclose(first[0][1], other[0][1])
    # A fit resumed at epoch 1 gets the very batches the uninterrupted fit got from epoch 1 on.
    resumed = epochs(7, first=1)
    assert len(resumed) == 2
    for epoch in (1, 2):
        assert np.array_equal(resumed[epoch - 1][0], first[epoch][0])
        assert np.array_equal(resumed[epoch - 1][1], first[epoch][1])


@pytest.mark.parametrize("names", [EIGHT, ALL])
def test_shapes_dtypes_and_unshuffled_evaluation(names):
    images = np.arange(5 * 96 * 96, dtype=np.int64).reshape(5, 96, 96).astype(np.uint8)
    keypoints = np.linspace(10, 80, 5 * len(names), dtype=np.float32).reshape(5, len(names))
    for training in (True, False):
        dataset = make_dataset(images, keypoints, names, 2, training=training, seed=0, augment={"flip": True})
        shapes = [(x.shape, y.shape, x.dtype, y.dtype) for x, y in dataset]
        assert [shape[:2] for shape in shapes] == [((2, 96, 96, 1), (2, len(names)))] * 2 + [((1, 96, 96, 1), (1, len(names)))]
        assert all(shape[2] == tf.float32 and shape[3] == tf.float32 for shape in shapes)
    out_images, out_keypoints = batches(make_dataset(images, keypoints, names, 2, training=False, seed=0))
    assert np.array_equal(out_images[..., 0], images) and np.array_equal(out_keypoints, keypoints)


def test_bad_input_is_refused_clearly():
    images = np.zeros((2, 96, 96), np.uint8)
    keypoints = np.tile(FACE, (2, 1))
    with pytest.raises(ValueError, match="unknown keys"):
        make_dataset(images, keypoints, EIGHT, 2, training=True, seed=0, augment={"flips": True})
    with pytest.raises(ValueError, match="NaN"):
        make_dataset(images, np.where(keypoints > 60, np.nan, keypoints), EIGHT, 2, training=True, seed=0)
    with pytest.raises(ValueError, match="mirror column"):
        make_dataset(images, keypoints[:, :2], ["left_eye_center_x", "left_eye_center_y"], 2,
                     training=True, seed=0, augment={"flip": True})
    with pytest.raises(ValueError, match="8 column names"):
        make_dataset(images, np.zeros((2, 30), np.float32), EIGHT, 2, training=False, seed=0)
