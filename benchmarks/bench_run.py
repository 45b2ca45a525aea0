#!/usr/bin/env python3
"""Wall time of a whole run as a new user meets it: a fresh clone of this repository's HEAD, then
`dvc repro` (or `dvc exp run -S ...` with --set), stage by stage, with the seed baseline's images/s
measured just before and just after on the same machine.

  .venv/bin/python benchmarks/bench_run.py [--set key=value ...] [--at 12] [--name default]

  # the default run (synthetic faces, the cpu preset):
  .venv/bin/python benchmarks/bench_run.py
  # real faces:
  .venv/bin/python benchmarks/bench_run.py --name real --set fetch.source=path \
      --set fetch.path=$PWD/../shared/data/youtube-faces-kaggle-format/training.csv.gz --set train.preset=cpu_long

Each stage's time runs from DVC's "Running stage" line to the next; a training stage's epochs run
from its first "Epoch 1/" line to its last epoch's result line (start-up, graph building for the
first batch, saving and logging fall outside). Machines of one kind differ by up to 5x, so the
run is also projected onto a machine whose seed baseline trains at --at images/s: the epochs scaled
by the ratio of the baselines (they are the same kind of work), and the rest either not at all (a
lower bound: Python and TensorFlow start-up, DVC's hashing, drawing faces) or by the same ratio (an
upper bound). Needs git, and dvc on PATH (the project's venv). Writes
benchmarks/results/run_<name>.json and prints a table.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_photos import seed_baseline_images_per_second  # noqa: E402  (the same yardstick, one copy)

ROOT = Path(__file__).resolve().parents[1]
BASELINE_IMAGES = 320
STAGE = re.compile(r"^Running stage '([^']+)'")
FIRST_EPOCH = re.compile(r"^Epoch 1/\d+")
EPOCH_RESULT = re.compile(r"^\d+/\d+ - \d+m?s - .*loss")


def timed_lines(command, cwd, environment):
    """Run command, echoing its output; returns [(seconds since start, line)] and the total."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1)
    lines = []
    for line in process.stdout:
        lines.append((time.perf_counter() - started, line.rstrip("\n")))
        print(f"{lines[-1][0]:7.1f} {line}", end="", flush=True)
    if process.wait():
        raise SystemExit(f"{' '.join(command)} failed with exit status {process.returncode}")
    return lines, time.perf_counter() - started


def stage_times(lines, total):
    """{stage: {"seconds": wall time, "epoch_seconds": time in epochs (training stages)}} in run order."""
    stages, current = {}, None
    for seconds, line in lines:
        found = STAGE.match(line)
        if found:
            current = found.group(1)
            stages[current] = {"start": seconds, "epochs_from": None, "epochs_to": None}
        elif current and FIRST_EPOCH.match(line) and stages[current]["epochs_from"] is None:
            stages[current]["epochs_from"] = seconds
        elif current and EPOCH_RESULT.match(line):
            stages[current]["epochs_to"] = seconds
    names = list(stages)
    result = {}
    for name, following in zip(names, names[1:] + [None]):
        stage = stages[name]
        end = stages[following]["start"] if following else total
        epochs = stage["epochs_to"] - stage["epochs_from"] if stage["epochs_to"] is not None else 0.0
        result[name] = {"seconds": round(end - stage["start"], 1), "epoch_seconds": round(epochs, 1)}
    return result


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dvc exp run -S KEY=VALUE")
    cli.add_argument("--at", type=float, default=12.0, help="project onto a machine whose seed baseline trains at this many images/s")
    cli.add_argument("--name", default="default", help="results go to benchmarks/results/run_<name>.json")
    args = cli.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-run-") as temporary:
        temporary = Path(temporary)
        clone = temporary / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True, check=True).stdout.strip()
        command = ["dvc", "exp", "run", *[part for pair in args.set for part in ("-S", pair)]] if args.set else ["dvc", "repro", "-f"]
        before = seed_baseline_images_per_second(BASELINE_IMAGES)
        # Its own MLflow store, as a fresh clone has: a user's MLFLOW_TRACKING_URI would time a server.
        # dvc and the stages' `python` come from this interpreter's environment (the project's venv).
        environment = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
        environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
        lines, total = timed_lines(command, clone, environment)
        after = seed_baseline_images_per_second(BASELINE_IMAGES)
        evaluate = json.loads((clone / "metrics/evaluate.json").read_text())

    stages = stage_times(lines, total)
    epochs = sum(stage["epoch_seconds"] for stage in stages.values())
    baseline = min(before, after)  # the slower of the two: the projection's conservative side
    ratio = baseline / args.at
    result = {
        "commit": commit, "command": " ".join(command), "cores": os.cpu_count(),
        "seed_baseline_images_per_second": {"before": round(before, 1), "after": round(after, 1)},
        "seconds": round(total, 1), "epoch_seconds": round(epochs, 1), "stages": stages,
        "projected_at": args.at,
        "projected_seconds": {"epochs_scaled": round(epochs * ratio + total - epochs, 1), "all_scaled": round(total * ratio, 1)},
        "merged_rmse": evaluate["merged_rmse"], "model_8_rmse": evaluate["model_8_rmse"], "model_30_rmse": evaluate["model_30_rmse"],
    }
    output = ROOT / "benchmarks/results" / f"run_{args.name}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{result['command']} on a fresh clone of {commit[:7]}, {os.cpu_count()} cores, "
          f"seed baseline {before:.1f} images/s before and {after:.1f} after")
    print(f"{'stage':<15}{'seconds':>9}{'in epochs':>11}")
    for name, stage in stages.items():
        print(f"{name:<15}{stage['seconds']:>9.1f}{stage['epoch_seconds'] or '':>11}")
    print(f"{'total':<15}{total:>9.1f}{epochs:>11.1f}")
    print(f"at {args.at:g} images/s (from {baseline:.1f}): {result['projected_seconds']['epochs_scaled']:.0f} s with only the "
          f"epochs scaled, {result['projected_seconds']['all_scaled']:.0f} s with everything scaled")
    print(f"held-out RMSE: merged {result['merged_rmse']:.3f}, model_8 {result['model_8_rmse']:.3f}, "
          f"model_30 {result['model_30_rmse']:.3f} px; written to {output.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
