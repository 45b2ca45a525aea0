"""Shared helpers: a copy of the project in a temporary git repo, with tiny params, for real DVC runs."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# data/external/README.md: the fetch stage depends on fetch.path (default data/external), which must exist.
PROJECT_FILES = ["dvc.yaml", "params.yaml", ".gitignore", ".dvcignore", "src", "stages", "data/external/README.md"]

DEFAULT_PRESET = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["train"]["preset"]
# A pipeline small enough for seconds per stage: few rows, two narrow conv blocks, two epochs.
TINY_PARAMS = {
    "fetch": {"synthetic": {"train_rows": 80, "test_rows": 6, "full_fraction": 0.5, "seed": 0}},
    "split": {"holdout_fraction": 0.2},
    "train": {
        "epochs": 2,
        "batch_size": 16,
        "validation_fraction": 0.2,
        "model": {"filters": [4, 8], "kernel_sizes": [3, 3], "dense_units": 16},
    },
    # The default preset's choices (its model_30 starting from model_8, ...) with a tiny network.
    "presets": {DEFAULT_PRESET: {"epochs": 2, "batch_size": 16, "precise_batchnorm_rows": 1024,
                                 "model": {"filters": [4, 8], "kernel_sizes": [3, 3], "dense_units": 16},
                                 "per_model": {"model_30": {"epochs": 2}}}},
    "predict": {"batch_size": 32},
    "evaluate": {"faces": 4},
}


# The reference settings of params.yaml: tests build models from them, overriding only what they size down.
REFERENCE = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["train"]
# params.yaml's framing settings, as the framing stage copies them into models/framing.json.
FRAMING_SETTINGS = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["framing"]


def model_settings(**overrides):
    """train.model of params.yaml with the given keys replaced, e.g. model_settings(filters=[4], kernel_sizes=[3])."""
    return {**REFERENCE["model"], **overrides}


def compile_settings(**overrides):
    """The keyword arguments of compile_model as params.yaml's train group sets them."""
    keys = ("optimizer", "learning_rate", "loss", "jit_compile")
    return {**{key: REFERENCE[key] for key in keys}, **overrides}


def merge(base, overrides):
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def run(command, cwd, env=None, timeout=900):
    """Run a command; on failure show its output, which is what one needs to see."""
    environment = dict(os.environ)
    environment.pop("MLFLOW_TRACKING_URI", None)  # the project's default store unless a test sets one
    # The venv's dvc, python and mlflow first, whatever shell started pytest.
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    environment.update(env or {})
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout,
                            shell=isinstance(command, str))
    if result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def make_project(directory, params_overrides=None):
    """Copy the project into `directory`, apply tiny params, and commit it in a fresh git + DVC repo."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, directory / name)
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params = merge(merge(params, TINY_PARAMS), params_overrides or {})
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], directory)
    run(["git", "config", "user.email", "tests@example.com"], directory)
    run(["git", "config", "user.name", "tests"], directory)
    run(["dvc", "init", "-q"], directory)
    run(["dvc", "config", "core.analytics", "false"], directory)
    run(["git", "add", "-A"], directory)
    run(["git", "commit", "-q", "-m", "project"], directory)
    return directory


@pytest.fixture(scope="session")
def reproduced_project(tmp_path_factory):
    """The tiny project after one real `dvc repro`, shared by the end-to-end tests that only read it."""
    directory = make_project(tmp_path_factory.mktemp("pipeline") / "project")
    run(["dvc", "repro"], directory)
    return directory


def experiments_shown(project, run_command=run):
    """{experiment name: its data (params, metrics)} from `dvc exp show --json`, every baseline's."""
    shown = json.loads(run_command(["dvc", "exp", "show", "--json"], project).stdout)
    return {revision["name"]: revision["data"] for baseline in shown
            for experiment in baseline.get("experiments") or [] for revision in experiment["revs"]}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url, process, what, timeout):
    """Poll `url` until it answers 200; fail at once if the server process exits, naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if process.poll() is not None:
                output = process.stderr.read()[-4000:] if process.stderr else ""
                raise AssertionError(f"{what} exited:\n{output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not come up in {timeout} s")
            time.sleep(0.5)


def start_queue(project, jobs=2):
    """`dvc queue start -j jobs`, its output not captured: the workers it spawns inherit its stdout, and
    a worker that lingers after the queue is empty would keep a captured pipe (and the test) open."""
    environment = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    environment.pop("MLFLOW_TRACKING_URI", None)
    subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], cwd=project, env=environment, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def wait_for_queue(project, timeout=900):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project).stdout
        if "Running" not in status and "Queued" not in status:
            return status
        time.sleep(3)
    raise AssertionError(f"queue still busy after {timeout}s:\n{status}")
