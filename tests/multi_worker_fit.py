"""One worker of a two-process MultiWorkerMirroredStrategy fit, for tests/test_distribute.py: the cluster
and this worker's index come from TF_CONFIG, as `tf.distribute` reads them.

    TF_CONFIG=... python tests/multi_worker_fit.py SETTINGS_JSON DIRECTORY

The fit of distributed_fit.py, with keypoints.train's strategy replaced by the multi-worker one (which
train.distribute does not offer: Keras 3's fit fails under it, README: Several GPUs).
"""
import json
import sys
from pathlib import Path

import keras
import tensorflow as tf

keras.config.disable_traceback_filtering()  # the failing Keras function in the traceback, for the test
# Before any other TensorFlow op, as the strategy requires.
strategy = tf.distribute.MultiWorkerMirroredStrategy()

sys.path.insert(0, str(Path(__file__).parent))

import keypoints.train  # noqa: E402
from distributed_fit import faces  # noqa: E402
from test_train import train  # noqa: E402


def main(settings_json, directory):
    keypoints.train.strategy_for = lambda choice: strategy
    images, keypoints_, _, _ = faces()
    train(images, keypoints_, json.loads(settings_json), Path(directory) / "checkpoint")
    (Path(directory) / "finished").write_text(str(strategy.num_replicas_in_sync))


if __name__ == "__main__":
    main(*sys.argv[1:])
