"""Keypoints on new images: find the face, frame it as the training crops were, predict, map back.

Coordinates follow the project's convention (see keypoints.framing): pixel i's centre is at
coordinate i, in the crop as in the original image. A box is a square (x, y, side) of whole pixels.
"""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from keypoints import fileio
from keypoints.columns import EIGHT_COLUMNS, IMAGE_SIZE, KEYPOINT_COLUMNS, PIXEL_OFFSET
from keypoints.faces import make_detectors
from keypoints.framing import centred_box, crop_face, first_boxes, refine, shape_residual, to_original

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
CSV_COLUMNS = ["file", "face_found", "box_x", "box_y", "box_size"] + KEYPOINT_COLUMNS
# The framing settings this module and video_tracking read from framing.json (params.yaml's framing group).
FRAMING_SETTINGS = ("detectors", "detection_size", "merge_overlap", "iterations", "tolerance", "max_move", "max_residual")


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
    return decode_image(np.fromfile(path, dtype=np.uint8), path)


def decode_image(data, source):
    """Encoded image bytes (JPEG, PNG, ...) as 3-channel BGR uint8; `source` names them in errors."""
    data = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if data.size == 0:
        raise ValueError(f"{source}: empty file (0 bytes), not an image")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as error:
        raise ValueError(f"{source}: not an image OpenCV can read ({error.err or error})") from error
    if image is None or image.size == 0:
        raise ValueError(f"{source}: not an image OpenCV can read")
    return image


def to_gray(image):
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def load_models(path_8, path_30):
    """(model_8, model_30) from .keras files, checked to predict 8 and 30 values."""
    # Imported here: the geometry is usable without TensorFlow's multi-second import.
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


def load_framing(path):
    """models/framing.json, as the framing stage wrote it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: framing not found (the framing stage of `dvc repro` writes it)")
    framing = json.loads(path.read_text())
    missing = {"mean_shape", "residuals", "detectors", "settings"} - set(framing)
    if missing:
        raise ValueError(f"{path}: not a framing file, it lacks {sorted(missing)}")
    missing = set(FRAMING_SETTINGS) - set(framing["settings"])
    if missing:
        raise ValueError(f"{path}: written by an older framing stage, it lacks the settings {sorted(missing)}; "
                         "rerun it: dvc repro framing")
    return framing


def face_shaped(keypoints_96, framing):
    """Whether crop keypoints are all numbers and lie no further from the mean shape than the training
    faces do (times framing.max_residual)."""
    if not np.isfinite(keypoints_96).all():
        return False
    limit = framing["settings"]["max_residual"] * framing["residuals"]["q99"]
    try:
        return shape_residual(keypoints_96, framing["mean_shape"]) <= limit
    except ValueError:
        return False


def plausible(rect, start, box, keypoints_96, moved, framing):
    """Whether a refined detection is a face: its keypoints are face-shaped, its box is settling (the last
    prediction would move it at most framing.max_move crop pixels: a face's framing moves a few, nonsense
    wanders on), and it stayed on the detection."""
    settings = framing["settings"]
    if not face_shaped(keypoints_96, framing):
        return False
    if not moved <= settings["max_move"]:
        return False
    x, y, w, h = rect
    centre_x, centre_y = box[0] + box[2] / 2, box[1] + box[2] / 2
    return x <= centre_x <= x + w and y <= centre_y <= y + h and 0.6 <= box[2] / start[2] <= 1.6


def locate(gray, detectors, framing, predict):
    """The face of a photo, framed as in training: (box, crop keypoints (30,), found, the names of the
    detectors that found it).

    Every detector runs (framing.first_boxes merges their boxes of one face); each face is refined from
    its own predictions and kept only if plausible; of several, the largest detection. With none, the centred
    square refined the same way, found=False: what it shows is not known to be a face, but when it is one
    the detectors missed (a small, bearded or bespectacled one), the refined keypoints are on it. Where
    that refinement wanders off (not face-shaped, or not settling), the centred square itself."""
    settings = framing["settings"]

    def refined(starts):
        return refine([gray] * len(starts), starts, predict, framing["mean_shape"], settings["iterations"],
                      settings["tolerance"], framing.get("correction"))

    faces = first_boxes(gray, detectors, framing, settings["merge_overlap"])
    if faces:
        starts = [start for _, start, _ in faces]
        boxes, keypoints, moved = refined(starts)
        plausible_faces = [index for index, (rect, start, _) in enumerate(faces)
                           if plausible(rect, start, boxes[index], keypoints[index], moved[index], framing)]
        if plausible_faces:
            # A photo's one face: the largest detection (its refined box can outgrow a larger face's).
            best = max(plausible_faces, key=lambda index: starts[index][2])
            return boxes[best], keypoints[best], True, "+".join(faces[best][2])
    square = centred_box(gray.shape)
    boxes, keypoints, moved = refined([square])
    if face_shaped(keypoints[0], framing) and moved[0] <= settings["max_move"]:
        return boxes[0], keypoints[0], False, None
    return square, predict(crop_face(gray, square)[None])[0], False, None


def draw_keypoints(image, keypoints, box, found):
    """A copy of the BGR image with the box (green if detected, orange if the fallback) and red points."""
    canvas = image.copy()
    x, y, side = box
    thickness = max(1, int(round(max(image.shape[:2]) / 400)))
    radius = max(2, int(round(side / IMAGE_SIZE * 1.5)))
    colour = (0, 200, 0) if found else (0, 140, 255)
    cv2.rectangle(canvas, (x, y), (x + side - 1, y + side - 1), colour, thickness)
    shift = 4  # cv2 draws at 1/16 pixel precision with fixed-point coordinates
    for point_x, point_y in np.asarray(keypoints, dtype=np.float64).reshape(-1, 2):
        if np.isfinite(point_x) and np.isfinite(point_y):
            # cv2 draws in pixel indices: pixel i's centre is at keypoint coordinate i + PIXEL_OFFSET.
            centre = (int(round((point_x - PIXEL_OFFSET) * 2**shift)), int(round((point_y - PIXEL_OFFSET) * 2**shift)))
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


def keypoints_of(path, predict, framing, detectors, box):
    """(image, box, keypoints in original pixels, found) of one image file."""
    image = read_image(path)
    return (image, *keypoints_in(to_gray(image), predict, framing, detectors, box))


def keypoints_in(gray, predict, framing, detectors, box=None):
    """(box, keypoints in the image's pixels, found) of a grayscale image: its face located and framed
    (or the given box), predicted, and mapped back. The one path of `keypoints detect` and the served model."""
    if box is not None:
        face, found = tuple(box), True
        keypoints_96 = predict(crop_face(gray, face)[None])[0]
    else:
        face, keypoints_96, found, _ = locate(gray, detectors, framing, predict)
    return face, to_original(keypoints_96, face), found


def run(paths, predict, framing, out_dir, box=None, log=warn):
    """Keypoints of every image: out_dir/keypoints.csv and out_dir/<stem>_keypoints.png; returns the table.

    predict: uint8 (n, 96, 96) -> merged keypoints (n, 30) in crop pixels (keypoints.predict.merged_predictor);
    framing: load_framing's dict. box: a square (x, y, side) used for every image instead of detection
    and framing (face_found is then True: the fallback was not needed).
    An image that cannot be read is reported through `log` and skipped: the table (and the CSV) holds
    the others. If none could be read, raises ValueError, and removes an older keypoints.csv, which
    would otherwise pass for this run's.
    """
    paths = [Path(path) for path in paths]
    out_dir = Path(out_dir)
    _check_output_names(paths, out_dir)
    settings = framing["settings"]
    detectors = make_detectors(settings["detectors"], settings["detection_size"]) if box is None else {}
    rows, skipped = [], []
    for number, path in enumerate(paths, start=1):
        try:
            image, face, keypoints, found = keypoints_of(path, predict, framing, detectors, box)
        except (ValueError, OSError, cv2.error) as error:
            log(f"{error}; skipped")
            skipped.append(path)
            continue
        if not found:
            log(f"{path}: no face found; keypoints guessed from the centred square (last box x={face[0]}, y={face[1]}, side={face[2]})")
        save_image(output_image_path(out_dir, path), draw_keypoints(image, keypoints, face, found))
        rows.append([str(path), bool(found), *face, *keypoints])
        if number % 100 == 0 or number == len(paths) > 100:
            print(f"{number}/{len(paths)} images", file=sys.stderr, flush=True)
    table = out_dir / "keypoints.csv"
    if not rows:
        table.unlink(missing_ok=True)
        raise ValueError(f"none of the {len(paths)} images could be read ({', '.join(map(str, skipped[:5]))}"
                         f"{', ...' if len(skipped) > 5 else ''}); nothing written to {table}")
    frame = pd.DataFrame(rows, columns=CSV_COLUMNS)
    fileio.save_csv(table, frame)
    return frame
