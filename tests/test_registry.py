"""The Model Registry on a real SQLite store: versions, their tags, and the champion rule."""
import json
import warnings
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from keypoints import registry, tracking

METRICS = {"merged_rmse": 2.0, "model_8_rmse": 1.5, "model_30_rmse": 2.5, "merged_mae": 1.0}


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-lark")
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    # The artifacts go under the project root (tracking.artifact_location): here, the test's directory.
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    return uri


@pytest.fixture
def model_dir(tmp_path):
    """What the registry stores is a directory; the served model itself is tested in test_serving."""
    folder = tmp_path / "predictor"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    return folder


def publish(model_dir, merged_rmse, data_checksum="held-out-1"):
    with tracking.Run("keypoints-test", "register", data_checksum=data_checksum) as run:
        record = registry.publish(run, model_dir, "keypoints", {**METRICS, "merged_rmse": merged_rmse}, data_checksum)
        run.finish()
    return record


def champion(store):
    return str(MlflowClient(store).get_model_version_by_alias("keypoints", "champion").version)


def test_the_champion_moves_only_to_a_lower_rmse_on_the_same_held_out_data(store, model_dir):
    first = publish(model_dir, 2.0)
    assert (first["version"], first["aliases"], first["champion_moved"]) == ("1", ["candidate", "champion"], True)
    worse = publish(model_dir, 2.5)
    assert (worse["version"], worse["aliases"], worse["champion_version"]) == ("2", ["candidate"], "1")
    assert worse["reason"] == "merged RMSE 2.5000 does not beat champion v1's 2.0000"
    other_data = publish(model_dir, 0.5, data_checksum="held-out-2")
    assert not other_data["champion_moved"] and "other held-out data" in other_data["reason"]
    assert champion(store) == "1"
    better = publish(model_dir, 1.75)
    assert better["champion_moved"] and better["reason"] == "merged RMSE 1.7500 beats champion v1's 2.0000"
    client = MlflowClient(store)
    assert champion(store) == "4" and str(client.get_model_version_by_alias("keypoints", "candidate").version) == "4"


def test_a_version_carries_the_run_s_provenance_and_the_held_out_rmses(store, model_dir):
    record = publish(model_dir, 2.0)
    version = MlflowClient(store).get_model_version("keypoints", record["version"])
    assert {key: version.tags[key] for key in ("dvc_exp_name", "data_checksum", "merged_rmse", "model_8_rmse")} == {
        "dvc_exp_name": "brisk-lark", "data_checksum": "held-out-1", "merged_rmse": "2.0", "model_8_rmse": "1.5"}
    assert "stage" not in version.tags
    assert version.source.endswith("/predictor") and version.run_id
    # The source holds the uploaded directory, where `models:/keypoints@champion` is read from.
    local = MlflowClient(store).download_artifacts(version.run_id, "predictor")
    assert (Path(local) / "MLmodel").read_text() == "flavors: {}\n"


def test_an_unreachable_store_registers_nothing_and_says_so(monkeypatch, tmp_path, model_dir):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker / 'mlflow.db'}")
    with pytest.warns(RuntimeWarning, match="MLflow tracking"):
        record = publish(model_dir, 2.0)
    assert (record["registered"], record["version"], record["aliases"]) == (False, None, [])
    assert "unreachable" in record["reason"]
    json.dumps(record)  # what the stage writes to models/registered.json


def test_a_failing_registry_warns_and_the_run_still_finishes(store, monkeypatch, tmp_path, model_dir):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{blocker / 'registry.db'}")
    with pytest.warns(RuntimeWarning, match="MLflow Model Registry failed"):
        record = publish(model_dir, 2.0)
    assert not record["registered"] and record["reason"].startswith("registry failed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs = MlflowClient(store).search_runs([MlflowClient(store).get_experiment_by_name("keypoints-test").experiment_id])
    assert [run.info.status for run in runs] == ["FINISHED"]


@pytest.mark.parametrize("tags, rmse, moves, reason", [
    ({"data_checksum": "a", "merged_rmse": "2.0"}, 1.9, True, "beats"),
    ({"data_checksum": "a", "merged_rmse": "2.0"}, 2.0, False, "does not beat"),
    ({"data_checksum": "b", "merged_rmse": "9.0"}, 1.0, False, "other held-out data"),
    ({"data_checksum": "a"}, 1.0, False, "no merged_rmse tag"),
])
def test_the_champion_rule(tags, rmse, moves, reason):
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

    version = ModelVersion("keypoints", "3", 0, tags=[ModelVersionTag(key, value) for key, value in tags.items()])
    moved, why = registry.champion_verdict(version, "a", rmse)
    assert moved is moves and reason in why
    assert registry.champion_verdict(None, "a", rmse)[0] is True


def test_the_stage_writes_its_outputs_with_the_store_down(tmp_path, monkeypatch):
    """stages/register.py on tiny models with an unreachable store: the model directory and the record
    are written, and the record says nothing was registered."""
    import shutil
    import sys

    import numpy as np

    from conftest import PROJECT_ROOT
    from test_infer import FRAMING, KNOWN_8, KNOWN_30, constant_model

    constant_model(8, KNOWN_8).save(tmp_path / "model_8.keras")
    constant_model(30, KNOWN_30).save(tmp_path / "model_30.keras")
    (tmp_path / "framing.json").write_text(json.dumps(FRAMING))
    for name, width in (("8", 8), ("30", 30)):
        (tmp_path / "split" / name).mkdir(parents=True)
        np.save(tmp_path / "split" / name / "holdout_images.npy", np.zeros((2, 96, 96), np.uint8))
        np.save(tmp_path / "split" / name / "holdout_keypoints.npy", np.full((2, width), 48.0, np.float32))
    (tmp_path / "evaluate.json").write_text(json.dumps(METRICS))
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "stages"))
    sys.modules.pop("register", None)
    import register

    with pytest.warns(RuntimeWarning, match="MLflow tracking"):
        register.main(["--model-8", "model_8.keras", "--model-30", "model_30.keras", "--framing", "framing.json",
                       "--split", "split", "--metrics", "evaluate.json", "--predictor", "predictor",
                       "--out", "registered.json"])
    record = json.loads((tmp_path / "registered.json").read_text())
    assert (record["registered"], record["model_name"], record["merged_rmse"]) == (False, "facial-keypoints", 2.0)
    assert "unreachable" in record["reason"]
    assert (tmp_path / "predictor" / "MLmodel").is_file() and (tmp_path / "predictor" / "artifacts").is_dir()


def test_a_stale_champion_write_of_a_concurrent_registration_is_settled_to_the_best(store, model_dir):
    """Two registrations at once: both read "no champion", the worse one's write lands last. Settling
    (which every promotion runs after its write) moves the alias to the better version on the same data,
    and leaves a champion of other held-out data alone."""
    better = publish(model_dir, 1.5)
    worse = publish(model_dir, 2.5)
    client = MlflowClient(store)
    client.set_registered_model_alias("keypoints", "champion", worse["version"])  # the stale write
    assert str(registry.settle_champion(client, "keypoints", "held-out-1").version) == better["version"]
    assert champion(store) == better["version"]

    other = publish(model_dir, 3.0, data_checksum="held-out-2")
    client.set_registered_model_alias("keypoints", "champion", other["version"])
    assert str(registry.settle_champion(client, "keypoints", "held-out-1").version) == other["version"]


def test_a_promotion_that_loses_the_race_records_the_winner(store, model_dir):
    best = publish(model_dir, 1.5)
    client = MlflowClient(store)
    later = registry.register(client, "keypoints", str(model_dir), None, {"data_checksum": "held-out-1",
                                                                          "merged_rmse": "2.5"})
    client.delete_registered_model_alias("keypoints", "champion")  # as if it read before best moved it
    record = registry.promote(client, "keypoints", later, "held-out-1", 2.5)
    assert not record["champion_moved"] and record["champion_version"] == best["version"]
    assert "registered at the same time" in record["reason"] and champion(store) == best["version"]
