"""The tf.data input pipeline: shuffling and on-the-fly augmentation from params.yaml `train.augment`.

Coordinate convention (columns.py): pixel i's centre is at keypoint coordinate i + 0.5, the image
centre at (48, 48), and a horizontal flip maps x to 96 - x. tf.raw_ops.ImageProjectiveTransformV3
samples output pixel (x, y) at input pixel index M @ (x, y, 1) with no half-pixel offset: the pixels
move about the centre in pixel indices, the keypoints about the same point in their coordinates
(tests/test_augment.py proves it).
"""
import numpy as np

from keypoints.columns import CENTRE, IMAGE_SIZE, PIXEL_CENTRE, PIXEL_OFFSET, flip_order

AUGMENT_KEYS = ("flip", "shift", "rotation", "scale", "brightness", "contrast")
FIRST, LAST = PIXEL_OFFSET, IMAGE_SIZE - 1.0 + PIXEL_OFFSET  # the first and last pixel centres


def _check_columns(columns, count):
    """Columns must be (x, y) pairs of the same keypoint, so coordinates can be reshaped to (k/2, 2)."""
    columns = list(columns)
    if len(columns) != count:
        raise ValueError(f"{len(columns)} column names for keypoints with {count} columns")
    for x_column, y_column in zip(columns[0::2], columns[1::2]):
        if not (x_column.endswith("_x") and y_column == x_column[:-2] + "_y"):
            raise ValueError(f"columns must come in (name_x, name_y) pairs, not ({x_column}, {y_column})")
    return columns


def augment_settings(augment):
    """Validated train.augment with defaults: every key known, every amount >= 0."""
    augment = dict(augment or {})
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise ValueError(f"train.augment has unknown keys {unknown}; known: {list(AUGMENT_KEYS)}")
    settings = {"flip": bool(augment.get("flip", False))}
    for key in AUGMENT_KEYS[1:]:
        value = float(augment.get(key) or 0.0)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"train.augment.{key} must be a number >= 0, not {augment[key]!r}")
        settings[key] = value
    if settings["scale"] >= 1:
        raise ValueError(f"train.augment.scale must be below 1 (a relative change), not {settings['scale']}")
    return settings


def affine_transform(images, keypoints, flip, shift_x, shift_y, angle, scale, order):
    """Apply one affine per example to float images (B, 96, 96, 1) and keypoints (B, k), in one op call.

    Per example: optional mirror, rotation by `angle` radians and scaling by `scale` about the image
    centre, then a shift in pixels. flip is a bool (B,); the rest float32 (B,). `order` is the column
    permutation of a flip. Examples whose transformed keypoints would leave the pixel centres get the identity
    instead: a label outside the picture cannot be learnt from it, and clipping it would be wrong.
    Returns (images, keypoints, kept) with kept the bool (B,) of examples actually transformed.
    """
    import tensorflow as tf

    batch = tf.shape(images)[0]
    mirror = tf.where(flip, -1.0, 1.0)
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Forward map p' = centre + shift + A (p - centre), A = scale * R(angle) @ diag(mirror, 1).
    a00, a01 = scale * cos * mirror, -scale * sin
    a10, a11 = scale * sin * mirror, scale * cos
    points = tf.reshape(keypoints, [batch, -1, 2])
    x, y = points[..., 0] - CENTRE, points[..., 1] - CENTRE
    new_x = CENTRE + shift_x[:, None] + a00[:, None] * x + a01[:, None] * y
    new_y = CENTRE + shift_y[:, None] + a10[:, None] * x + a11[:, None] * y
    moved = tf.reshape(tf.stack([new_x, new_y], axis=-1), [batch, -1])
    moved = tf.where(flip[:, None], tf.gather(moved, order, axis=1), moved)
    inside = tf.reduce_all((moved >= FIRST) & (moved <= LAST), axis=1)

    # The op wants the inverse map (output pixel -> input position), in pixel indices:
    # p = centre + A^-1 (p' - centre - shift).
    determinant = a00 * a11 - a01 * a10
    i00, i01 = a11 / determinant, -a01 / determinant
    i10, i11 = -a10 / determinant, a00 / determinant
    offset_x, offset_y = PIXEL_CENTRE + shift_x, PIXEL_CENTRE + shift_y
    inverse = tf.stack([
        i00, i01, PIXEL_CENTRE - i00 * offset_x - i01 * offset_y,
        i10, i11, PIXEL_CENTRE - i10 * offset_x - i11 * offset_y,
        tf.zeros_like(i00), tf.zeros_like(i00),
    ], axis=1)
    identity = tf.constant([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]])
    inverse = tf.where(inside[:, None], inverse, identity)
    # NEAREST (edge) fill: the border of a face crop is hair, background or shoulder, and repeating it
    # adds no structure; REFLECT would mirror eyes and mouth corners into the frame as false features,
    # CONSTANT would add hard black edges the test images never have.
    transformed = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=inverse, output_shape=[IMAGE_SIZE, IMAGE_SIZE],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST",
    )
    return transformed, tf.where(inside[:, None], moved, keypoints), inside


def _augment_batch(images, keypoints, seed, settings, order):
    """Random augmentation of one batch, every draw from this batch's stateless seed pair."""
    import tensorflow as tf

    batch = tf.shape(images)[0]
    draws = tf.random.stateless_uniform([batch, 7], seed=seed)
    symmetric = 2.0 * draws - 1.0  # uniform in [-1, 1)
    if settings["flip"] or settings["shift"] or settings["rotation"] or settings["scale"]:
        flip = draws[:, 0] < 0.5 if settings["flip"] else tf.zeros([batch], tf.bool)
        images, keypoints, _ = affine_transform(
            images, keypoints, flip,
            shift_x=settings["shift"] * symmetric[:, 1],
            shift_y=settings["shift"] * symmetric[:, 2],
            angle=np.deg2rad(settings["rotation"]) * symmetric[:, 3],
            scale=1.0 + settings["scale"] * symmetric[:, 4],
            order=order,
        )
    if settings["brightness"] or settings["contrast"]:
        delta = settings["brightness"] * 255.0 * symmetric[:, 5]
        factor = 1.0 + settings["contrast"] * symmetric[:, 6]
        # Contrast about each image's own mean grey level, so it does not also shift brightness.
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = (images - mean) * factor[:, None, None, None] + mean + delta[:, None, None, None]
        images = tf.clip_by_value(images, 0.0, 255.0)
    return images, keypoints


def steps_per_epoch(rows, batch_size):
    """Batches in one training epoch (the last may be smaller)."""
    return -(-int(rows) // int(batch_size))


def epoch_seed(seed, epoch):
    """The stateless seed pair of one epoch's shuffling and augmentation: a function of (seed, epoch)
    only, so that a fit resumed at epoch k sees the batches an uninterrupted one sees there."""
    import tensorflow as tf

    return tf.random.experimental.stateless_fold_in(tf.constant([int(seed), 0], tf.int64), epoch)


def make_dataset(images, keypoints, columns, batch_size, *, training, seed, augment=None, epochs=(0, 1)):
    """tf.data pipeline of (float32 (B, 96, 96, 1) grey levels 0-255, float32 (B, k) pixel keypoints).

    images: uint8 (N, 96, 96); keypoints: float32 (N, k) without NaN; columns: their k names.
    training: the batches of epochs `epochs` = (first, end), one epoch after the other (fit it with
    steps_per_epoch(N, batch_size)), each epoch shuffled and augmented afresh from (seed, epoch) alone.
    Otherwise batches in row order, untouched.
    """
    import tensorflow as tf

    images = np.asarray(images)
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"images must be uint8 (N, {IMAGE_SIZE}, {IMAGE_SIZE}), not {images.dtype} {images.shape}")
    if keypoints.ndim != 2 or len(keypoints) != len(images):
        raise ValueError(f"keypoints must be (N={len(images)}, k), not {keypoints.shape}")
    if np.isnan(keypoints).any():
        raise ValueError(f"keypoints have NaN in rows {np.flatnonzero(np.isnan(keypoints).any(axis=1))[:10].tolist()}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    columns = _check_columns(columns, keypoints.shape[1])
    settings = augment_settings(augment)

    def to_float(image_batch, keypoint_batch):
        return tf.cast(image_batch, tf.float32)[..., None], keypoint_batch

    # No autotuning model: with it, every iterator's teardown (each model.fit epoch) stalled ~2 s
    # waiting for the tuning thread, 10% of a 640-image epoch (benchmarks/bench_train.py). The
    # pipeline is ~200x faster than the training step, so fixed parallelism loses nothing.
    options = tf.data.Options()
    options.autotune.enabled = False
    if not training:
        dataset = tf.data.Dataset.from_tensor_slices((images, keypoints)).with_options(options)
        dataset = dataset.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return dataset.prefetch(tf.data.AUTOTUNE)

    first, end = map(int, epochs)
    all_images, all_keypoints = tf.constant(images), tf.constant(keypoints)
    order = flip_order(columns) if any(settings.values()) else None

    def batch_of(rows, batch_seed):
        image_batch, keypoint_batch = to_float(tf.gather(all_images, rows), tf.gather(all_keypoints, rows))
        if order is None:
            return image_batch, keypoint_batch
        return _augment_batch(image_batch, keypoint_batch, batch_seed, settings, order)

    def one_epoch(epoch):
        # Stateless draws, not a shuffle buffer or a random dataset reseeded per iteration: those
        # restart their streams with every new fit, so a resumed fit would replay epoch 0's batches.
        seeds = epoch_seed(seed, epoch)
        rows = tf.random.experimental.stateless_shuffle(
            tf.range(len(images), dtype=tf.int64), seed=tf.random.experimental.stateless_fold_in(seeds, 0))
        augment_seed = tf.random.experimental.stateless_fold_in(seeds, 1)
        batch_seeds = tf.data.Dataset.range(steps_per_epoch(len(images), batch_size)).map(
            lambda number: tf.random.experimental.stateless_fold_in(augment_seed, number))
        return tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(rows).batch(batch_size), batch_seeds)

    # Augmenting whole batches makes one transform op call per batch instead of one per image.
    dataset = tf.data.Dataset.range(first, end).with_options(options).flat_map(one_epoch)
    dataset = dataset.map(batch_of, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
