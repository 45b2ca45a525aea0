"""The `keypoints` command: tools that use the trained models.

    keypoints detect photo.jpg photos/ --out detections
    keypoints detect clip.mp4 --out detections          (or --camera 0, --camera rtsp://...)

The pipeline itself runs through DVC (`dvc repro`, `dvc exp run`); see README.md.
"""
import argparse
import os
import sys
from pathlib import Path

# TensorFlow's C++ start-up chatter buries the command's own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keypoints import infer, video
from keypoints.params import MissingParam, load_params
from keypoints.predict import merged_predictor


def add_detect(subcommands):
    detect = subcommands.add_parser(
        "detect",
        help="keypoints on images, videos and cameras: find the faces, frame them, run both models, write CSVs and drawings",
        description="Finds the face in each image, frames it as the training crops were (models/framing.json), "
                    "runs model_8 and model_30, merges them, and writes OUT/keypoints.csv (one row per image, "
                    "keypoints in the image's pixels) and OUT/<stem>_keypoints.png (the image with the face "
                    "box and the keypoints drawn). Videos and cameras: every face of every frame, followed with an id, "
                    "written to OUT/<stem>_keypoints.mp4 and OUT/<stem>_keypoints.csv; their settings come from "
                    "the video group of --params, and the flags below override them.",
    )
    detect.add_argument("inputs", nargs="*", help=f"image files ({', '.join(infer.IMAGE_SUFFIXES)}), video files "
                                                  f"({', '.join(video.VIDEO_SUFFIXES)}) and/or directories of them "
                                                  "(directories are not searched recursively)")
    detect.add_argument("--model-8", default="models/model_8.keras", help="model of the 8 values (default: %(default)s)")
    detect.add_argument("--model-30", default="models/model_30.keras", help="model of the 30 values (default: %(default)s)")
    detect.add_argument("--out", default="detections", help="output directory (default: %(default)s)")
    detect.add_argument("--framing", default="models/framing.json",
                        help="the framing the framing stage learned (default: %(default)s)")
    detect.add_argument("--box", type=int, nargs=3, metavar=("X", "Y", "SIDE"),
                        help="skip detection: use this square (first column, first row, side in pixels) for every image")
    detect.add_argument("--flip-average", action=argparse.BooleanOptionalAction,
                        help="also predict each face mirrored and average the two (default: predict.flip_average of --params)")
    detect.add_argument("--shift-average", type=int, metavar="PIXELS",
                        help="also predict each face moved this many pixels each way and average the five; 0: off "
                             "(default: predict.shift_average of --params)")
    live = detect.add_argument_group("video and cameras (defaults: the video group of --params)")
    live.add_argument("--camera", help="a camera index (0: the first) or a stream URL, read until it ends or Ctrl-C")
    live.add_argument("--params", default="params.yaml",
                      help="settings file: its video group, predict.flip_average and shift_average (default: %(default)s)")
    live.add_argument("--detect-every", type=int, help="run the face detector every this many frames")
    live.add_argument("--smoothing", action=argparse.BooleanOptionalAction, help="One Euro smoothing of the keypoints")
    live.add_argument("--min-cutoff", type=float, help="smoothing cutoff of a still face, Hz")
    live.add_argument("--beta", type=float, help="smoothing cutoff added per pixel/s of speed")
    live.add_argument("--d-cutoff", type=float, help="cutoff of the speed estimate, Hz")
    live.add_argument("--show", action="store_true", help="also show the drawn frames in a window (q stops)")
    detect.set_defaults(handler=run_detect)


def video_settings(args):
    """params.yaml's video group with the flags given on the command line put in."""
    settings = dict(load_params(args.params)["video"])
    for key in ("detect_every", "smoothing", "min_cutoff", "beta", "d_cutoff"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    return settings


def make_tracker(settings, detectors, predict, framing):
    from keypoints.smoothing import OneEuroFilter
    from keypoints.video_tracking import FaceTracker

    def make_filter():
        return OneEuroFilter(settings["min_cutoff"], settings["beta"], settings["d_cutoff"])

    return FaceTracker(detectors, predict, framing, settings["detect_every"], settings["match_iou"],
                       settings["max_unconfirmed"], make_filter if settings["smoothing"] else None)


def run_videos(args, sources, predict, framing):
    from keypoints.faces import make_detectors

    settings = video_settings(args)
    if args.show:
        video.check_display()
    detectors = make_detectors(framing["settings"]["detectors"], framing["settings"]["detection_size"])
    for source in sources:
        tracker = make_tracker(settings, detectors, predict, framing)
        table, frames = video.process(source, tracker, args.out, show=args.show,
                                      progress_every=settings["progress_every"])
        video_path, csv_path = video.output_paths(args.out, source)
        print(f"{csv_path}: {frames} frames, {len(table)} face rows, {table['face_id'].nunique()} faces; "
              f"drawn in {video_path}")


def run_detect(args):
    image_inputs, videos = video.split_inputs(args.inputs)
    sources = videos + ([video.camera_source(args.camera)] if args.camera is not None else [])
    if not image_inputs and not sources:
        raise ValueError("nothing to detect: give images, videos or directories, or --camera")
    if sources and args.box:
        raise ValueError("--box applies to images only, not to videos or cameras")
    names = [video.output_paths(args.out, source)[0] for source in sources]
    if len(set(names)) < len(names):
        raise ValueError(f"two videos would both be drawn to the same file in {args.out}: rename one")
    paths = infer.image_paths(image_inputs) if image_inputs else []
    if sources:
        video_settings(args)  # a missing or incomplete settings file stops the command before any work
    framing = infer.load_framing(args.framing)
    flip_average, shift_average = args.flip_average, args.shift_average
    if flip_average is None or shift_average is None:
        # Outside the project a flag given replaces the settings file; the view not asked for is off.
        given = flip_average is not None or shift_average is not None
        settings = (load_params(args.params)["predict"] if not given or Path(args.params).exists()
                    else {"flip_average": False, "shift_average": 0})
        flip_average = settings["flip_average"] if flip_average is None else flip_average
        shift_average = settings.get("shift_average", 0) if shift_average is None else shift_average
    predict = merged_predictor(*infer.load_models(args.model_8, args.model_30), flip_average, shift_average)
    if paths:
        frame = infer.run(paths, predict, framing, args.out, box=args.box)
        found = int(frame["face_found"].sum())
        skipped = len(paths) - len(frame)
        print(f"{args.out}/keypoints.csv: {len(frame)} images, a face found in {found}"
              f"{f', {skipped} unreadable skipped (named above)' if skipped else ''}; drawings in {args.out}/")
    if sources:
        run_videos(args, sources, predict, framing)


def parser():
    cli = argparse.ArgumentParser(prog="keypoints", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    subcommands = cli.add_subparsers(title="commands", dest="command", required=True)
    add_detect(subcommands)
    return cli


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        args.handler(args)
    except (FileNotFoundError, ValueError, MissingParam) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
