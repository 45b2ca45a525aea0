#!/usr/bin/env python3
"""Training throughput: the seed article's model.fit on numpy arrays versus our tf.data pipeline.

  .venv/bin/python benchmarks/bench_train.py [--images 640] [--batch 64] [--repeats 1] [--synthetic]

Each measurement runs in its own process (no shared thread pools or warm caches): the baseline
../shared/bench/seed_baseline.py, then our build_model + compile_model + make_dataset with
augmentation on (flip, small shift/rotation/scale/brightness/contrast) and off. Same methodology as
the baseline: a one-batch fit to build the graph, then one timed epoch over all images (building the
dataset counts, as the baseline's array-to-dataset conversion does). Images are the first fully
labelled real faces of ../shared/data if present, else random pixels. Writes benchmarks/results/train.json.
"""
import argparse
import csv
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT.parent / "shared/bench/seed_baseline.py"
REAL_FACES = ROOT.parent / "shared/data/youtube-faces-kaggle-format/training.csv.gz"
SMALL_AUGMENT = {"flip": True, "shift": 3.0, "rotation": 8.0, "scale": 0.05, "brightness": 0.05, "contrast": 0.1}


def real_faces(path, count):
    """First `count` fully labelled rows, parsed plainly (a benchmark, not the project's parser)."""
    images, keypoints = [], []
    with gzip.open(path, "rt", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            if all(row[:30]):
                keypoints.append(np.array(row[:30], np.float32))
                images.append(np.array(row[30].split(), np.uint8).reshape(96, 96))
                if len(images) == count:
                    break
    # Fewer complete rows than asked for: repeat them, the timing does not care.
    order = np.resize(np.arange(len(images)), count)
    return np.stack(images)[order], np.stack(keypoints)[order]


def synthetic_faces(count, seed=0):
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(20, 75, (count, 30)).astype(np.float32)
    return rng.integers(0, 256, (count, 96, 96), dtype=np.uint8), keypoints


def ours(x_path, y_path, images, batch, augment):
    """Worker: one timed epoch of our pipeline, printed as one JSON line like the baseline's."""
    from keypoints.augment import make_dataset
    from keypoints.columns import columns_for
    from keypoints.model import build_model, compile_model
    from keypoints.params import load_params

    x = np.load(x_path, mmap_mode="r")
    y = np.load(y_path)
    count = min(images, len(x))
    pixels, keypoints = np.asarray(x[:count, ..., 0]).astype(np.uint8), y[:count].astype(np.float32)
    names = columns_for(keypoints.shape[1])
    reference = load_params(ROOT / "params.yaml")["train"]  # the article's network and optimiser
    model = compile_model(build_model(keypoints.shape[1], **reference["model"]), reference["optimizer"],
                          reference["learning_rate"], reference["loss"], reference["jit_compile"])

    def dataset(rows):
        return make_dataset(pixels[:rows], keypoints[:rows], names, batch, training=True, seed=0, augment=augment)

    model.fit(dataset(batch), epochs=1, verbose=0)  # warm-up: graph build
    started = time.perf_counter()
    model.fit(dataset(count), epochs=1, verbose=0)
    seconds = time.perf_counter() - started
    return {"stage": "train", "images": count, "seconds": seconds, "images_per_second": count / seconds}


def measure(command):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--images", type=int, default=640)
    cli.add_argument("--batch", type=int, default=64)
    cli.add_argument("--repeats", type=int, default=1, help="median of this many runs per variant")
    cli.add_argument("--synthetic", action="store_true", help="random pixels even if real faces are present")
    cli.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "train.json")
    cli.add_argument("--worker", choices=["augment", "plain"], help=argparse.SUPPRESS)
    cli.add_argument("--x", help=argparse.SUPPRESS)
    cli.add_argument("--y", help=argparse.SUPPRESS)
    args = cli.parse_args(argv)

    if args.worker:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        augment = SMALL_AUGMENT if args.worker == "augment" else {}
        print(json.dumps(ours(args.x, args.y, args.images, args.batch, augment)))
        return 0

    real = REAL_FACES.exists() and not args.synthetic
    images, keypoints = real_faces(REAL_FACES, args.images) if real else synthetic_faces(args.images)
    source = str(REAL_FACES) if real else "synthetic random pixels"
    print(f"{args.images} images ({source}), batch {args.batch}, {os.cpu_count()} cores", flush=True)
    variants = {
        "baseline": ["{python}", str(BASELINE), "train", "{x}", "{y}"],
        "ours_augment": ["{python}", __file__, "--worker", "augment", "--x", "{x}", "--y", "{y}"],
        "ours_plain": ["{python}", __file__, "--worker", "plain", "--x", "{x}", "--y", "{y}"],
    }
    runs = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as directory:
        x_path, y_path = Path(directory) / "X.npy", Path(directory) / "Y.npy"
        np.save(x_path, images[..., None].astype(np.float32))
        np.save(y_path, keypoints)
        for repeat in range(args.repeats):
            # Interleaved, so a machine-wide slowdown hits every variant alike.
            for name, template in variants.items():
                command = [part.format(python=sys.executable, x=x_path, y=y_path) for part in template]
                command += ["--images", str(args.images), "--batch", str(args.batch)]
                result = measure(command)
                runs[name].append(result["images_per_second"])
                print(f"  {name:13s} run {repeat + 1}: {result['images_per_second']:.1f} images/s", flush=True)

    speeds = {name: statistics.median(values) for name, values in runs.items()}
    report = {
        "images": args.images, "batch": args.batch, "data": source, "cores": os.cpu_count(),
        "augment": SMALL_AUGMENT, "runs_images_per_second": runs,
        "baseline_images_per_second": speeds["baseline"],
        "ours_augment_images_per_second": speeds["ours_augment"],
        "ours_plain_images_per_second": speeds["ours_plain"],
        "ratio_augment_to_baseline": speeds["ours_augment"] / speeds["baseline"],
        "ratio_plain_to_baseline": speeds["ours_plain"] / speeds["baseline"],
    }
    from keypoints.fileio import save_json

    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_json(args.output, report)
    print(f"baseline {speeds['baseline']:.1f}, ours+augment {speeds['ours_augment']:.1f} "
          f"(x{report['ratio_augment_to_baseline']:.2f}), ours plain {speeds['ours_plain']:.1f} "
          f"(x{report['ratio_plain_to_baseline']:.2f}) images/s -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
