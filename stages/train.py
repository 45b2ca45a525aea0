"""Stage train_8 / train_30: fit the CNN on one subset; write the model, its history and summary.

The stage owns the MLflow run and the checkpoint: it opens both, calls keypoints.train.fit, writes
the outputs, and only then finishes the run and deletes the checkpoint.
"""
import gc

if __name__ == "__main__":
    gc.disable()  # while the modules below load: keypoints.process.run_main turns it back on

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from keypoints import fileio, tracking
from keypoints.checkpoint import Checkpoint, fingerprint
from keypoints.columns import columns_for
from keypoints.params import load_params, overridden_train_keys, settings_hash, training_settings
from keypoints.process import run_main
from keypoints.train import fit, history_frame


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--outputs", type=int, required=True, choices=[8, 30])
    cli.add_argument("--data", required=True)
    cli.add_argument("--model", required=True)
    cli.add_argument("--history", required=True)
    cli.add_argument("--metrics", required=True)
    cli.add_argument("--checkpoints", required=True)
    cli.add_argument("--start-from", help="trained model_8, read when train.start_from_model_8 is true")
    args = cli.parse_args(argv)

    params = load_params()
    settings = training_settings(params, args.outputs)
    overridden = overridden_train_keys(params, args.outputs)
    if overridden:
        print(f"train_{args.outputs}: preset {params['train']['preset']!r} (or per_model) overrides "
              + ", ".join(f"train.{key}={old} (uses {new})" for key, (old, new) in overridden.items()),
              flush=True)
    data = Path(args.data)
    files = [data / "train_images.npy", data / "train_keypoints.npy"]
    images, keypoints = (np.load(file) for file in files)
    initial_model = None
    if settings["start_from_model_8"]:
        if args.outputs != 30 or not args.start_from:
            raise ValueError("train.start_from_model_8 applies to model_30 only (set it under "
                             "per_model.model_30), whose stage passes --start-from models/model_8.keras")
        import keras

        files.append(Path(args.start_from))  # a new model_8 is new training data: a new fingerprint
        initial_model = keras.models.load_model(args.start_from)
    data_checksum = tracking.files_checksum(files)

    checkpoint = Checkpoint(args.checkpoints, fingerprint(settings, data_checksum))
    with tracking.Run(
        params["mlflow"]["experiment"], f"train_{args.outputs}",
        params_hash=settings_hash(settings), data_checksum=data_checksum, resume_run_id=checkpoint.run_id,
    ) as run:
        model, history, summary = fit(images, keypoints, columns_for(args.outputs), settings, checkpoint, run, initial_model)
        with fileio.atomic_path(args.model) as temporary:
            model.save(temporary)
        fileio.save_csv(args.history, history_frame(history))
        # Named per model, so `dvc exp show` heads the columns of both files with short, distinct names.
        fileio.save_json(args.metrics, {f"model_{args.outputs}_{key}": value for key, value in summary.items()})
        run.log_metrics(summary)
        run.log_artifact(args.model, "model")
        run.log_artifact(args.history)
        run.finish()
    checkpoint.clear()


if __name__ == "__main__":
    run_main(main)
