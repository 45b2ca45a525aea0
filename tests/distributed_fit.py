"""One fit of tests/test_distribute.py in a process of its own: the CPU is split into logical devices
before TensorFlow starts, which it allows only once per process.

    python tests/distributed_fit.py SETTINGS_JSON CPU_DEVICES RESULT_JSON

Trains model_8 on synthetic faces as tests/test_train.py's train() does (checkpoint, real MLflow run
in $MLFLOW_TRACKING_URI), then writes {replicas (the MLflow param), history, holdout_rmse} as JSON.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

FACES = 96
HOLDOUT = 32


def split_cpu(devices):
    import tensorflow as tf

    # The CPU's replicas only: mirrored takes every visible GPU first.
    tf.config.set_visible_devices([], "GPU")
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)])


def faces():
    """(fit images, fit keypoints, held-out images, held-out keypoints): noisy images whose left and
    right halves' grey levels set the 8 values (x from the left, y from the right), learnable by a
    tiny network in a few epochs, unlike drawn faces; the mean face scores about 10 px on them."""
    generator = np.random.default_rng(5)
    count = FACES + HOLDOUT
    levels = generator.uniform(30, 220, (count, 2))
    images = np.concatenate([np.repeat(levels[:, None, None, :1], 48, axis=2),
                             np.repeat(levels[:, None, None, 1:], 48, axis=2)], axis=2).repeat(96, axis=1)
    images = np.clip(images[..., 0] + generator.normal(0, 20, (count, 96, 96)), 0, 255).astype(np.uint8)
    keypoints = (20 + np.tile(levels, 4) / 255 * 50).astype(np.float32)
    return images[:FACES], keypoints[:FACES], images[FACES:], keypoints[FACES:]


def replica_values(variable):
    import tensorflow as tf

    return variable.values if isinstance(variable, tf.distribute.DistributedValues) else (variable,)


def main(settings_json, devices, result_path):
    split_cpu(int(devices))
    from mlflow.tracking import MlflowClient

    from keypoints import tracking
    from test_train import train

    images, keypoints, holdout_images, holdout_keypoints = faces()
    model, history, _, run, _ = train(images, keypoints, json.loads(settings_json), Path(result_path).parent / "checkpoint")
    predicted = model.predict(holdout_images[..., None].astype(np.float32), verbose=0)
    result = {
        "replicas": int(MlflowClient(tracking.tracking_uri()).get_run(run.run_id).data.params["replicas"]),
        "history": history,
        "holdout_rmse": float(np.sqrt(np.mean((predicted - holdout_keypoints) ** 2))),
        "mean_face_rmse": float(np.sqrt(np.mean((keypoints.mean(axis=0) - holdout_keypoints) ** 2))),
        # Each Dropout's seed state on every replica: distinct streams draw distinct masks.
        "dropout_seeds": [[component.numpy().tolist() for component in replica_values(variable.value)]
                          for variable in model.variables if variable.name == "seed_generator_state"],
    }
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
