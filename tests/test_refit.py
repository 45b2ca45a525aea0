"""train.refit_outputs: the least-squares output correction, and its folding into the output layer."""
import numpy as np
import pytest

from conftest import model_settings
from keypoints.model import build_model
from keypoints.refit import fold_into_output_layer, output_correction, refit_outputs


def distorted(rows=400, outputs=8, seed=0):
    """True keypoints and predictions that shrink them toward the mean, mix two columns and sit 0.4 px
    left: what a network fitted on augmented faces can leave behind."""
    generator = np.random.default_rng(seed)
    truth = generator.normal(48, 10, (rows, outputs))
    mix = 0.8 * np.eye(outputs)
    mix[0, 1] = 0.1
    predictions = (truth - 48) @ mix + 48 - 0.4 + generator.normal(0, 0.05, (rows, outputs))
    return predictions, truth


def test_the_correction_undoes_a_linear_distortion():
    predictions, truth = distorted()
    matrix, offset = output_correction(predictions, truth, ridge=0.0)
    corrected = predictions @ matrix + offset
    assert np.sqrt(np.mean((predictions - truth) ** 2)) > 2.0
    assert np.sqrt(np.mean((corrected - truth) ** 2)) < 0.1


def test_the_ridge_pulls_the_correction_toward_none():
    predictions, truth = distorted()
    changes = [np.abs(output_correction(predictions, truth, ridge)[0] - np.eye(8)).sum() for ridge in (0, 1e4, 1e9)]
    assert changes[0] > changes[1] > changes[2]
    matrix, offset = output_correction(predictions, truth, ridge=1e12)
    np.testing.assert_allclose(matrix, np.eye(8), atol=1e-4)
    # With the map held at none, what is left is the mean residual: the bias.
    np.testing.assert_allclose(offset, (truth - predictions).mean(axis=0), atol=1e-3)


def test_bad_inputs_are_refused():
    predictions, truth = distorted(rows=10)
    with pytest.raises(ValueError, match="must both be"):
        output_correction(predictions, truth[:, :4], 1.0)
    truth[3, 2] = np.nan
    with pytest.raises(ValueError, match="labelled"):
        output_correction(predictions, truth, 1.0)
    with pytest.raises(ValueError, match="refit_ridge"):
        output_correction(predictions, np.nan_to_num(truth), -1.0)


def test_the_folded_layer_computes_the_corrected_outputs():
    model = build_model(8, **model_settings(filters=[4], kernel_sizes=[3], convs_per_block=1, dense_units=8,
                                           first_stride=1), output_bias=np.full(8, 48.0))
    images = np.random.default_rng(1).integers(0, 256, (16, 96, 96, 1)).astype(np.float32)
    before = model.predict(images, verbose=0).astype(np.float64)
    matrix = np.eye(8) + np.random.default_rng(2).normal(0, 0.1, (8, 8))
    offset = np.arange(8.0)
    fold_into_output_layer(model.get_layer("keypoints"), matrix, offset)
    np.testing.assert_allclose(model.predict(images, verbose=0), before @ matrix + offset, atol=1e-3)


def test_refit_outputs_lowers_the_training_faces_error_and_reports_it():
    model = build_model(8, **model_settings(filters=[4], kernel_sizes=[3], convs_per_block=1, dense_units=8,
                                           first_stride=1), output_bias=np.full(8, 40.0))
    generator = np.random.default_rng(3)
    images = generator.integers(0, 256, (64, 96, 96), dtype=np.uint8)
    keypoints = generator.uniform(30, 60, (64, 8)).astype(np.float32)
    result = refit_outputs(model, images, keypoints, ridge=1.0, batch_size=16)
    assert result["refit_rmse_after"] < result["refit_rmse_before"]
    predicted = model.predict(images[..., None].astype(np.float32), verbose=0)
    assert np.sqrt(np.mean((predicted - keypoints) ** 2)) == pytest.approx(result["refit_rmse_after"], abs=1e-3)
