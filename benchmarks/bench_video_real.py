#!/usr/bin/env python3
"""Keypoints on real faces in video: accuracy, jitter and lag of `keypoints detect` on clips made from
the real photos, with the truth moved along with them.

  .venv/bin/python benchmarks/bench_video_real.py --models M [--clips 20] [--frames 90]

No labelled real video exists here, so each clip is one of the 346 held-out photos of
../shared/data/youtube-faces-photos (split seed 42: held out of both models; train on
../shared/data/youtube-faces-kaggle-format with that split) filmed by a virtual camera: warped into a
640x480 frame (its edges repeated) with its face about --face-size pixels across, still for the first
half of the clip, then moving right at --speed pixels a frame; every frame gets Gaussian sensor noise
(--noise grey levels) and goes through the mp4v encoder, as a webcam's frames go through compression.
The truth is the photo's keypoints moved by the same warp.

The clips run through the command itself (`keypoints detect` in a subprocess, once with the One Euro
smoothing of params.yaml and once with --no-smoothing). Per run, on the frames after the first 10 of
each half (the tracker and the filter settling): RMSE in 96-px face units and the share of frames
failing (NME > 0.10, NME as the photos' SOURCES.md defines it) on the still and the moving half; the
share of frames where the face was followed; the ids used per clip (1 is no switch); jitter, the
standard deviation of each keypoint's frame-to-frame movement on the still half (96-px units; the
truth does not move); lag, the mean error of x along the motion on the moving half (frame pixels:
negative is behind). Writes benchmarks/results/video_real.json, with the seed baseline's training
images/s measured in the same run.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import numpy as np
import pandas as pd

from keypoints.columns import KEYPOINT_COLUMNS, PIXEL_OFFSET

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_photos import SHARED, write_results  # noqa: E402  (the same photos and yardstick)

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FPS = 640, 480, 30
SETTLE = 10


def camera(frames, face_size, speed, photo_face_size, face_centre):
    """Per frame, the 2x3 warp of the photo into the frame: the face scaled to face_size and centred,
    still for the first half, then moving right at `speed` pixels a frame."""
    scale = face_size / photo_face_size
    warps = []
    for index in range(frames):
        shift = speed * max(0, index - frames // 2)
        offset_x = WIDTH / 2 - 60 - scale * face_centre[0] + shift
        offset_y = HEIGHT / 2 - scale * face_centre[1]
        warps.append(np.array([[scale, 0.0, offset_x], [0.0, scale, offset_y]]))
    return warps


def write_clip(path, photo, warps, noise, seed):
    """The photo through each warp (cv2's, in pixel indices), noise, mp4v."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise ValueError(f"{path}: OpenCV cannot write mp4v video here")
    for warp in warps:
        frame = cv2.warpAffine(photo, warp, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        noisy = frame.astype(np.float32) + rng.normal(0.0, noise, frame.shape)
        writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    writer.release()


def moved(keypoints, warp):
    """Keypoints through a warp in pixel indices: keypoint coordinates put pixel i's centre at i + 0.5."""
    points = np.asarray(keypoints, np.float64).reshape(-1, 2) - PIXEL_OFFSET
    return (points @ warp[:, :2].T + warp[:, 2] + PIXEL_OFFSET).reshape(-1)


def detect(clips_dir, out_dir, models, params, smoothing):
    command = [str(Path(sys.executable).parent / "keypoints"), "detect", str(clips_dir), "--out", str(out_dir),
               "--model-8", str(models / "model_8.keras"), "--model-30", str(models / "model_30.keras"),
               "--framing", str(models / "framing.json"), "--params", str(params),
               "--smoothing" if smoothing else "--no-smoothing"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def the_face(rows, truth, face_size):
    """Per frame, the row of the face nearest the truth's centre, if its box centre is within half a
    face of it; else None."""
    if rows.empty:
        return None
    centres = rows[["box_x", "box_y"]].to_numpy() + rows[["box_size"]].to_numpy() / 2
    target = truth.reshape(-1, 2).mean(axis=0)
    distances = np.hypot(*(centres - target).T)
    best = int(np.argmin(distances))
    return rows.iloc[best] if distances[best] < face_size / 2 else None


def score(table, clips, frames, face_size):
    """The figures of one run over all clips (see the module docstring)."""
    halves = {"still": range(SETTLE, frames // 2), "moving": range(frames // 2 + SETTLE, frames)}
    errors = {half: [] for half in halves}
    nme = {half: [] for half in halves}
    followed, ids, jitter, lag = 0, [], [], []
    for clip in clips:
        rows = table[table["clip"] == clip["name"]]
        per_frame, clip_ids = {}, set()
        for index in range(frames):
            row = the_face(rows[rows["frame"] == index], clip["truth"][index], face_size)
            if row is not None:
                per_frame[index] = row[KEYPOINT_COLUMNS].to_numpy(float)
                clip_ids.add(int(row["face_id"]))
        followed += len(per_frame)
        ids.append(len(clip_ids))
        for half, indices in halves.items():
            for index in indices:
                if index not in per_frame:
                    nme[half].append(np.inf)
                    continue
                error = per_frame[index] - clip["truth"][index]
                errors[half].append(error * 96.0 / face_size)
                nme[half].append(np.hypot(*error.reshape(-1, 2).T).mean() / clip["eye_distance"])
        still = [per_frame[index] for index in halves["still"] if index in per_frame]
        if len(still) > 2:
            jitter.append(np.diff(np.array(still), axis=0).std(axis=0).mean() * 96.0 / face_size)
        lag += [np.mean(per_frame[index][0::2] - clip["truth"][index][0::2]) for index in halves["moving"] if index in per_frame]
    result = {"followed": followed / (len(clips) * frames), "mean_ids_per_clip": float(np.mean(ids)),
              "jitter_96": float(np.mean(jitter)), "lag_x_px": float(np.mean(lag))}
    for half in halves:
        result[f"rmse_96_{half}"] = float(np.sqrt(np.mean(np.square(errors[half])))) if errors[half] else float("nan")
        result[f"failures_{half}"] = float(np.mean(np.array(nme[half]) > 0.10))
    return result


def main():
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--models", required=True, help="holds model_8.keras, model_30.keras, framing.json (trained on the real faces)")
    cli.add_argument("--photos", default=str(SHARED / "data/youtube-faces-photos"))
    cli.add_argument("--params", default=str(ROOT / "params.yaml"), help="its video group and predict.flip_average")
    cli.add_argument("--clips", type=int, default=20, help="photos filmed, chosen by a seeded draw")
    cli.add_argument("--frames", type=int, default=90)
    cli.add_argument("--face-size", type=float, default=160.0, help="training-crop side of the face in the frame, pixels")
    cli.add_argument("--speed", type=float, default=3.0, help="pixels a frame in the moving half")
    cli.add_argument("--noise", type=float, default=4.0, help="sensor noise, grey levels (standard deviation)")
    cli.add_argument("--seed", type=int, default=0)
    cli.add_argument("--baseline-images", type=int, default=320, help="0 skips the seed baseline")
    cli.add_argument("--out", default=str(ROOT / "benchmarks/results/video_real.json"))
    args = cli.parse_args()

    photos, models = Path(args.photos), Path(args.models)
    truth = pd.read_csv(photos / "keypoints.csv")
    chosen = np.sort(np.random.default_rng(args.seed).choice(len(truth), args.clips, replace=False))
    results = {"models": str(models), "clips": args.clips, "frames": args.frames, "face_size": args.face_size,
               "speed": args.speed, "noise": args.noise}
    with tempfile.TemporaryDirectory() as scratch:
        clips_dir = Path(scratch) / "clips"
        clips_dir.mkdir()
        clips = []
        for number, row_index in enumerate(chosen):
            row = truth.iloc[row_index]
            photo = cv2.imread(str(photos / "photos" / row["file"]))
            keypoints = row[KEYPOINT_COLUMNS].to_numpy(float)
            warps = camera(args.frames, args.face_size, args.speed, row["face_size"], keypoints.reshape(-1, 2).mean(axis=0))
            name = f"clip{number:02d}"
            write_clip(clips_dir / f"{name}.mp4", photo, warps, args.noise, args.seed + number)
            clips.append({"name": name, "file": row["file"], "truth": [moved(keypoints, warp) for warp in warps],
                          "eye_distance": row["outer_eye_distance"] * warps[0][0, 0]})
        print(f"{len(clips)} clips of {args.frames} frames written", file=sys.stderr, flush=True)
        for smoothing in (True, False):
            out_dir = Path(scratch) / ("smoothed" if smoothing else "raw")
            detect(clips_dir, out_dir, models, args.params, smoothing)
            table = pd.concat([pd.read_csv(out_dir / f"{clip['name']}_keypoints.csv").assign(clip=clip["name"])
                               for clip in clips])
            run = "smoothed" if smoothing else "raw"
            results[run] = score(table, clips, args.frames, args.face_size)
            print(f"{run:8s} " + ", ".join(f"{key} {value:.3f}" for key, value in results[run].items()), flush=True)
    results["jitter_smoothed_over_raw"] = results["smoothed"]["jitter_96"] / results["raw"]["jitter_96"]
    print(f"jitter, smoothed over raw: {results['jitter_smoothed_over_raw']:.2f}")
    write_results(results, args.out, args.baseline_images)


if __name__ == "__main__":
    main()
