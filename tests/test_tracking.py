import socket
import time
import warnings

import pytest
from mlflow.tracking import MlflowClient

from keypoints import tracking


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-lark")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    return uri


def test_run_logs_params_metrics_and_dvc_tags(store, tmp_path):
    run = tracking.Run("keypoints-test", "train_8", params_hash="p1", data_checksum="d1")
    run.log_params({"epochs": 3, "model.filters": "[4]"})
    for step in range(3):
        run.log_metrics({"loss": 10.0 - step}, step=step)
    artifact = tmp_path / "note.txt"
    artifact.write_text("hello")
    run.log_artifact(artifact)
    run.finish()

    client = MlflowClient(store)
    stored = client.get_run(run.run_id)
    assert stored.info.run_name == "brisk-lark/train_8"
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"epochs": "3", "model.filters": "[4]"}
    assert {k: stored.data.tags[k] for k in ("stage", "dvc_exp_name", "dvc_baseline_rev", "params_hash", "data_checksum")} == {
        "stage": "train_8", "dvc_exp_name": "brisk-lark", "dvc_baseline_rev": "abc123",
        "params_hash": "p1", "data_checksum": "d1",
    }
    assert [m.value for m in client.get_metric_history(run.run_id, "loss")] == [10.0, 9.0, 8.0]
    assert [a.path for a in client.list_artifacts(run.run_id)] == ["note.txt"]


def test_resumed_run_continues_the_same_run(store):
    first = tracking.Run("keypoints-test", "train_30")
    again = tracking.Run("keypoints-test", "train_30", resume_run_id=first.run_id)
    assert again.run_id == first.run_id


def test_default_store_is_in_the_dvc_root_even_from_a_temp_copy(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert tracking.artifact_location() == (tmp_path.resolve() / "mlartifacts").as_uri()


def test_unreachable_store_warns_and_carries_on(monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker / 'mlflow.db'}")
    with pytest.warns(RuntimeWarning, match="MLflow tracking at sqlite"):
        run = tracking.Run("keypoints-test", "train_8")
    assert run.run_id is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run.log_metrics({"loss": 1.0})
        run.finish()


@pytest.mark.parametrize("error, status", [(ValueError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_a_run_left_by_an_error_is_marked_failed_not_running(store, error, status):
    with pytest.raises(error):
        with tracking.Run("keypoints-test", "train_8") as run:
            raise error("bad setting")
    assert MlflowClient(store).get_run(run.run_id).info.status == status


def test_a_finished_run_stays_finished_in_its_block(store):
    with tracking.Run("keypoints-test", "evaluate") as run:
        run.finish()
    assert MlflowClient(store).get_run(run.run_id).info.status == "FINISHED"


def test_an_unreachable_tracking_server_is_reported_at_once_and_skipped(monkeypatch):
    """MLflow's client alone retries a closed port for minutes per stage, silently."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # the port itself, not a proxy, must be checked
    started = time.monotonic()
    with pytest.warns(RuntimeWarning, match=f"unreachable: 127.0.0.1:{port}"):
        run = tracking.Run("keypoints-test", "train_8")
        run.log_metrics({"loss": 1.0})
        run.finish()
    assert run.run_id is None
    assert time.monotonic() - started < 2 * tracking.CONNECT_SECONDS


def test_through_a_proxy_the_proxy_is_what_must_answer(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port} did not accept"):
        tracking.check_reachable("http://tracking.example.com:5000")


def test_a_tracking_server_chooses_the_artifact_location_a_local_store_gets_the_project_s(monkeypatch, tmp_path):
    """With a server's proxied artifacts (mlflow server --artifacts-destination), an experiment created
    with a file: location would put the artifacts on the client's disk, out of the team's reach."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.artifact_location() is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    assert tracking.artifact_location() == (tmp_path.resolve() / "mlartifacts").as_uri()


def test_a_password_in_the_tracking_uri_is_not_printed():
    assert tracking.shown_uri("https://ana:s3cret@mlflow.example.com:5000/") == "https://ana:***@mlflow.example.com:5000/"
    assert tracking.shown_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
