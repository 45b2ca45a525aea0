"""Stage predict_merge: both models on the held-out and test images; merged keypoints; submission.csv."""
import gc

if __name__ == "__main__":
    gc.disable()  # while the modules below load: keypoints.process.run_main turns it back on

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd

from keypoints import fileio
from keypoints.columns import to_data_convention
from keypoints.params import load_params
from keypoints.predict import keypoint_frame, merge, predict, predict_merged, submission
from keypoints.process import run_main


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--split", required=True)
    cli.add_argument("--parsed", required=True)
    cli.add_argument("--model-8", required=True)
    cli.add_argument("--model-30", required=True)
    cli.add_argument("--out", required=True)
    cli.add_argument("--submission", required=True)
    args = cli.parse_args(argv)

    params = load_params()
    settings, pixel_centre = params["predict"], params["parse"]["pixel_centre"]
    batch_size, views = settings["batch_size"], (settings["flip_average"], settings["shift_average"])
    split, parsed = Path(args.split), Path(args.parsed)
    model_8 = keras.models.load_model(args.model_8)
    model_30 = keras.models.load_model(args.model_30)

    holdout_8 = np.load(split / "8" / "holdout_images.npy")
    holdout_30 = np.load(split / "30" / "holdout_images.npy")
    test_images = np.load(parsed / "test_images.npy")
    test_ids = np.load(parsed / "test_ids.npy")

    with fileio.atomic_dir(Path(args.out)) as out:
        np.save(out / "holdout_8.npy", predict(model_8, holdout_8, batch_size, *views))
        holdout_30_predictions = predict(model_30, holdout_30, batch_size, *views)
        np.save(out / "holdout_30.npy", holdout_30_predictions)
        np.save(out / "holdout_merged.npy",
                merge(holdout_30_predictions, predict(model_8, holdout_30, batch_size, *views)))
        # The held-out predictions stay in the project's convention, as the split's labels are; the test
        # keypoints go out in the data's own.
        test_merged = to_data_convention(predict_merged(model_8, model_30, test_images, batch_size, *views), pixel_centre)
        keypoint_frame(test_ids, test_merged).to_csv(out / "test_keypoints.csv", index=False)

    lookup = pd.read_csv(parsed / "id_lookup.csv")
    fileio.save_csv(args.submission, submission(lookup, test_ids, test_merged))
    print(f"{args.submission}: {len(lookup)} rows for {len(test_ids)} test images")


if __name__ == "__main__":
    run_main(main)
