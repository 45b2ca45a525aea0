"""Predict with both models, merge them, and build the Kaggle submission."""
import numpy as np
import pandas as pd

from keypoints.columns import (CENTRE, COORDINATE_MAX, COORDINATE_MIN, EIGHT_INDICES, IMAGE_SIZE,
                               KEYPOINT_COLUMNS, columns_for, flip_order)


def unflip(predictions):
    """Keypoints (N, k) predicted on mirrored faces, mapped back onto the faces: x -> 96 - x, and each
    left/right pair swapped back."""
    restored = np.asarray(predictions, np.float32)[:, flip_order(columns_for(predictions.shape[1]))]
    restored[:, 0::2] = 2 * CENTRE - restored[:, 0::2]
    return restored


def flip_averaged(predictions, mirrored_predictions):
    """Test-time flip averaging: a face and its mirror image are two views of one face, and their
    errors partly cancel."""
    return (np.asarray(predictions, np.float32) + unflip(mirrored_predictions)) / 2


def shift_views(shift):
    """(dx, dy) of the views predict.shift_average averages: the face itself and, unless 0, the face
    moved `shift` pixels right, left, down and up."""
    if shift != int(shift) or shift < 0:
        raise ValueError(f"predict.shift_average must be a whole number of pixels >= 0, not {shift!r}")
    shift = int(shift)
    return [(0, 0)] + ([(shift, 0), (-shift, 0), (0, shift), (0, -shift)] if shift else [])


def shifted(batch, dx, dy, concat):
    """Faces (n, 96, 96, 1) moved dx pixels right and dy down, the uncovered border filled with the
    edge pixels, as augment's shifts fill it. `concat`: np.concatenate or tf.concat."""
    if dx > 0:
        batch = concat([batch[:, :, :1]] * dx + [batch[:, :, :-dx]], 2)
    elif dx < 0:
        batch = concat([batch[:, :, -dx:]] + [batch[:, :, -1:]] * -dx, 2)
    if dy > 0:
        batch = concat([batch[:, :1]] * dy + [batch[:, :-dy]], 1)
    elif dy < 0:
        batch = concat([batch[:, -dy:]] + [batch[:, -1:]] * -dy, 1)
    return batch


def shift_back(predictions, dx, dy):
    """Keypoints predicted on a face moved by (dx, dy), in the face's own coordinates."""
    offsets = np.tile(np.array([dx, dy], np.float32), predictions.shape[-1] // 2)
    return predictions - offsets


def predict(model, images, batch_size, flip_average, shift_average=0):
    """Keypoints (N, k) in pixels for uint8 images (N, 96, 96); an empty input gives (0, k).
    flip_average: also predict on the mirrored faces and average (predict.flip_average);
    shift_average: also on the faces moved that many pixels each way, and average (predict.shift_average)."""
    outputs = model.output_shape[-1]
    if len(images) == 0:
        return np.zeros((0, outputs), np.float32)
    batch = images[..., np.newaxis].astype(np.float32)
    views = []
    for dx, dy in shift_views(shift_average):
        view = shifted(batch, dx, dy, np.concatenate)
        predictions = np.asarray(model.predict(view, batch_size=batch_size, verbose=0), dtype=np.float32)
        if flip_average:
            mirrored = model.predict(view[:, :, ::-1], batch_size=batch_size, verbose=0)
            predictions = flip_averaged(predictions, mirrored)
        views.append(shift_back(predictions, dx, dy))
    return views[0] if len(views) == 1 else np.mean(views, axis=0, dtype=np.float32)


def merge(predictions_30, predictions_8):
    """model_30's predictions with the 8 columns model_8 learned from ~3x more faces put in their place."""
    if predictions_30.shape[0] != predictions_8.shape[0]:
        raise ValueError(f"cannot merge {predictions_30.shape[0]} rows of model_30 with {predictions_8.shape[0]} of model_8")
    if predictions_30.shape[1] != len(KEYPOINT_COLUMNS) or predictions_8.shape[1] != len(EIGHT_INDICES):
        raise ValueError(f"merge expects (N, 30) and (N, 8) predictions, got {predictions_30.shape} and {predictions_8.shape}")
    merged = predictions_30.copy()
    merged[:, EIGHT_INDICES] = predictions_8
    return merged


def predict_merged(model_8, model_30, images, batch_size, flip_average, shift_average=0):
    """Merged keypoints (N, 30) in pixels for uint8 images (N, 96, 96): both models, then merge."""
    return merge(predict(model_30, images, batch_size, flip_average, shift_average),
                 predict(model_8, images, batch_size, flip_average, shift_average))


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


def merge_indices():
    """Columns of [model_30's 30, model_8's 8] giving the merged 30: model_8's where it has them."""
    indices = list(range(len(KEYPOINT_COLUMNS)))
    for position, column in enumerate(EIGHT_INDICES):
        indices[column] = len(KEYPOINT_COLUMNS) + position
    return indices


def unflip_graph(tf, predictions):
    """predict.unflip as graph operations: each left/right pair swapped back, then x -> 2 * CENTRE - x."""
    outputs = predictions.shape[-1]
    restored = tf.gather(predictions, flip_order(columns_for(outputs)), axis=1)
    is_x = np.arange(outputs) % 2 == 0
    return restored * np.where(is_x, -1.0, 1.0).astype(np.float32) + np.where(is_x, 2 * CENTRE, 0.0).astype(np.float32)


def merged_function(model_8, model_30, flip_average, shift_average=0):
    """A tf.function faces (n, 96, 96) float32 -> merged keypoints (n, 30). The views of flip and shift
    averaging go through each model as one batch: one call per model, whatever their number."""
    import tensorflow as tf

    shifts = shift_views(shift_average)

    def averaged(model, batch):
        views = [shifted(batch, dx, dy, tf.concat) for dx, dy in shifts]
        if flip_average:
            views += [tf.reverse(view, axis=[2]) for view in views]
        if len(views) == 1:
            return model(batch, training=False)
        per_view = tf.split(model(tf.concat(views, axis=0), training=False), len(views), axis=0)
        if flip_average:
            per_view = [(plain + unflip_graph(tf, mirrored)) / 2
                        for plain, mirrored in zip(per_view[:len(shifts)], per_view[len(shifts):])]
        restored = [shift_back(view, dx, dy) for view, (dx, dy) in zip(per_view, shifts)]
        return tf.add_n(restored) / len(restored)

    @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE], tf.float32, name="faces")])
    def keypoints(faces):
        batch = faces[..., tf.newaxis]
        predictions_30, predictions_8 = averaged(model_30, batch), averaged(model_8, batch)
        return {"keypoints": tf.gather(tf.concat([predictions_30, predictions_8], axis=1), merge_indices(), axis=1)}

    return keypoints


def merged_predictor(model_8, model_30, flip_average, shift_average=0):
    """A function uint8 images (n, 96, 96) -> merged keypoints (n, 30) for calls on a few faces at a
    time (photos, video frames): merged_function's one traced graph, without Keras' per-call `predict`
    overhead, which costs more than the convolutions for a batch of one. The exported TFLite file is
    that same graph."""
    import tensorflow as tf

    function = merged_function(model_8, model_30, flip_average, shift_average)

    def predict_faces(images):
        if len(images) == 0:
            return np.zeros((0, len(KEYPOINT_COLUMNS)), np.float32)
        return function(tf.constant(np.asarray(images), tf.float32))["keypoints"].numpy()

    return predict_faces
