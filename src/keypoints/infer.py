"""Keypoints on new images: find the face, crop it to 96x96, predict with both models, map back.

Coordinates follow the project's convention (see keypoints.augment): pixel i's centre is at
coordinate i, in the crop as in the original image. A box is a square (x, y, side) of whole pixels:
its first column and row are x and y, and it covers `side` pixels each way; it may reach outside the
image, which is then padded by repeating the edge pixels.

cv2.resize samples output pixel k of an S -> 96 resize at input coordinate (k + 0.5) * S / 96 - 0.5
(pixel-area alignment, the same for INTER_AREA and INTER_LINEAR). So a crop coordinate c in 96x96
pixels is at x + (c + 0.5) * side / 96 - 0.5 in the original image, and likewise for y.
"""
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from keypoints import fileio
from keypoints.columns import EIGHT_COLUMNS, IMAGE_SIZE, KEYPOINT_COLUMNS
from keypoints.predict import predict_merged

CASCADE_FILE = "haarcascade_frontalface_default.xml"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Haar's box runs from the forehead to the chin and cheek to cheek. The training crops show the whole
# face with some forehead, chin and background, so the square is enlarged by this fraction of its
# side (0.1 -> 1.1x), about its centre. On the project's synthetic faces (OpenCV 4.14) Haar's side is
# on average 0.97 of the training crop's (0.56-1.25 per face); on photos it is usually tighter. Too
# small a margin shows the model a bigger face than it learned, so the points crowd towards the face's
# centre (raise it); too large, and they spread out past the features (lower it).
DEFAULT_MARGIN = 0.1
# Haar's cost grows with the pixel count and a face filling a photo needs no more detail than this.
DETECTION_SIZE = 640
CSV_COLUMNS = ["file", "face_found", "box_x", "box_y", "box_size"] + KEYPOINT_COLUMNS


def warn(message):
    print(f"warning: {message}", file=sys.stderr)


def image_paths(inputs):
    """Files as given, then each directory's images (by suffix, not recursive, sorted), no repeats."""
    paths, seen = [], set()
    for entry in map(Path, inputs):
        if entry.is_dir():
            found = sorted(p for p in entry.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif entry.is_file():
            found = [entry]
        else:
            raise FileNotFoundError(f"{entry}: no such file or directory")
        for path in found:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                paths.append(path)
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs)) or 'the inputs'}")
    return paths


def output_image_path(out_dir, path):
    return Path(out_dir) / f"{Path(path).stem}_keypoints.png"


def read_image(path):
    """The image as 3-channel BGR uint8, whatever it was on disk (gray, colour, alpha, 16-bit)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    # imdecode rather than imread: imread returns None without saying why, and fails on some names.
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ValueError(f"{path}: not an image OpenCV can read")
    return image


def to_gray(image):
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def face_detector():
    """OpenCV's bundled frontal-face Haar cascade, or None where this OpenCV has none.

    OpenCV 5 moved CascadeClassifier and its XML files out of the main package, so there every
    image gets the centred-square fallback.
    """
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        return None
    path = Path(cv2.data.haarcascades) / CASCADE_FILE
    if not path.is_file():
        return None
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise ValueError(f"{path}: OpenCV could not load the Haar cascade")
    return cascade


def detect_faces(gray, cascade, detection_size=DETECTION_SIZE):
    """Haar face rectangles (x, y, w, h) in the pixels of `gray`; empty when there is none."""
    scale = min(1.0, detection_size / max(gray.shape))
    small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    # Equalising makes the cascade's thresholds hold under dim or washed-out lighting.
    rects = cascade.detectMultiScale(cv2.equalizeHist(small), scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    return [tuple(float(value) / scale for value in rect) for rect in rects]


def _check_margin(margin):
    if not margin > -1:
        raise ValueError(f"margin must be greater than -1, not {margin}")


def face_box(rects, margin=DEFAULT_MARGIN):
    """The square box around the largest rectangle (x, y, w, h), its side enlarged by `margin`."""
    _check_margin(margin)
    if len(rects) == 0:
        raise ValueError("face_box needs at least one face rectangle")
    x, y, w, h = max(rects, key=lambda rect: rect[2] * rect[3])
    side = max(1, int(round(max(w, h) * (1.0 + margin))))
    # Rect and box in pixel-edge units: the rect's centre x + w/2 becomes the box's centre.
    return int(round(x + w / 2.0 - side / 2.0)), int(round(y + h / 2.0 - side / 2.0)), side


def centred_box(shape):
    """The largest square centred in an image of shape (height, width, ...)."""
    height, width = shape[:2]
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side


def find_face(gray, margin=DEFAULT_MARGIN, cascade=None):
    """(box, found): the largest detected face enlarged by `margin`, else the centred square."""
    rects = detect_faces(gray, cascade) if cascade is not None else []
    if rects:
        return face_box(rects, margin), True
    return centred_box(gray.shape), False


def crop_face(gray, box):
    """The box's pixels (edge-replicated outside the image), resized to uint8 96x96.

    The box is also the mapping back: see to_original.
    """
    x, y, side = (int(value) for value in box)
    height, width = gray.shape[:2]
    if side < 1:
        raise ValueError(f"box side must be at least 1 pixel, not {side}")
    if x >= width or y >= height or x + side <= 0 or y + side <= 0:
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
    keypoints[..., 0::2] = x + (keypoints[..., 0::2] + 0.5) * scale - 0.5
    keypoints[..., 1::2] = y + (keypoints[..., 1::2] + 0.5) * scale - 0.5
    return keypoints


def load_models(path_8, path_30):
    """(model_8, model_30) from .keras files, checked to predict 8 and 30 values."""
    # Imported here: the geometry above is usable without TensorFlow's multi-second import.
    import keras

    models = []
    for path, outputs in ((Path(path_8), len(EIGHT_COLUMNS)), (Path(path_30), len(KEYPOINT_COLUMNS))):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: model not found (train it with `dvc repro`, or pass its path)")
        model = keras.models.load_model(path)
        if model.output_shape[-1] != outputs or tuple(model.input_shape[1:3]) != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(
                f"{path}: expected a model from 96x96 images to {outputs} values, "
                f"got {model.input_shape} -> {model.output_shape}"
            )
        models.append(model)
    return tuple(models)


def draw_keypoints(image, keypoints, box, found):
    """A copy of the BGR image with the box (green if detected, orange if the fallback) and red points."""
    canvas = image.copy()
    x, y, side = box
    thickness = max(1, int(round(max(image.shape[:2]) / 400)))
    radius = max(2, int(round(side / IMAGE_SIZE * 1.5)))
    colour = (0, 200, 0) if found else (0, 140, 255)
    # Pixel i's centre is coordinate i, so the box's edges are half a pixel outside its first and last pixels.
    cv2.rectangle(canvas, (x, y), (x + side - 1, y + side - 1), colour, thickness)
    shift = 4  # cv2 draws at 1/16 pixel precision with fixed-point coordinates
    for point_x, point_y in np.asarray(keypoints, dtype=np.float64).reshape(-1, 2):
        if np.isfinite(point_x) and np.isfinite(point_y):
            centre = (int(round(point_x * 2**shift)), int(round(point_y * 2**shift)))
            cv2.circle(canvas, centre, radius * 2**shift, (0, 0, 255), -1, cv2.LINE_AA, shift)
    return canvas


def save_image(path, image):
    with fileio.atomic_path(path) as temporary:
        # The temporary name keeps the .png suffix, which tells imwrite the format.
        if not cv2.imwrite(str(temporary), image):
            raise ValueError(f"{path}: OpenCV could not write the image")


def _check_output_names(paths, out_dir):
    owners = {}
    for path in paths:
        target = output_image_path(out_dir, path)
        if target in owners:
            raise ValueError(f"{owners[target]} and {path} would both be drawn to {target}: rename one")
        owners[target] = path


def run(paths, model_8, model_30, out_dir, margin=DEFAULT_MARGIN, box=None, batch_size=32, log=warn):
    """Keypoints of every image: out_dir/keypoints.csv and out_dir/<stem>_keypoints.png; returns the table.

    box: a square (x, y, side) used for every image instead of detection (face_found is then True:
    the fallback was not needed).
    """
    paths = [Path(path) for path in paths]
    out_dir = Path(out_dir)
    # Checked here too: where nothing is detected face_box never runs, and a bad margin would pass unseen.
    _check_margin(margin)
    _check_output_names(paths, out_dir)
    cascade = face_detector() if box is None else None
    if box is None and cascade is None:
        log(f"OpenCV {cv2.__version__} has no Haar face cascade (OpenCV 5 moved it out): "
            "every image uses its centred square")
    rows = []
    # Images are read a batch at a time: a directory of large photos would not fit in memory at once.
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        images = [read_image(path) for path in chunk]
        grays = [to_gray(image) for image in images]
        located = [(tuple(box), True) if box is not None else find_face(gray, margin, cascade) for gray in grays]
        faces = np.stack([crop_face(gray, face) for gray, (face, _) in zip(grays, located)])
        predictions = predict_merged(model_8, model_30, faces, batch_size)
        for path, image, (face, found), prediction in zip(chunk, images, located, predictions):
            keypoints = to_original(prediction, face)
            if not found:
                log(f"{path}: no face found, using the centred square (x={face[0]}, y={face[1]}, side={face[2]})")
            save_image(output_image_path(out_dir, path), draw_keypoints(image, keypoints, face, found))
            rows.append([str(path), bool(found), *face, *keypoints])
    frame = pd.DataFrame(rows, columns=CSV_COLUMNS)
    fileio.save_csv(out_dir / "keypoints.csv", frame)
    return frame
