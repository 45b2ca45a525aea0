"""Precise BatchNorm: BatchNormalization's moving statistics re-estimated before each validation.

Keras keeps running averages with momentum 0.99, which need several hundred steps to forget their
initial values and lag behind the weights: on a small or short fit, inference-mode outputs
(validation, EarlyStopping, ReduceLROnPlateau, the saved model) then see statistics the network
never trained with, and score no better than the mean face.
"""
import keras
import numpy as np
import tensorflow as tf


def calibration_rows(count, limit):
    """Evenly spaced rows, at most `limit`: deterministic, and spread over the whole set."""
    if limit <= 0 or count == 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, count - 1, min(count, int(limit))).round().astype(np.int64))


def batchnorm_calibrator(model):
    """A function (images uint8 (n, 96, 96), batch_size) that sets each BatchNormalization layer's
    moving mean and variance to its input statistics on those images, averaged over batches.
    Its graph is traced once, so calling it every epoch costs about one forward pass."""
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return lambda images, batch_size: None
    probe = keras.Model(model.input, [layer.input for layer in layers])

    @tf.function(reduce_retracing=True)
    def batch_moments(batch):
        # Training mode, as during the fit: upstream layers normalise with batch statistics. (Their
        # running averages move too; every layer is overwritten below.)
        outputs = probe(batch, training=True)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [tf.nn.moments(tf.cast(output, tf.float32), axes=list(range(len(output.shape) - 1)))
                for output in outputs]

    def calibrate(images, batch_size):
        if len(images) == 0:
            return
        sums = None
        batches = 0
        for start in range(0, len(images), batch_size):
            batch = tf.constant(images[start:start + batch_size, ..., None], dtype=tf.float32)
            moments = [(mean.numpy().astype(np.float64), variance.numpy().astype(np.float64))
                       for mean, variance in batch_moments(batch)]
            sums = moments if sums is None else [(m0 + m1, v0 + v1) for (m0, v0), (m1, v1) in zip(sums, moments)]
            batches += 1
        for layer, (mean, variance) in zip(layers, sums):
            layer.moving_mean.assign((mean / batches).astype(np.float32))
            layer.moving_variance.assign((variance / batches).astype(np.float32))

    return calibrate


class PreciseBatchNorm(keras.callbacks.Callback):
    """Re-estimates BatchNorm statistics on `images` right before each validation inside fit
    (Keras calls on_test_begin just before it validates the epoch's weights)."""

    def __init__(self, images, batch_size):
        super().__init__()
        self.images = images
        self.batch_size = batch_size

    def on_train_begin(self, logs=None):
        self.calibrate = batchnorm_calibrator(self.model)

    def on_test_begin(self, logs=None):
        self.calibrate(self.images, self.batch_size)
