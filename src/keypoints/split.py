"""The two training subsets (8 values, all 30) and their held-out parts."""
import sys
from pathlib import Path

import numpy as np

from keypoints import fileio
from keypoints.columns import EIGHT_INDICES

KEY = "split.holdout_fraction"


def holdout_count(rows, fraction, key):
    """Rows held out of `rows` by `fraction`, the setting params.yaml names `key`."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"{key} must be in [0, 1), not {fraction}")
    count = int(round(rows * fraction))
    # Keep at least one held-out row (evaluate needs one) and one training row.
    if fraction > 0 and rows >= 2:
        count = min(max(count, 1), rows - 1)
    return count


def split_rows(keypoints, holdout_fraction, seed):
    """Row indices {"8": (train, holdout), "30": (train, holdout)} into `keypoints` (N, 30).

    Fully labelled rows also carry the 8 values, so both models may train on them. Every held-out
    row of the 30-value subset is held out of the 8-value subset too: the merged prediction is then
    scored on rows neither model has seen.
    """
    if not holdout_fraction > 0:
        # evaluate scores the held-out rows: with none, its metrics would all be NaN.
        raise ValueError(f"{KEY} must be above 0 (evaluate scores the held-out rows), not {holdout_fraction}")
    has_eight = np.isfinite(keypoints[:, EIGHT_INDICES]).all(axis=1)
    has_all = np.isfinite(keypoints).all(axis=1)
    generator = np.random.default_rng(seed)

    full_rows = np.flatnonzero(has_all)
    holdout_30 = np.sort(generator.choice(full_rows, holdout_count(len(full_rows), holdout_fraction, KEY), replace=False))
    eight_only_rows = np.flatnonzero(has_eight & ~has_all)
    extra = generator.choice(eight_only_rows, holdout_count(len(eight_only_rows), holdout_fraction, KEY), replace=False)
    holdout_8 = np.sort(np.concatenate([holdout_30, extra]))

    subsets = {
        "8": (np.setdiff1d(np.flatnonzero(has_eight), holdout_8), holdout_8),
        "30": (np.setdiff1d(full_rows, holdout_30), holdout_30),
    }
    for name, (train, holdout) in subsets.items():
        if len(train) == 0:
            raise ValueError(f"no training rows with all {name} keypoint values: check the data or {KEY}")
        if len(holdout) == 0:
            raise ValueError(f"no held-out rows with all {name} keypoint values: {len(train)} rows are too few to "
                             f"hold any out; check the data or {KEY}")
    return subsets


def write_subset(out_dir, images, keypoints, train_rows, holdout_rows, columns):
    """out_dir/{train,holdout}_{images,keypoints}.npy and holdout_rows.npy, swapped in whole."""
    out_dir = Path(out_dir)
    with fileio.atomic_dir(out_dir) as temporary:
        for part, rows in (("train", train_rows), ("holdout", holdout_rows)):
            np.save(temporary / f"{part}_images.npy", images[rows])
            np.save(temporary / f"{part}_keypoints.npy", keypoints[rows][:, columns].astype(np.float32))
        np.save(temporary / "holdout_rows.npy", holdout_rows.astype(np.int64))
    print(f"{out_dir}: {len(train_rows)} training rows, {len(holdout_rows)} held out", file=sys.stderr)
