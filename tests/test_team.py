"""Working as a team (README: Working as a team): one MLflow tracking server backed by PostgreSQL with
its artifacts in S3, one DVC remote in S3, one shared git remote, and two clones that run experiments
at once, push them and take each other's. Real servers on 127.0.0.1, real DVC, real MLflow, tiny params."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import experiments_shown, make_project, run
from servers import (DVC_BUCKET, MLFLOW_BUCKET, SERVER_CREDENTIALS, postgres_url, s3_client, s3_endpoint,  # noqa: F401
                     shared_mlflow)
from keypoints import tracking

pytestmark = pytest.mark.slow

# What each member of the team has in the environment for DVC's remote: distinctive fake values, so
# that the secret test can find any copy of them. (moto accepts any key.)
CLIENT_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAKEYPOINTS15CLIENT", "AWS_SECRET_ACCESS_KEY": "cli15-secret-7e2d-never-logged",
                      "AWS_DEFAULT_REGION": "us-east-1"}
SECRETS = [CLIENT_CREDENTIALS["AWS_ACCESS_KEY_ID"], CLIENT_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
           SERVER_CREDENTIALS["AWS_ACCESS_KEY_ID"], SERVER_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]]
EXPERIMENT, MODEL = "facial-keypoints", "facial-keypoints"
TRAIN_METRICS = ("loss", "mae", "val_loss", "val_mae", "lr")
# Each stage's artifacts, as the stages log them (stages/train.py, evaluate.py, register.py).
STAGE_ARTIFACTS = {
    "train_8": {"model/model_8.keras", "history_8.csv"},
    "train_30": {"model/model_30.keras", "history_30.csv"},
    "evaluate": {"holdout_faces.png", "curves.png", "evaluate.json", "per_keypoint.json"},
    "register": {"predictor/MLmodel"},
}
# The DVC outputs a clone gets from the remote, and the metrics files git carries.
CACHED_OUTPUTS = ("models/model_8.keras", "models/model_30.keras", "models/framing.json", "models/keypoints.tflite",
                  "models/predictor", "data/split", "data/predictions", "submission.csv")
RESULTS = ("metrics/evaluate.json", "metrics/train_8.json", "metrics/train_30.json", "plots/history_8.csv",
           "models/registered.json", "dvc.lock", "params.yaml")


def test_a_run_on_the_tracking_server_stores_its_artifacts_in_s3_through_the_proxy(shared_mlflow, s3_endpoint,
                                                                                   monkeypatch, tmp_path):
    """The client holds no S3 credentials and no S3 endpoint: the artifact goes through the server."""
    for name in [name for name in os.environ if name.startswith("AWS_")] + ["MLFLOW_S3_ENDPOINT_URL"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_mlflow)
    note = tmp_path / "note.txt"
    note.write_text("through the proxy")
    with tracking.Run("keypoints-unit", "train_8") as stored:
        stored.log_metrics({"loss": 2.0}, step=0)
        stored.log_artifact(note)
        stored.finish()
    client = MlflowClient(shared_mlflow)
    assert client.get_experiment_by_name("keypoints-unit").artifact_location.startswith("mlflow-artifacts:")
    assert client.get_run(stored.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    keys = bucket_keys(s3_endpoint, MLFLOW_BUCKET)
    assert any(key.endswith(f"{stored.run_id}/artifacts/note.txt") for key in keys), keys


def bucket_keys(endpoint, bucket):
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


class Team:
    """The shared git remote, two members' clones (a and b) and a log of every command's output."""

    def __init__(self, root, tracking_url):
        self.root, self.tracking_url = root, tracking_url
        self.git_remote = root / "shared.git"
        self.a, self.b = root / "a", root / "b"
        self.outputs = []

    def environment(self):
        """What a member sets: the tracking server, and the DVC remote's credentials (never in a file)."""
        return {"MLFLOW_TRACKING_URI": self.tracking_url, **CLIENT_CREDENTIALS}

    def run(self, command, clone):
        result = run(command, clone, env=self.environment())
        self.outputs.append(result.stdout + result.stderr)
        return result

    def clone(self, name):
        clone = self.root / name
        run(["git", "clone", "-q", str(self.git_remote), str(clone)], self.root)
        run(["git", "config", "user.email", f"{name}@example.com"], clone)
        run(["git", "config", "user.name", name], clone)
        return clone


def start_experiment(team, clone, name, seed):
    # No MLflow or AWS setting but the member's own: the stages must need nothing else (no S3 endpoint
    # or key for MLflow's artifacts, which go through the server).
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MLFLOW_"))}
    environment.update(team.environment(), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.Popen(["dvc", "exp", "run", "-n", name, "-S", f"train.seed={seed}"], cwd=clone, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def team(tmp_path_factory, shared_mlflow, s3_endpoint):
    """The project on a shared git remote with an S3 DVC remote, cloned twice; one experiment run in
    each clone at the same time (team-a in a, team-b in b), both tracked on the shared server."""
    root = tmp_path_factory.mktemp("team")
    origin = make_project(root / "origin")
    run(["dvc", "remote", "add", "-d", "shared", f"s3://{DVC_BUCKET}/store"], origin)
    run(["dvc", "remote", "modify", "shared", "endpointurl", s3_endpoint], origin)
    run(["git", "add", ".dvc/config"], origin)
    run(["git", "commit", "-q", "-m", "the team's DVC remote"], origin)
    team = Team(root, shared_mlflow)
    run(["git", "clone", "-q", "--bare", str(origin), str(team.git_remote)], root)
    team.clone("a")
    team.clone("b")
    runs = [start_experiment(team, team.a, "team-a", 1), start_experiment(team, team.b, "team-b", 2)]
    for process in runs:
        output = process.communicate(timeout=900)[0]
        team.outputs.append(output)
        assert process.returncode == 0, output[-6000:]
    return team


def runs_by_name(client):
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return {stored.info.run_name: stored for stored in client.search_runs([experiment.experiment_id], max_results=1000)}


def test_both_clones_experiments_are_on_the_shared_server_whole(team):
    client = MlflowClient(team.tracking_url)
    assert client.get_experiment_by_name(EXPERIMENT).artifact_location.startswith("mlflow-artifacts:")
    by_name = runs_by_name(client)
    for name, seed, clone in (("team-a", "1", team.a), ("team-b", "2", team.b)):
        for stage, artifacts in STAGE_ARTIFACTS.items():
            stored = by_name[f"{name}/{stage}"]
            assert stored.info.status == "FINISHED", (name, stage)
            assert stored.data.tags["dvc_exp_name"] == name and stored.data.tags["stage"] == stage
            assert stored.info.artifact_uri.startswith("mlflow-artifacts:"), stored.info.artifact_uri
            assert artifacts <= artifact_paths(client, stored.info.run_id), (name, stage)
        for outputs in ("8", "30"):
            check_training_run(client, by_name[f"{name}/train_{outputs}"], clone, outputs, seed)
        # The final metrics are the clone's own files, headline and per keypoint.
        evaluate = by_name[f"{name}/evaluate"]
        assert evaluate.data.params["train.seed"] == seed
        expected = read_json(clone / "metrics/evaluate.json")
        expected.update({f"per_keypoint/{key}": value for key, value in read_json(clone / "metrics/per_keypoint.json").items()})
        assert evaluate.data.metrics == pytest.approx(expected)


def check_training_run(client, stored, clone, outputs, seed):
    """Its params, its summary as the clone's metrics file has it, and every epoch of the history CSV."""
    assert stored.data.params["seed"] == seed
    summary = read_json(clone / f"metrics/train_{outputs}.json")  # named model_8_best_epoch, ...; the run's lack the prefix
    assert {key: stored.data.metrics[key.removeprefix(f"model_{outputs}_")] for key in summary} == pytest.approx(summary)
    history = list(csv.DictReader((clone / f"plots/history_{outputs}.csv").read_text().splitlines()))
    for metric in TRAIN_METRICS:
        logged = client.get_metric_history(stored.info.run_id, metric)
        # MLflow's steps count from 0, the CSV's epochs from 1.
        assert [m.step + 1 for m in logged] == [int(row["epoch"]) for row in history] == [1, 2], metric
        assert [m.value for m in logged] == pytest.approx([float(row[metric]) for row in history]), metric


def read_json(path):
    return json.loads(Path(path).read_text())


def artifact_paths(client, run_id, path=None):
    """Every file under a run's artifacts, listed through the server."""
    found = set()
    for entry in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, entry.path) if entry.is_dir else {entry.path}
    return found


def test_the_artifacts_are_the_clones_files_and_lie_in_s3(team, s3_endpoint, tmp_path):
    client = MlflowClient(team.tracking_url)
    by_name = runs_by_name(client)
    keys = bucket_keys(s3_endpoint, MLFLOW_BUCKET)
    for name, clone in (("team-a", team.a), ("team-b", team.b)):
        for stage in STAGE_ARTIFACTS:
            run_id = by_name[f"{name}/{stage}"].info.run_id
            assert any(f"/{run_id}/artifacts/" in key for key in keys), (name, stage)
        downloaded = client.download_artifacts(by_name[f"{name}/train_8"].info.run_id, "model/model_8.keras", str(tmp_path / name))
        assert Path(downloaded).read_bytes() == (clone / "models/model_8.keras").read_bytes()


def test_each_clone_registered_its_predictor_and_the_champion_is_the_better(team, tmp_path):
    import mlflow.artifacts

    client = MlflowClient(team.tracking_url)
    versions = {version.tags["dvc_exp_name"]: version for version in client.search_model_versions(f"name = '{MODEL}'")}
    assert set(versions) == {"team-a", "team-b"}
    for name, clone in (("team-a", team.a), ("team-b", team.b)):
        record = json.loads((clone / "models/registered.json").read_text())
        assert record["registered"] and record["version"] == versions[name].version, record
        # The registered model's files, fetched through the registry, are the clone's models/predictor.
        source = client.get_model_version_download_uri(MODEL, versions[name].version)
        assert source.startswith("mlflow-artifacts:"), source
        fetched = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp_path / name),
                                                           tracking_uri=team.tracking_url))
        assert tree_bytes(fetched) == tree_bytes(clone / "models/predictor")
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert float(champion.tags["merged_rmse"]) == min(float(v.tags["merged_rmse"]) for v in versions.values())


def tree_bytes(directory):
    directory = Path(directory)
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def output_bytes(clone):
    return {name: tree_bytes(clone / name) if (clone / name).is_dir() else (clone / name).read_bytes()
            for name in CACHED_OUTPUTS + RESULTS}


def test_data_pushed_from_one_clone_pulls_byte_identical_into_another(team):
    team.run(["dvc", "push"], team.a)
    assert json.loads(team.run(["dvc", "status", "--cloud", "--json"], team.a).stdout) == {}
    team.run(["git", "add", "-A"], team.a)
    team.run(["git", "commit", "-q", "-m", "team-a's results"], team.a)
    team.run(["git", "push", "-q", "origin", "main"], team.a)
    fresh = team.clone("c")
    team.run(["dvc", "pull"], fresh)
    assert output_bytes(fresh) == output_bytes(team.a)
    assert json.loads(team.run(["dvc", "status", "--cloud", "--json"], fresh).stdout) == {}
    assert json.loads(team.run(["dvc", "status", "--json"], fresh).stdout) == {}


def test_an_experiment_pushed_from_one_clone_is_shown_and_applied_in_another(team):
    team.run(["dvc", "exp", "push", "origin", "team-a"], team.a)  # git refs to the git remote, data to the DVC remote
    assert "team-a" in team.run(["dvc", "exp", "list", "origin"], team.b).stdout
    team.run(["dvc", "exp", "pull", "origin", "team-a"], team.b)
    metrics_a = json.loads((team.a / "metrics/evaluate.json").read_text())
    shown = experiments_shown(team.b, team.run)
    assert {"team-a", "team-b"} <= set(shown)
    assert shown["team-a"]["metrics"]["metrics/evaluate.json"]["data"] == metrics_a
    assert shown["team-a"]["params"]["params.yaml"]["data"]["train"]["seed"] == 1

    team.run(["dvc", "exp", "apply", "team-a"], team.b)
    assert output_bytes(team.b) == output_bytes(team.a)
    assert json.loads(team.run(["dvc", "status", "--json"], team.b).stdout) == {}
    # Its MLflow runs are on the shared server, named and tagged by the experiment.
    evaluate = runs_by_name(MlflowClient(team.tracking_url))["team-a/evaluate"]
    assert evaluate.data.metrics["merged_rmse"] == pytest.approx(metrics_a["merged_rmse"])


def files_holding(directory, secrets):
    """(path, secret) for each file under `directory` whose bytes hold a secret."""
    return [(str(path), secret) for path in Path(directory).rglob("*") if path.is_file() and not path.is_symlink()
            for secret in secrets if secret.encode() in path.read_bytes()]


def test_no_key_or_secret_is_in_a_file_a_log_or_the_tracking_server(team, tmp_path):
    planted = tmp_path / "planted" / "config"
    planted.parent.mkdir()
    planted.write_text(f"secret_access_key = {SECRETS[1]}\n")
    assert files_holding(planted.parent, SECRETS) == [(str(planted), SECRETS[1])], "the scan finds a planted secret"

    clones = [clone for clone in (team.a, team.b, team.root / "c") if clone.exists()]
    leaks = [found for clone in clones + [team.git_remote] for found in files_holding(clone, SECRETS)]
    for clone in clones:  # git's objects are compressed: read every commit, experiments included, as text
        history = run(["git", "log", "--all", "-p", "--format=%H %s"], clone).stdout + run(["git", "show-ref"], clone).stdout
        leaks += [(f"{clone}: git history", secret) for secret in SECRETS if secret in history]
    leaks += [(f"command output {index}", secret) for index, output in enumerate(team.outputs) for secret in SECRETS
              if secret in output]

    client = MlflowClient(team.tracking_url)
    for stored in runs_by_name(client).values():
        recorded = json.dumps([stored.data.params, stored.data.tags, stored.info.run_name])
        leaks += [(f"run {stored.info.run_name}", secret) for secret in SECRETS if secret in recorded]
        fetched = client.download_artifacts(stored.info.run_id, "", str(tmp_path / stored.info.run_id))
        leaks += files_holding(fetched, SECRETS)
    for version in client.search_model_versions(f"name = '{MODEL}'"):
        leaks += [(f"model version {version.version}", secret) for secret in SECRETS
                  if secret in json.dumps([version.tags, version.source, version.description])]
    assert leaks == []
