"""The merged predictor as one MLflow pyfunc model: saved and loaded by MLflow, asked through MLflow's
own scoring code (the /invocations handler of `mlflow models serve`, in process); the real server is
in test_serving_server.py (slow)."""
import base64
import json
from pathlib import Path

import cv2
import keras
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.scoring_server import invocations

from conftest import model_settings
from keypoints import infer, serving
from keypoints.columns import KEYPOINT_COLUMNS
from keypoints.model import build_model
from keypoints.predict import merged_predictor, predict_merged
from test_infer import FRAMING, KNOWN_8, KNOWN_30, constant_model, face_canvas

FACES = np.random.default_rng(3).integers(0, 256, (5, 96, 96), dtype=np.uint8)


def saved_predictor(folder, model_8, model_30, flip_average, shift_average=0):
    model_8.save(folder / "model_8.keras")
    model_30.save(folder / "model_30.keras")
    (folder / "framing.json").write_text(json.dumps(FRAMING))
    return serving.save_predictor(folder / "predictor", folder / "model_8.keras", folder / "model_30.keras",
                                  folder / "framing.json", flip_average, 2, FACES[0], shift_average)


@pytest.fixture(scope="module")
def random_models():
    keras.utils.set_random_seed(1)
    tiny = model_settings(filters=[4, 8], kernel_sizes=[3, 3], dense_units=8)
    return build_model(8, **tiny, output_bias=KNOWN_8), build_model(30, **tiny, output_bias=KNOWN_30)


@pytest.fixture(scope="module")
def photo_model(tmp_path_factory):
    """Constant models and a framing shaped like their answer: a detected face settles (test_infer)."""
    folder = tmp_path_factory.mktemp("photo_model")
    path = saved_predictor(folder, constant_model(8, KNOWN_8), constant_model(30, KNOWN_30), flip_average=False)
    return folder, mlflow.pyfunc.load_model(str(path))


def ask(model, body):
    """/invocations of `mlflow models serve`, as its handler answers a JSON body."""
    try:
        answer = invocations(json.dumps(body), "application/json", model, model.metadata.get_input_schema())
    except MlflowException as error:
        return error.get_http_status_code(), error.message
    return answer.status, json.loads(answer.response)


def encoded(image, suffix=".png"):
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return base64.b64encode(data.tobytes()).decode()


def test_faces_get_the_merged_flip_and_shift_averaged_keypoints_of_predict_merge(tmp_path, random_models):
    path = saved_predictor(tmp_path, *random_models, flip_average=True, shift_average=4)
    model = mlflow.pyfunc.load_model(str(path))
    expected = predict_merged(*random_models, FACES, batch_size=4, flip_average=True, shift_average=4)
    assert np.ptp(expected, axis=0).max() > 1e-3, "the answers depend on the faces"
    status, answer = ask(model, {"dataframe_records": [{"face": face.tolist()} for face in FACES]})
    assert status == 200
    table = pd.DataFrame(answer["predictions"])  # five faces in batches of two (predict.batch_size)
    assert list(table.columns) == serving.OUTPUT_COLUMNS
    np.testing.assert_allclose(table[KEYPOINT_COLUMNS].to_numpy(), expected, atol=1e-3)
    assert table["face_found"].all() and (table[["box_x", "box_y", "box_size"]].to_numpy() == [0, 0, 96]).all()


def test_the_saved_model_carries_its_signature_example_and_pinned_requirements(photo_model):
    folder, model = photo_model
    inputs = {spec.name for spec in model.metadata.get_input_schema().inputs}
    outputs = [spec.name for spec in model.metadata.get_output_schema().inputs]
    assert inputs == {"face", "image"} and outputs == serving.OUTPUT_COLUMNS
    example = json.loads((folder / "predictor" / "serving_input_example.json").read_text())
    assert np.asarray(example["dataframe_split"]["data"][0][0]).shape == (96, 96)
    status, answer = ask(model, example)
    assert status == 200 and len(answer["predictions"]) == 1
    requirements = (folder / "predictor" / "requirements.txt").read_text().split()
    assert any(line.startswith("mlflow==") for line in requirements)
    assert any(line.startswith("keras==") for line in requirements)
    shipped = {path.stem for path in (folder / "predictor" / "code" / "keypoints").glob("*.py")}
    assert shipped == set(serving.SERVED_MODULES)


def test_the_served_modules_are_serving_and_what_it_imports():
    from test_dvc_yaml import modules_behind

    served = modules_behind(Path(serving.__file__)) | {"serving", "__init__"}
    assert served == set(serving.SERVED_MODULES)


@pytest.mark.parametrize("image, found", [(face_canvas(), True), (np.full((50, 80), 128, np.uint8), False)])
def test_a_photo_gets_the_keypoints_and_box_keypoints_detect_finds(tmp_path, photo_model, image, found):
    """A photo with a face, and a faceless one (the command's fallback), each as `keypoints detect` answers it."""
    folder, model = photo_model
    infer.save_image(tmp_path / "photo.png", image)
    predict = merged_predictor(*infer.load_models(folder / "model_8.keras", folder / "model_30.keras"), False)
    expected = infer.run([tmp_path / "photo.png"], predict, FRAMING, tmp_path / "detect").iloc[0]
    assert bool(expected["face_found"]) is found
    status, answer = ask(model, {"dataframe_records": [{"image": encoded(image)}]})
    assert status == 200
    row = answer["predictions"][0]
    assert row["face_found"] is found
    assert [row["box_x"], row["box_y"], row["box_size"]] == expected[["box_x", "box_y", "box_size"]].tolist()
    np.testing.assert_allclose([row[name] for name in KEYPOINT_COLUMNS], expected[KEYPOINT_COLUMNS].to_numpy(float), atol=1e-3)


@pytest.mark.parametrize("body, message", [
    ({"dataframe_records": [{"face": [[1, 2, 3]] * 96}]}, "face 0: expected 96 rows of 96 values"),
    ({"dataframe_records": [{"face": [[300] * 96] * 96}]}, "face 0: values must be numbers from 0 to 255"),
    ({"dataframe_records": [{"image": "not base64!"}]}, "image 0: not base64"),
    ({"dataframe_records": [{"image": base64.b64encode(b"plain text").decode()}]}, "image 0: not an image OpenCV can read"),
    ({"dataframe_records": [{"image": base64.b64encode(b"").decode()}]}, "image 0: expected a base64-encoded"),
    ({"dataframe_records": [{"other": 1}]}, "either `face`"),
])
def test_a_bad_request_is_a_400_that_says_what_is_wrong(photo_model, body, message):
    _, model = photo_model
    status, answer = ask(model, body)
    assert status == 400
    assert message in answer
