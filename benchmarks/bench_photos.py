#!/usr/bin/env python3
"""Keypoints on whole photos: finding and framing the face, scored against the truth in the photo.

  .venv/bin/python benchmarks/bench_photos.py [--models models] [--photos ../shared/data/youtube-faces-photos]

The photos are the 346 held-out frames of ../shared/data/youtube-faces-photos (held out of both models
under split seed 42, holdout 10%: train on ../shared/data/youtube-faces-kaggle-format with that split).
Scores, as its SOURCES.md defines them: RMSE in 96-px face units (each coordinate error x 96 /
face_size), NME (mean point error / outer-eye distance) and failures (NME > 0.10). Each method:
- `before`: the previous command: the largest Haar face, its square enlarged by 10%, one prediction;
- `haar`, `hog`, `haar+hog`: `keypoints detect`'s locate with those detectors (learned framing, refined);
- `haar+hog` with one change: the mean-shape framing without the learned correction, or 1, 2 or 5
  predictions per face instead of framing.iterations.
Also: the same models on the 96x96 training crops of the same faces (the accuracy to keep), time per
photo at the photos' size and letterboxed to 640x480, faces "found" in images without one, and the
seed baseline's training images/s measured in the same run. Writes benchmarks/results/photos.json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import pandas as pd

from keypoints.columns import EIGHT_INDICES, KEYPOINT_COLUMNS, to_data_convention
from keypoints.faces import make_detectors
from keypoints.framing import crop_face, to_original
from keypoints.infer import load_framing, load_models, locate
from keypoints.params import load_params
from keypoints.parse import parse_training
from keypoints.predict import merged_predictor

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BASELINE = SHARED / "bench/seed_baseline.py"


def before(gray, haar, predict):
    """The previous `keypoints detect`: largest Haar face, square enlarged by 10%, no re-framing."""
    rects = haar(gray)
    if not rects:
        height, width = gray.shape
        side = min(height, width)
        box = ((width - side) // 2, (height - side) // 2, side)
        return box, predict(crop_face(gray, box)[None])[0], False
    x, y, w, h = max(rects, key=lambda rect: rect[2] * rect[3])
    side = max(1, int(round(max(w, h) * 1.1)))
    box = (int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2)), side)
    return box, predict(crop_face(gray, box)[None])[0], True


def scores(predicted, truth):
    """RMSE in 96-px face units (all 30 values and model_8's 8), NME per photo."""
    error = (predicted - truth[KEYPOINT_COLUMNS].to_numpy()) * (96.0 / truth["face_size"].to_numpy())[:, None]
    points = np.hypot(*(predicted - truth[KEYPOINT_COLUMNS].to_numpy()).reshape(len(truth), -1, 2).transpose(2, 0, 1))
    nme = points.mean(axis=1) / truth["outer_eye_distance"].to_numpy()
    return {
        "rmse_96": float(np.sqrt(np.mean(error**2))),
        "rmse_96_eight": float(np.sqrt(np.mean(error[:, EIGHT_INDICES] ** 2))),
        "nme_mean": float(nme.mean()), "nme_median": float(np.median(nme)),
        "failures": int((nme > 0.10).sum()),
    }, nme


def letterbox(gray, width=640, height=480):
    scale = min(width / gray.shape[1], height / gray.shape[0])
    resized = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    canvas = np.full((height, width), 127, np.uint8)
    canvas[:resized.shape[0], :resized.shape[1]] = resized
    return canvas


def seed_baseline_images_per_second(images):
    """The article's CNN trained on random faces for one timed epoch: this machine's yardstick."""
    with tempfile.TemporaryDirectory() as scratch:
        rng = np.random.default_rng(0)
        np.save(f"{scratch}/x.npy", rng.integers(0, 256, (images, 96, 96, 1)).astype(np.float32))
        np.save(f"{scratch}/y.npy", rng.uniform(20, 75, (images, 30)).astype(np.float32))
        out = subprocess.run([sys.executable, str(BASELINE), "train", f"{scratch}/x.npy", f"{scratch}/y.npy",
                              "--images", str(images)], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["images_per_second"]


def write_results(results, path, baseline_images):
    """The seed baseline's training images/s measured now (unless 0 images), the cores, then the JSON."""
    if baseline_images:
        results["seed_baseline_images_per_second"] = seed_baseline_images_per_second(baseline_images)
        print(f"seed baseline (article's CNN, training): {results['seed_baseline_images_per_second']:.1f} images/s")
    results["cores"] = os.cpu_count()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(results, indent=2) + "\n")


def main():
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--models", default=str(ROOT / "models"), help="holds model_8.keras, model_30.keras, framing.json")
    cli.add_argument("--photos", default=str(SHARED / "data/youtube-faces-photos"))
    cli.add_argument("--crops", default=str(SHARED / "data/youtube-faces-kaggle-format/training.csv.gz"))
    cli.add_argument("--params", default=str(ROOT / "params.yaml"), help="predict.flip_average, shift_average and parse.pixel_centre are read from it")
    cli.add_argument("--baseline-images", type=int, default=320, help="0 skips the seed baseline")
    cli.add_argument("--out", default=str(ROOT / "benchmarks/results/photos.json"))
    args = cli.parse_args()

    models, photos = Path(args.models), Path(args.photos)
    params = load_params(args.params)
    settings = params["predict"]
    predict = merged_predictor(*load_models(models / "model_8.keras", models / "model_30.keras"),
                               settings["flip_average"], settings["shift_average"])
    framing = load_framing(models / "framing.json")
    truth = pd.read_csv(photos / "keypoints.csv")
    grays = [cv2.imread(str(photos / "photos" / name), cv2.IMREAD_GRAYSCALE) for name in truth["file"]]
    detectors = make_detectors(["haar", "hog"], framing["settings"]["detection_size"])
    predict(np.zeros((1, 96, 96), np.uint8))  # trace the graph before timing

    results = {}
    # (name, detectors, settings and framing overrides): the command's way, then one change at a time.
    methods = [
        ("before", ["haar"], {}),
        ("haar", ["haar"], {}), ("hog", ["hog"], {}),
        ("haar+hog", ["haar", "hog"], {}),
        ("haar+hog, mean-shape framing", ["haar", "hog"], {"correction": None}),
        ("haar+hog, 1 prediction", ["haar", "hog"], {"iterations": 1}),
        ("haar+hog, 2 predictions", ["haar", "hog"], {"iterations": 2}),
        ("haar+hog, 5 predictions", ["haar", "hog"], {"iterations": 5}),
    ]
    for method, names, overrides in methods:
        settings = {**framing["settings"], **{key: value for key, value in overrides.items() if key in framing["settings"]}}
        method_framing = {**framing, **{key: value for key, value in overrides.items() if key in framing}, "settings": settings}
        chosen = {name: detectors[name] for name in names}
        predicted, found, seconds = [], [], 0.0
        for gray in grays:
            started = time.perf_counter()
            if method == "before":
                box, keypoints_96, is_face = before(gray, detectors["haar"], predict)
            else:
                box, keypoints_96, is_face, _ = locate(gray, chosen, method_framing, predict)
            seconds += time.perf_counter() - started
            predicted.append(to_original(keypoints_96, box))
            found.append(is_face)
        summary, nme = scores(np.array(predicted), truth)
        summary.update(found=int(np.sum(found)), ms_per_photo=1000 * seconds / len(grays))
        results[method] = summary
        print(f"{method:30s} RMSE {summary['rmse_96']:.2f} px (8: {summary['rmse_96_eight']:.2f}), NME "
              f"{summary['nme_mean']:.3f} (median {summary['nme_median']:.3f}), {summary['failures']} failures, "
              f"{summary['found']} found, {summary['ms_per_photo']:.1f} ms/photo", flush=True)

    # The accuracy to keep: the same models on the training crops of the same faces.
    images, keypoints = parse_training(args.crops, progress_every=0)
    rows = truth["training_row"].to_numpy()
    # The models answer in the project's convention, the crops' labels are in the data's (parse.pixel_centre).
    crop_error = to_data_convention(predict(images[rows]), params["parse"]["pixel_centre"]) - keypoints[rows]
    results["crops_rmse_96"] = float(np.sqrt(np.nanmean(crop_error**2)))
    results["photo_over_crop"] = results["haar+hog"]["rmse_96"] / results["crops_rmse_96"]
    print(f"the same faces as 96x96 training crops: RMSE {results['crops_rmse_96']:.2f} px; "
          f"photos / crops = {results['photo_over_crop']:.2f}")

    # 640x480: time per photo at the size the goal names, and images that show no face.
    boxed = [letterbox(gray) for gray in grays[:100]]
    started = time.perf_counter()
    for gray in boxed:
        locate(gray, detectors, framing, predict)
    results["ms_per_640x480_photo"] = 1000 * (time.perf_counter() - started) / len(boxed)
    rng = np.random.default_rng(0)
    faceless = {"blank": np.full((480, 640), 128, np.uint8),
                "noise": rng.integers(0, 256, (480, 640)).astype(np.uint8),
                "gradient": np.tile(np.linspace(0, 255, 640).astype(np.uint8), (480, 1))}
    results["faces_found_in_faceless"] = {name: bool(locate(gray, detectors, framing, predict)[2])
                                          for name, gray in faceless.items()}
    print(f"640x480: {results['ms_per_640x480_photo']:.1f} ms/photo; faces found in faceless images: "
          f"{results['faces_found_in_faceless']}")
    write_results(results, args.out, args.baseline_images)


if __name__ == "__main__":
    main()
