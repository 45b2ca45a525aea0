"""Facial keypoints on your own images: finds the face, runs both models, writes a CSV and drawings.

    PYTHONPATH=src python scripts/detect_keypoints.py photo.jpg photos/ --out detections

writes detections/keypoints.csv (one row per image, keypoints in the original image's pixels) and
detections/<stem>_keypoints.png (the image with the face box and the keypoints drawn).
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keypoints import infer


def parse_args(argv=None):
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("inputs", nargs="+", help=f"image files and/or directories of {', '.join(infer.IMAGE_SUFFIXES)} "
                                               "(directories are not searched recursively)")
    cli.add_argument("--model-8", default="models/model_8.keras", help="model of the 8 values (default: %(default)s)")
    cli.add_argument("--model-30", default="models/model_30.keras", help="model of the 30 values (default: %(default)s)")
    cli.add_argument("--out", default="detections", help="output directory (default: %(default)s)")
    cli.add_argument("--margin", type=float, default=infer.DEFAULT_MARGIN,
                     help="enlarge the detected face square by this fraction of its side (default: %(default)s)")
    cli.add_argument("--box", type=int, nargs=3, metavar=("X", "Y", "SIDE"),
                     help="skip detection: use this square (first column, first row, side in pixels) for every image")
    return cli.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        paths = infer.image_paths(args.inputs)
        model_8, model_30 = infer.load_models(args.model_8, args.model_30)
        frame = infer.run(paths, model_8, model_30, args.out, margin=args.margin, box=args.box)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    found = int(frame["face_found"].sum())
    print(f"{args.out}/keypoints.csv: {len(frame)} images, a face found in {found}; drawings in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
