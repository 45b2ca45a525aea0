"""Time keypoints.parse.parse_training against the seed baseline on a 7049-row (~240 MB) training.csv.

Both run as subprocesses in the same run (best of --repeat). Peak memory is each child's ru_maxrss
(os.wait4), reported raw and minus the peak RSS of `python -c "import numpy"` (the interpreter
floor both pay); the memory ratio is that net peak over the bytes of our output arrays.

  .venv/bin/python benchmarks/bench_parse.py [--repeat 3] [--workdir DIR]
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL_FACES = ROOT.parent / "shared/data/youtube-faces-kaggle-format/training.csv.gz"
BASELINE = ROOT.parent / "shared/bench/seed_baseline.py"
ROWS = 7049
OURS = (
    "import sys, time, numpy as np\n"
    "from keypoints.parse import parse_training\n"
    "start = time.perf_counter()\n"
    "images, keypoints = parse_training(sys.argv[1], progress_every=0)\n"
    "np.save(sys.argv[2], images); np.save(sys.argv[2] + '.keypoints.npy', keypoints)\n"
    "print(time.perf_counter() - start)\n"
)
# The same parse on one thread: what the parallel path must beat to earn its code.
OURS_SEQUENTIAL = (
    "import sys, time, numpy as np\n"
    "from pathlib import Path\n"
    "from keypoints.parse import _parse_training_sequential\n"
    "start = time.perf_counter()\n"
    "images, keypoints = _parse_training_sequential(Path(sys.argv[1]), progress_every=0)\n"
    "np.save(sys.argv[2], images); np.save(sys.argv[2] + '.keypoints.npy', keypoints)\n"
    "print(time.perf_counter() - start)\n"
)


def build_csv(path, rows, seed):
    """Real face rows repeated to `rows` when available, else random pixels with fixed keypoints.

    Streams line by line: a bloated benchmark process would inflate its children's ru_maxrss
    (a forked child starts with the parent's pages counted)."""
    with open(path, "wb") as out:
        if REAL_FACES.is_file():
            written = 0
            while written < rows:
                with gzip.open(REAL_FACES, "rb") as handle:
                    header = handle.readline()
                    if written == 0:
                        out.write(header)
                    for line in handle:
                        if written == rows:
                            break
                        out.write(line)
                        written += 1
            return f"{REAL_FACES.name} real face rows (repeated)"
        from keypoints.columns import TRAINING_COLUMNS

        generator = np.random.default_rng(seed)
        out.write((",".join(TRAINING_COLUMNS) + "\n").encode())
        keypoints = ",".join(["48.5"] * 30)
        lines = [f"{keypoints},{' '.join(map(str, generator.integers(0, 256, 96 * 96)))}\n".encode()
                 for _ in range(100)]
        for row in range(rows):
            out.write(lines[row % len(lines)])
        return "synthetic random pixels (100 rows, repeated)"


def run_child(command):
    """Wall seconds, peak RSS in MB, and stdout of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Read the pipes before waiting; wait4 (unlike RUSAGE_CHILDREN) reports this child alone.
    stdout, stderr = process.stdout.read(), process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{command[:3]} failed:\n{stderr.decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, stdout.decode()


def best_of(command, repeat):
    runs = [run_child(command) for _ in range(repeat)]
    return min(run[0] for run in runs), min(run[1] for run in runs), [run[2] for run in runs]


def main():
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--repeat", type=int, default=3)
    cli.add_argument("--rows", type=int, default=ROWS)
    cli.add_argument("--workdir", help="where the CSV and outputs go (default: a temp dir, removed)")
    cli.add_argument("--baseline", default=str(BASELINE))
    cli.add_argument("--seed", type=int, default=0)
    cli.add_argument("--out", default=str(ROOT / "benchmarks/results/parse.json"))
    args = cli.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        csv = workdir / "training.csv"
        source = build_csv(csv, args.rows, args.seed)
        print(f"built {csv} ({csv.stat().st_size / 1e6:.0f} MB) from {source}", file=sys.stderr)

        python = sys.executable
        _, floor_mb, _ = best_of([python, "-c", "import numpy"], args.repeat)
        base_s, base_mb, base_out = best_of([python, args.baseline, "parse", str(csv), str(workdir / "baseline.npy")],
                                            args.repeat)
        ours_s, ours_mb, ours_out = best_of([python, "-c", OURS, str(csv), str(workdir / "ours.npy")], args.repeat)
        sequential_s, _, sequential_out = best_of(
            [python, "-c", OURS_SEQUENTIAL, str(csv), str(workdir / "sequential.npy")], args.repeat)
        sequential_inner = min(float(out.strip().splitlines()[-1]) for out in sequential_out)
        base_inner = min(json.loads(out.strip().splitlines()[-1])["seconds"] for out in base_out)
        ours_inner = min(float(out.strip().splitlines()[-1]) for out in ours_out)

        images = np.load(workdir / "ours.npy", mmap_mode="r")
        reference = np.load(workdir / "baseline.npy", mmap_mode="r")
        identical = bool(np.array_equal(images, reference[..., 0].astype(np.uint8)))
        output_bytes = images.nbytes + args.rows * 30 * 4
        csv_mb = round(csv.stat().st_size / 1e6, 1)
        del images, reference

    result = {
        "rows": args.rows, "csv_mb": csv_mb,
        "source": source, "repeat": args.repeat, "identical_pixels_to_baseline": identical,
        "baseline_wall_s": round(base_s, 3), "ours_wall_s": round(ours_s, 3),
        "baseline_inner_s": round(base_inner, 3), "ours_inner_s": round(ours_inner, 3),
        "speedup_wall": round(base_s / ours_s, 1), "speedup_inner": round(base_inner / ours_inner, 1),
        "sequential_wall_s": round(sequential_s, 3), "sequential_inner_s": round(sequential_inner, 3),
        "parallel_over_sequential_inner": round(sequential_inner / ours_inner, 2),
        "cores": os.cpu_count(),
        "numpy_interpreter_rss_mb": round(floor_mb, 1),
        "baseline_peak_rss_mb": round(base_mb, 1), "ours_peak_rss_mb": round(ours_mb, 1),
        "output_mb": round(output_bytes / 2**20, 1),
        "ours_memory_ratio": round((ours_mb - floor_mb) * 2**20 / output_bytes, 2),
        "memory_counted_as": "peak RSS of the child minus peak RSS of `python -c 'import numpy'`, over output bytes",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    print(f"{'':10}{'wall s':>8}{'inner s':>9}{'peak RSS MB':>13}\n"
          f"{'baseline':10}{base_s:8.2f}{base_inner:9.2f}{base_mb:13.0f}\n"
          f"{'ours':10}{ours_s:8.2f}{ours_inner:9.2f}{ours_mb:13.0f}\n"
          f"{'1 thread':10}{sequential_s:8.2f}{sequential_inner:9.2f}\n"
          f"speed-up {result['speedup_wall']}x wall ({result['speedup_inner']}x inner); memory "
          f"{result['ours_memory_ratio']}x output ({result['output_mb']} MB; RSS minus {floor_mb:.0f} MB numpy floor)")


if __name__ == "__main__":
    main()
