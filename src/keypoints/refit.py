"""train.refit_outputs: after training, a linear correction of the network's outputs, fitted by least
squares on its own training faces as they are (no augmentation, no dropout), folded into the output layer.

The network learned its output layer on augmented faces (shifted, rotated, scaled, relit) through dropout,
and the best epoch's weights are one noisy point of the descent; faces to predict come as they are. A
(k, k) map of the k outputs plus an offset, fitted on the clean training faces, removes what that leaves
behind (a bias of a few tenths of a pixel, outputs shrunk toward the mean face, keypoints that move
together). It costs one forward pass over the training faces; the saved model is the same network with
other output weights, so every consumer of it (predict_merge, detect, serving, export) gets it.
"""
import numpy as np

from keypoints.evaluate import rmse
from keypoints.predict import predict


def output_correction(predictions, keypoints, ridge):
    """(matrix (k, k), offset (k,)) of the map p -> p @ matrix + offset that fits `keypoints` (N, k) from
    `predictions` (N, k) by least squares, with a ridge penalty of `ridge` on the change from the
    identity (in pixels squared, summed over the faces): the correction is pulled toward none where the
    faces say little."""
    predictions = np.asarray(predictions, np.float64)
    keypoints = np.asarray(keypoints, np.float64)
    if predictions.shape != keypoints.shape or predictions.ndim != 2:
        raise ValueError(f"predictions {predictions.shape} and keypoints {keypoints.shape} must both be (N, k)")
    if not np.isfinite(keypoints).all() or not np.isfinite(predictions).all():
        raise ValueError("the output refit needs every keypoint labelled and every prediction finite")
    if ridge < 0:
        raise ValueError(f"train.refit_ridge must be >= 0, not {ridge}")
    residuals = keypoints - predictions
    centred = predictions - predictions.mean(axis=0)
    outputs = predictions.shape[1]
    change = np.linalg.solve(centred.T @ centred + ridge * np.eye(outputs),
                             centred.T @ (residuals - residuals.mean(axis=0)))
    offset = residuals.mean(axis=0) - predictions.mean(axis=0) @ change
    return np.eye(outputs) + change, offset


def fold_into_output_layer(layer, matrix, offset):
    """Make the Dense `layer` (x -> x @ kernel + bias) compute its old outputs @ matrix + offset."""
    kernel, bias = (np.asarray(weight, np.float64) for weight in layer.get_weights())
    layer.set_weights([(kernel @ matrix).astype(np.float32), (bias @ matrix + offset).astype(np.float32)])


def refit_outputs(model, images, keypoints, ridge, batch_size):
    """Refit `model`'s output layer (named "keypoints", keypoints.model.build_model) on uint8 `images`
    (N, 96, 96) and their `keypoints` (N, k); returns the faces' RMSE in pixels before and after."""
    predictions = predict(model, images, batch_size, flip_average=False)
    matrix, offset = output_correction(predictions, keypoints, ridge)
    fold_into_output_layer(model.get_layer("keypoints"), matrix, offset)
    corrected = np.asarray(predictions, np.float64) @ matrix + offset
    return {"refit_rmse_before": rmse(predictions, keypoints), "refit_rmse_after": rmse(corrected, keypoints)}
