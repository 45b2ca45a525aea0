"""Fit one keypoint model (8 or 30 outputs) with the article's callbacks, resumably.

The caller owns the MLflow run and the checkpoint: it opens both (continuing the checkpoint's run
when resuming), calls fit, writes the outputs, then finishes the run and clears the checkpoint.
"""
import hashlib
import math
import time

import keras
import numpy as np
import tensorflow as tf

from keypoints.augment import make_dataset, steps_per_epoch
from keypoints.checkpoint import callback_state
from keypoints.distribute import strategy_for
from keypoints.model import build_model, compile_model
from keypoints.params import flatten
from keypoints.precise_batchnorm import PreciseBatchNorm, calibration_rows
from keypoints.refit import refit_outputs
from keypoints.split import holdout_count

HISTORY_COLUMNS = ["epoch", "loss", "mae", "val_loss", "val_mae", "lr"]


def validation_rows(count, fraction, seed):
    """Seeded (fit, validation) row indices; the article took the last 10% instead, which on real data
    (sorted by source) is not a random sample."""
    order = np.random.default_rng(seed).permutation(count)
    validation = holdout_count(count, fraction, "train.validation_fraction")
    if validation == 0:
        raise ValueError(f"train.validation_fraction={fraction} leaves no validation rows out of {count}")
    return np.sort(order[validation:]), np.sort(order[:validation])


def configure(settings):
    """Seeds and numeric policy; must run before any model is built."""
    keras.utils.set_random_seed(settings["seed"])
    if settings["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy("mixed_float16" if settings["mixed_precision"] else "float32")


def log_epoch(run, row):
    run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])


def reseed_dropout(model, seed, epoch):
    """Set every random layer's stream (Dropout's) to a function of (seed, epoch, layer), so that a
    resumed fit drops the units an uninterrupted one drops, whatever state the loaded model had.
    Under train.distribute each replica gets a stream of its own: Keras 3 starts every replica's copy
    of a mirrored seed at the same value, so every replica would drop the same units of its share of
    the batch (tests/test_distribute.py), which one device's dropout never does."""
    states = [variable for variable in model.variables if variable.name == "seed_generator_state"]
    for number, state in enumerate(states):
        if isinstance(state.value, tf.distribute.DistributedValues):
            for replica, component in enumerate(state.value.values):
                component.assign(dropout_stream(seed, epoch, number, replica).astype(component.dtype.as_numpy_dtype))
        else:
            state.assign(dropout_stream(seed, epoch, number).astype(state.dtype))


def dropout_stream(seed, epoch, number, replica=0):
    """The seed state of random layer `number` at `epoch`; replica 0's is the one-device stream."""
    text = f"{seed} {epoch} {number}" + (f" {replica}" if replica else "")
    digest = hashlib.sha256(text.encode()).digest()
    # Keras counts the second half up by one per step, and reduces both modulo 2**31 - 2.
    return np.array([int.from_bytes(digest[:4], "big") % (2**31 - 2), 0])


def cosine_learning_rate(step, total_steps, peak, floor):
    """The learning rate at `step` (0-based) of a cosine decay from `peak` to `floor` over total_steps."""
    progress = min(step / max(total_steps, 1), 1.0)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class CosineSchedule(keras.callbacks.Callback):
    """train.lr_schedule: cosine. Sets the learning rate before every step from (epoch, step) alone, so
    a resumed fit runs the rates an uninterrupted one runs. A short fit gains most from it: the last
    epochs' small steps settle the weights that a constant rate keeps shaking (README: Presets)."""

    def __init__(self, steps_per_epoch, epochs, peak, floor):
        super().__init__()
        self.steps_per_epoch, self.total_steps, self.peak, self.floor = steps_per_epoch, steps_per_epoch * epochs, peak, floor
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        step = self.epoch * self.steps_per_epoch + batch
        self.model.optimizer.learning_rate.assign(cosine_learning_rate(step, self.total_steps, self.peak, self.floor))


def make_callbacks(settings, history_rows, run, checkpoint, calibration_images, steps_per_epoch):
    """The article's ReduceLROnPlateau (or, with train.lr_schedule cosine, a cosine decay instead) and
    EarlyStopping, resumed from the checkpoint's state, plus the epoch recorder, the per-epoch
    reseeding and (with calibration images) precise BatchNorm."""
    schedule = settings["lr_schedule"]
    if schedule not in ("plateau", "cosine"):
        raise ValueError(f"train.lr_schedule must be 'plateau' or 'cosine', not {schedule!r}")
    reduce_lr = keras.callbacks.ReduceLROnPlateau(verbose=1, **settings["reduce_lr"])
    early_stopping = keras.callbacks.EarlyStopping(verbose=1, **settings["early_stopping"])
    resumed = checkpoint.state

    class Reseed(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            reseed_dropout(self.model, settings["seed"], epoch)

    class Record(keras.callbacks.Callback):
        """Records each epoch with the learning rate it ran at (before ReduceLROnPlateau lowers it)."""

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"epoch": epoch, **{k: float(logs[k]) for k in HISTORY_COLUMNS[1:5] if k in logs}}
            row["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            history_rows.append(row)

    class Snapshot(keras.callbacks.Callback):
        """Restores the callbacks' state on resume; snapshots the fit and logs the epoch to MLflow."""

        def on_train_begin(self, logs=None):
            # Last in the list: Keras' callbacks reset their state in their own on_train_begin.
            if resumed:
                for callback, name in ((reduce_lr, "reduce_lr"), (early_stopping, "early_stopping")):
                    for key, value in resumed[name].items():
                        setattr(callback, key, value)
                early_stopping.best_weights = resumed.get("best_weights")
                if "learning_rate" in resumed:  # snapshots of older versions lack it
                    self.model.optimizer.learning_rate.assign(resumed["learning_rate"])

        def on_epoch_end(self, epoch, logs=None):
            checkpoint.save(
                self.model,
                {
                    "next_epoch": epoch + 1,
                    "history": history_rows,
                    "run_id": run.run_id,
                    "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                    "reduce_lr": callback_state(reduce_lr),
                    "early_stopping": callback_state(early_stopping),
                    "stopped": bool(self.model.stop_training),
                },
                early_stopping.best_weights,
            )
            # After the snapshot: a kill in between re-logs this epoch on resume rather than twice.
            log_epoch(run, history_rows[-1])

    # Order matters: Record reads the learning rate before ReduceLROnPlateau lowers it; Snapshot
    # saves after both callbacks have updated their state (and EarlyStopping its best weights).
    if schedule == "cosine":
        # Its floor is reduce_lr.min_lr: the two never run together (the cosine has no plateau to wait for).
        learning_rate = CosineSchedule(steps_per_epoch, settings["epochs"], settings["learning_rate"],
                                       settings["reduce_lr"]["min_lr"])
        callbacks = [Reseed(), learning_rate, early_stopping, Record(), Snapshot()]
    else:
        callbacks = [Reseed(), early_stopping, Record(), reduce_lr, Snapshot()]
    if len(calibration_images):
        callbacks.insert(0, PreciseBatchNorm(calibration_images, settings["batch_size"]))
    return callbacks


def start_from(model, trained):
    """Copy the convolutional layers' weights (up to Flatten) from `trained`, the same network with
    another number of outputs (model_8 into model_30: its features were learned on ~3x more faces).
    The dense head starts afresh: model_8's, tuned to 8 outputs, starts model_30 further off."""
    if len(model.layers) != len(trained.layers):
        raise ValueError(f"cannot start {model.name} from {trained.name}: {len(model.layers)} layers against "
                         f"{len(trained.layers)} (train.model must be the same for both models)")
    for index, (layer, source) in enumerate(zip(model.layers, trained.layers)):
        if isinstance(layer, keras.layers.Flatten):
            return
        shapes, source_shapes = [w.shape for w in layer.weights], [w.shape for w in source.weights]
        if type(layer) is not type(source) or shapes != source_shapes:
            raise ValueError(f"cannot start {model.name} from {trained.name}: layer {index} is "
                             f"{type(layer).__name__}{shapes} against {type(source).__name__}{source_shapes} "
                             "(train.model must be the same for both models)")
        layer.set_weights(source.get_weights())


def fit(images, keypoints, columns, settings, checkpoint, run, initial_model=None, log=print):
    """Train on (images uint8 (N,96,96), keypoints (N,k)); returns (model, history rows, summary).

    checkpoint: a keypoints.checkpoint.Checkpoint, resumed from when it holds a snapshot;
    run: the keypoints.tracking.Run that receives params and per-epoch metrics;
    initial_model: a trained keras model whose convolutional layers the new model starts from
    (train.start_from_model_8, see start_from); None: from scratch."""
    configure(settings)
    fit_rows, validation = validation_rows(len(images), settings["validation_fraction"], settings["seed"])
    strategy = strategy_for(settings["distribute"])
    replicas = strategy.num_replicas_in_sync
    log(f"train.distribute={settings['distribute']}: {replicas} replica(s), global batch {settings['batch_size']}")
    state = checkpoint.state
    # Variables made in the strategy's scope are mirrored on every replica, the optimizer's included;
    # Keras' fit then runs each step on every replica (the model remembers its strategy).
    with strategy.scope():
        if state:
            log(f"resuming from {checkpoint.directory} at epoch {state['next_epoch'] + 1}")
            model = keras.models.load_model(checkpoint.model_path)
            history_rows = state["history"]
            if history_rows and run.logged_steps("loss")[-1:] != [history_rows[-1]["epoch"]]:
                log_epoch(run, history_rows[-1])
        else:
            model = new_model(settings, keypoints[fit_rows], synchronized_batchnorm=replicas > 1)
            if initial_model is not None:
                start_from(model, initial_model)
                log(f"{model.name} starts from {initial_model.name}'s trained convolutional layers")
            history_rows = []
            run.log_params(flatten(settings))
            run.log_params({"outputs": keypoints.shape[1], "fit_rows": len(fit_rows), "validation_rows": len(validation),
                            "replicas": replicas})

    # One fancy index, not two: images[fit_rows] would copy the whole fit set first.
    calibration = images[fit_rows[calibration_rows(len(fit_rows), settings["precise_batchnorm_rows"])]]
    batch_size = settings["batch_size"]
    steps = steps_per_epoch(len(fit_rows), batch_size)
    callbacks = make_callbacks(settings, history_rows, run, checkpoint, calibration, steps)
    start_epoch = state["next_epoch"] if state else 0
    started = time.perf_counter()
    if not (state and state["stopped"]) and start_epoch < settings["epochs"]:
        train_data = make_dataset(
            images[fit_rows], keypoints[fit_rows], columns, batch_size,
            training=True, seed=settings["seed"], augment=settings["augment"], epochs=(start_epoch, settings["epochs"]),
        )
        validation_data = make_dataset(
            images[validation], keypoints[validation], columns, batch_size, training=False, seed=settings["seed"]
        )
        model.fit(
            train_data,
            validation_data=validation_data,
            epochs=settings["epochs"],
            initial_epoch=start_epoch,
            # The dataset holds all remaining epochs back to back, each drawn from (seed, epoch).
            steps_per_epoch=steps,
            callbacks=callbacks,
            shuffle=False,  # the dataset shuffles itself, seeded
            verbose=2,
        )
    elif state and state.get("best_weights") is not None and settings["early_stopping"]["restore_best_weights"]:
        model.set_weights(state["best_weights"])
    seconds = time.perf_counter() - started
    epochs_here = len(history_rows) - start_epoch
    summary = summarize(history_rows)
    summary.update(train_rows=len(fit_rows), validation_rows=len(validation))
    if settings["refit_outputs"]:
        # On every training face, the validation ones too: the refit has 8 or 30 x as many values to fit,
        # not a network's, and they are faces as they come.
        summary.update(refit_outputs(model, images, keypoints, settings["refit_ridge"], batch_size))
        log(f"{model.name}: outputs refit on {len(images)} training faces, their RMSE "
            f"{summary['refit_rmse_before']:.3f} -> {summary['refit_rmse_after']:.3f} px")
    if epochs_here > 0 and seconds > 0:
        run.log_metrics({"images_per_second": epochs_here * len(fit_rows) / seconds})
    return model, history_rows, summary


def new_model(settings, fit_keypoints, synchronized_batchnorm):
    """The compiled network of `settings`, its output bias from the fit rows' keypoints. With several
    replicas BatchNorm normalises over the global batch, as one device does (train.distribute)."""
    model = build_model(fit_keypoints.shape[1], output_bias=_output_bias(settings, fit_keypoints),
                        synchronized_batchnorm=synchronized_batchnorm, **settings["model"])
    return compile_model(
        model,
        optimizer=settings["optimizer"],
        learning_rate=settings["learning_rate"],
        loss=settings["loss"],
        jit_compile=settings["jit_compile"],
    )


def _output_bias(settings, keypoints):
    choice = settings["output_bias"]
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


def history_frame(history_rows):
    import pandas as pd

    frame = pd.DataFrame(history_rows, columns=HISTORY_COLUMNS)
    frame["epoch"] = frame["epoch"].astype(int) + 1
    return frame
