"""Keypoints on video files and cameras: read frames, follow every face, write a drawn video and a CSV.

Outputs go through temporary files renamed at the end (keypoints.fileio), so a run that fails leaves
no truncated video behind; a stream that ends or drops mid-way is an end like any other, and what was
processed is written.
"""
import os
import re
import sys
import time
from pathlib import Path

import cv2
import pandas as pd

from keypoints import fileio
from keypoints.columns import KEYPOINT_COLUMNS
from keypoints.infer import IMAGE_SUFFIXES, draw_keypoints, to_gray

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
CSV_COLUMNS = ["frame", "time_s", "face_id", "box_x", "box_y", "box_size"] + KEYPOINT_COLUMNS
# mp4v (MPEG-4 part 2) is the codec OpenCV's pip wheels can write into .mp4 everywhere; their FFmpeg has no H.264 encoder.
OUTPUT_SUFFIX, FOURCC = ".mp4", "mp4v"
# Frame rate written for a camera or stream that reports none: a common camera rate.
UNREPORTED_FPS = 30.0


def split_inputs(inputs):
    """(inputs for infer.image_paths, video files): video files as given, then each directory's videos
    (sorted, not recursive). A directory goes to the images only if it holds images; a missing path does,
    so that the images' reader names it."""
    images, videos = [], []
    for entry in map(Path, inputs):
        if entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(entry)
        elif entry.is_dir():
            files = sorted(path for path in entry.iterdir() if path.is_file())
            videos += [path for path in files if path.suffix.lower() in VIDEO_SUFFIXES]
            if any(path.suffix.lower() in IMAGE_SUFFIXES for path in files):
                images.append(entry)
            elif not any(path.suffix.lower() in VIDEO_SUFFIXES for path in files):
                images.append(entry)  # neither: the images' reader says there are none
        else:
            images.append(entry)
    return images, list(dict.fromkeys(videos))


def camera_source(text):
    """`--camera 0` -> device 0; anything else (a stream URL, a device path) as given."""
    return int(text) if re.fullmatch(r"\d+", str(text)) else str(text)


def source_name(source):
    """Output stem: the file's stem, camera0 for device 0, the URL with its odd characters replaced."""
    if isinstance(source, Path):
        return source.stem
    if isinstance(source, int):
        return f"camera{source}"
    return "stream_" + re.sub(r"[^A-Za-z0-9._-]+", "_", source.split("://", 1)[-1]).strip("_.")


def open_video(source):
    """(capture, first frame, frames per second) of a video file, camera index or stream URL; an error
    naming it when it cannot be opened or gives no frame."""
    label = f"camera {source}" if not isinstance(source, Path) else str(source)
    if isinstance(source, Path) and not source.is_file():
        raise FileNotFoundError(f"{source}: video not found")
    capture = cv2.VideoCapture(str(source) if isinstance(source, Path) else source)
    if not capture.isOpened():
        capture.release()
        raise ValueError(f"{label}: OpenCV cannot open it" + (" as a video" if isinstance(source, Path) else ""))
    ok, frame = capture.read()
    if not ok or frame is None or frame.size == 0:
        capture.release()
        raise ValueError(f"{label}: no frames to read")
    fps = capture.get(cv2.CAP_PROP_FPS)
    return capture, frame, fps if 0 < fps < 1000 else UNREPORTED_FPS


def frames(capture, first, fps, live):
    """(index, time in seconds, BGR frame) until the video ends or the stream drops. A file's time is its
    frame index over its rate; a camera's is the clock, its frames coming when they come."""
    started = time.monotonic()
    frame, index = first, 0
    while frame is not None:
        yield index, (time.monotonic() - started) if live else index / fps, frame
        ok, frame = capture.read()
        frame = frame if ok else None
        index += 1


def draw_faces(image, faces):
    """The frame with each face's box, keypoints and id drawn."""
    canvas = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for face in faces:
        canvas = draw_keypoints(canvas, face["keypoints"], face["box"], True)
        x, y, side = face["box"]
        scale = max(0.4, side / 200)
        cv2.putText(canvas, str(face["face_id"]), (x + 2, max(y - 4, int(14 * scale))), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, (0, 200, 0), max(1, int(round(2 * scale))), cv2.LINE_AA)
    return canvas


def check_display():
    """An error now, not after the first frame, when --show cannot open a window."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ValueError("--show needs a display, and DISPLAY is not set")
    try:
        cv2.namedWindow("keypoints")
    except cv2.error as error:
        raise ValueError("--show needs OpenCV with a GUI; this one has none (opencv-python-headless): "
                         "pip install opencv-python") from error


def output_paths(out_dir, source):
    stem = source_name(source)
    return Path(out_dir) / f"{stem}_keypoints{OUTPUT_SUFFIX}", Path(out_dir) / f"{stem}_keypoints.csv"


def process(source, tracker, out_dir, show=False, progress_every=100, log=None):
    """Every frame of a video file or camera through the tracker: writes out_dir/<name>_keypoints.mp4
    (same size and rate, faces drawn) and out_dir/<name>_keypoints.csv (one row per face per frame).
    Returns (the table, frames read). A camera runs until it stops or Ctrl-C (or q in the window)."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    live = not isinstance(source, Path)
    capture, first, fps = open_video(source)
    video_path, csv_path = output_paths(out_dir, source)
    height, width = first.shape[:2]
    rows, count, started = [], 0, time.monotonic()
    try:
        with fileio.atomic_path(video_path) as temporary:
            writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*FOURCC), fps, (width, height))
            if not writer.isOpened():
                raise ValueError(f"{video_path}: OpenCV cannot write {FOURCC} video here")
            try:
                for index, time_s, frame in frames(capture, first, fps, live):
                    faces = tracker.update(to_gray(frame), time_s)
                    rows += [[index, round(time_s, 6), face["face_id"], *face["box"], *face["keypoints"]] for face in faces]
                    drawn = draw_faces(frame, faces)
                    writer.write(drawn)
                    count = index + 1
                    if show:
                        cv2.imshow("keypoints", drawn)
                        if cv2.waitKey(1) & 0xFF == ord("q"):
                            break
                    if progress_every and count % progress_every == 0:
                        log(f"{source}: {count} frames, {count / (time.monotonic() - started):.1f} frames/s")
            except KeyboardInterrupt:  # the way to stop a camera: keep what was processed
                log(f"{source}: stopped after {count} frames")
            finally:
                writer.release()
    finally:
        capture.release()
        if show:
            cv2.destroyWindow("keypoints")
    table = pd.DataFrame(rows, columns=CSV_COLUMNS)
    fileio.save_csv(csv_path, table)
    return table, count
