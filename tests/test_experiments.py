"""The experiment loop, end to end: queued `dvc exp run -S` experiments, DVC's diffs, MLflow's record,
reproducibility and resuming a killed training stage. Real DVC, real MLflow, tiny params."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import DEFAULT_PRESET, experiments_shown, free_port, make_project, run, start_queue, wait_for_queue, wait_until_serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("experiments") / "project")
    run(["dvc", "repro"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "baseline results"], project)
    for name, value in (("exp-slow", 0.0005), ("exp-fast", 0.005)):
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.learning_rate={value}"], project)
    start_queue(project)
    status = wait_for_queue(project)
    assert "Failed" not in status, run(["dvc", "queue", "logs", "exp-slow"], project).stdout
    return project


def test_exp_show_lists_both_experiments_with_params_and_metrics(experiments):
    found = {name: (data["params"]["params.yaml"]["data"]["train"]["learning_rate"],
                    data["metrics"]["metrics/evaluate.json"]["data"]["merged_rmse"])
             for name, data in experiments_shown(experiments).items()}
    assert set(found) >= {"exp-slow", "exp-fast"}
    assert found["exp-slow"][0] == 0.0005 and found["exp-fast"][0] == 0.005
    assert found["exp-slow"][1] != found["exp-fast"][1]


def test_dvc_diffs_show_the_changes(experiments):
    params = run(["dvc", "params", "diff", "exp-slow", "exp-fast", "--json"], experiments).stdout
    change = json.loads(params)["params.yaml"]["train.learning_rate"]
    assert (change["old"], change["new"]) == (0.0005, 0.005)
    metrics = json.loads(run(["dvc", "metrics", "diff", "exp-slow", "exp-fast", "--json"], experiments).stdout)
    assert "merged_rmse" in metrics["metrics/evaluate.json"]
    out = experiments / "plots-diff"
    run(["dvc", "plots", "diff", "exp-slow", "exp-fast", "-o", str(out)], experiments)
    page = (out / "index.html").read_text()
    assert "history_8.csv" in page and "exp-slow" in page


def test_mlflow_has_every_experiment_in_the_parent_store(experiments):
    client = MlflowClient(f"sqlite:///{experiments / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("facial-keypoints")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_name = {r.info.run_name: r for r in runs}
    baseline_rev = run(["git", "rev-parse", "HEAD"], experiments).stdout.strip()
    for name in ("exp-slow", "exp-fast"):
        for stage in ("train_8", "train_30", "evaluate"):
            stored = by_name[f"{name}/{stage}"]
            assert stored.info.status == "FINISHED"
            assert stored.data.tags["dvc_exp_name"] == name
            assert stored.data.tags["dvc_baseline_rev"] == baseline_rev
            assert stored.data.tags["params_hash"] and stored.data.tags["data_checksum"]
            if stage.startswith("train"):
                for metric in ("loss", "mae", "val_loss", "val_mae", "lr"):
                    steps = [m.step for m in client.get_metric_history(stored.info.run_id, metric)]
                    assert steps == [0, 1], (name, stage, metric)
        assert by_name[f"{name}/evaluate"].data.params["train.learning_rate"] in ("0.0005", "0.005")
    assert not list((experiments / ".dvc" / "tmp").rglob("mlflow.db")), "no store inside a temp copy"
    # Each experiment's predictor is a version in the parent's registry, and the champion is the best
    # of those scored on the same held-out faces (the champion rule).
    versions = client.search_model_versions("name = 'facial-keypoints'")
    assert {"exp-slow", "exp-fast"} <= {version.tags.get("dvc_exp_name") for version in versions}
    champion = client.get_model_version_by_alias("facial-keypoints", "champion")
    comparable = [float(v.tags["merged_rmse"]) for v in versions if v.tags["data_checksum"] == champion.tags["data_checksum"]]
    assert len(comparable) >= 3 and float(champion.tags["merged_rmse"]) == min(comparable)


def test_two_temp_experiments_at_once_both_run_and_are_saved(experiments):
    """README's advice for experiments at once without the queue: `--temp` gives each its own copy,
    where two plain workspace runs would share (and overwrite) one params.yaml."""
    environment = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    environment.pop("MLFLOW_TRACKING_URI", None)
    params_before = (experiments / "params.yaml").read_text()
    runs = [subprocess.Popen(["dvc", "exp", "run", "--temp", "-n", name, "-S", f"train.learning_rate={value}"],
                             cwd=experiments, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for name, value in (("temp-a", 0.002), ("temp-b", 0.003))]
    for process in runs:
        output = process.communicate(timeout=900)[0]
        assert process.returncode == 0, output[-4000:]
    assert (experiments / "params.yaml").read_text() == params_before, "the workspace is untouched"
    rates = {name: data["params"]["params.yaml"]["data"]["train"]["learning_rate"]
             for name, data in experiments_shown(experiments).items()}
    assert rates["temp-a"] == 0.002 and rates["temp-b"] == 0.003


def test_same_params_give_the_same_splits_and_metrics(experiments):
    before = {p: (experiments / p).read_bytes() for p in ("metrics/evaluate.json", "data/split/30/holdout_rows.npy")}
    run(["dvc", "repro", "--force", "--no-run-cache"], experiments)
    after = {p: (experiments / p).read_bytes() for p in before}
    assert after["data/split/30/holdout_rows.npy"] == before["data/split/30/holdout_rows.npy"]
    old, new = (json.loads(d["metrics/evaluate.json"]) for d in (before, after))
    assert old.keys() == new.keys()
    for key in old:
        assert new[key] == pytest.approx(old[key], rel=1e-5, abs=1e-5), key


def test_a_killed_training_stage_resumes_from_its_checkpoint(tmp_path):
    project = make_project(
        tmp_path / "project",
        # epochs in the default preset, whose keys win over train's
        {"presets": {DEFAULT_PRESET: {"epochs": 40}},
         "train": {"early_stopping": {"patience": 100}, "reduce_lr": {"patience": 100}}},
    )
    run(["dvc", "repro", "split"], project)
    environment = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    environment.pop("MLFLOW_TRACKING_URI", None)
    first = subprocess.Popen(["dvc", "repro", "train_8"], cwd=project, env=environment, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = project / "checkpoints" / "model_8" / "state.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        if state.is_file() and json.loads(state.read_text())["next_epoch"] >= 3:
            break
        time.sleep(0.05)
    assert first.poll() is None, "training finished before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    stopped_at = json.loads(state.read_text())["next_epoch"]
    assert 3 <= stopped_at < 40

    second = run(["dvc", "repro", "train_8"], project)
    assert f"resuming from checkpoints/model_8 at epoch {stopped_at + 1}" in second.stderr + second.stdout
    history = (project / "plots" / "history_8.csv").read_text().splitlines()
    assert len(history) == 1 + 40
    assert not state.exists(), "the checkpoint is removed once the outputs are saved"
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("facial-keypoints").experiment_id])
    assert [r.info.run_name for r in runs] == ["train_8"], "the resumed fit continues its MLflow run"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")] == list(range(40))


@pytest.fixture
def mlflow_server(experiments):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{experiments / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=experiments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{url}/health", server, "mlflow server", timeout=120)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def headless_chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        raise AssertionError("the UI test needs Debian's chromium and chromium-driver (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1600,1200"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def test_mlflow_ui_compares_the_experiments_side_by_side(experiments, mlflow_server):
    from selenium.webdriver.support.ui import WebDriverWait

    client = MlflowClient(f"sqlite:///{experiments / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("facial-keypoints")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    compared = [runs["exp-slow/evaluate"], runs["exp-fast/evaluate"]]
    ids = json.dumps([r.info.run_id for r in compared]).replace(" ", "")
    page = f"{mlflow_server}/#/compare-runs?runs={ids}&experiments=[\"{experiment.experiment_id}\"]"

    driver = headless_chromium()
    try:
        driver.get(page)
        expected = ["exp-slow/evaluate", "exp-fast/evaluate", "merged_rmse", "train.learning_rate"]
        WebDriverWait(driver, 90).until(lambda d: all(text in d.find_element("tag name", "body").text for text in expected))
        body = driver.find_element("tag name", "body").text
        for stored in compared:
            assert f"{stored.data.metrics['merged_rmse']:.3f}"[:4] in body or str(round(stored.data.metrics["merged_rmse"], 2))[:4] in body
        artifacts = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(artifacts / "mlflow-compare.png"))
    finally:
        driver.quit()


def test_mlflow_ui_shows_the_registered_predictor_s_schema(experiments, mlflow_server):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    client = MlflowClient(f"sqlite:///{experiments / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("facial-keypoints", "champion")
    page = f"{mlflow_server}/#/models/facial-keypoints/versions/{champion.version}"
    artifacts = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)

    driver = headless_chromium()

    def body():
        return driver.find_element("tag name", "body").text

    def wait_for(texts, seconds):
        try:
            WebDriverWait(driver, seconds).until(lambda _: all(text in body() for text in texts))
        except TimeoutException:
            raise AssertionError(f"{page} lacks {[t for t in texts if t not in body()]}; it shows:\n{body()[:3000]}")

    try:
        driver.get(page)
        # Its aliases: champion, and candidate too if no later version was registered (an alias names one version).
        aliases = [f"@ {alias}" for alias in champion.aliases]
        assert "@ champion" in aliases
        wait_for(["Inputs (2)", "Outputs (34)", *aliases, "merged_rmse", "data_checksum"], 90)
        # The schema's rows may start collapsed: open each one whose first field is not shown yet.
        for label, field in (("Inputs (2)", "face (optional)"), ("Outputs (34)", "left_eye_center_x (required)")):
            if field not in body():
                driver.find_element("xpath", f"//*[contains(normalize-space(text()), '{label}')]").click()
            wait_for([field], 30)
        wait_for(["image (optional)"], 30)
    finally:
        driver.save_screenshot(str(artifacts / "mlflow-model-version.png"))
        driver.quit()
