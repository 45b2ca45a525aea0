import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import model_settings
from keypoints import tracking
from keypoints.checkpoint import Checkpoint, fingerprint
from keypoints.columns import EIGHT_COLUMNS
from keypoints.params import load_params, merge, training_settings
from keypoints.train import HISTORY_COLUMNS, cosine_learning_rate, fit, history_frame, validation_rows

# The project's own reference settings (the article's, `train` alone), made tiny: every key the code
# reads comes from params.yaml.
PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
PARAMS["train"]["preset"] = "reference"
SETTINGS = merge(training_settings(PARAMS, 8), {
    "seed": 7,
    "epochs": 2,
    "batch_size": 8,
    "validation_fraction": 0.25,
    "learning_rate": 0.01,
    "precise_batchnorm_rows": 0,
    "model": {"filters": [4], "kernel_sizes": [3], "convs_per_block": 1, "dense_units": 8},
    "reduce_lr": {"patience": 1, "factor": 0.5},
    "early_stopping": {"patience": 5},
})


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A real MLflow SQLite store in a temporary directory; returns its client."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(uri)


def train(images, keypoints, settings, directory, opened_runs=None):
    """What the training stage does: open the checkpoint and the run (resumed together), then fit.
    Returns (model, history, summary, run, checkpoint)."""
    checksum = hashlib.sha256(images.tobytes() + keypoints.tobytes()).hexdigest()
    checkpoint = Checkpoint(directory, fingerprint(settings, checksum))
    if opened_runs is not None:
        opened_runs.append(checkpoint.run_id)
    run = tracking.Run("train-tests", "train_8", resume_run_id=checkpoint.run_id)
    return (*fit(images, keypoints, EIGHT_COLUMNS, settings, checkpoint, run), run, checkpoint)


def logged_steps(client, run_id, metric):
    return [m.step for m in client.get_metric_history(run_id, metric)]


def data(rows=32, seed=0):
    generator = np.random.default_rng(seed)
    images = generator.integers(0, 256, (rows, 96, 96), dtype=np.uint8)
    keypoints = generator.uniform(20, 70, (rows, 8)).astype(np.float32)
    return images, keypoints


def test_validation_rows_are_seeded_and_disjoint():
    fit_rows, validation = validation_rows(20, 0.25, seed=1)
    assert len(validation) == 5 and not set(fit_rows) & set(validation)
    np.testing.assert_array_equal(validation, validation_rows(20, 0.25, seed=1)[1])
    with pytest.raises(ValueError, match="validation"):
        validation_rows(20, 0.0, seed=1)


def test_fit_records_every_epoch_and_logs_it(tmp_path, store):
    images, keypoints = data()
    model, history, summary, run, checkpoint = train(images, keypoints, SETTINGS, tmp_path / "checkpoint")
    frame = history_frame(history)
    assert list(frame.columns) == HISTORY_COLUMNS
    assert frame["epoch"].tolist() == [1, 2]
    assert np.isfinite(frame.drop(columns="epoch").to_numpy()).all()
    assert summary["epochs_run"] == 2 and summary["train_rows"] == 24 and summary["validation_rows"] == 8
    for metric in ("loss", "mae", "val_loss", "val_mae", "lr"):
        assert logged_steps(store, run.run_id, metric) == [0, 1], metric
    stored = store.get_run(run.run_id)
    assert stored.data.params["model.filters"] == "[4]" and stored.data.params["outputs"] == "8"
    assert stored.data.metrics["loss"] == pytest.approx(history[-1]["loss"])
    assert model.predict(images[:2, ..., None].astype("float32"), verbose=0).shape == (2, 8)


def test_same_settings_give_the_same_history(tmp_path, store):
    images, keypoints = data()
    histories = [
        train(images, keypoints, SETTINGS, tmp_path / name)[1]
        for name in ("first", "second")
    ]
    assert histories[0] == histories[1]
    other = train(images, keypoints, merge(SETTINGS, {"seed": 8}), tmp_path / "other")[1]
    assert other != histories[0]


def test_a_stopped_fit_resumes_from_its_checkpoint(tmp_path, store):
    images, keypoints = data()
    directory = tmp_path / "checkpoint"
    first = train(images, keypoints, merge(SETTINGS, {"epochs": 1}), directory)
    assert (directory / "state.json").is_file(), "the checkpoint stays until the stage has saved its outputs"
    resumed_ids = []
    _, history, summary, _, _ = train(images, keypoints, merge(SETTINGS, {"epochs": 3}), directory, resumed_ids)
    assert resumed_ids == [first[3].run_id], "the resumed fit continues the same MLflow run"
    assert logged_steps(store, first[3].run_id, "loss") == [0, 1, 2]
    assert [row["epoch"] for row in history] == [0, 1, 2]
    assert history[0] == first[1][0]
    assert summary["epochs_run"] == 3


# A training process that kills itself (SIGKILL, as `kill -9`) right after its checkpoint records
# `next_epoch` == KILL_AT: the same fit as train() above, in a process of its own.
KILLED_TRAINING = """
import json, os, signal, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_train import data, train
from keypoints import checkpoint

settings, directory, kill_at = json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
save = checkpoint.Checkpoint.save

def save_then_die(self, model, state, best_weights):
    save(self, model, state, best_weights)
    if state["next_epoch"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

checkpoint.Checkpoint.save = save_then_die
train(*data(), settings, directory)
"""


def test_a_killed_and_resumed_fit_gives_the_numbers_of_an_uninterrupted_one(tmp_path, store):
    """Epoch by epoch: the learning rate exactly, the losses to float precision. Dropout, shuffling and
    augmentation all draw; at the kill ReduceLROnPlateau is one epoch into its patience, and lowers
    the rate after it."""
    settings = merge(SETTINGS, {
        "epochs": 6, "learning_rate": 0.05, "reduce_lr": {"patience": 2, "factor": 0.5},
        "model": {"dropout": 0.3}, "augment": {"flip": True, "shift": 3.0, "brightness": 0.1},
    })
    uninterrupted = train(*data(), settings, tmp_path / "uninterrupted")[1]

    directory = tmp_path / "killed"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_TRAINING, str(Path(__file__).parent), json.dumps(settings), str(directory), "3"],
        capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert json.loads((directory / "state.json").read_text())["next_epoch"] == 3
    resumed = train(*data(), settings, directory)[1]
    assert [row["epoch"] for row in resumed] == list(range(6))
    for expected, got in zip(uninterrupted, resumed):
        assert got["lr"] == expected["lr"], (got, expected)
        for key in ("loss", "mae", "val_loss", "val_mae"):
            assert got[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-6), (key, got, expected)
    lrs = [row["lr"] for row in uninterrupted]
    assert lrs[3:] != lrs[:3], "without a learning-rate change after the kill this test could not fail"


def test_a_checkpoint_of_other_settings_is_discarded(tmp_path, store):
    images, keypoints = data()
    directory = tmp_path / "checkpoint"
    train(images, keypoints, merge(SETTINGS, {"epochs": 1}), directory)
    _, history, _, _, _ = train(images, keypoints, merge(SETTINGS, {"epochs": 1, "learning_rate": 0.02}), directory)
    assert [row["epoch"] for row in history] == [0]


def test_recalibrated_batchnorm_makes_inference_match_training_mode_on_that_batch():
    import keras

    from keypoints.model import build_model
    from keypoints.precise_batchnorm import batchnorm_calibrator, calibration_rows

    keras.utils.set_random_seed(0)
    model = build_model(8, **model_settings(filters=[4, 8], kernel_sizes=[3, 3], dense_units=8, dropout=0.0))
    images, _ = data(rows=24)
    batch = images[..., None].astype("float32")
    training_mode = model(batch, training=True).numpy()  # also nudges the running averages a little
    before = model(batch, training=False).numpy()
    assert np.abs(before - training_mode).max() > 1e-2, "fresh running averages differ from the batch's"
    batchnorm_calibrator(model)(images, batch_size=len(images))
    after = model(batch, training=False).numpy()
    np.testing.assert_allclose(after, model(batch, training=True).numpy(), rtol=1e-3, atol=1e-3)
    assert calibration_rows(10, 4).tolist() == [0, 3, 6, 9] and len(calibration_rows(10, 0)) == 0


def test_fit_with_precise_batchnorm_validates_better_than_without(tmp_path, store):
    """Few steps: Keras' running averages still mostly hold their start values, the estimates do not."""
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, (64, 96, 96), dtype=np.uint8)
    # A learnable target: the mean brightness of the left and right halves, in pixels.
    keypoints = np.stack([images[:, :, :48].mean(axis=(1, 2)), images[:, :, 48:].mean(axis=(1, 2))] * 4, axis=1)
    keypoints = (20 + keypoints / 255 * 50).astype(np.float32)
    settings = merge(SETTINGS, {"epochs": 3, "learning_rate": 0.001, "model": {"dropout": 0.0}})
    losses = {}
    for rows in (0, 64):
        _, history, _, _, _ = train(images, keypoints, merge(settings, {"precise_batchnorm_rows": rows}),
                                    tmp_path / f"checkpoint{rows}")
        losses[rows] = history[-1]["val_loss"]
    assert losses[64] < losses[0]


def test_a_training_stage_that_fails_marks_its_mlflow_run_failed(tmp_path, store):
    """The real stage script, on one training row: fit refuses it after the run was opened."""
    project = Path(__file__).resolve().parents[1]
    (tmp_path / "params.yaml").write_text((project / "params.yaml").read_text())
    images, keypoints = data(rows=1)
    np.save(tmp_path / "train_images.npy", images)
    np.save(tmp_path / "train_keypoints.npy", keypoints)
    result = subprocess.run(
        [sys.executable, str(project / "stages" / "train.py"), "--outputs", "8", "--data", str(tmp_path),
         "--model", "m.keras", "--history", "h.csv", "--metrics", "m.json", "--checkpoints", "checkpoints"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0 and "no validation rows" in result.stderr, result.stderr[-3000:]
    experiment = load_params(tmp_path / "params.yaml")["mlflow"]["experiment"]
    runs = store.search_runs([store.get_experiment_by_name(experiment).experiment_id])
    assert [run.info.status for run in runs] == ["FAILED"]


def test_model_30_starts_from_model_8_s_convolutions_and_a_fresh_head():
    import keras

    from keypoints.model import build_model
    from keypoints.train import start_from

    tiny = model_settings(filters=[4, 8], kernel_sizes=[3, 3], dense_units=8)
    keras.utils.set_random_seed(3)
    model_8 = build_model(8, **tiny)
    for layer in model_8.layers:  # as if trained: every weight away from its initial value
        layer.set_weights([w + np.random.default_rng(0).normal(0, 1, w.shape) for w in layer.get_weights()])
    model_30 = build_model(30, **tiny)
    flatten = next(i for i, layer in enumerate(model_30.layers) if isinstance(layer, keras.layers.Flatten))
    fresh_head = model_30.layers[flatten + 1].get_weights()[0].copy()
    start_from(model_30, model_8)
    copied = [layer for layer in model_30.layers[:flatten] if layer.weights]
    assert len(copied) >= 4, "both convolutions and both BatchNorms"
    for layer, source in zip(model_30.layers[:flatten], model_8.layers[:flatten]):
        for weight, source_weight in zip(layer.get_weights(), source.get_weights()):
            np.testing.assert_array_equal(weight, source_weight)
    np.testing.assert_array_equal(model_30.layers[flatten + 1].get_weights()[0], fresh_head)
    with pytest.raises(ValueError, match="train.model must be the same for both models"):
        start_from(build_model(30, **model_settings(filters=[4, 16], kernel_sizes=[3, 3], dense_units=8)), model_8)


def test_the_cosine_rate_falls_from_the_peak_to_the_floor():
    rates = [cosine_learning_rate(step, 10, 0.01, 0.001) for step in range(11)]
    assert rates[0] == pytest.approx(0.01) and rates[10] == pytest.approx(0.001)
    assert rates[5] == pytest.approx(0.0055)
    assert all(later < earlier for earlier, later in zip(rates, rates[1:]))
    assert cosine_learning_rate(12, 10, 0.01, 0.001) == pytest.approx(0.001), "past the end it stays at the floor"


def test_a_cosine_fit_runs_its_schedule_step_by_step_and_resumes_on_it(tmp_path, store):
    """Each epoch's recorded rate is its last step's; the plateau callback is out of it (its patience
    of 0 would otherwise cut the rate after every epoch). Resumed after a stop, the fit runs the same
    rates and losses as an uninterrupted one."""
    settings = merge(SETTINGS, {"lr_schedule": "cosine", "epochs": 3, "learning_rate": 0.02,
                                "reduce_lr": {"patience": 0, "factor": 0.1, "min_lr": 0.002}})
    steps = 3  # 24 fit rows in batches of 8
    uninterrupted = train(*data(), settings, tmp_path / "uninterrupted")[1]
    expected = [cosine_learning_rate(epoch * steps + steps - 1, 3 * steps, 0.02, 0.002) for epoch in range(3)]
    assert [row["lr"] for row in uninterrupted] == pytest.approx(expected, rel=1e-6)

    directory = tmp_path / "stopped"
    stopped = train(*data(), merge(settings, {"epochs": 1}), directory)
    assert stopped[1][0]["lr"] == pytest.approx(cosine_learning_rate(steps - 1, steps, 0.02, 0.002), rel=1e-6), \
        "a 1-epoch cosine falls within its one epoch"
    resumed = train(*data(), settings, directory)[1]
    assert resumed[0]["lr"] == pytest.approx(expected[0], rel=1e-6), \
        "another number of epochs is another schedule: the 1-epoch snapshot is not resumed"

    killed = tmp_path / "killed"
    result = subprocess.run(
        [sys.executable, "-c", KILLED_TRAINING, str(Path(__file__).parent), json.dumps(settings), str(killed), "2"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    after_kill = train(*data(), settings, killed)[1]
    for want, got in zip(uninterrupted, after_kill):
        assert got["lr"] == pytest.approx(want["lr"], rel=1e-6)
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-6)


def test_an_unknown_learning_rate_schedule_is_refused(tmp_path, store):
    with pytest.raises(ValueError, match="lr_schedule"):
        train(*data(), merge(SETTINGS, {"lr_schedule": "step"}), tmp_path / "checkpoint")


def test_a_fit_with_refit_outputs_saves_the_refit_network_and_reports_both_errors(tmp_path, store):
    images, keypoints = data()
    plain = train(images, keypoints, SETTINGS, tmp_path / "plain")
    refit = train(images, keypoints, merge(SETTINGS, {"refit_outputs": True}), tmp_path / "refit")
    assert "refit_rmse_before" not in plain[2]
    summary = refit[2]
    assert summary["refit_rmse_after"] < summary["refit_rmse_before"]
    faces = images[..., None].astype("float32")
    # The same fit (the refit comes after it), then other output weights that fit the faces better.
    assert plain[1] == refit[1]
    before, after = (np.sqrt(np.mean((model.predict(faces, verbose=0) - keypoints) ** 2)) for model in (plain[0], refit[0]))
    assert before == pytest.approx(summary["refit_rmse_before"], abs=1e-3)
    assert after == pytest.approx(summary["refit_rmse_after"], abs=1e-3) and after < before
