"""The whole predictor as one MLflow pyfunc model: model_8 and model_30, the merge, flip averaging, and
the face finding of `keypoints detect`, so that `mlflow models serve` answers keypoints.

A request holds one of two columns (one kind per request):
  face:  96x96 grayscale faces, whole numbers 0-255 (as the training images), framed as the training
         crops: keypoints in crop pixels;
  image: base64-encoded images (JPEG, PNG, ...) of any size: the face is found and framed as
         `keypoints detect` does, and the keypoints come back in the image's pixels.
The answer has the 30 keypoint columns, then face_found and the face's box (x, y, side); a face's box is
the whole crop (0, 0, 96), found by definition.
"""
import base64
import binascii
import importlib.metadata
import shutil
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel

from keypoints import fileio
from keypoints.columns import IMAGE_SIZE, KEYPOINT_COLUMNS
from keypoints.faces import make_detectors
from keypoints.infer import decode_image, keypoints_in, load_framing, load_models, to_gray
from keypoints.predict import merged_predictor

FACE, IMAGE = "face", "image"
OUTPUT_COLUMNS = KEYPOINT_COLUMNS + ["face_found", "box_x", "box_y", "box_size"]
# The package modules the served model runs (serving and what it imports: tests/test_serving.py checks
# it), shipped with the model, so a change to any other module leaves the register stage's output alone.
SERVED_MODULES = ("__init__", "serving", "infer", "faces", "framing", "predict", "fileio", "columns")
# The distributions the model needs where it is served, pinned at the versions it was logged with.
# Listed, not inferred: MLflow's inference imports the model and scans its modules (seconds per stage).
# A GPU machine has tensorflow instead of tensorflow-cpu: what is not installed is left out.
REQUIREMENTS = ("mlflow", "tensorflow-cpu", "tensorflow", "keras", "numpy", "pandas", "opencv-python-headless", "dlib-bin", "pyyaml")


class BadRequest(ValueError):
    """A request the model cannot answer; the message says what is wrong with it."""


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    inputs = Schema([ColSpec(Array(Array("long")), FACE, required=False), ColSpec("string", IMAGE, required=False)])
    outputs = Schema([ColSpec("double", name) for name in KEYPOINT_COLUMNS]
                     + [ColSpec("boolean", "face_found")] + [ColSpec("long", name) for name in OUTPUT_COLUMNS[-3:]])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(face):
    """One face (96, 96) uint8 as a request row, so the MLflow UI shows a request that works."""
    return pd.DataFrame({FACE: [np.asarray(face, np.int64).tolist()]})


def pip_requirements():
    pinned = []
    for name in REQUIREMENTS:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pinned


def faces_of(column):
    """The face column as float32 (n, 96, 96), each row checked."""
    faces = []
    for row, value in enumerate(column):
        try:
            face = np.asarray(value, np.float32) if value is not None else None
        except (TypeError, ValueError) as error:
            raise BadRequest(f"face {row}: not a 96x96 array of numbers ({error})") from None
        if face is None or face.shape != (IMAGE_SIZE, IMAGE_SIZE):
            shape = "missing" if face is None else "x".join(map(str, face.shape)) or "a number"
            raise BadRequest(f"face {row}: expected 96 rows of 96 values (0-255), got {shape}")
        if not (np.isfinite(face).all() and face.min() >= 0 and face.max() <= 255):
            raise BadRequest(f"face {row}: values must be numbers from 0 to 255")
        faces.append(face)
    return np.stack(faces) if faces else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)


def image_bytes(text, row):
    """The bytes of one base64 image; a data URL's `data:image/png;base64,` prefix is allowed."""
    if not isinstance(text, str) or not text:
        raise BadRequest(f"image {row}: expected a base64-encoded JPEG or PNG, got {type(text).__name__}")
    encoded = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest(f"image {row}: not base64 ({error})") from None


def face_rows(predictions):
    frame = pd.DataFrame(np.asarray(predictions, np.float64), columns=KEYPOINT_COLUMNS)
    frame["face_found"] = True
    frame["box_x"], frame["box_y"], frame["box_size"] = 0, 0, IMAGE_SIZE
    return frame


def image_rows(texts, predict, framing, detectors):
    """Each image decoded, its face located and predicted as `keypoints detect` does (infer.keypoints_in)."""
    rows = []
    for row, text in enumerate(texts):
        data = image_bytes(text, row)
        try:
            gray = to_gray(decode_image(data, f"image {row}"))
        except ValueError as error:
            raise BadRequest(str(error)) from None
        box, keypoints, found = keypoints_in(gray, predict, framing, detectors)
        rows.append([*keypoints, bool(found), *box])
    return pd.DataFrame(rows, columns=OUTPUT_COLUMNS).astype({"box_x": "int64", "box_y": "int64", "box_size": "int64"})


def request_column(frame):
    """The one column of a request with values: face or image."""
    if not isinstance(frame, pd.DataFrame):
        raise BadRequest(f"expected a table with a `{FACE}` or an `{IMAGE}` column, got {type(frame).__name__}")
    given = [name for name in (FACE, IMAGE) if name in frame.columns and frame[name].notna().any()]
    if len(given) != 1:
        raise BadRequest(f"a request holds either `{FACE}` (96x96 faces) or `{IMAGE}` (base64 images) in "
                         f"every row; got the columns {list(frame.columns)}")
    if frame[given[0]].isna().any():
        raise BadRequest(f"every row needs a `{given[0]}` value: faces and images go in separate requests")
    return given[0]


class KeypointsModel(PythonModel):
    """The pyfunc model; its artifacts: model_8, model_30 (.keras) and framing (framing.json);
    its model_config: flip_average, shift_average and batch_size (params.yaml's predict group)."""

    def load_context(self, context):
        config = context.model_config
        self.batch_size = config["batch_size"]
        self.predict_faces = merged_predictor(*load_models(context.artifacts["model_8"], context.artifacts["model_30"]),
                                              config["flip_average"], config["shift_average"])
        self.framing = load_framing(context.artifacts["framing"])
        settings = self.framing["settings"]
        self.detectors = make_detectors(settings["detectors"], settings["detection_size"])

    def predict(self, context, model_input, params=None):
        try:
            return self.answer(model_input)
        except BadRequest as error:
            # The scoring server answers INVALID_PARAMETER_VALUE with 400 and this message.
            raise MlflowException.invalid_parameter_value(str(error)) from None

    def answer(self, frame):
        column = request_column(frame)
        if column == IMAGE:
            return image_rows(frame[IMAGE].tolist(), self.predict_faces, self.framing, self.detectors)
        faces = faces_of(frame[FACE].tolist())
        chunks = [self.predict_faces(faces[start:start + self.batch_size]) for start in range(0, len(faces), self.batch_size)]
        return face_rows(np.concatenate(chunks) if chunks else np.zeros((0, len(KEYPOINT_COLUMNS))))


def copy_served_package(folder):
    """A `keypoints` package in `folder` holding only SERVED_MODULES; its path."""
    package = Path(folder) / "keypoints"
    package.mkdir()
    for name in SERVED_MODULES:
        shutil.copy2(Path(__file__).resolve().parent / f"{name}.py", package / f"{name}.py")
    return package


def save_predictor(out, model_8, model_30, framing, flip_average, batch_size, example_face, shift_average=0):
    """Write the pyfunc model to directory `out` (replaced whole): the MLflow model format, servable with
    `mlflow models serve -m <out>` too. The modules it runs go with it (code_paths)."""
    with fileio.atomic_dir(out) as temporary:
        # save_model wants a directory it creates itself.
        target, code = Path(temporary) / "model", Path(temporary) / "code-staging"
        code.mkdir()
        mlflow.pyfunc.save_model(
            target, python_model=KeypointsModel(),
            artifacts={"model_8": str(model_8), "model_30": str(model_30), "framing": str(framing)},
            model_config={"flip_average": bool(flip_average), "shift_average": int(shift_average),
                          "batch_size": int(batch_size)},
            code_paths=[str(copy_served_package(code))], pip_requirements=pip_requirements(),
            signature=signature(), input_example=input_example(example_face),
        )
        shutil.rmtree(code)
        for entry in target.iterdir():
            shutil.move(str(entry), temporary)
        target.rmdir()
    return Path(out)
