"""Held-out error in pixels, overall and per keypoint; NaN (unlabelled) targets are left out."""
import numpy as np


def errors(predictions, targets):
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {predictions.shape} and targets {targets.shape} differ in shape")
    return predictions - targets


def rmse(predictions, targets):
    difference = errors(predictions, targets)
    labelled = np.isfinite(difference)
    if not labelled.any():
        return float("nan")
    return float(np.sqrt(np.mean(difference[labelled] ** 2)))


def mae(predictions, targets):
    difference = errors(predictions, targets)
    labelled = np.isfinite(difference)
    if not labelled.any():
        return float("nan")
    return float(np.mean(np.abs(difference[labelled])))


def score(name, predictions, targets, columns):
    """Flat metrics: {name}_rmse, {name}_mae, and per keypoint {name}_rmse_{keypoint} (over its x and y)."""
    summary = {f"{name}_rmse": rmse(predictions, targets), f"{name}_mae": mae(predictions, targets)}
    per_keypoint = {}
    for start in range(0, len(columns), 2):
        keypoint = columns[start].removesuffix("_x")
        pair = slice(start, start + 2)
        per_keypoint[f"{name}_rmse_{keypoint}"] = rmse(predictions[:, pair], targets[:, pair])
        per_keypoint[f"{name}_mae_{keypoint}"] = mae(predictions[:, pair], targets[:, pair])
    return summary, per_keypoint
