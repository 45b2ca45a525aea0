import numpy as np
import pytest

from keypoints import tracking
from keypoints.columns import EIGHT_COLUMNS
from keypoints.params import merge
from keypoints.train import HISTORY_COLUMNS, fit, history_frame, validation_rows

SETTINGS = {
    "seed": 7,
    "deterministic": True,
    "epochs": 2,
    "batch_size": 8,
    "validation_fraction": 0.25,
    "optimizer": "adam",
    "learning_rate": 0.01,
    "loss": "mean_squared_error",
    "output_bias": "mean",
    "model": {"filters": [4], "kernel_sizes": [3], "convs_per_block": 1, "leaky_relu_slope": 0.1,
              "dense_units": 8, "dropout": 0.1},
    "reduce_lr": {"monitor": "val_loss", "patience": 1, "factor": 0.5, "min_lr": 1e-5},
    "early_stopping": {"monitor": "val_loss", "patience": 5, "restore_best_weights": True},
    "augment": {},
}


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A real MLflow SQLite store in a temporary directory; returns its client."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(uri)


def open_run(resume_run_id=None):
    return tracking.Run("train-tests", "train_8", resume_run_id=resume_run_id)


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
    model, history, summary, run, checkpoint = fit(
        images, keypoints, EIGHT_COLUMNS, SETTINGS, tmp_path / "checkpoint", open_run
    )
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
        fit(images, keypoints, EIGHT_COLUMNS, SETTINGS, tmp_path / name, open_run)[1]
        for name in ("first", "second")
    ]
    assert histories[0] == histories[1]
    other = fit(images, keypoints, EIGHT_COLUMNS, merge(SETTINGS, {"seed": 8}), tmp_path / "other", open_run)[1]
    assert other != histories[0]


def test_a_stopped_fit_resumes_from_its_checkpoint(tmp_path, store):
    images, keypoints = data()
    directory = tmp_path / "checkpoint"
    first = fit(images, keypoints, EIGHT_COLUMNS, merge(SETTINGS, {"epochs": 1}), directory, open_run)
    assert (directory / "state.json").is_file(), "the checkpoint stays until the stage has saved its outputs"
    resumed_ids = []
    _, history, summary, _, _ = fit(
        images, keypoints, EIGHT_COLUMNS, merge(SETTINGS, {"epochs": 3}), directory,
        lambda resume: resumed_ids.append(resume) or open_run(resume),
    )
    assert resumed_ids == [first[3].run_id], "the resumed fit continues the same MLflow run"
    assert logged_steps(store, first[3].run_id, "loss") == [0, 1, 2]
    assert [row["epoch"] for row in history] == [0, 1, 2]
    assert history[0] == first[1][0]
    assert summary["epochs_run"] == 3


def test_a_checkpoint_of_other_settings_is_discarded(tmp_path, store):
    images, keypoints = data()
    directory = tmp_path / "checkpoint"
    fit(images, keypoints, EIGHT_COLUMNS, merge(SETTINGS, {"epochs": 1}), directory, open_run)
    _, history, _, _, _ = fit(
        images, keypoints, EIGHT_COLUMNS, merge(SETTINGS, {"epochs": 1, "learning_rate": 0.02}), directory, open_run
    )
    assert [row["epoch"] for row in history] == [0]


def test_recalibrated_batchnorm_makes_inference_match_training_mode_on_that_batch():
    import keras

    from keypoints.model import build_model
    from keypoints.train import batchnorm_calibrator, calibration_rows

    keras.utils.set_random_seed(0)
    model = build_model(8, filters=[4, 8], kernel_sizes=[3, 3], dense_units=8, dropout=0.0)
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
        _, history, _, _, _ = fit(images, keypoints, EIGHT_COLUMNS, merge(settings, {"precise_batchnorm_rows": rows}),
                                  tmp_path / f"checkpoint{rows}", open_run)
        losses[rows] = history[-1]["val_loss"]
    assert losses[64] < losses[0]
