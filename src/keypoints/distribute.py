"""train.distribute: the tf.distribute strategy one fit runs under.

none: the default strategy, one device, as the article. mirrored: tf.distribute.MirroredStrategy, one
replica per visible GPU (or, without GPUs, per logical CPU device: one unless the CPU was split before
TensorFlow started, as tests/test_distribute.py does). Each step's global batch (train.batch_size) is
split across the replicas, their gradients summed, and every replica applies the same update.
"""
import tensorflow as tf

CHOICES = ("none", "mirrored")


def replica_devices():
    """The devices mirrored training replicates over: every visible GPU, or else every logical CPU."""
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [device.name for device in devices]


def strategy_for(choice):
    """The strategy of train.distribute = `choice`. One device is one replica: that fit is exactly
    none's (the default strategy), not a MirroredStrategy of one that reduces over itself."""
    if choice not in CHOICES:
        raise ValueError(f"train.distribute must be one of {list(CHOICES)}, not {choice!r}")
    devices = replica_devices() if choice == "mirrored" else []
    if len(devices) < 2:
        return tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy(devices)
