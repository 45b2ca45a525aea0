"""Stage fetch: the competition's three CSVs into --out, from the source params.yaml names."""
import argparse

from keypoints.fetch import fetch
from keypoints.params import load_params


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
    main()
