#!/usr/bin/env python3
"""Keypoints on video: frames per second of `keypoints detect`'s tracking against the naive loop.

  .venv/bin/python benchmarks/bench_video.py [--models models | --tiny] [--frames 90]

On a drawn 640x480 video (synthetic faces, enlarged 2x, drifting over a textured background), with one
and with three faces:
- tracking: the command's pipeline (keypoints.video_tracking): the detector every video.detect_every
  frames, each face's crop in between from its keypoints in the frame before, all faces in one batch,
  One Euro smoothing as params.yaml sets it;
- naive: the photo pipeline on every frame: detect, then each face framed and refined alone (up to
  framing.iterations predictions of one face each).
Both decode the same file and encode the same drawn frames (mp4v). Time per step: decode, detect,
crop (cutting and framing, the tracker's own work), predict, draw, encode. --tiny builds untrained
models of the `fast` preset's size whose answer is about the mean shape (so faces stay plausible) and
learns the framing on drawn faces: the script then runs without a trained pipeline; its speed, not its
accuracy, is what it measures. Also the seed baseline's training images/s in the same run. Writes
benchmarks/results/video.json.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np

from keypoints.columns import EIGHT_INDICES
from keypoints.faces import make_detectors
from keypoints.framing import first_boxes, learn_framing, refine, to_original
from keypoints.infer import load_framing, load_models, plausible, to_gray
from keypoints.params import load_params
from keypoints.predict import merged_predictor
from keypoints.smoothing import OneEuroFilter
from keypoints.synthetic import draw_faces
from keypoints.video import draw_faces as draw_video_faces
from keypoints.video_tracking import FaceTracker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_photos import write_results  # noqa: E402  (the same yardstick, one copy)

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 640, 480
STEPS = ("decode", "detect", "crop", "predict", "draw", "encode")


def tiny_models_and_framing(params):
    """Untrained models of the fast preset's size answering about the mean shape, and a framing learned
    on drawn faces with params.yaml's framing settings."""
    import keras

    from keypoints.model import build_model

    images, keypoints = draw_faces(200, seed=7)
    settings = dict(params["framing"])
    framing = learn_framing(images, keypoints, make_detectors(settings["detectors"], settings["detection_size"]),
                            settings["correction_ridge"])
    framing["settings"] = settings
    architecture = {**params["train"]["model"], **params["presets"]["fast"]["model"]}
    keras.utils.set_random_seed(0)
    models = []
    for outputs, columns in ((8, EIGHT_INDICES), (30, list(range(30)))):
        model = build_model(outputs, **architecture, output_bias=np.asarray(framing["mean_shape"])[columns])
        dense = model.get_layer("keypoints")
        dense.kernel.assign(dense.kernel.numpy() * 0.01)  # the convolutions still run; the answer barely moves
        models.append(model)
    return models, framing


def drawn_video(path, faces, frames):
    """`faces` drawn faces (2x) drifting ~1 px a frame over a textured background, mp4v at 30 fps."""
    rng = np.random.default_rng(0)
    images, _ = draw_faces(faces, seed=3)
    background = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH)).astype(np.uint8), (0, 0), 6)
    background = cv2.normalize(background, None, 40, 200, cv2.NORM_MINMAX)
    starts = [(30, 40), (240, 270), (420, 50)][:faces]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (WIDTH, HEIGHT))
    for index in range(frames):
        gray = background.copy()
        for face, (x, y) in zip(images, starts):
            x, y = x + int(round(20 * np.sin(index / 15))), y + int(round(10 * np.sin(index / 23)))
            gray[y:y + 192, x:x + 192] = cv2.resize(face, (192, 192), interpolation=cv2.INTER_LINEAR)
        writer.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    writer.release()


class Timer:
    """Seconds per step, and the functions to time wrapped."""

    def __init__(self):
        self.seconds = dict.fromkeys(STEPS, 0.0)

    def wrap(self, step, function):
        def timed(*arguments):
            started = time.perf_counter()
            try:
                return function(*arguments)
            finally:
                self.seconds[step] += time.perf_counter() - started
        return timed


def naive_faces(gray, detectors, predict, framing, overlap):
    """The photo pipeline on one frame: every detection refined alone, the plausible ones kept."""
    faces, settings = [], framing["settings"]
    for rect, start, _ in first_boxes(gray, detectors, framing, overlap):
        boxes, keypoints, moved = refine([gray], [start], predict, framing["mean_shape"],
                                         settings["iterations"], settings["tolerance"], framing.get("correction"))
        if plausible(rect, start, boxes[0], keypoints[0], moved[0], framing):
            faces.append({"face_id": len(faces) + 1, "box": boxes[0], "keypoints": to_original(keypoints[0], boxes[0])})
    return faces


def run(path, method, detectors, predict, framing, video_settings, scratch):
    """Decode, find faces, draw and encode every frame; (frames/s, {step: ms per frame}, faces per frame)."""
    timer = Timer()
    timed_detectors = {name: timer.wrap("detect", detect) for name, detect in detectors.items()}
    timed_predict = timer.wrap("predict", predict)
    if method == "tracking":
        def make_filter():
            return OneEuroFilter(video_settings["min_cutoff"], video_settings["beta"], video_settings["d_cutoff"])

        tracker = FaceTracker(timed_detectors, timed_predict, framing, video_settings["detect_every"],
                              video_settings["match_iou"], video_settings["max_unconfirmed"],
                              make_filter if video_settings["smoothing"] else None)
    capture = cv2.VideoCapture(str(path))
    writer = cv2.VideoWriter(str(Path(scratch) / f"{method}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (WIDTH, HEIGHT))
    frames, faces_seen, started = 0, 0, time.perf_counter()
    while True:
        ok, frame = timer.wrap("decode", capture.read)()
        if not ok:
            break
        gray = to_gray(frame)
        finding = time.perf_counter()
        inner = sum(timer.seconds[step] for step in ("detect", "predict"))
        if method == "tracking":
            faces = tracker.update(gray, frames / 30)
        else:
            faces = naive_faces(gray, timed_detectors, timed_predict, framing, framing["settings"]["merge_overlap"])
        # What the tracker (or the naive loop) spent besides detecting and predicting: crops and framing.
        timer.seconds["crop"] += time.perf_counter() - finding - (sum(timer.seconds[step] for step in ("detect", "predict")) - inner)
        drawn = timer.wrap("draw", draw_video_faces)(frame, faces)
        timer.wrap("encode", writer.write)(drawn)
        frames += 1
        faces_seen += len(faces)
    elapsed = time.perf_counter() - started
    capture.release()
    writer.release()
    return frames / elapsed, {step: 1000 * seconds / frames for step, seconds in timer.seconds.items()}, faces_seen / frames


def main():
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--models", default=str(ROOT / "models"), help="holds model_8.keras, model_30.keras, framing.json")
    cli.add_argument("--tiny", action="store_true", help="untrained fast-preset-sized models, framing learned on drawn faces")
    cli.add_argument("--params", default=str(ROOT / "params.yaml"))
    cli.add_argument("--frames", type=int, default=90)
    cli.add_argument("--baseline-images", type=int, default=320, help="0 skips the seed baseline")
    cli.add_argument("--out", default=str(ROOT / "benchmarks/results/video.json"))
    args = cli.parse_args()

    params = load_params(args.params)
    if args.tiny:
        models, framing = tiny_models_and_framing(params)
    else:
        models = load_models(Path(args.models) / "model_8.keras", Path(args.models) / "model_30.keras")
        framing = load_framing(Path(args.models) / "framing.json")
    predict = merged_predictor(*models, params["predict"]["flip_average"], params["predict"]["shift_average"])
    for count in (1, 2, 3):  # trace the batch sizes before timing
        predict(np.zeros((count, 96, 96), np.uint8))
    detectors = make_detectors(framing["settings"]["detectors"], framing["settings"]["detection_size"])
    results = {"models": "tiny (untrained, fast preset size)" if args.tiny else str(args.models),
               "size": f"{WIDTH}x{HEIGHT}", "frames": args.frames, "video": dict(params["video"])}
    with tempfile.TemporaryDirectory() as scratch:
        for faces in (1, 3):
            path = Path(scratch) / f"faces{faces}.mp4"
            drawn_video(path, faces, args.frames)
            for method in ("tracking", "naive"):
                fps, steps, found = run(path, method, detectors, predict, framing, params["video"], scratch)
                results[f"{faces} faces, {method}"] = {"frames_per_second": fps, "faces_per_frame": found, "ms_per_frame": steps}
                print(f"{faces} face(s), {method:8s}: {fps:6.1f} frames/s, {found:.2f} faces/frame; ms/frame "
                      + ", ".join(f"{step} {ms:.1f}" for step, ms in steps.items()), flush=True)
            ratio = results[f"{faces} faces, tracking"]["frames_per_second"] / results[f"{faces} faces, naive"]["frames_per_second"]
            results[f"{faces} faces, tracking over naive"] = ratio
            print(f"{faces} face(s): tracking is {ratio:.2f}x the naive loop's frames/s")
    write_results(results, args.out, args.baseline_images)


if __name__ == "__main__":
    main()
