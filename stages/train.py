"""Stage train_8 / train_30: fit the CNN on one subset; write the model, its history and summary."""
import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from keypoints import fileio, tracking
from keypoints.columns import columns_for
from keypoints.params import load_params, settings_hash, training_settings
from keypoints.train import fit, history_frame

cli = argparse.ArgumentParser(description=__doc__)
cli.add_argument("--outputs", type=int, required=True, choices=[8, 30])
cli.add_argument("--data", required=True)
cli.add_argument("--model", required=True)
cli.add_argument("--history", required=True)
cli.add_argument("--metrics", required=True)
cli.add_argument("--checkpoints", required=True)
args = cli.parse_args()

params = load_params()
settings = training_settings(params, args.outputs)
data = Path(args.data)
images = np.load(data / "train_images.npy")
keypoints = np.load(data / "train_keypoints.npy")
data_checksum = tracking.files_checksum([data / "train_images.npy", data / "train_keypoints.npy"])


def open_run(resume_run_id):
    return tracking.Run(
        params["mlflow"]["experiment"],
        f"train_{args.outputs}",
        params_hash=settings_hash(settings),
        data_checksum=data_checksum,
        resume_run_id=resume_run_id,
    )


model, history, summary, run, checkpoint = fit(
    images, keypoints, columns_for(args.outputs), settings, args.checkpoints, open_run
)
with fileio.atomic_path(args.model) as temporary:
    model.save(temporary)
fileio.save_csv(args.history, history_frame(history))
fileio.save_json(args.metrics, summary)
run.log_metrics(summary)
run.log_artifact(args.model, "model")
run.log_artifact(args.history)
run.finish()
checkpoint.clear()
