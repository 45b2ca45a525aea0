"""Stage evaluate: held-out RMSE/MAE of model_8, model_30 and the merge; faces and curves as PNGs."""
import gc

if __name__ == "__main__":
    gc.disable()  # while the modules below load: keypoints.process.run_main turns it back on

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from keypoints import fileio, tracking
from keypoints.columns import EIGHT_COLUMNS, KEYPOINT_COLUMNS
from keypoints.evaluate import score
from keypoints.params import flatten, load_params, settings_hash
from keypoints.plots import curves_figure, faces_figure
from keypoints.process import run_main


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--split", required=True)
    cli.add_argument("--predictions", required=True)
    cli.add_argument("--histories", nargs=2, required=True, help="history CSVs of model_8 then model_30")
    cli.add_argument("--metrics", required=True)
    cli.add_argument("--per-keypoint", required=True)
    cli.add_argument("--faces", required=True)
    cli.add_argument("--curves", required=True)
    args = cli.parse_args(argv)

    params = load_params()
    split, predictions = Path(args.split), Path(args.predictions)
    truth_8 = np.load(split / "8" / "holdout_keypoints.npy")
    truth_30 = np.load(split / "30" / "holdout_keypoints.npy")

    summary, per_keypoint = {}, {}
    for name, file, truth, columns in (
        ("merged", "holdout_merged.npy", truth_30, KEYPOINT_COLUMNS),
        ("model_8", "holdout_8.npy", truth_8, EIGHT_COLUMNS),
        ("model_30", "holdout_30.npy", truth_30, KEYPOINT_COLUMNS),
    ):
        errors, details = score(name, np.load(predictions / file), truth, columns)
        summary.update(errors)
        per_keypoint.update(details)
    # `dvc exp show` lists the keys in file order: the RMSEs first, the merged one leading. Counts are
    # named rows_* so that MLflow, which sorts by name, also lists the errors first.
    metrics = {key: summary[key] for kind in ("rmse", "mae") for key in summary if key.endswith(kind)}
    metrics.update(rows_holdout_8=len(truth_8), rows_holdout_30=len(truth_30))
    fileio.save_json(args.metrics, metrics)
    fileio.save_json(args.per_keypoint, per_keypoint)

    faces = params["evaluate"]["faces"]
    images = np.load(split / "30" / "holdout_images.npy")[:faces]
    merged = np.load(predictions / "holdout_merged.npy")[:faces]
    fileio.save_figure(args.faces, faces_figure(images, truth_30[:faces], merged))
    histories = {name: pd.read_csv(path) for name, path in zip(("model_8", "model_30"), args.histories)}
    fileio.save_figure(args.curves, curves_figure(histories))
    print("  ".join(f"{key}={value:.3f}" for key, value in metrics.items() if key.endswith("rmse")))

    # The whole of params.yaml on the evaluate run lets MLflow's compare view line experiments up.
    holdout_files = [split / name / "holdout_keypoints.npy" for name in ("8", "30")]
    with tracking.Run(
        params["mlflow"]["experiment"], "evaluate",
        params_hash=settings_hash(params), data_checksum=tracking.files_checksum(holdout_files),
    ) as run:
        run.log_params(flatten(params))
        run.log_metrics(metrics)
        # Prefixed so MLflow lists (and groups) them after the headline metrics, not among them.
        run.log_metrics({f"per_keypoint/{key}": value for key, value in per_keypoint.items()})
        for path in (args.metrics, args.per_keypoint, args.faces, args.curves):
            run.log_artifact(path)
        run.finish()


if __name__ == "__main__":
    run_main(main)
