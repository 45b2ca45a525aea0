#!/usr/bin/env python3
"""The exported LiteRT/TFLite file against the Keras models it came from: parity and faces per second.

  .venv/bin/python benchmarks/bench_export.py [--model-8 models/model_8.keras --model-30 models/model_30.keras]
      [--faces data/split/30/holdout_images.npy] [--seconds 3]

With trained models given, they are exported and compared on the given faces; without, two untrained
models of the default preset's network (speed does not depend on the weights) on random faces.
predict.flip_average as params.yaml sets it (the default: two views per face), in both. Measured, at
batch 1 (a live face) and 32: the Keras merged predictor (both models in one traced graph:
keypoints.predict.merged_predictor) and the TFLite interpreter (tf.lite.Interpreter, XNNPACK, one and
two threads). Writes benchmarks/results/export.json.
"""
import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def faces_per_second(predict_faces, batch, seconds):
    faces = np.random.default_rng(0).integers(0, 256, (batch, 96, 96), dtype=np.uint8)
    predict_faces(faces)  # trace, or size the interpreter
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or calls < 5:
        predict_faces(faces)
        calls += 1
    return calls * batch / (time.perf_counter() - started)


def models(args):
    import keras

    if args.model_8 and args.model_30:
        return keras.models.load_model(args.model_8), keras.models.load_model(args.model_30), "trained"
    from bench_train import build

    return build("default", 8)[0], build("default", 30)[0], "untrained default network"


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--model-8")
    cli.add_argument("--model-30")
    cli.add_argument("--faces", help=".npy of uint8 faces (n, 96, 96) for the parity check")
    cli.add_argument("--seconds", type=float, default=3.0)
    cli.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "export.json")
    args = cli.parse_args(argv)

    from keypoints.export import save_tflite, tflite_predictor
    from keypoints.params import load_params
    from keypoints.predict import merged_predictor, predict_merged

    flip_average = load_params(ROOT / "params.yaml")["predict"]["flip_average"]
    model_8, model_30, kind = models(args)
    faces = (np.load(args.faces) if args.faces
             else np.random.default_rng(1).integers(0, 256, (256, 96, 96), dtype=np.uint8))
    result = {"models": kind, "flip_average": flip_average, "parity_faces": len(faces)}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "keypoints.tflite"
        started = time.perf_counter()
        result["tflite_bytes"] = save_tflite(path, model_8, model_30, flip_average)
        result["convert_seconds"] = time.perf_counter() - started
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice that ai_edge_litert replaces it
            runners = {f"tflite_{threads}_threads": tflite_predictor(path, threads) for threads in (1, 2)}
        expected = predict_merged(model_8, model_30, faces, 256, flip_average)
        result["max_deviation_px"] = float(np.abs(runners["tflite_2_threads"](faces) - expected).max())
        runners = {"keras_merged_predictor": merged_predictor(model_8, model_30, flip_average), **runners}
        for name, runner in runners.items():
            for batch in (1, 32):
                result[f"{name}_faces_per_second_batch_{batch}"] = faces_per_second(runner, batch, args.seconds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
