"""Synthetic faces in the competition's format, so the pipeline runs anywhere without the Kaggle data.

Each face is drawn in a canonical 96x96 frame (outline, eyes with irises, brows, nose, lips, with the
proportions of the real data's mean face and per-face jitter), then posed by a random rotation, scale
and shift. Pixels are rendered by mapping every output pixel centre back into the canonical frame, and
keypoints by mapping the canonical points forward through the same pose, so they are exact under the
project's convention (pixel i's centre is at coordinate i + 0.5: columns.py).
"""
import sys
from pathlib import Path

import numpy as np

from keypoints.columns import (
    CENTRE,
    EIGHT_INDICES,
    IMAGE_SIZE,
    PIXEL_OFFSET,
    KEYPOINT_COLUMNS,
    KEYPOINT_NAMES,
    LOOKUP_FILE_COLUMNS,
    TEST_COLUMNS,
    TRAINING_COLUMNS,
)

MAX_ANGLE = np.deg2rad(12.0)
MAX_SCALE = 0.08
MAX_SHIFT = 4.0


def _face_geometry(rng):
    """Canonical feature positions of one face (before pose), with per-face jitter."""
    eye_y = 37.0 + rng.uniform(-2.5, 2.5)
    eye_gap = 18.0 + rng.uniform(-2.5, 2.5)  # half the distance between the eye centres
    eye_half_width = 6.5 + rng.uniform(-1.0, 1.0)
    brow_gap = 8.0 + rng.uniform(-1.5, 1.5)
    nose_y = 57.0 + rng.uniform(-3.0, 3.0)
    mouth_y = 74.5 + rng.uniform(-2.5, 2.5)
    mouth_half_width = 12.0 + rng.uniform(-2.5, 2.5)
    lip_half_height = 3.5 + rng.uniform(-1.0, 1.5)
    x = CENTRE + rng.uniform(-1.0, 1.0)
    return {
        "x": x, "eye_y": eye_y, "eye_gap": eye_gap, "eye_half_width": eye_half_width,
        "eye_half_height": 3.0 + rng.uniform(-0.5, 0.8), "iris": 2.4 + rng.uniform(-0.4, 0.4),
        "brow_y": eye_y - brow_gap, "brow_inner": eye_gap - 8.0 + rng.uniform(-1.5, 1.5),
        "brow_outer": eye_gap + 12.0 + rng.uniform(-2.0, 2.0), "brow_tilt": rng.uniform(-2.0, 2.0),
        "nose_y": nose_y, "nose_half_width": 4.5 + rng.uniform(-1.0, 1.0),
        "mouth_y": mouth_y, "mouth_half_width": mouth_half_width, "lip_half_height": lip_half_height,
        "face_half_width": 31.0 + rng.uniform(-3.0, 3.0), "face_half_height": 41.0 + rng.uniform(-3.0, 3.0),
        "face_y": 52.0 + rng.uniform(-2.0, 2.0),
    }


def canonical_keypoints(geometry):
    """(15, 2) keypoints in the canonical frame, in KEYPOINT_NAMES order. 'Left' is the subject's
    left, which appears on the image's right (larger x)."""
    g = geometry
    x, eye_y = g["x"], g["eye_y"]
    left_eye, right_eye = x + g["eye_gap"], x - g["eye_gap"]
    half = g["eye_half_width"]
    brow_inner_y, brow_outer_y = g["brow_y"] + g["brow_tilt"], g["brow_y"] - g["brow_tilt"]
    mouth_half = g["mouth_half_width"]
    points = {
        "left_eye_center": (left_eye, eye_y),
        "right_eye_center": (right_eye, eye_y),
        "left_eye_inner_corner": (left_eye - half, eye_y),
        "left_eye_outer_corner": (left_eye + half, eye_y),
        "right_eye_inner_corner": (right_eye + half, eye_y),
        "right_eye_outer_corner": (right_eye - half, eye_y),
        "left_eyebrow_inner_end": (x + g["brow_inner"], brow_inner_y),
        "left_eyebrow_outer_end": (x + g["brow_outer"], brow_outer_y),
        "right_eyebrow_inner_end": (x - g["brow_inner"], brow_inner_y),
        "right_eyebrow_outer_end": (x - g["brow_outer"], brow_outer_y),
        "nose_tip": (x, g["nose_y"]),
        "mouth_left_corner": (x + mouth_half, g["mouth_y"]),
        "mouth_right_corner": (x - mouth_half, g["mouth_y"]),
        "mouth_center_top_lip": (x, g["mouth_y"] - g["lip_half_height"]),
        "mouth_center_bottom_lip": (x, g["mouth_y"] + g["lip_half_height"]),
    }
    return np.array([points[name] for name in KEYPOINT_NAMES], dtype=np.float64)


def _soft(distance, width=0.7):
    """1 inside (distance < 0), 0 outside, with an anti-aliased edge about one pixel wide."""
    return 1.0 / (1.0 + np.exp(np.clip(distance / width, -30, 30)))


def _ellipse(u, v, cx, cy, rx, ry):
    # Approximate signed distance in pixels: good enough for a soft edge.
    return (np.sqrt(((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2) - 1.0) * min(rx, ry)


def _segment(u, v, start, end, half_thickness):
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(u - (x0 + t * dx), v - (y0 + t * dy)) - half_thickness


def _render(u, v, g, points, rng):
    """Grey levels at canonical coordinates (u, v) for one face."""
    named = dict(zip(KEYPOINT_NAMES, points))
    skin = rng.uniform(110, 200)
    dark = rng.uniform(15, 60)
    # Background: a random linear gradient, so the outline is not the only edge.
    gradient = rng.uniform(-0.8, 0.8, size=2)
    image = rng.uniform(40, 220) + gradient[0] * (u - CENTRE) + gradient[1] * (v - CENTRE)
    image = image + (skin - image) * _soft(_ellipse(u, v, g["x"], g["face_y"], g["face_half_width"], g["face_half_height"]))
    # Side lighting across the face.
    image = image * (1.0 + rng.uniform(-0.25, 0.25) * (u - CENTRE) / IMAGE_SIZE)
    sclera = min(255.0, skin + rng.uniform(20, 60))
    for side in ("left", "right"):
        cx, cy = named[f"{side}_eye_center"]
        eye = _soft(_ellipse(u, v, cx, cy, g["eye_half_width"], g["eye_half_height"]))
        image = image + (sclera - image) * eye
        image = image + (dark - image) * _soft(_ellipse(u, v, cx, cy, g["iris"], g["iris"])) * eye
        brow = _soft(_segment(u, v, named[f"{side}_eyebrow_inner_end"], named[f"{side}_eyebrow_outer_end"], 1.4))
        image = image + (dark + 20 - image) * brow
    nose_x, nose_y = named["nose_tip"]
    bridge = _soft(_segment(u, v, (nose_x, g["eye_y"] + 3), (nose_x + 1.5, nose_y - 2), 1.0))
    image = image - 0.25 * skin * bridge
    for side in (-1, 1):  # nostrils either side of the tip
        image = image + (dark + 30 - image) * _soft(_ellipse(u, v, nose_x + side * g["nose_half_width"] * 0.6, nose_y + 1.5, 1.6, 1.1))
    image = image + (min(255.0, skin + 25) - image) * _soft(_ellipse(u, v, nose_x, nose_y, 2.0, 1.8))
    mouth_x, mouth_y = g["x"], g["mouth_y"]
    lips = _soft(_ellipse(u, v, mouth_x, mouth_y, g["mouth_half_width"], g["lip_half_height"]))
    image = image + (skin * 0.55 - image) * lips
    parting = _soft(_segment(u, v, named["mouth_right_corner"], named["mouth_left_corner"], 0.6))
    image = image + (dark - image) * parting * lips
    return image


def draw_faces(count, seed):
    """(images uint8 (count, 96, 96), keypoints float32 (count, 30)) of `count` posed synthetic faces."""
    rng = np.random.default_rng(seed)
    grid_y, grid_x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64) + PIXEL_OFFSET  # pixel centres
    images = np.empty((count, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    keypoints = np.empty((count, len(KEYPOINT_COLUMNS)), np.float32)
    for index in range(count):
        geometry = _face_geometry(rng)
        points = canonical_keypoints(geometry)
        angle = rng.uniform(-MAX_ANGLE, MAX_ANGLE)
        scale = 1.0 + rng.uniform(-MAX_SCALE, MAX_SCALE)
        shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=2)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        # Forward pose p = C + shift + scale R (q - C); pixels sample the inverse at their centres.
        posed = CENTRE + shift + scale * (points - CENTRE) @ rotation.T
        offset_x, offset_y = grid_x - CENTRE - shift[0], grid_y - CENTRE - shift[1]
        u = CENTRE + (rotation[0, 0] * offset_x + rotation[1, 0] * offset_y) / scale
        v = CENTRE + (rotation[0, 1] * offset_x + rotation[1, 1] * offset_y) / scale
        image = _render(u, v, geometry, points, rng)
        image = image + rng.normal(0.0, rng.uniform(2.0, 8.0), size=image.shape)
        images[index] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        keypoints[index] = posed.reshape(-1)
    if not (np.all(keypoints >= PIXEL_OFFSET) and np.all(keypoints <= IMAGE_SIZE - 1 + PIXEL_OFFSET)):
        raise ValueError("synthetic keypoints left the image: the pose limits are too wide")
    return images, keypoints


def label_mask(count, full_fraction, seed):
    """Bool (count, 30): all 30 values for a seeded `full_fraction` of rows, only the 8 for the rest."""
    if not 0.0 <= full_fraction <= 1.0:
        raise ValueError(f"fetch.synthetic.full_fraction must be in [0, 1], not {full_fraction}")
    rng = np.random.default_rng([seed, 1])
    full = np.zeros(count, bool)
    full[rng.choice(count, int(round(count * full_fraction)), replace=False)] = True
    mask = np.zeros((count, len(KEYPOINT_COLUMNS)), bool)
    mask[full] = True
    mask[:, EIGHT_INDICES] = True
    return mask


# The 256 pixel values as text, looked up rather than formatted: str() on each of 9216 ints per face
# took 1 s of the default fetch's 3.7 s (the same bytes either way).
PIXEL_TEXT = np.array([str(value) for value in range(256)], dtype=object)


def _image_text(image):
    return " ".join(PIXEL_TEXT[image.reshape(-1)].tolist())


def _write_lines(path, header, lines):
    with open(path, "w", newline="") as handle:
        handle.write(header + "\n")
        for line in lines:
            handle.write(line + "\n")


def write_competition_files(folder, train_rows, test_rows, full_fraction, seed, log=None):
    """folder/training.csv, test.csv and IdLookupTable.csv in the competition's format."""
    log = log or (lambda message: print(message, file=sys.stderr))
    if int(train_rows) < 2 or int(test_rows) < 0:
        raise ValueError(f"fetch.synthetic needs train_rows >= 2 and test_rows >= 0, not {train_rows}, {test_rows}")
    folder = Path(folder)
    images, keypoints = draw_faces(int(train_rows), [seed, 0])
    keypoints = np.where(label_mask(len(keypoints), full_fraction, seed), keypoints, np.nan)

    def training_lines():
        for index, (image, values) in enumerate(zip(images, keypoints), start=1):
            fields = ["" if np.isnan(value) else f"{value:.6f}" for value in values]
            yield ",".join(fields) + "," + _image_text(image)
            if index % 500 == 0 or index == len(images):
                log(f"synthetic training.csv: {index}/{len(images)} rows")

    _write_lines(folder / "training.csv", ",".join(TRAINING_COLUMNS), training_lines())

    test_images, _ = draw_faces(int(test_rows), [seed, 2])
    _write_lines(folder / "test.csv", ",".join(TEST_COLUMNS),
                 (f"{image_id},{_image_text(image)}" for image_id, image in enumerate(test_images, start=1)))

    # Like the real table: some test faces ask for all 30 values, the others for the 8.
    asks_all = label_mask(len(test_images), full_fraction, seed + 1)
    lookup, row_id = [], 0
    for image_id, asked in enumerate(asks_all, start=1):
        for column in np.flatnonzero(asked):
            row_id += 1
            lookup.append(f"{row_id},{image_id},{KEYPOINT_COLUMNS[column]},")
    _write_lines(folder / "IdLookupTable.csv", ",".join(LOOKUP_FILE_COLUMNS), lookup)
    log(f"synthetic faces: {len(images)} training ({int(np.isfinite(keypoints).all(axis=1).sum())} fully labelled), "
        f"{len(test_images)} test, {len(lookup)} lookup rows")
