#!/usr/bin/env python3
"""Training and inference throughput, and how close to the hardware: the seed article's model.fit
on numpy arrays versus our tf.data pipeline, for the article's CNN and the default preset's.

  .venv/bin/python benchmarks/bench_train.py [--images 640] [--batch 64] [--repeats 1] [--synthetic]

Each measurement runs in its own process (no shared thread pools or warm caches), interleaved so a
machine-wide slowdown hits every variant alike:
- baseline: ../shared/bench/seed_baseline.py train (the article's CNN, batch --batch);
- reference, reference_augment: our build_model + compile_model + make_dataset with params.yaml's
  `train` group (the article's network), batch --batch, augmentation off and on;
- default: the network, batch size and augmentation of the preset params.yaml's train.preset names;
- matmul: float32 matrix multiplications (2048x2048, TensorFlow's kernels), the machine's practical peak;
- infer_reference, infer_default: faces per second of the merged predictor (both models, one traced
  graph: keypoints.predict.merged_predictor) at batch 1 and 32.
Training: a one-batch fit to build the graph, then one timed epoch over all images (building the
dataset counts, as the baseline's array-to-dataset conversion does). FLOPs per image are counted from
the model (keypoints.model.forward_flops); a training image costs 3x its forward pass, so achieved
GFLOP/s = 3 x forward FLOPs x images/s. Images are the first fully labelled real faces of
../shared/data if present, else random pixels. Writes benchmarks/results/train.json.
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
MATMUL_SIZE = 2048


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


def network_settings(network, outputs):
    """params.yaml's settings for the article's network (`train` alone) or the default preset's."""
    from keypoints.params import load_params, training_settings

    params = load_params(ROOT / "params.yaml")
    if network == "reference":
        params["train"]["preset"] = "reference"
    return training_settings(params, outputs), params["train"]["preset"]


def build(network, outputs):
    from keypoints.model import build_model, compile_model

    settings, _ = network_settings(network, outputs)
    model = build_model(outputs, **settings["model"])
    return compile_model(model, settings["optimizer"], settings["learning_rate"], settings["loss"],
                         settings["jit_compile"]), settings


def train_worker(x_path, y_path, images, batch, network, augment):
    """One timed epoch of our pipeline, as one JSON line like the baseline's. The default network
    trains at its own preset's batch size and augmentation."""
    from keypoints.augment import make_dataset
    from keypoints.columns import columns_for
    from keypoints.model import forward_flops

    x = np.load(x_path, mmap_mode="r")
    y = np.load(y_path)
    count = min(images, len(x))
    pixels, keypoints = np.asarray(x[:count, ..., 0]).astype(np.uint8), y[:count].astype(np.float32)
    names = columns_for(keypoints.shape[1])
    model, settings = build(network, keypoints.shape[1])
    if network == "default":
        batch, augment = settings["batch_size"], settings["augment"]

    def dataset(rows):
        return make_dataset(pixels[:rows], keypoints[:rows], names, batch, training=True, seed=0, augment=augment)

    model.fit(dataset(batch), epochs=1, verbose=0)  # warm-up: graph build
    started = time.perf_counter()
    model.fit(dataset(count), epochs=1, verbose=0)
    seconds = time.perf_counter() - started
    flops = forward_flops(model)
    return {"stage": "train", "images": count, "batch": batch, "seconds": seconds,
            "images_per_second": count / seconds, "forward_flops": flops,
            "gflops_per_second": 3 * flops * count / seconds / 1e9}


def matmul_worker(size=MATMUL_SIZE, seconds=3.0):
    """The machine's float32 matrix-multiply GFLOP/s through TensorFlow (all cores): the practical
    peak the convolutions (oneDNN matrix kernels underneath) can approach."""
    import tensorflow as tf

    a = tf.random.uniform((size, size), dtype=tf.float32)
    b = tf.random.uniform((size, size), dtype=tf.float32)
    multiply = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)))
    multiply().numpy()
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 5:
        started = time.perf_counter()
        multiply().numpy()
        rates.append(2 * size**3 / (time.perf_counter() - started) / 1e9)
    return {"stage": "matmul", "size": size, "gflops_per_second": statistics.median(rates)}


def infer_worker(network, seconds=3.0):
    """Faces per second of the merged predictor of two untrained models of `network` (speed does
    not depend on the weights), at batch 1 (a live face) and 32 (many faces)."""
    from keypoints.predict import merged_predictor

    from keypoints.params import load_params

    flip_average = load_params(ROOT / "params.yaml")["predict"]["flip_average"]
    predict_faces = merged_predictor(build(network, 8)[0], build(network, 30)[0], flip_average)
    result = {"stage": "infer", "flip_average": flip_average}
    for batch in (1, 32):
        faces = np.random.default_rng(0).integers(0, 256, (batch, 96, 96), dtype=np.uint8)
        predict_faces(faces)  # trace
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or calls < 5:
            predict_faces(faces)
            calls += 1
        result[f"faces_per_second_batch_{batch}"] = calls * batch / (time.perf_counter() - started)
    return result


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
    cli.add_argument("--worker", choices=["train", "matmul", "infer"], help=argparse.SUPPRESS)
    cli.add_argument("--network", choices=["reference", "default"], help=argparse.SUPPRESS)
    cli.add_argument("--augment", action="store_true", help=argparse.SUPPRESS)
    cli.add_argument("--x", help=argparse.SUPPRESS)
    cli.add_argument("--y", help=argparse.SUPPRESS)
    args = cli.parse_args(argv)

    if args.worker:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if args.worker == "train":
            augment = SMALL_AUGMENT if args.augment else {}
            result = train_worker(args.x, args.y, args.images, args.batch, args.network, augment)
        else:
            result = matmul_worker() if args.worker == "matmul" else infer_worker(args.network)
        print(json.dumps(result))
        return 0

    real = REAL_FACES.exists() and not args.synthetic
    images, keypoints = real_faces(REAL_FACES, args.images) if real else synthetic_faces(args.images)
    source = str(REAL_FACES) if real else "synthetic random pixels"
    default_preset = network_settings("default", 30)[1]
    print(f"{args.images} images ({source}), batch {args.batch}, {os.cpu_count()} cores, "
          f"default preset {default_preset!r}", flush=True)
    train = ["--worker", "train", "--x", "{x}", "--y", "{y}", "--images", str(args.images), "--batch", str(args.batch)]
    variants = {
        "baseline": [str(BASELINE), "train", "{x}", "{y}", "--images", str(args.images), "--batch", str(args.batch)],
        "reference": [__file__, *train, "--network", "reference"],
        "reference_augment": [__file__, *train, "--network", "reference", "--augment"],
        "default": [__file__, *train, "--network", "default"],
        "matmul": [__file__, "--worker", "matmul"],
        "infer_reference": [__file__, "--worker", "infer", "--network", "reference"],
        "infer_default": [__file__, "--worker", "infer", "--network", "default"],
    }
    runs = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as directory:
        x_path, y_path = Path(directory) / "X.npy", Path(directory) / "Y.npy"
        np.save(x_path, images[..., None].astype(np.float32))
        np.save(y_path, keypoints)
        for repeat in range(args.repeats):
            for name, template in variants.items():
                command = [sys.executable] + [part.format(x=x_path, y=y_path) for part in template]
                result = measure(command)
                runs[name].append(result)
                shown = {k: round(v, 1) if isinstance(v, float) else v for k, v in result.items() if k != "stage"}
                print(f"  {name:17s} run {repeat + 1}: {shown}", flush=True)

    def median(name, key):
        return statistics.median(result[key] for result in runs[name])

    baseline = median("baseline", "images_per_second")
    peak = median("matmul", "gflops_per_second")
    report = {"images": args.images, "batch": args.batch, "data": source, "cores": os.cpu_count(),
              "default_preset": default_preset, "augment": SMALL_AUGMENT, "runs": runs,
              "baseline_images_per_second": baseline, "matmul_gflops_per_second": peak}
    lines = [f"seed baseline {baseline:.1f} images/s; float32 matmul {peak:.0f} GFLOP/s"]
    for name in ("reference", "reference_augment", "default"):
        speed, achieved = median(name, "images_per_second"), median(name, "gflops_per_second")
        flops = runs[name][0]["forward_flops"]
        report[name] = {"images_per_second": speed, "ratio_to_baseline": speed / baseline,
                        "forward_gflop_per_image": flops / 1e9, "training_gflop_per_image": 3 * flops / 1e9,
                        "gflops_per_second": achieved, "share_of_matmul_peak": achieved / peak,
                        "batch": runs[name][0]["batch"]}
        lines.append(f"{name:17s} {speed:7.1f} images/s (x{speed / baseline:.2f} the baseline), "
                     f"{3 * flops / 1e9:.2f} GFLOP per training image, {achieved:.0f} GFLOP/s "
                     f"({achieved / peak:.0%} of matmul)")
    for name in ("infer_reference", "infer_default"):
        report[name] = {key: median(name, key) for key in ("faces_per_second_batch_1", "faces_per_second_batch_32")}
        lines.append(f"{name:17s} merged predictor {report[name]['faces_per_second_batch_1']:.0f} faces/s at "
                     f"batch 1, {report[name]['faces_per_second_batch_32']:.0f} at batch 32")
    from keypoints.fileio import save_json

    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_json(args.output, report)
    print("\n".join(lines) + f"\n-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
