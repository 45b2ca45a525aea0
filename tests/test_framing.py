"""Framing faces as the training crops did, on drawn images whose framing is known.

The drawn "faces" are 15 discs, one per keypoint, each of its own grey level, on a dark canvas: the
reader below finds each disc's centre in a crop, so it predicts the true keypoints of whatever crop it
is given, as a perfect model would. What is tested is the framing: from a detector's rough box, the
refinement must find the box that puts the keypoints where the training faces have them.
"""
import cv2
import numpy as np
import pytest

from keypoints.faces import make_detectors
from keypoints.framing import (
    box_from_detection,
    box_from_keypoints,
    learn_correction,
    box_moved,
    learn_detector_mapping,
    learn_framing,
    refine,
    shape_residual,
    to_original,
)
from keypoints.infer import locate
from keypoints.synthetic import draw_faces

from conftest import FRAMING_SETTINGS

_, SYNTHETIC_KEYPOINTS = draw_faces(1, seed=3)
MEAN_SHAPE = SYNTHETIC_KEYPOINTS[0].astype(np.float64)  # where the "training faces" have their keypoints
LEVELS = 60 + 12 * np.arange(15)  # one grey level per keypoint


def draw_discs(shape, keypoints, radius):
    """A dark canvas with a disc of LEVELS[i] at keypoint i (x, y pairs in canvas keypoint coordinates,
    pixel i's centre at i + 0.5; cv2 draws in pixel indices)."""
    canvas = np.zeros(shape, np.uint8)
    shift = 4
    for level, (x, y) in zip(LEVELS, np.asarray(keypoints).reshape(-1, 2)):
        centre = (int(round((x - 0.5) * 2**shift)), int(round((y - 0.5) * 2**shift)))
        cv2.circle(canvas, centre, int(round(radius * 2**shift)), int(level), -1, cv2.LINE_8, shift)
    return canvas


def read_discs(crops):
    """The perfect model: each disc's centre in each crop, from its pixels of exactly its level whose
    neighbours all have that level too (edge pixels mix with the background when resized)."""
    keypoints = np.full((len(crops), 30), np.nan)
    for row, crop in enumerate(crops):
        for index, level in enumerate(LEVELS):
            inside = cv2.erode((crop == level).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            if inside.any():
                ys, xs = np.nonzero(inside)
                keypoints[row, 2 * index:2 * index + 2] = xs.mean() + 0.5, ys.mean() + 0.5
    return keypoints


def placed(scale, offset, angle_degrees=0.0, shape=(400, 520)):
    """The mean-shape face enlarged `scale` times about its crop centre, turned by `angle_degrees`, its
    crop's first pixel at `offset`: (canvas, true keypoints in canvas pixels, its training-crop box)."""
    angle = np.deg2rad(angle_degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = 48.0  # the crop's centre
    points = (MEAN_SHAPE.reshape(-1, 2) - centre) @ rotation.T + centre
    truth = to_original(points.reshape(-1), (offset[0], offset[1], 96 * scale))
    return draw_discs(shape, truth, radius=3.0 * scale), truth, (offset[0], offset[1], 96 * scale)


def test_box_from_keypoints_inverts_the_mapping_to_the_image():
    for box in [(10, -20, 192), (0, 0, 96), (37, 51, 130)]:
        keypoints = to_original(MEAN_SHAPE, box)
        assert box_from_keypoints(keypoints, MEAN_SHAPE) == box
        assert shape_residual(MEAN_SHAPE, MEAN_SHAPE) == pytest.approx(0, abs=1e-9)
    with_gaps = to_original(MEAN_SHAPE, (37, 51, 130))
    with_gaps[4:20] = np.nan  # unlabelled points are left out of the fit
    assert box_from_keypoints(with_gaps, MEAN_SHAPE) == (37, 51, 130)
    with pytest.raises(ValueError, match="not face-shaped"):
        box_from_keypoints(to_original(-MEAN_SHAPE, (0, 0, 96)), MEAN_SHAPE)


def turned_faces(turns):
    """Crop keypoints of faces turned by `turns` (-1..1): a turned face's keypoints sit off the centre of
    its crop (which is centred on the whole head), by 6 px at the most, and its far eye looks narrower."""
    narrower = np.zeros(30)
    narrower[[2, 6, 10]] = -2.0  # the left eye's inner, outer corners and brow ends move towards its centre
    narrower[[4, 8, 12]] = 2.0
    sideways = np.tile([6.0, 0.0], 15)
    return MEAN_SHAPE + np.outer(turns, narrower + sideways)


def test_the_learned_correction_finds_a_turned_face_s_crop_where_the_mean_shape_fit_cannot():
    training = turned_faces(np.random.default_rng(0).uniform(-1, 1, 400))
    mean_shape = training.mean(axis=0)
    correction = learn_correction(training, mean_shape, FRAMING_SETTINGS["correction_ridge"])
    for turn in (-1.0, -0.5, 0.0, 0.8):
        box = (37, 51, 130)
        keypoints = to_original(turned_faces([turn])[0], box)  # where the face is in a larger image
        assert box_moved(box, box_from_keypoints(keypoints, mean_shape, correction)) <= 1.0, turn
        if abs(turn) >= 0.8:
            assert box_moved(box, box_from_keypoints(keypoints, mean_shape)) >= 3.0, "the plain fit centres the points"
    with_gaps = to_original(turned_faces([0.5])[0], (37, 51, 130))
    with_gaps[4:20] = np.nan  # unknown points: the plain fit, which leaves them out
    assert box_from_keypoints(with_gaps, mean_shape, correction) == box_from_keypoints(with_gaps, mean_shape)


def test_detection_mapping_is_learned_from_crops_and_applied_to_rectangles():
    # A "detector" that always answers the middle 60x60 of the padded crop: the mapping must undo it.
    def middle(image):
        height, width = image.shape
        return [((width - 60) / 2, (height - 60) / 2 - 6, 60.0, 60.0)]

    mapping, found = learn_detector_mapping(np.zeros((5, 96, 96), np.uint8), middle)
    assert found == 1.0
    assert mapping == pytest.approx({"scale": 96 / 60, "dx": 0.0, "dy": 0.1})
    assert box_from_detection((100, 200, 60, 60), mapping) == (82, 188, 96)
    assert learn_detector_mapping(np.zeros((2, 96, 96), np.uint8), lambda image: []) == (None, 0.0)


@pytest.mark.parametrize("scale, offset, angle, start", [
    (2.0, (150, 90), 0.0, (120, 60, 230)),       # a detector box too big and off to the upper left
    (1.5, (40, 200), 0.0, (60, 215, 120)),       # too small and low
    (2.5, (230, 60), 6.0, (215, 80, 270)),       # a slightly turned face
])
def test_refining_from_a_rough_box_finds_the_training_framing(scale, offset, angle, start):
    canvas, truth, framing_box = placed(scale, offset, angle)
    boxes, keypoints_96, moved = refine([canvas], [start], read_discs, MEAN_SHAPE, iterations=6, tolerance=0.5)
    assert moved[0] < 0.5, "the framing settled"
    if angle == 0.0:
        assert box_moved(framing_box, boxes[0]) <= 1.0, (boxes[0], framing_box)
    found = to_original(keypoints_96[0], boxes[0])
    assert np.sqrt(np.mean((found - truth) ** 2)) < 1.0 * scale, "keypoints within a crop pixel of the truth"


def test_a_wandering_prediction_is_no_face():
    canvas, _, framing_box = placed(2.0, (150, 90))
    framing = {"mean_shape": MEAN_SHAPE.tolist(), "residuals": {"q99": 5.0},
               "detectors": {"box": {"scale": 1.0, "dx": 0.0, "dy": 0.0}},
               "settings": {**FRAMING_SETTINGS, "iterations": 4}}
    rect = tuple(float(value) for value in (framing_box[0], framing_box[1], framing_box[2], framing_box[2]))
    detectors = {"box": lambda gray: [rect]}
    box, _, found, name = locate(canvas, detectors, framing, read_discs)
    assert found and name == "box" and box_moved(framing_box, box) <= 1.0

    def drifting(crops):  # blind to the image, always 20 crop pixels right of centre: its box never settles
        return np.tile(MEAN_SHAPE + np.tile([20.0, 0.0], 15), (len(crops), 1))

    assert not locate(canvas, detectors, framing, drifting)[2]

    def scrambled(crops):  # keypoints in no face's order
        return read_discs(crops)[:, np.random.default_rng(0).permutation(30)]

    assert not locate(canvas, detectors, framing, scrambled)[2]


def test_a_face_no_detector_found_is_refined_from_the_centred_square_but_not_called_found():
    # A 264-px training crop, off the centre of the 300-px centred square (10, 0, 300).
    canvas, truth, _ = placed(2.75, (30, 24), shape=(300, 320))
    framing = {"mean_shape": MEAN_SHAPE.tolist(), "residuals": {"q99": 5.0}, "detectors": {},
               "settings": {**FRAMING_SETTINGS, "iterations": 6}}
    box, keypoints_96, found, name = locate(canvas, {}, framing, read_discs)
    assert (found, name) == (False, None)
    assert box != (10, 0, 300), "re-framed from the centred square"
    assert np.sqrt(np.mean((to_original(keypoints_96, box) - truth) ** 2)) < 2.0, "on the face"

    def drifting(crops):  # blind to the image: the refinement never settles, so the square itself stays
        return np.tile(MEAN_SHAPE + np.tile([20.0, 0.0], 15), (len(crops), 1))

    box, keypoints_96, found, _ = locate(canvas, {}, framing, drifting)
    assert (box, found) == ((10, 0, 300), False)
    np.testing.assert_allclose(keypoints_96, drifting([None])[0])


@pytest.mark.parametrize("image", [np.full((480, 640), 128, np.uint8),
                                   np.random.default_rng(0).integers(0, 256, (480, 640)).astype(np.uint8)],
                         ids=["blank", "noise"])
def test_no_detector_finds_a_face_in_a_blank_or_noise_image(image):
    for name, detect in make_detectors(["haar", "hog"], FRAMING_SETTINGS["detection_size"]).items():
        assert detect(image) == [], name


def test_learned_framing_of_synthetic_faces():
    images, keypoints = draw_faces(40, seed=5)
    detectors = make_detectors(["haar"], FRAMING_SETTINGS["detection_size"])
    framing = learn_framing(images, keypoints, detectors, FRAMING_SETTINGS["correction_ridge"])
    np.testing.assert_allclose(framing["mean_shape"], keypoints.mean(axis=0), atol=1e-4)
    assert 0 < framing["residuals"]["q50"] <= framing["residuals"]["q99"] <= framing["residuals"]["q100"]
    assert framing["found"]["haar"] > 0.5, "Haar finds most drawn faces"
    mapping = framing["detectors"]["haar"]
    assert 0.7 < mapping["scale"] < 1.5 and abs(mapping["dx"]) < 0.2 and abs(mapping["dy"]) < 0.3


def test_detectors_called_from_several_threads_find_what_one_thread_finds():
    """learn_detector_mapping runs a detector on a thread per core: each thread has its own native
    detector, so concurrent calls find exactly the faces of one call after another."""
    from concurrent.futures import ThreadPoolExecutor

    images, _ = draw_faces(24, seed=6)
    padded = [cv2.copyMakeBorder(image, *[48] * 4, cv2.BORDER_REPLICATE) for image in images]
    for name, detect in make_detectors(["haar", "hog"], FRAMING_SETTINGS["detection_size"]).items():
        one_by_one = [sorted(detect(image)) for image in padded]
        assert sum(map(bool, one_by_one)) >= 5, f"{name} must find faces for this test to mean anything"
        with ThreadPoolExecutor(4) as pool:
            concurrent = [sorted(rects) for rects in pool.map(detect, padded * 3)]
        assert concurrent == one_by_one * 3, name
