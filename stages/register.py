"""Stage register: the merged predictor as one MLflow pyfunc model (keypoints.serving), registered in
the MLflow Model Registry as `candidate`, and `champion` when it beats the champion (keypoints.registry).

Writes the model directory (servable as it is: mlflow models serve -m models/predictor) and
models/registered.json, which says which version was registered and why champion did or did not move.
With the store down, both are written and the record says nothing was registered.
"""
import gc

if __name__ == "__main__":
    gc.disable()  # while the modules below load: keypoints.process.run_main turns it back on

import argparse
import json
from pathlib import Path

import numpy as np

from keypoints import fileio, registry, tracking
from keypoints.params import load_params
from keypoints.process import run_main
from keypoints.serving import save_predictor


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--model-8", required=True)
    cli.add_argument("--model-30", required=True)
    cli.add_argument("--framing", required=True)
    cli.add_argument("--split", required=True)
    cli.add_argument("--metrics", required=True, help="evaluate's metrics/evaluate.json: the held-out RMSEs")
    cli.add_argument("--predictor", required=True, help="directory the pyfunc model is written to")
    cli.add_argument("--out", required=True)
    args = cli.parse_args(argv)

    params = load_params()
    split = Path(args.split)
    example_face = np.load(split / "30" / "holdout_images.npy", mmap_mode="r")[0]
    save_predictor(args.predictor, args.model_8, args.model_30, args.framing,
                   params["predict"]["flip_average"], params["predict"]["batch_size"], example_face,
                   params["predict"]["shift_average"])
    metrics = json.loads(Path(args.metrics).read_text())
    # The checksum evaluate's run carries: versions scored on the same held-out faces compare.
    data_checksum = tracking.files_checksum([split / name / "holdout_keypoints.npy" for name in ("8", "30")])
    with tracking.Run(params["mlflow"]["experiment"], "register", data_checksum=data_checksum) as run:
        record = registry.publish(run, args.predictor, params["register"]["model_name"], metrics, data_checksum)
        run.finish()
    fileio.save_json(args.out, record)
    print(f"{args.out}: {record['reason']}")


if __name__ == "__main__":
    run_main(main)
