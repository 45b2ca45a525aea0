"""A grid of experiments through DVC's own sweep syntax: `dvc exp run --queue -S 'key=a,b' -S 'key=c,d'`
queues every combination, `dvc exp show --sort-by` ranks them, `dvc exp apply` keeps the best.
Real DVC and its queue on the tiny project."""
import json

import pytest

import yaml

from conftest import DEFAULT_PRESET, experiments_shown, make_project, run, start_queue, wait_for_queue

pytestmark = pytest.mark.slow

RATES = (0.001, 0.004)
# The chosen preset's batch size, not train.batch_size: a preset's keys win over train's (README).
BATCH_KEY = f"presets.{DEFAULT_PRESET}.batch_size"
BATCHES = (8, 16)


def shown_experiments(project):
    """{experiment name: (learning rate, batch size, merged RMSE)} from `dvc exp show --json`."""
    found = {}
    for name, data in experiments_shown(project).items():
        params = data["params"]["params.yaml"]["data"]
        found[name] = (params["train"]["learning_rate"], params["presets"][DEFAULT_PRESET]["batch_size"],
                       data["metrics"]["metrics/evaluate.json"]["data"]["merged_rmse"])
    return found


def test_a_grid_sweep_queues_every_combination_ranks_them_and_applies_the_best(tmp_path):
    project = make_project(tmp_path / "project")
    run(["dvc", "repro"], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "baseline results"], project)

    run(["dvc", "exp", "run", "--queue",
         "-S", "train.learning_rate=" + ",".join(map(str, RATES)),
         "-S", f"{BATCH_KEY}=" + ",".join(map(str, BATCHES))], project)
    start_queue(project)
    status = wait_for_queue(project)
    assert "Failed" not in status, status

    found = shown_experiments(project)
    assert sorted((rate, batch) for rate, batch, _ in found.values()) == sorted(
        (rate, batch) for rate in RATES for batch in BATCHES), found
    assert len({rmse for _, _, rmse in found.values()}) == len(found), "each combination trained its own models"

    ranked = run(["dvc", "exp", "show", "--csv", "--sort-by", "metrics/evaluate.json:merged_rmse",
                  "--sort-order", "asc", "--only-changed"], project).stdout.splitlines()
    header = ranked[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in ranked[1:]]
    names = [row["Experiment"] for row in rows if row["Experiment"] in found]
    best = min(found, key=lambda name: found[name][2])
    assert names[0] == best, (names, found)

    run(["dvc", "exp", "apply", best], project)
    applied = json.loads((project / "metrics/evaluate.json").read_text())
    assert applied["merged_rmse"] == pytest.approx(found[best][2], rel=1e-6)
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert (params["train"]["learning_rate"], params["presets"][DEFAULT_PRESET]["batch_size"]) == found[best][:2]
