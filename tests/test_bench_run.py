"""benchmarks/bench_run.py's reading of a run's output: stage by stage, and the time in epochs."""
import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).resolve().parents[1] / "benchmarks/bench_run.py")
bench_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_run)

# What `dvc repro` prints, with the seconds at which each line came; Keras' verbose=2 epoch lines.
LINES = [
    (0.5, "Running stage 'fetch':"),
    (0.6, "> python stages/fetch.py --out data/raw"),
    (4.0, "Running stage 'train_8':"),
    (9.0, "Epoch 1/2"),
    (15.0, "31/31 - 6s - 190ms/step - loss: 6.5 - mae: 1.8 - val_loss: 2.4 - val_mae: 1.2"),
    (15.1, "Epoch 2/2"),
    (20.5, "31/31 - 5s - 170ms/step - loss: 1.9 - mae: 1.0 - val_loss: 1.2 - val_mae: 0.8"),
    (22.0, "Updating lock file 'dvc.lock'"),
    (22.1, "Running stage 'evaluate':"),
    (23.0, "merged_rmse=1.136"),
]


def test_stage_times_split_the_run_at_each_stage_and_time_the_epochs():
    stages = bench_run.stage_times(LINES, total=25.0)
    assert list(stages) == ["fetch", "train_8", "evaluate"]
    assert stages["fetch"] == {"seconds": 3.5, "epoch_seconds": 0.0}
    assert stages["train_8"] == {"seconds": pytest.approx(18.1), "epoch_seconds": pytest.approx(11.5)}
    assert stages["evaluate"]["seconds"] == pytest.approx(2.9)
