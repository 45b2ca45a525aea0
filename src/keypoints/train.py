"""Fit one keypoint model (8 or 30 outputs) with the article's callbacks, resumably."""
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from keypoints import fileio
from keypoints.params import flatten, settings_hash
from keypoints.split import holdout_count

HISTORY_COLUMNS = ["epoch", "loss", "mae", "val_loss", "val_mae", "lr"]
# Callback attributes that make up their progress; saved so a resumed fit continues, not restarts.
CALLBACK_STATE = ("wait", "best", "best_epoch", "cooldown_counter", "stopped_epoch")


def validation_rows(count, fraction, seed):
    """Seeded (fit, validation) row indices; the article took the last 10% instead, which on real data
    (sorted by source) is not a random sample."""
    order = np.random.default_rng(seed).permutation(count)
    validation = holdout_count(count, fraction)
    if validation == 0:
        raise ValueError(f"train.validation_fraction={fraction} leaves no validation rows out of {count}")
    return np.sort(order[validation:]), np.sort(order[:validation])


def configure(settings):
    """Seeds and numeric policy; must run before any model is built."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(settings["seed"])
    if settings.get("deterministic", True):
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy("mixed_float16" if settings.get("mixed_precision") else "float32")


def _callback_state(callback):
    return {name: _plain(getattr(callback, name)) for name in CALLBACK_STATE if hasattr(callback, name)}


def _plain(value):
    return None if value is None else float(value) if isinstance(value, (float, np.floating)) else value


class Checkpoint:
    """Epoch-end snapshot in `directory` (model + optimizer, history, callback state, MLflow run id).

    It lives outside DVC's outputs so a killed `dvc repro` finds it, and is keyed by a fingerprint of
    settings and data so a changed parameter never resumes a stale fit."""

    def __init__(self, directory, fingerprint):
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.state_path = self.directory / "state.json"
        self.model_path = self.directory / "model.keras"
        self.best_path = self.directory / "best_weights.npz"

    def load(self):
        if not self.state_path.is_file() or not self.model_path.is_file():
            return None
        state = json.loads(self.state_path.read_text())
        if state.get("fingerprint") != self.fingerprint:
            print(f"{self.directory}: checkpoint is for other settings or data; starting over", file=sys.stderr)
            self.clear()
            return None
        if self.best_path.is_file():
            with np.load(self.best_path) as arrays:
                state["best_weights"] = [arrays[f"w{i}"] for i in range(len(arrays.files))]
        return state

    def save(self, model, state, best_weights):
        self.directory.mkdir(parents=True, exist_ok=True)
        with fileio.atomic_path(self.model_path) as temporary:
            model.save(temporary)
        if best_weights is not None:
            with fileio.atomic_path(self.best_path) as temporary:
                with open(temporary, "wb") as handle:
                    np.savez(handle, **{f"w{i}": w for i, w in enumerate(best_weights)})
        # The state file is written last: it names a complete snapshot.
        fileio.save_json(self.state_path, dict(state, fingerprint=self.fingerprint))

    def clear(self):
        shutil.rmtree(self.directory, ignore_errors=True)


def log_epoch(run, row):
    run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])


def batchnorm_calibrator(model):
    """A function (images uint8 (n, 96, 96), batch_size) that sets each BatchNormalization layer's
    moving mean and variance to its input statistics on those images, averaged over batches, as in
    "precise BN". Its graph is traced once, so calling it every epoch costs about one forward pass.

    Keras keeps running averages with momentum 0.99, which need several hundred steps to forget
    their initial values and lag behind the weights: on a small or short fit, inference-mode
    outputs (validation, EarlyStopping, ReduceLROnPlateau, the saved model) then see statistics the
    network never trained with, and score no better than the mean face."""
    import keras
    import tensorflow as tf

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return lambda images, batch_size: None
    probe = keras.Model(model.input, [layer.input for layer in layers])

    @tf.function(reduce_retracing=True)
    def batch_moments(batch):
        # Training mode, as during the fit: upstream layers normalise with batch statistics. (Their
        # running averages move too; every layer is overwritten below.)
        outputs = probe(batch, training=True)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [tf.nn.moments(tf.cast(output, tf.float32), axes=list(range(len(output.shape) - 1)))
                for output in outputs]

    def calibrate(images, batch_size):
        if len(images) == 0:
            return
        sums = None
        batches = 0
        for start in range(0, len(images), batch_size):
            batch = tf.constant(images[start:start + batch_size, ..., None], dtype=tf.float32)
            moments = [(mean.numpy().astype(np.float64), variance.numpy().astype(np.float64))
                       for mean, variance in batch_moments(batch)]
            sums = moments if sums is None else [(m0 + m1, v0 + v1) for (m0, v0), (m1, v1) in zip(sums, moments)]
            batches += 1
        for layer, (mean, variance) in zip(layers, sums):
            layer.moving_mean.assign((mean / batches).astype(np.float32))
            layer.moving_variance.assign((variance / batches).astype(np.float32))

    return calibrate


def calibration_rows(count, limit):
    """Evenly spaced rows, at most `limit`: deterministic, and spread over the whole set."""
    if limit <= 0 or count == 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, count - 1, min(count, int(limit))).round().astype(np.int64))


def make_callbacks(settings, history_rows, run, checkpoint, resumed_state, calibration_images=None):
    import keras

    reduce_lr = keras.callbacks.ReduceLROnPlateau(verbose=1, **settings["reduce_lr"])
    early_stopping = keras.callbacks.EarlyStopping(verbose=1, **settings["early_stopping"])

    class Progress(keras.callbacks.Callback):
        """Records each epoch (with the learning rate it ran at), logs it to MLflow, snapshots the fit."""

        def on_train_begin(self, logs=None):
            # Runs after the two callbacks above have reset themselves in their own on_train_begin.
            if resumed_state:
                for callback, name in ((reduce_lr, "reduce_lr"), (early_stopping, "early_stopping")):
                    for key, value in resumed_state[name].items():
                        setattr(callback, key, value)
                early_stopping.best_weights = resumed_state.get("best_weights")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"epoch": epoch, **{k: float(logs[k]) for k in HISTORY_COLUMNS[1:5] if k in logs}}
            row["lr"] = self.learning_rate
            history_rows.append(row)
            checkpoint.save(
                self.model,
                {
                    "next_epoch": epoch + 1,
                    "history": history_rows,
                    "run_id": run.run_id,
                    "reduce_lr": _callback_state(reduce_lr),
                    "early_stopping": _callback_state(early_stopping),
                    "stopped": bool(self.model.stop_training),
                },
                early_stopping.best_weights,
            )
            # After the snapshot: a kill in between re-logs this epoch on resume rather than twice.
            log_epoch(run, row)

        @property
        def learning_rate(self):
            return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    class PreciseBatchNorm(keras.callbacks.Callback):
        """Re-estimates BatchNorm statistics right before each validation inside fit."""

        def on_train_begin(self, logs=None):
            self.calibrate = batchnorm_calibrator(self.model)

        def on_test_begin(self, logs=None):
            self.calibrate(calibration_images, settings["batch_size"])

    progress = Progress()
    # Order matters: Progress reads the learning rate before ReduceLROnPlateau lowers it, and
    # snapshots after EarlyStopping has updated its best weights.
    callbacks = [early_stopping, progress, reduce_lr]
    if calibration_images is not None and len(calibration_images):
        # Keras' fit calls on_test_begin just before it validates the epoch's weights.
        callbacks.insert(0, PreciseBatchNorm())
    return callbacks, progress


def fit(images, keypoints, columns, settings, checkpoint_dir, run_factory, log=print):
    """Train a model on (images uint8 (N,96,96), keypoints (N,k)); returns (model, history rows, summary).

    run_factory(resume_run_id) opens the MLflow run, so a resumed fit continues the same run."""
    import keras

    from keypoints.augment import make_dataset
    from keypoints.model import build_model, compile_model

    configure(settings)
    fit_rows, validation = validation_rows(len(images), settings["validation_fraction"], settings["seed"])
    # `epochs` is left out: raising it after a stop is a legitimate reason to resume.
    resumable = {key: value for key, value in settings.items() if key != "epochs"}
    fingerprint = settings_hash({"settings": resumable, "data": _data_fingerprint(images, keypoints)})
    checkpoint = Checkpoint(checkpoint_dir, fingerprint)
    state = checkpoint.load()

    run = run_factory(state["run_id"] if state else None)
    if state:
        log(f"resuming from {checkpoint_dir} at epoch {state['next_epoch'] + 1}")
        model = keras.models.load_model(checkpoint.model_path)
        history_rows = state["history"]
        if history_rows and run.logged_steps("loss")[-1:] != [history_rows[-1]["epoch"]]:
            log_epoch(run, history_rows[-1])
    else:
        model = compile_model(
            build_model(keypoints.shape[1], output_bias=_output_bias(settings, keypoints[fit_rows]), **settings["model"]),
            optimizer=settings["optimizer"],
            learning_rate=settings["learning_rate"],
            loss=settings["loss"],
            jit_compile=settings.get("jit_compile", False),
        )
        history_rows = []
        run.log_params(flatten(settings))
        run.log_params({"outputs": keypoints.shape[1], "fit_rows": len(fit_rows), "validation_rows": len(validation)})

    # One fancy index, not two: images[fit_rows] would copy the whole fit set first.
    calibration = images[fit_rows[calibration_rows(len(fit_rows), settings.get("precise_batchnorm_rows", 0))]]
    callbacks, _ = make_callbacks(settings, history_rows, run, checkpoint, state, calibration)
    batch_size = settings["batch_size"]
    augment = settings.get("augment") or {}
    train_data = make_dataset(
        images[fit_rows], keypoints[fit_rows], columns, batch_size,
        training=True, seed=settings["seed"], augment=augment,
    )
    validation_data = make_dataset(
        images[validation], keypoints[validation], columns, batch_size, training=False, seed=settings["seed"]
    )
    started = time.perf_counter()
    start_epoch = state["next_epoch"] if state else 0
    if not (state and state.get("stopped")) and start_epoch < settings["epochs"]:
        model.fit(
            train_data,
            validation_data=validation_data,
            epochs=settings["epochs"],
            initial_epoch=start_epoch,
            callbacks=callbacks,
            shuffle=False,  # the dataset shuffles itself, seeded
            verbose=2,
        )
    elif state and state.get("best_weights") is not None and settings["early_stopping"].get("restore_best_weights"):
        model.set_weights(state["best_weights"])
    seconds = time.perf_counter() - started
    epochs_here = len(history_rows) - start_epoch
    summary = summarize(history_rows)
    summary.update(train_rows=len(fit_rows), validation_rows=len(validation))
    if epochs_here > 0 and seconds > 0:
        run.log_metrics({"images_per_second": epochs_here * len(fit_rows) / seconds})
    return model, history_rows, summary, run, checkpoint


def _output_bias(settings, keypoints):
    choice = settings.get("output_bias", "zeros")
    if choice not in ("mean", "zeros"):
        raise ValueError(f"train.output_bias must be 'mean' or 'zeros', not {choice!r}")
    return keypoints.mean(axis=0) if choice == "mean" else None


def summarize(history_rows):
    if not history_rows:
        raise ValueError("training ran no epoch: train.epochs must be at least 1")
    best = min(history_rows, key=lambda row: row["val_loss"])
    return {
        "epochs_run": len(history_rows),
        "best_epoch": best["epoch"] + 1,
        "best_val_loss": best["val_loss"],
        "best_val_mae": best["val_mae"],
        "final_lr": history_rows[-1]["lr"],
    }


def _data_fingerprint(images, keypoints):
    import hashlib

    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(keypoints).tobytes())
    return digest.hexdigest()


def history_frame(history_rows):
    import pandas as pd

    frame = pd.DataFrame(history_rows, columns=HISTORY_COLUMNS)
    frame["epoch"] = frame["epoch"].astype(int) + 1
    return frame
