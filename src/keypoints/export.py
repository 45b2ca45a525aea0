"""The merged network as one LiteRT (TFLite) flatbuffer, for use without Python or Keras: a float32
batch (n, 96, 96) of grayscale faces (0-255) in, merged keypoints (n, 30) in crop pixels out.

model_8, model_30, the merge and (with predict.flip_average, predict.shift_average) the averaging are all inside the
graph, so a runtime on a phone or in a browser gets the pipeline's answer from one call. LiteRT, not
ONNX: TensorFlow 2.21 converts to it itself, and its interpreter runs the file here for the parity
check; ONNX would need tf2onnx and onnxruntime, not in the pinned requirements (tf2onnx lags
TensorFlow's releases).
"""
import numpy as np

from keypoints import fileio
from keypoints.columns import KEYPOINT_COLUMNS
from keypoints.predict import merged_function


def to_tflite(model_8, model_30, flip_average, shift_average=0):
    """The flatbuffer's bytes: float32 throughout (no quantisation), TFLite builtin operations only."""
    import tensorflow as tf

    function = merged_function(model_8, model_30, flip_average, shift_average)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], model_30)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def save_tflite(path, model_8, model_30, flip_average, shift_average=0):
    data = to_tflite(model_8, model_30, flip_average, shift_average)
    with fileio.atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return len(data)


def tflite_predictor(path, threads=None):
    """A function faces (n, 96, 96) -> merged keypoints (n, 30) running the exported file in the LiteRT
    interpreter (tf.lite.Interpreter), resized to each batch size it is given."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    (given,), (answer,) = interpreter.get_input_details(), interpreter.get_output_details()
    shape = [None]

    def predict_faces(faces):
        faces = np.asarray(faces, np.float32)
        if len(faces) == 0:
            return np.zeros((0, len(KEYPOINT_COLUMNS)), np.float32)
        if shape[0] != faces.shape:
            interpreter.resize_tensor_input(given["index"], faces.shape)
            interpreter.allocate_tensors()
            shape[0] = faces.shape
        interpreter.set_tensor(given["index"], faces)
        interpreter.invoke()
        return interpreter.get_tensor(answer["index"]).copy()

    return predict_faces
