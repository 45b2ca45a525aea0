"""Stage fetch: the competition's three CSVs into --out, from the source params.yaml names."""
import gc

if __name__ == "__main__":
    gc.disable()  # while the modules below load: keypoints.process.run_main turns it back on

import argparse

from keypoints.fetch import fetch
from keypoints.params import load_params
from keypoints.process import run_main


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--out", required=True)
    args = cli.parse_args(argv)

    params = load_params()["fetch"]
    fetch(
        params["source"],
        args.out,
        path=params["path"],
        competition=params["competition"],
        synthetic=params["synthetic"],
        sha256=params["sha256"],
    )


if __name__ == "__main__":
    run_main(main)
