"""Stage parse: pixel strings of the raw CSVs into .npy arrays (images uint8 (N,96,96)), the labels in
the project's pixel-centre convention."""
import gc

if __name__ == "__main__":
    gc.disable()  # while the modules below load: keypoints.process.run_main turns it back on

import argparse

from keypoints.params import load_params
from keypoints.parse import parse_directory
from keypoints.process import run_main


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--raw", required=True)
    cli.add_argument("--out", required=True)
    args = cli.parse_args(argv)
    parse_directory(args.raw, args.out, load_params()["parse"]["pixel_centre"])


if __name__ == "__main__":
    run_main(main)
