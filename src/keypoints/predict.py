"""Predict with both models, merge them, and build the Kaggle submission."""
import numpy as np
import pandas as pd

from keypoints.columns import (CENTRE, COORDINATE_MAX, COORDINATE_MIN, EIGHT_INDICES, KEYPOINT_COLUMNS,
                               columns_for, flip_order)


def unflip(predictions):
    """Keypoints (N, k) predicted on mirrored faces, mapped back onto the faces: x -> 95 - x, and each
    left/right pair swapped back."""
    restored = np.asarray(predictions, np.float32)[:, flip_order(columns_for(predictions.shape[1]))]
    restored[:, 0::2] = 2 * CENTRE - restored[:, 0::2]
    return restored


def flip_averaged(predictions, mirrored_predictions):
    """Test-time flip averaging: a face and its mirror image are two views of one face, and their
    errors partly cancel."""
    return (np.asarray(predictions, np.float32) + unflip(mirrored_predictions)) / 2


def predict(model, images, batch_size, flip_average):
    """Keypoints (N, k) in pixels for uint8 images (N, 96, 96); an empty input gives (0, k).
    flip_average: also predict on the mirrored faces and average (predict.flip_average)."""
    outputs = model.output_shape[-1]
    if len(images) == 0:
        return np.zeros((0, outputs), np.float32)
    batch = images[..., np.newaxis].astype(np.float32)
    predictions = np.asarray(model.predict(batch, batch_size=batch_size, verbose=0), dtype=np.float32)
    if flip_average:
        mirrored = model.predict(batch[:, :, ::-1], batch_size=batch_size, verbose=0)
        predictions = flip_averaged(predictions, mirrored)
    return predictions


def merge(predictions_30, predictions_8):
    """model_30's predictions with the 8 columns model_8 learned from ~3x more faces put in their place."""
    if predictions_30.shape[0] != predictions_8.shape[0]:
        raise ValueError(f"cannot merge {predictions_30.shape[0]} rows of model_30 with {predictions_8.shape[0]} of model_8")
    if predictions_30.shape[1] != len(KEYPOINT_COLUMNS) or predictions_8.shape[1] != len(EIGHT_INDICES):
        raise ValueError(f"merge expects (N, 30) and (N, 8) predictions, got {predictions_30.shape} and {predictions_8.shape}")
    merged = predictions_30.copy()
    merged[:, EIGHT_INDICES] = predictions_8
    return merged


def predict_merged(model_8, model_30, images, batch_size, flip_average):
    """Merged keypoints (N, 30) in pixels for uint8 images (N, 96, 96): both models, then merge."""
    return merge(predict(model_30, images, batch_size, flip_average),
                 predict(model_8, images, batch_size, flip_average))


def submission(lookup, image_ids, keypoints):
    """Kaggle's RowId,Location rows for each (ImageId, FeatureName) the lookup table asks for."""
    row_of_image = pd.Series(np.arange(len(image_ids)), index=image_ids)
    column_of_feature = pd.Series(np.arange(len(KEYPOINT_COLUMNS)), index=KEYPOINT_COLUMNS)
    missing = set(lookup["ImageId"]) - set(image_ids)
    if missing:
        raise ValueError(f"IdLookupTable asks for ImageIds missing from test.csv: {sorted(missing)[:5]}")
    rows = row_of_image[lookup["ImageId"].to_numpy()].to_numpy()
    columns = column_of_feature[lookup["FeatureName"].to_numpy()].to_numpy()
    locations = np.clip(keypoints[rows, columns], COORDINATE_MIN, COORDINATE_MAX) if len(lookup) else []
    return pd.DataFrame({"RowId": lookup["RowId"].to_numpy(), "Location": np.round(locations, 4)})


def keypoint_frame(image_ids, keypoints):
    frame = pd.DataFrame(keypoints, columns=KEYPOINT_COLUMNS)
    frame.insert(0, "ImageId", image_ids)
    return frame


def merged_predictor(model_8, model_30, flip_average):
    """A function uint8 images (n, 96, 96) -> merged keypoints (n, 30) for calls on a few faces at a
    time (photos, video frames): both models run in one traced graph, without Keras' per-call
    `predict` overhead, which costs more than the convolutions for a batch of one. flip_average: the
    mirrored faces go through in the same batch, and the two views are averaged."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def both(batch):
        if flip_average:
            batch = tf.concat([batch, tf.reverse(batch, axis=[2])], axis=0)
        return model_30(batch, training=False), model_8(batch, training=False)

    def predict_faces(images):
        if len(images) == 0:
            return np.zeros((0, len(KEYPOINT_COLUMNS)), np.float32)
        predictions_30, predictions_8 = (p.numpy() for p in both(tf.constant(np.asarray(images)[..., np.newaxis], tf.float32)))
        if flip_average:
            count = len(images)
            predictions_30 = flip_averaged(predictions_30[:count], predictions_30[count:])
            predictions_8 = flip_averaged(predictions_8[:count], predictions_8[count:])
        return merge(predictions_30, predictions_8)

    return predict_faces
