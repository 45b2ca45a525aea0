"""End to end: the real `dvc repro` of the whole pipeline in a temporary git repo, with tiny params."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import run

pytestmark = pytest.mark.slow

DECLARED_OUTPUTS = [
    "data/raw/training.csv", "data/raw/test.csv", "data/raw/IdLookupTable.csv",
    "data/parsed/train_images.npy", "data/parsed/train_keypoints.npy", "data/parsed/test_images.npy",
    "data/parsed/test_ids.npy", "data/parsed/id_lookup.csv",
    *[f"data/split/{n}/{part}_{kind}.npy" for n in (8, 30) for part in ("train", "holdout") for kind in ("images", "keypoints")],
    "models/model_8.keras", "models/model_30.keras", "models/framing.json",
    "plots/history_8.csv", "plots/history_30.csv", "metrics/train_8.json", "metrics/train_30.json",
    "data/predictions/holdout_8.npy", "data/predictions/holdout_30.npy", "data/predictions/holdout_merged.npy",
    "data/predictions/test_keypoints.csv", "submission.csv",
    "metrics/evaluate.json", "metrics/per_keypoint.json", "plots/holdout_faces.png", "plots/curves.png",
    "models/predictor/MLmodel", "models/registered.json", "models/keypoints.tflite", "metrics/export.json",
]


def test_every_declared_output_exists(reproduced_project):
    missing = [path for path in DECLARED_OUTPUTS if not (reproduced_project / path).is_file()]
    assert not missing
    # ... and the list above is all of them: every out/metric/plot of dvc.lock is one of ours.
    lock = yaml.safe_load((reproduced_project / "dvc.lock").read_text())
    locked = {out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])}
    directories = {"data/raw", "data/parsed", "data/split/8", "data/split/30", "data/predictions", "models/predictor"}
    assert locked - directories <= set(DECLARED_OUTPUTS)
    assert set(lock["stages"]) == {"fetch", "parse", "split", "train_8", "train_30", "framing", "predict_merge",
                                   "evaluate", "register", "export"}


def test_metrics_are_finite_and_complete(reproduced_project):
    metrics = json.loads((reproduced_project / "metrics/evaluate.json").read_text())
    assert metrics["rows_holdout_30"] > 0 and metrics["rows_holdout_8"] >= metrics["rows_holdout_30"]
    for name in ("model_8", "model_30", "merged"):
        for kind in ("rmse", "mae"):
            assert math.isfinite(metrics[f"{name}_{kind}"]) and metrics[f"{name}_{kind}"] > 0
    per_keypoint = json.loads((reproduced_project / "metrics/per_keypoint.json").read_text())
    assert len(per_keypoint) == 2 * (4 + 15 + 15)
    assert all(math.isfinite(value) for value in per_keypoint.values())
    history = pd.read_csv(reproduced_project / "plots/history_30.csv")
    assert list(history.columns) == ["epoch", "loss", "mae", "val_loss", "val_mae", "lr"]
    assert history["epoch"].tolist() == [1, 2]


def test_submission_answers_the_lookup_table(reproduced_project):
    lookup = pd.read_csv(reproduced_project / "data/raw/IdLookupTable.csv")
    submission = pd.read_csv(reproduced_project / "submission.csv")
    assert list(submission.columns) == ["RowId", "Location"]
    assert submission["RowId"].tolist() == lookup["RowId"].tolist()
    assert submission["Location"].between(0, 96).all()
    merged = np.load(reproduced_project / "data/predictions/holdout_merged.npy")
    model_8 = np.load(reproduced_project / "data/predictions/holdout_8.npy")
    assert merged.shape[1] == 30 and model_8.shape[1] == 8


def test_mlflow_holds_the_runs_with_per_epoch_curves(reproduced_project):
    client = MlflowClient(f"sqlite:///{reproduced_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("facial-keypoints")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["evaluate", "register", "train_30", "train_8"]
    commit = run(["git", "rev-parse", "HEAD"], reproduced_project).stdout.strip()
    for stored in runs:
        assert stored.info.status == "FINISHED"
        assert stored.data.tags["git_commit"] == commit
        if stored.info.run_name == "register":
            assert {a.path for a in client.list_artifacts(stored.info.run_id)} == {"predictor"}
        elif stored.info.run_name.startswith("train"):
            for metric in ("loss", "mae", "val_loss", "val_mae", "lr"):
                assert [m.step for m in client.get_metric_history(stored.info.run_id, metric)] == [0, 1]
            assert {a.path for a in client.list_artifacts(stored.info.run_id)} >= {"model"}
        else:
            assert math.isfinite(stored.data.metrics["merged_rmse"])
            assert math.isfinite(stored.data.metrics["per_keypoint/merged_rmse_nose_tip"])
            assert {a.path for a in client.list_artifacts(stored.info.run_id)} >= {"holdout_faces.png", "curves.png"}
    assert (reproduced_project / "mlartifacts").is_dir(), "artifacts stay inside the project"


def test_the_predictor_is_registered_as_candidate_and_first_champion(reproduced_project):
    record = json.loads((reproduced_project / "models/registered.json").read_text())
    metrics = json.loads((reproduced_project / "metrics/evaluate.json").read_text())
    assert (record["registered"], record["version"], record["aliases"]) == (True, "1", ["candidate", "champion"])
    assert record["merged_rmse"] == metrics["merged_rmse"]
    client = MlflowClient(f"sqlite:///{reproduced_project / 'mlflow.db'}")
    version = client.get_model_version_by_alias("facial-keypoints", "champion")
    commit = run(["git", "rev-parse", "HEAD"], reproduced_project).stdout.strip()
    assert version.tags["git_commit"] == commit and float(version.tags["merged_rmse"]) == metrics["merged_rmse"]
    evaluate = client.search_runs([client.get_experiment_by_name("facial-keypoints").experiment_id],
                                  "tags.stage = 'evaluate'")[0]
    assert version.tags["data_checksum"] == evaluate.data.tags["data_checksum"] == record["data_checksum"]


def test_the_exported_tflite_file_gives_predict_merge_s_keypoints(reproduced_project):
    from keypoints.export import tflite_predictor

    faces = np.load(reproduced_project / "data/split/30/holdout_images.npy")
    expected = np.load(reproduced_project / "data/predictions/holdout_merged.npy")
    exported = tflite_predictor(reproduced_project / "models/keypoints.tflite")(faces)
    assert np.abs(exported - expected).max() <= 0.01
    recorded = json.loads((reproduced_project / "metrics/export.json").read_text())
    assert recorded["tflite_max_deviation_px"] == pytest.approx(float(np.abs(exported - expected).max()), abs=1e-6)
    assert recorded["rows_holdout_30"] == len(faces) > 0


def test_dvc_artifacts_get_fetches_a_tagged_model_by_name(reproduced_project, tmp_path):
    """DVC's model registry: an artifact of dvc.yaml, versioned by a GTO tag (`name@v1.0.0`), is fetched
    by name. A copy of the project, so the shared one keeps its commit (the runs' git_commit)."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(reproduced_project, project, symlinks=True)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "results"], project)
    run(["git", "tag", "-a", "keypoints-tflite@v1.0.0", "-m", "Registering artifact keypoints-tflite version v1.0.0"], project)
    listed = run(["dvc", "ls", ".", "models", "--dvc-only"], project).stdout.split()
    assert {"predictor", "keypoints.tflite", "model_8.keras", "model_30.keras", "framing.json"} <= set(listed)
    run(["dvc", "artifacts", "get", str(project), "keypoints-tflite", "-o", str(tmp_path / "got.tflite")], tmp_path)
    assert (tmp_path / "got.tflite").read_bytes() == (project / "models/keypoints.tflite").read_bytes()


def test_pixel_centre_moves_the_labels_in_and_the_test_keypoints_out(reproduced_project, tmp_path):
    """parse.pixel_centre is a parameter of parse (the labels move into the project's convention) and of
    predict_merge (test_keypoints.csv and submission.csv move back to the data's); the held-out
    predictions stay in the project's convention, as the split's labels are. A copy of the project."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(reproduced_project, project, symlinks=True)
    before_test = pd.read_csv(project / "data/predictions/test_keypoints.csv")
    before_submission = pd.read_csv(project / "submission.csv")
    before_holdout = np.load(project / "data/predictions/holdout_merged.npy")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["parse"]["pixel_centre"] = 1.0
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run(["dvc", "status", "--json"], project).stdout)
    assert {"parse", "predict_merge"} <= set(status) and "train_8" not in status  # train_8: via parse's outputs only
    run(["dvc", "repro", "--single-item", "predict_merge"], project)
    after_test = pd.read_csv(project / "data/predictions/test_keypoints.csv")
    assert after_test["ImageId"].tolist() == before_test["ImageId"].tolist()
    np.testing.assert_allclose(after_test.iloc[:, 1:].to_numpy(), before_test.iloc[:, 1:].to_numpy() + 0.5, atol=1e-4)
    moved = pd.read_csv(project / "submission.csv")["Location"] - before_submission["Location"]
    inside = before_submission["Location"].between(1, 95)  # the clip to [0, 96] aside
    assert inside.any() and np.allclose(moved[inside], 0.5, atol=1e-3)
    np.testing.assert_array_equal(np.load(project / "data/predictions/holdout_merged.npy"), before_holdout)


def test_nothing_changed_reruns_nothing(reproduced_project):
    result = run(["dvc", "repro"], reproduced_project)
    assert "Running stage" not in result.stdout
    status = run(["dvc", "status"], reproduced_project)
    assert "up to date" in status.stdout


def test_dag_shows_the_pipeline(reproduced_project):
    dag = run(["dvc", "dag", "--md"], reproduced_project).stdout
    for stage in ("fetch", "parse", "split", "train_8", "train_30", "framing", "predict_merge", "evaluate", "register", "export"):
        assert stage in dag


def test_keypoints_detect_runs_on_the_pipeline_models(reproduced_project, tmp_path):
    """The trained models and the learned framing are all `keypoints detect` needs."""
    import cv2

    from keypoints.synthetic import draw_faces

    faces, _ = draw_faces(1, seed=4)
    photo = np.full((300, 400), 90, np.uint8)
    photo[40:232, 100:292] = cv2.resize(faces[0], (192, 192), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    framing = json.loads((reproduced_project / "models/framing.json").read_text())
    assert len(framing["mean_shape"]) == 30 and set(framing["settings"]["detectors"]) <= {"haar", "hog"}
    result = run(["keypoints", "detect", str(tmp_path / "photo.png"), "--out", str(tmp_path / "out")], reproduced_project)
    table = pd.read_csv(tmp_path / "out" / "keypoints.csv")
    assert len(table) == 1 and np.isfinite(table.iloc[0, 5:].to_numpy(float)).all()
    assert "1 images" in result.stdout
