"""Stage fetch: the competition's three CSVs into --out, from the source params.yaml names."""
import argparse

from keypoints.fetch import fetch
from keypoints.params import load_params

cli = argparse.ArgumentParser(description=__doc__)
cli.add_argument("--out", required=True)
args = cli.parse_args()

params = load_params()["fetch"]
fetch(
    params["source"],
    args.out,
    path=params.get("path", ""),
    competition=params.get("competition", "facial-keypoints-detection"),
    synthetic=params.get("synthetic"),
    sha256=params.get("sha256") or {},
)
