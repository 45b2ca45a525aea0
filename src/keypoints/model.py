"""The reference CNN of the seed article, built from params.yaml's `train.model` group."""
import keras
from keras import layers

from keypoints.columns import IMAGE_SIZE


def build_model(
    outputs,
    filters,
    kernel_sizes,
    convs_per_block,
    leaky_relu_slope,
    dense_units,
    dropout,
    first_stride,
    output_bias=None,
    name=None,
    synchronized_batchnorm=False,
):
    """Blocks of Conv2D(no bias) -> LeakyReLU -> BatchNorm, MaxPool between blocks, then a dense head.

    The architecture comes from params.yaml's `train.model` (the article's: filters 32-512, kernels 5
    then 3, two convolutions per block, LeakyReLU 0.1, Dense 512, Dropout 0.1).
    first_stride: the first convolution's stride; the article's 1 keeps the first block at 96x96, where
    its second convolution alone costs a third of the article's FLOPs; 2 runs it at 48x48, 4x cheaper.
    Inputs are raw 0-255 grey levels, shape (96, 96, 1); outputs are keypoint coordinates in pixels.
    output_bias: None for zeros (the article), or start value of the output layer's bias, e.g. the mean keypoint position. From a zero
    bias Adam needs thousands of steps just to move outputs from 0 to ~48 px; short runs never get there.
    synchronized_batchnorm: BatchNorm's training statistics over the whole global batch, summed across
    the replicas of a tf.distribute strategy (train.distribute: mirrored), rather than over each
    replica's share of it; the same as unsynchronised on one device.
    """
    if len(filters) != len(kernel_sizes):
        raise ValueError(
            f"train.model.filters has {len(filters)} blocks but kernel_sizes has {len(kernel_sizes)}"
        )
    if not filters:
        raise ValueError("train.model.filters must name at least one block")
    if first_stride not in (1, 2):
        raise ValueError(f"train.model.first_stride must be 1 or 2, not {first_stride!r}")
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    # Scaling here rather than in the data keeps the saved model usable on raw pixels. Every conv is
    # followed by LeakyReLU and BatchNorm, both indifferent to input scale, so the article's
    # unscaled network computes the same function.
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    for block, (block_filters, kernel_size) in enumerate(zip(filters, kernel_sizes)):
        if block > 0:
            x = layers.MaxPooling2D(2)(x)
        for conv in range(convs_per_block):
            stride = first_stride if block == 0 and conv == 0 else 1
            x = layers.Conv2D(block_filters, kernel_size, strides=stride, padding="same", use_bias=False)(x)
            x = layers.LeakyReLU(negative_slope=leaky_relu_slope)(x)
            x = layers.BatchNormalization(synchronized=synchronized_batchnorm)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    # float32 output even under mixed precision, so the loss is computed in full precision.
    bias = "zeros" if output_bias is None else keras.initializers.Constant(list(map(float, output_bias)))
    outputs_layer = layers.Dense(outputs, dtype="float32", bias_initializer=bias, name="keypoints")(x)
    return keras.Model(inputs, outputs_layer, name=name or f"model_{outputs}")


def forward_flops(model):
    """Floating-point operations of one image's forward pass, counted from the model's layers: a
    multiply-add is 2, convolutions and dense layers only (the rest is well under 1%). A training
    step costs about 3x this (forward, then gradients of activations and of weights)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            height, width, channels_out = layer.output.shape[1:]
            kernel_height, kernel_width = layer.kernel_size
            total += 2 * height * width * kernel_height * kernel_width * layer.input.shape[-1] * channels_out
        elif isinstance(layer, layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total


def compile_model(model, optimizer, learning_rate, loss, jit_compile):
    optimizers = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD}
    if optimizer not in optimizers:
        raise ValueError(f"train.optimizer must be one of {sorted(optimizers)}, not {optimizer!r}")
    model.compile(
        optimizer=optimizers[optimizer](learning_rate=learning_rate),
        loss=loss,
        metrics=["mae"],
        jit_compile=jit_compile,
    )
    return model
