"""Framing a face as the training crops did, for photos and video alike.

The models learned keypoints on 96x96 crops framed one way (for the real faces: a square of 1.2x the
landmarks' extent, raised by 0.1 of its side). A face elsewhere must be cut out the same way before
the models see it, or they see a bigger, smaller or shifted face than they learned and their points
drift. The framing is learned from the training faces, in two parts (`learn_framing`):
- the mean shape: where the 15 keypoints sit in the crop on average. Given keypoints anywhere, the box
  that puts them where the mean shape has them (least squares over scale and shift) is the
  training framing of that face (`box_from_keypoints`);
- for each face detector, how its box relates to the training crop (`box_from_detection`): a first
  framing, before any keypoints are known.
`refine` alternates: predict on the crop, re-frame the crop from the predictions, until it stops
moving. In a video, a face's crop in the next frame can start from its keypoints in this one.

A box is a square (x, y, side) of whole pixels: its first column and row, and its side. Keypoint
coordinates measure from the top-left corner, in the crop as in the image (pixel i's centre at i + 0.5:
columns.py), so crop coordinate c maps to x + c * side / 96 (cv2.resize samples output pixel k at input
pixel index (k + 0.5) * side / 96 - 0.5: the same map).
"""
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from keypoints.columns import IMAGE_SIZE, KEYPOINT_COLUMNS

POINTS = len(KEYPOINT_COLUMNS) // 2


def overlaps(shape, box):
    """Whether a box (x, y, side) shares at least one pixel with an image of this shape."""
    x, y, side = (int(value) for value in box)
    height, width = shape[:2]
    return side >= 1 and x < width and y < height and x + side > 0 and y + side > 0


def crop_face(gray, box):
    """The box's pixels (edge-replicated outside the image), resized to uint8 96x96."""
    x, y, side = (int(value) for value in box)
    height, width = gray.shape[:2]
    if side < 1:
        raise ValueError(f"box side must be at least 1 pixel, not {side}")
    if not overlaps(gray.shape, box):
        raise ValueError(f"box {box} does not overlap the {width}x{height} image")
    inside = gray[max(y, 0):min(y + side, height), max(x, 0):min(x + side, width)]
    crop = cv2.copyMakeBorder(
        inside, max(-y, 0), max(y + side - height, 0), max(-x, 0), max(x + side - width, 0), cv2.BORDER_REPLICATE
    )
    # INTER_AREA averages when shrinking (no aliasing); it does not interpolate when enlarging.
    interpolation = cv2.INTER_AREA if side >= IMAGE_SIZE else cv2.INTER_LINEAR
    return cv2.resize(crop, (IMAGE_SIZE, IMAGE_SIZE), interpolation=interpolation).astype(np.uint8)


def to_original(keypoints_96, box):
    """Keypoints (..., 2k) as x, y pairs in the 96x96 crop -> the same in the original image."""
    x, y, side = box
    keypoints = np.array(keypoints_96, dtype=np.float64)
    scale = side / IMAGE_SIZE
    keypoints[..., 0::2] = x + keypoints[..., 0::2] * scale
    keypoints[..., 1::2] = y + keypoints[..., 1::2] * scale
    return keypoints


def centred_box(shape):
    """The largest square centred in an image of shape (height, width, ...)."""
    height, width = shape[:2]
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side


def whole_box(x, y, side):
    """The nearest box of whole pixels to a square with first column x, first row y (floats)."""
    side_whole = max(1, int(round(side)))
    # Keep the centre: it moves less than half a pixel, the side less than one.
    return (int(round(x + side / 2 - side_whole / 2)), int(round(y + side / 2 - side_whole / 2)), side_whole)


def fit_to_shape(keypoints, mean_shape):
    """(scale, shift_x, shift_y) of the least-squares fit keypoints ~ shift + scale * mean_shape.

    keypoints (30,) in image pixels, mean_shape (30,) in crop pixels; NaN points are left out."""
    points = np.asarray(keypoints, np.float64).reshape(POINTS, 2)
    reference = np.asarray(mean_shape, np.float64).reshape(POINTS, 2)
    known = np.isfinite(points).all(axis=1)
    if known.sum() < 2:
        raise ValueError("framing a face needs at least two keypoints")
    points, reference = points[known], reference[known]
    centred_points, centred_reference = points - points.mean(axis=0), reference - reference.mean(axis=0)
    scale = float(np.sum(centred_points * centred_reference) / np.sum(centred_reference**2))
    shift = points.mean(axis=0) - scale * reference.mean(axis=0)
    return scale, float(shift[0]), float(shift[1])


def shape_features(keypoints, mean_shape):
    """The face's shape in the mean shape's frame (scale and shift fitted away), less the mean shape:
    what is left is pose and build (a turned head has its eyes closer on one side), 30 values."""
    scale, shift_x, shift_y = fit_to_shape(keypoints, mean_shape)
    if not scale > 0:
        raise ValueError("keypoints that are not face-shaped (mirrored or collapsed) have no framing")
    points = np.asarray(keypoints, np.float64).reshape(POINTS, 2)
    normalised = (points - (shift_x, shift_y)) / scale
    return normalised.reshape(-1) - np.asarray(mean_shape, np.float64), (scale, shift_x, shift_y)


def learn_correction(keypoints, mean_shape, ridge):
    """Where the training crop really is, given a face's shape: a ridge regression from shape_features to
    the crop's offset and log-scale in the mean shape's frame, learned on training keypoints (M, 30) in
    crop pixels. The mean-shape fit alone centres the 15 keypoints, but a training crop is centred on all
    68 landmarks, jaw included: a turned face's crop sits off its keypoints' centre, and its shape says by
    how much. Returns 31 rows (30 weights and a constant) of 3 columns (offset x, offset y, log scale)."""
    features, targets = [], []
    for row in np.asarray(keypoints, np.float64):
        shape, (scale, shift_x, shift_y) = shape_features(row, mean_shape)
        features.append(shape)
        # The crop is the frame where the keypoints are: crop coordinate c lies at (c - shift) / scale there.
        targets.append((-shift_x / scale, -shift_y / scale, -np.log(scale)))
    design = np.c_[np.array(features), np.ones(len(features))]
    penalty = ridge * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0  # the constant is not shrunk
    weights = np.linalg.solve(design.T @ design + penalty, design.T @ np.array(targets))
    return weights.round(6).tolist()


def crop_frame(keypoints, mean_shape, correction=None):
    """(scale, shift_x, shift_y) with which crop coordinate c lies at shift + scale * c in the image: the
    training framing of a face with these keypoints (image pixels). Without a correction (or with unknown
    points), the box that puts the keypoints where the mean shape has them."""
    if correction is None or not np.isfinite(keypoints).all():
        return fit_to_shape(keypoints, mean_shape)
    shape, (scale, shift_x, shift_y) = shape_features(keypoints, mean_shape)
    offset_x, offset_y, log_scale = np.append(shape, 1.0) @ np.asarray(correction, np.float64)
    return scale * float(np.exp(log_scale)), shift_x + scale * offset_x, shift_y + scale * offset_y


def box_from_keypoints(keypoints, mean_shape, correction=None):
    """The training framing of a face, as a box (see crop_frame)."""
    scale, shift_x, shift_y = crop_frame(keypoints, mean_shape, correction)
    if not scale > 0:
        raise ValueError("keypoints that are not face-shaped (mirrored or collapsed) have no framing")
    # Image coordinate = x + c * side / 96 = shift + scale * c (to_original).
    return whole_box(shift_x, shift_y, scale * IMAGE_SIZE)


def shape_residual(keypoints_96, mean_shape):
    """Root mean square distance, in crop pixels, of crop keypoints from the mean shape fitted to them:
    how unlike the training faces a prediction is."""
    scale, shift_x, shift_y = fit_to_shape(keypoints_96, mean_shape)
    fitted = np.asarray(mean_shape, np.float64).reshape(POINTS, 2) * scale + (shift_x, shift_y)
    difference = np.asarray(keypoints_96, np.float64).reshape(POINTS, 2) - fitted
    return float(np.sqrt(np.nanmean(np.sum(difference**2, axis=1))))


def box_from_detection(rect, mapping):
    """A detector's rectangle (x, y, w, h) -> the training crop's box, by the detector's learned mapping:
    side = scale * w, centre = rect centre + (dx, dy) * w."""
    x, y, w, h = (float(value) for value in rect)
    side = mapping["scale"] * w
    centre_x = x + w / 2 + mapping["dx"] * w
    centre_y = y + h / 2 + mapping["dy"] * w
    return whole_box(centre_x - side / 2, centre_y - side / 2, side)


def iou(first, second):
    """Intersection over union of two square boxes (x, y, side)."""
    (x1, y1, s1), (x2, y2, s2) = first, second
    width = min(x1 + s1, x2 + s2) - max(x1, x2)
    height = min(y1 + s1, y2 + s2) - max(y1, y2)
    if width <= 0 or height <= 0:
        return 0.0
    overlap = width * height
    return overlap / (s1 * s1 + s2 * s2 - overlap)


def first_boxes(gray, detectors, framing, overlap):
    """[(rectangle, first crop box, names of the detectors that found it), ...] of the faces every detector
    finds, each face once. Where several detectors find one face (crop boxes overlapping at least
    `overlap`), its box is their average (centre and log side): each detector misplaces a face its own
    way, and the average lies nearer the training crop. The rectangle is the first detector's."""
    faces = []  # (rectangle, {detector name: its box})
    for name, detect in detectors.items():
        mapping = framing["detectors"].get(name)
        for rect in (detect(gray) if mapping else []):
            start = box_from_detection(rect, mapping)
            same = next((boxes for _, boxes in faces if iou(start, next(iter(boxes.values()))) >= overlap), None)
            if same is None:
                faces.append((tuple(rect), {name: start}))
            else:
                same.setdefault(name, start)
    found = []
    for rect, boxes in faces:
        names, boxes = tuple(boxes), np.array(list(boxes.values()), np.float64)
        centre = (boxes[:, :2] + boxes[:, 2:] / 2).mean(axis=0)
        side = float(np.exp(np.log(boxes[:, 2]).mean()))
        found.append((rect, whole_box(centre[0] - side / 2, centre[1] - side / 2, side), names))
    return found


def box_moved(old, new):
    """How far a box moved, in pixels of its 96x96 crop: the largest shift of a corner."""
    scale = IMAGE_SIZE / old[2]
    return max(abs(new[0] - old[0]), abs(new[1] - old[1]),
               abs(new[0] + new[2] - old[0] - old[2]), abs(new[1] + new[2] - old[1] - old[2])) * scale


def refine(grays, boxes, predict, mean_shape, iterations, tolerance, correction=None):
    """Re-frame each face from its own predictions until its box moves less than `tolerance` crop pixels
    (or `iterations` predictions were made). All faces are predicted together, one batch per round.

    Few rounds, not a search for a fixed point: a model that misjudges a face's size or place by a few
    percent misjudges it again in the re-framed crop, so each round moves the box the same way again.

    grays: one image per face; boxes: each face's first box; predict: uint8 (n, 96, 96) -> (n, 30)
    crop keypoints; correction: learn_correction's, or None. Returns (the boxes last predicted from, their
    keypoints in crop pixels (n, 30), how far each box would move in the next round (n,), in crop pixels)."""
    boxes = [tuple(box) for box in boxes]
    used = list(boxes)
    settled = np.zeros(len(boxes), bool)
    moved = np.full(len(boxes), np.inf)
    keypoints = np.zeros((len(boxes), len(KEYPOINT_COLUMNS)), np.float64)
    for _ in range(max(1, iterations)):
        active = np.flatnonzero(~settled)
        keypoints[active] = predict(np.stack([crop_face(grays[index], boxes[index]) for index in active]))
        for index in active:
            used[index] = boxes[index]
            try:
                new = box_from_keypoints(to_original(keypoints[index], boxes[index]), mean_shape, correction)
            except ValueError:  # not face-shaped: the caller's plausibility check decides
                settled[index] = True
                continue
            moved[index] = box_moved(boxes[index], new)
            settled[index] = moved[index] < tolerance
            if not overlaps(grays[index].shape, new):  # wandered off the image: no face to follow there
                settled[index], moved[index] = True, np.inf
                continue
            boxes[index] = new
        if settled.all():
            break
    return used, keypoints, moved


# Room around a training crop for a detector to see the whole face (edge pixels repeated).
LEARNING_PAD = 48


def learn_detector_mapping(images, detect):
    """How a detector's rectangle relates to the training crop, from training crops: the medians of
    crop side / w and of the crop centre's offset from the rectangle's centre, in units of w.
    Returns the mapping and the share of crops in which it found a face."""
    samples = []
    centre = LEARNING_PAD + IMAGE_SIZE / 2  # in pixel-edge units, like the rectangles

    def detect_padded(image):
        return detect(cv2.copyMakeBorder(image, *[LEARNING_PAD] * 4, cv2.BORDER_REPLICATE))

    # One thread per core: dlib's HOG scan releases the GIL (2x on 2 cores); map keeps the order.
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        found_rects = list(pool.map(detect_padded, images))
    for rects in found_rects:
        if rects:
            x, y, w, h = max(rects, key=lambda rect: rect[2] * rect[3])
            samples.append((IMAGE_SIZE / w, (centre - x - w / 2) / w, (centre - y - h / 2) / w))
    found = len(samples) / max(len(images), 1)
    if not samples:
        return None, found
    scale, dx, dy = np.median(np.array(samples), axis=0)
    return {"scale": float(scale), "dx": float(dx), "dy": float(dy)}, found


def learn_framing(images, keypoints, detectors, ridge):
    """The framing of the training faces: images uint8 (N, 96, 96), keypoints (M, 30) of fully
    labelled faces in crop pixels, detectors {name: detect function}, ridge: learn_correction's.

    Returns {"mean_shape": 30 values, "residuals": quantiles of the training faces' distance from it,
    "correction": learn_correction's weights, "detectors": {name: mapping or None, ...},
    "found": {name: share of crops detected}}."""
    keypoints = np.asarray(keypoints, np.float64)
    if len(keypoints) == 0 or not np.isfinite(keypoints).all():
        raise ValueError("learning the framing needs fully labelled training keypoints, without NaN")
    mean_shape = keypoints.mean(axis=0)
    residuals = np.array([shape_residual(row, mean_shape) for row in keypoints])
    framing = {"mean_shape": mean_shape.round(4).tolist(),
               "residuals": {f"q{q}": float(np.quantile(residuals, q / 100)) for q in (50, 90, 99, 100)},
               "correction": learn_correction(keypoints, mean_shape, ridge), "detectors": {}, "found": {}}
    for name, detect in detectors.items():
        framing["detectors"][name], framing["found"][name] = learn_detector_mapping(images, detect)
    return framing
