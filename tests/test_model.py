import keras
import numpy as np
import pytest

from conftest import compile_settings, model_settings
from keypoints.model import build_model, compile_model


def test_reference_model_matches_the_article():
    model = build_model(30, **model_settings())  # params.yaml's train.model: the article's network
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convolutions] == [32, 32, 64, 64, 128, 128, 256, 256, 512, 512]
    assert [layer.kernel_size for layer in convolutions] == [(5, 5)] * 2 + [(3, 3)] * 8
    assert not any(layer.use_bias for layer in convolutions)
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == 4
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 10
    slopes = [layer.negative_slope for layer in model.layers if isinstance(layer, keras.layers.LeakyReLU)]
    assert slopes == [pytest.approx(0.1)] * 10
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [512, 30]
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [pytest.approx(0.1)]
    assert model.input_shape == (None, 96, 96, 1)


@pytest.mark.parametrize("outputs", [8, 30])
def test_tiny_model_predicts_its_outputs(outputs):
    model = compile_model(build_model(outputs, **model_settings(filters=[4, 8], kernel_sizes=[3, 3], dense_units=8)),
                          **compile_settings())
    predictions = model.predict(np.zeros((3, 96, 96, 1), np.float32), verbose=0)
    assert predictions.shape == (3, outputs)
    assert model.loss == "mean_squared_error"


def test_output_bias_starts_at_the_given_keypoints():
    mean = np.linspace(10, 80, 8)
    model = build_model(8, **model_settings(filters=[2], kernel_sizes=[3], dense_units=4), output_bias=mean)
    np.testing.assert_allclose(model.get_layer("keypoints").bias.numpy(), mean, rtol=1e-6)


def test_mismatched_blocks_are_rejected():
    with pytest.raises(ValueError, match="kernel_sizes"):
        build_model(8, **model_settings(filters=[4, 8], kernel_sizes=[3]))
    with pytest.raises(ValueError, match="optimizer"):
        compile_model(build_model(8, **model_settings(filters=[2], kernel_sizes=[3], dense_units=4)),
                      **compile_settings(optimizer="nadam-ish"))
