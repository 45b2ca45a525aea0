"""Stage export: the merged network (both models, the merge, flip averaging as predict.flip_average
says) as one LiteRT/TFLite file, checked against the pipeline's own held-out predictions.

metrics/export.json records the file's size and its largest deviation, in pixels, from predict_merge's
merged keypoints of the held-out faces (README: Registry, serving and export).
"""
import gc

if __name__ == "__main__":
    gc.disable()  # while the modules below load: keypoints.process.run_main turns it back on

import argparse
import os
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from keypoints import fileio
from keypoints.export import save_tflite, tflite_predictor
from keypoints.params import load_params
from keypoints.process import run_main


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--model-8", required=True)
    cli.add_argument("--model-30", required=True)
    cli.add_argument("--split", required=True)
    cli.add_argument("--predictions", required=True, help="predict_merge's folder: holdout_merged.npy")
    cli.add_argument("--out", required=True)
    cli.add_argument("--metrics", required=True)
    args = cli.parse_args(argv)

    settings = load_params()["predict"]
    size = save_tflite(args.out, keras.models.load_model(args.model_8), keras.models.load_model(args.model_30),
                       settings["flip_average"], settings["shift_average"])
    faces = np.load(Path(args.split) / "30" / "holdout_images.npy")
    expected = np.load(Path(args.predictions) / "holdout_merged.npy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice that ai_edge_litert replaces it
        exported = tflite_predictor(args.out)(faces)
    deviation = float(np.abs(exported - expected).max()) if len(faces) else 0.0
    fileio.save_json(args.metrics, {"tflite_max_deviation_px": deviation, "tflite_bytes": size,
                                    "rows_holdout_30": len(faces)})
    print(f"{args.out}: {size} bytes; at most {deviation:.2e} px from predict_merge on {len(faces)} held-out faces")


if __name__ == "__main__":
    run_main(main)
