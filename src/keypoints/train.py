"""Fit one keypoint model (8 or 30 outputs) with the article's callbacks, resumably.

The caller owns the MLflow run and the checkpoint: it opens both (continuing the checkpoint's run
when resuming), calls fit, writes the outputs, then finishes the run and clears the checkpoint.
"""
import time

import keras
import numpy as np
import tensorflow as tf

from keypoints.augment import make_dataset
from keypoints.checkpoint import callback_state
from keypoints.model import build_model, compile_model
from keypoints.params import flatten
from keypoints.precise_batchnorm import PreciseBatchNorm, calibration_rows
from keypoints.split import holdout_count

HISTORY_COLUMNS = ["epoch", "loss", "mae", "val_loss", "val_mae", "lr"]


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
    keras.utils.set_random_seed(settings["seed"])
    if settings["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy("mixed_float16" if settings["mixed_precision"] else "float32")


def log_epoch(run, row):
    run.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])


def make_callbacks(settings, history_rows, run, checkpoint, calibration_images):
    """The article's ReduceLROnPlateau and EarlyStopping, resumed from the checkpoint's state, plus
    the epoch recorder and (with calibration images) precise BatchNorm."""
    reduce_lr = keras.callbacks.ReduceLROnPlateau(verbose=1, **settings["reduce_lr"])
    early_stopping = keras.callbacks.EarlyStopping(verbose=1, **settings["early_stopping"])
    resumed = checkpoint.state

    class Progress(keras.callbacks.Callback):
        """Records each epoch (with the learning rate it ran at), logs it to MLflow, snapshots the fit."""

        def on_train_begin(self, logs=None):
            # Runs after the two callbacks above have reset themselves in their own on_train_begin.
            if resumed:
                for callback, name in ((reduce_lr, "reduce_lr"), (early_stopping, "early_stopping")):
                    for key, value in resumed[name].items():
                        setattr(callback, key, value)
                early_stopping.best_weights = resumed.get("best_weights")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"epoch": epoch, **{k: float(logs[k]) for k in HISTORY_COLUMNS[1:5] if k in logs}}
            row["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            history_rows.append(row)
            checkpoint.save(
                self.model,
                {
                    "next_epoch": epoch + 1,
                    "history": history_rows,
                    "run_id": run.run_id,
                    "reduce_lr": callback_state(reduce_lr),
                    "early_stopping": callback_state(early_stopping),
                    "stopped": bool(self.model.stop_training),
                },
                early_stopping.best_weights,
            )
            # After the snapshot: a kill in between re-logs this epoch on resume rather than twice.
            log_epoch(run, row)

    # Order matters: Progress reads the learning rate before ReduceLROnPlateau lowers it, and
    # snapshots after EarlyStopping has updated its best weights.
    callbacks = [early_stopping, Progress(), reduce_lr]
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
    initial_model: a trained keras model whose layers (all but the output layer) the new model starts
    from (train.start_from_model_8); None: from scratch."""
    configure(settings)
    fit_rows, validation = validation_rows(len(images), settings["validation_fraction"], settings["seed"])
    state = checkpoint.state
    if state:
        log(f"resuming from {checkpoint.directory} at epoch {state['next_epoch'] + 1}")
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
            jit_compile=settings["jit_compile"],
        )
        if initial_model is not None:
            start_from(model, initial_model)
            log(f"{model.name} starts from {initial_model.name}'s trained layers")
        history_rows = []
        run.log_params(flatten(settings))
        run.log_params({"outputs": keypoints.shape[1], "fit_rows": len(fit_rows), "validation_rows": len(validation)})

    # One fancy index, not two: images[fit_rows] would copy the whole fit set first.
    calibration = images[fit_rows[calibration_rows(len(fit_rows), settings["precise_batchnorm_rows"])]]
    callbacks = make_callbacks(settings, history_rows, run, checkpoint, calibration)
    batch_size = settings["batch_size"]
    train_data = make_dataset(
        images[fit_rows], keypoints[fit_rows], columns, batch_size,
        training=True, seed=settings["seed"], augment=settings["augment"],
    )
    validation_data = make_dataset(
        images[validation], keypoints[validation], columns, batch_size, training=False, seed=settings["seed"]
    )
    started = time.perf_counter()
    start_epoch = state["next_epoch"] if state else 0
    if not (state and state["stopped"]) and start_epoch < settings["epochs"]:
        model.fit(
            train_data,
            validation_data=validation_data,
            epochs=settings["epochs"],
            initial_epoch=start_epoch,
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
    if epochs_here > 0 and seconds > 0:
        run.log_metrics({"images_per_second": epochs_here * len(fit_rows) / seconds})
    return model, history_rows, summary


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
