"""The `keypoints` command: tools that use the trained models.

    keypoints detect photo.jpg photos/ --out detections

The pipeline itself runs through DVC (`dvc repro`, `dvc exp run`); see README.md.
"""
import argparse
import os
import sys

# TensorFlow's C++ start-up chatter buries the command's own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keypoints import infer
from keypoints.predict import merged_predictor


def add_detect(subcommands):
    detect = subcommands.add_parser(
        "detect",
        help="keypoints on images: find the face, frame it, run both models, write a CSV and drawings",
        description="Finds the face in each image, frames it as the training crops were (models/framing.json), "
                    "runs model_8 and model_30, merges them, and writes OUT/keypoints.csv (one row per image, "
                    "keypoints in the image's pixels) and OUT/<stem>_keypoints.png (the image with the face "
                    "box and the keypoints drawn).",
    )
    detect.add_argument("inputs", nargs="+", help=f"image files and/or directories of {', '.join(infer.IMAGE_SUFFIXES)} "
                                                  "(directories are not searched recursively)")
    detect.add_argument("--model-8", default="models/model_8.keras", help="model of the 8 values (default: %(default)s)")
    detect.add_argument("--model-30", default="models/model_30.keras", help="model of the 30 values (default: %(default)s)")
    detect.add_argument("--out", default="detections", help="output directory (default: %(default)s)")
    detect.add_argument("--framing", default="models/framing.json",
                        help="the framing the framing stage learned (default: %(default)s)")
    detect.add_argument("--box", type=int, nargs=3, metavar=("X", "Y", "SIDE"),
                        help="skip detection: use this square (first column, first row, side in pixels) for every image")
    detect.set_defaults(handler=run_detect)


def run_detect(args):
    paths = infer.image_paths(args.inputs)
    framing = infer.load_framing(args.framing)
    predict = merged_predictor(*infer.load_models(args.model_8, args.model_30))
    frame = infer.run(paths, predict, framing, args.out, box=args.box)
    found = int(frame["face_found"].sum())
    print(f"{args.out}/keypoints.csv: {len(frame)} images, a face found in {found}; drawings in {args.out}/")


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
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
