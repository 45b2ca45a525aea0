"""Stage framing: learn from the training faces how to frame a face as the training crops did.

Writes models/framing.json: the mean shape, each detector's box-to-crop mapping, the spread of the
training faces around the mean shape, and params.yaml's `framing` settings, so that `keypoints
detect` needs nothing but the files in models/.
"""
import gc

if __name__ == "__main__":
    gc.disable()  # while the modules below load: keypoints.process.run_main turns it back on

import argparse
from pathlib import Path

import numpy as np

from keypoints import fileio
from keypoints.faces import make_detectors
from keypoints.framing import learn_framing
from keypoints.params import load_params
from keypoints.process import run_main


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--split", required=True)
    cli.add_argument("--out", required=True)
    args = cli.parse_args(argv)

    settings = load_params()["framing"]
    split = Path(args.split)
    images = np.load(split / "8" / "train_images.npy")
    # Evenly spread over the set, so the sample does not depend on the order of the source.
    rows = np.unique(np.linspace(0, len(images) - 1, min(len(images), settings["learn_faces"])).astype(int))
    keypoints = np.load(split / "30" / "train_keypoints.npy")
    detectors = make_detectors(settings["detectors"], settings["detection_size"])
    framing = learn_framing(images[rows], keypoints, detectors, settings["correction_ridge"])
    for name, found in framing["found"].items():
        print(f"{name}: found a face in {found:.1%} of {len(rows)} training crops; mapping "
              f"{framing['detectors'][name]}")
    framing["settings"] = dict(settings)
    fileio.save_json(args.out, framing)


if __name__ == "__main__":
    run_main(main)
