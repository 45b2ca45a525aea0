"""The LiteRT/TFLite export of the merged network: converted by TensorFlow, run by its interpreter, and
held to the Keras models' merged keypoints (the issue's bar: at most 0.01 px)."""
import keras
import numpy as np
import pytest

from conftest import model_settings
from keypoints import export
from keypoints.model import build_model
from keypoints.predict import merge_indices, predict_merged
from test_infer import KNOWN_8, KNOWN_30

FACES = np.random.default_rng(5).integers(0, 256, (7, 96, 96), dtype=np.uint8)


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(2)
    tiny = model_settings(filters=[4, 8], kernel_sizes=[3, 3], dense_units=8)
    # Biases of model_8 3.25 px off model_30's in the same columns: a wrong merge shows.
    return build_model(8, **tiny, output_bias=KNOWN_8), build_model(30, **tiny, output_bias=KNOWN_30)


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
@pytest.mark.parametrize("flip_average, shift_average", [(False, 0), (True, 0), (True, 4)])
def test_the_exported_file_gives_the_keras_models_merged_keypoints(tmp_path, models, flip_average, shift_average):
    path = tmp_path / "keypoints.tflite"
    assert export.save_tflite(path, *models, flip_average, shift_average) == path.stat().st_size > 0
    expected = predict_merged(*models, FACES, batch_size=4, flip_average=flip_average, shift_average=shift_average)
    other = predict_merged(*models, FACES, batch_size=4, flip_average=not flip_average)
    assert np.abs(expected - other).max() > 0.01, "the views change the answer: the test can tell"
    predict = export.tflite_predictor(path)
    for count in (7, 1, 3):  # the interpreter is resized to each batch
        assert np.abs(predict(FACES[:count]) - expected[:count]).max() <= 0.01
    assert predict(FACES[:0]).shape == (0, 30)


def test_the_merge_indices_take_model_8_s_eight_columns():
    from keypoints.columns import EIGHT_INDICES

    indices = merge_indices()
    assert [indices[column] for column in EIGHT_INDICES] == list(range(30, 38))
    assert sorted(set(indices) - set(range(30, 38))) == sorted(set(range(30)) - set(EIGHT_INDICES))
