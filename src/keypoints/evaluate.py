"""Held-out error in pixels, overall and per keypoint; NaN (unlabelled) targets are left out."""
import numpy as np


def labelled_errors(predictions, targets):
    """predictions - targets, flat, where the target is labelled."""
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {predictions.shape} and targets {targets.shape} differ in shape")
    difference = predictions - targets
    return difference[np.isfinite(difference)]


def rmse(predictions, targets):
    difference = labelled_errors(predictions, targets)
    return float(np.sqrt(np.mean(difference**2))) if difference.size else float("nan")


def mae(predictions, targets):
    difference = labelled_errors(predictions, targets)
    return float(np.mean(np.abs(difference))) if difference.size else float("nan")


def score(name, predictions, targets, columns):
    """Flat metrics: {name}_rmse, {name}_mae, and per keypoint {name}_rmse_{keypoint} (over its x and y)."""
    if labelled_errors(predictions, targets).size == 0:
        # NaN metrics are no JSON and compare as nothing in `dvc exp show`: refuse them.
        raise ValueError(f"{name}: no labelled held-out values to score ({len(targets)} held-out rows); "
                         "split.holdout_fraction must hold some rows out")
    summary = {f"{name}_rmse": rmse(predictions, targets), f"{name}_mae": mae(predictions, targets)}
    per_keypoint = {}
    for start in range(0, len(columns), 2):
        keypoint = columns[start].removesuffix("_x")
        pair = slice(start, start + 2)
        per_keypoint[f"{name}_rmse_{keypoint}"] = rmse(predictions[:, pair], targets[:, pair])
        per_keypoint[f"{name}_mae_{keypoint}"] = mae(predictions[:, pair], targets[:, pair])
    return summary, per_keypoint
