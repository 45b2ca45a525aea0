"""Stage split: the 8-value and 30-value training subsets, each with a seeded held-out part."""
import gc

if __name__ == "__main__":
    gc.disable()  # while the modules below load: keypoints.process.run_main turns it back on

import argparse
from pathlib import Path

import numpy as np

from keypoints.columns import EIGHT_INDICES, KEYPOINT_COLUMNS
from keypoints.params import load_params
from keypoints.process import run_main
from keypoints.split import split_rows, write_subset


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--parsed", required=True)
    cli.add_argument("--out", required=True)
    args = cli.parse_args(argv)

    params = load_params()["split"]
    images = np.load(Path(args.parsed) / "train_images.npy")
    keypoints = np.load(Path(args.parsed) / "train_keypoints.npy")
    subsets = split_rows(keypoints, params["holdout_fraction"], params["seed"])
    for name, columns in (("8", EIGHT_INDICES), ("30", list(range(len(KEYPOINT_COLUMNS))))):
        train_rows, holdout_rows = subsets[name]
        write_subset(Path(args.out) / name, images, keypoints, train_rows, holdout_rows, columns)


if __name__ == "__main__":
    run_main(main)
