#!/usr/bin/env python3
"""Face detectors compared on real photos: recall, false detections and time per photo.

  .venv/bin/python benchmarks/bench_detectors.py [--photos ../shared/data/youtube-faces-photos]

On the 346 photos of ../shared/data/youtube-faces-photos (one labelled face each), every detector sees
the photo as `keypoints detect` shows it (downscaled to framing.detection_size on its longer side).
A detection "hits" the labelled face when its centre lies inside the box of the face's 68 landmarks
and its side is 0.5 to 2.5 times that box's longer side; every other detection is counted as false
(a few photos show a second, unlabelled face: those count as false too). Also the detections on three
faceless 640x480 images (blank, noise, gradient) and the time per 640x480 photo (the photos letterboxed).

Detectors: `haar` and `hog` (the command's, keypoints.faces); `haar+hog`, either of the two (how the
command combines them); and dlib's CNN (MMOD) detector where `face_recognition_models` is installed
(`pip install face_recognition_models`: a 100 MB download, CC0 weights, MIT code; not in
requirements.txt). Writes benchmarks/results/detectors.json, with the seed baseline's training
images/s measured in the same run.
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import pandas as pd

from keypoints.faces import HOG_UPSAMPLE_BELOW, _downscaled, make_detectors
from keypoints.params import load_params

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_photos import SHARED, letterbox, write_results  # noqa: E402  (the same photos and yardstick)

ROOT = Path(__file__).resolve().parents[1]


def cnn_detector(detection_size):
    """dlib's MMOD CNN face detector, shown the image as the others are; None without its weights."""
    try:
        import dlib
        import face_recognition_models
    except ImportError:
        return None
    model = dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())

    def detect(gray):
        small, scale = _downscaled(gray, detection_size)
        upsample = 1 if scale == 1.0 and max(small.shape) < HOG_UPSAMPLE_BELOW else 0
        return [(found.rect.left() / scale, found.rect.top() / scale, found.rect.width() / scale,
                 found.rect.height() / scale) for found in model(small, upsample)]
    return detect


def landmark_boxes(photos):
    """Per photo, the box (x0, y0, x1, y1) of its 68 landmarks."""
    table = pd.read_csv(photos / "keypoints68.csv")
    xs = table[[f"p{index}_x" for index in range(68)]].to_numpy()
    ys = table[[f"p{index}_y" for index in range(68)]].to_numpy()
    return table["file"].tolist(), np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], axis=1)


def hits(rect, face):
    x, y, w, h = rect
    x0, y0, x1, y1 = face
    centre_x, centre_y, side = x + w / 2, y + h / 2, max(x1 - x0, y1 - y0)
    return x0 <= centre_x <= x1 and y0 <= centre_y <= y1 and 0.5 * side <= max(w, h) <= 2.5 * side


def main():
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--photos", default=str(SHARED / "data/youtube-faces-photos"))
    cli.add_argument("--params", default=str(ROOT / "params.yaml"), help="framing.detection_size is read from it")
    cli.add_argument("--baseline-images", type=int, default=320, help="0 skips the seed baseline")
    cli.add_argument("--out", default=str(ROOT / "benchmarks/results/detectors.json"))
    args = cli.parse_args()

    photos = Path(args.photos)
    detection_size = load_params(args.params)["framing"]["detection_size"]
    files, faces = landmark_boxes(photos)
    grays = [cv2.imread(str(photos / "photos" / name), cv2.IMREAD_GRAYSCALE) for name in files]
    detectors = make_detectors(["haar", "hog"], detection_size)
    cnn = cnn_detector(detection_size)
    if cnn is None:
        print("dlib's CNN detector: face_recognition_models is not installed, skipped", file=sys.stderr)
    else:
        detectors["cnn"] = cnn
    rng = np.random.default_rng(0)
    faceless = {"blank": np.full((480, 640), 128, np.uint8),
                "noise": rng.integers(0, 256, (480, 640)).astype(np.uint8),
                "gradient": np.tile(np.linspace(0, 255, 640).astype(np.uint8), (480, 1))}
    boxed = [letterbox(gray) for gray in grays[:50]]

    results, found_by = {}, {}
    for name, detect in detectors.items():
        started = time.perf_counter()
        detections = [detect(gray) for gray in grays]
        seconds = time.perf_counter() - started
        found_by[name] = np.array([any(hits(rect, face) for rect in rects) for rects, face in zip(detections, faces)])
        false = sum(sum(not hits(rect, face) for rect in rects) for rects, face in zip(detections, faces))
        started = time.perf_counter()
        for gray in boxed:
            detect(gray)
        results[name] = {
            "recall": float(found_by[name].mean()), "missed": int((~found_by[name]).sum()),
            "false_detections": int(false), "ms_per_photo": 1000 * seconds / len(grays),
            "ms_per_640x480": 1000 * (time.perf_counter() - started) / len(boxed),
            "faceless_detections": {key: len(detect(image)) for key, image in faceless.items()},
        }
    either = found_by["haar"] | found_by["hog"]
    results["haar+hog"] = {"recall": float(either.mean()), "missed": int((~either).sum()),
                           "missed_files": [name for name, hit in zip(files, either) if not hit]}
    for name, summary in results.items():
        line = f"{name:9s} recall {summary['recall']:.3f} ({summary['missed']} of {len(files)} missed)"
        if "false_detections" in summary:
            line += (f", {summary['false_detections']} false detections, {summary['ms_per_photo']:.1f} ms/photo, "
                     f"{summary['ms_per_640x480']:.1f} ms per 640x480, on faceless images {summary['faceless_detections']}")
        else:
            line += f": {', '.join(summary['missed_files'])}"
        print(line, flush=True)
    write_results(results, args.out, args.baseline_images)


if __name__ == "__main__":
    main()
