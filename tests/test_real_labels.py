"""The real competition label files (../shared/data/facial-keypoints) pass the parsers' checks.

The same checks always run on the made-up fixtures in tests/fixtures/labels (same formats, counts
in expected.json), and also on the real files when they are present, so nothing is ever skipped.
"""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keypoints import fileio
from keypoints.columns import EIGHT_INDICES, KEYPOINT_COLUMNS
from keypoints.csvrows import keypoints_checked, keypoints_fast, no_rows, open_binary, read_header, row_chunks
from keypoints.parse import parse_lookup

FIXTURES = Path(__file__).resolve().parent / "fixtures/labels"
REAL = Path(os.environ.get("KEYPOINTS_REAL_LABELS",
                           Path(__file__).resolve().parents[2] / "shared/data/facial-keypoints"))
# Published counts of the competition's training.csv and IdLookupTable.csv (see SOURCES.md there).
REAL_EXPECTED = {"training_rows": 7049, "full_rows": 2140, "eight_columns_min_present": 7000,
                 "lookup_rows": 27124, "lookup_image_ids": 1783}


def parse_keypoint_labels(path):
    """A keypoints-only CSV (training.csv without Image) -> float32 (N,30), every value checked."""
    with open_binary(path) as handle:
        positions, n_columns = read_header(handle, path, KEYPOINT_COLUMNS)
        keypoint_positions = [positions[name] for name in KEYPOINT_COLUMNS]
        rows = []
        for chunk in row_chunks(handle, path, n_columns):
            values = keypoints_fast(chunk, keypoint_positions)
            if values is None:
                values = [keypoints_checked(path, row, line, fields, keypoint_positions) for row, line, fields in chunk]
            rows.extend(values)
    if not rows:
        raise no_rows(path)
    return np.array(rows, dtype=np.float32)


def label_sets():
    sets = [pytest.param((FIXTURES, json.loads((FIXTURES / "expected.json").read_text())), id="fixtures")]
    if "KEYPOINTS_REAL_LABELS" in os.environ and not REAL.is_dir():
        raise FileNotFoundError(f"KEYPOINTS_REAL_LABELS={REAL}: no such directory")
    if REAL.is_dir():
        sets.append(pytest.param((REAL, REAL_EXPECTED), id="real"))
    return sets


@pytest.fixture(params=label_sets())
def labels(request):
    return request.param


def header(path):
    with fileio.open_text(path) as handle:
        return handle.readline().rstrip("\r\n").split(",")


def test_training_keypoints(labels):
    directory, expected = labels
    path = directory / "training_keypoints.csv.gz"
    assert header(path) == KEYPOINT_COLUMNS
    keypoints = parse_keypoint_labels(path)  # also checks every value is a number in [0, 96]
    assert keypoints.shape == (expected["training_rows"], 30)
    present = ~np.isnan(keypoints)
    assert present.all(axis=1).sum() == expected["full_rows"]
    assert present[:, EIGHT_INDICES].sum(axis=0).min() >= expected["eight_columns_min_present"]
    values = keypoints[present]
    assert values.min() >= 0 and values.max() <= 96


def test_lookup_and_sample_submission(labels):
    directory, expected = labels
    image_ids = np.arange(1, expected["lookup_image_ids"] + 1)
    lookup = parse_lookup(directory / "IdLookupTable.csv.gz", image_ids)
    assert len(lookup) == expected["lookup_rows"]
    assert lookup["ImageId"].nunique() == expected["lookup_image_ids"]
    assert set(lookup["FeatureName"]) == set(KEYPOINT_COLUMNS)

    submission_path = directory / "SampleSubmission.csv.gz"
    assert header(submission_path) == ["RowId", "Location"]
    submission = pd.read_csv(submission_path)
    assert submission["RowId"].tolist() == lookup["RowId"].tolist()


def test_our_submission_has_the_sample_submissions_rows_and_columns(labels):
    """predict.submission on the real lookup table writes exactly the rows Kaggle's sample has."""
    from keypoints.predict import submission

    directory, expected = labels
    image_ids = np.arange(1, expected["lookup_image_ids"] + 1)
    lookup = parse_lookup(directory / "IdLookupTable.csv.gz", image_ids)
    # Distinct, out-of-range values per (image, column) show both the lookup and the clipping.
    keypoints = (np.arange(len(image_ids) * 30, dtype=np.float32).reshape(-1, 30) % 100) - 2
    ours = submission(lookup, image_ids, keypoints)
    sample = pd.read_csv(directory / "SampleSubmission.csv.gz")
    assert list(ours.columns) == list(sample.columns) == ["RowId", "Location"]
    assert ours["RowId"].tolist() == sample["RowId"].tolist()
    columns = lookup["FeatureName"].map(KEYPOINT_COLUMNS.index).to_numpy()
    wanted = np.clip(keypoints[lookup["ImageId"].to_numpy() - 1, columns], 0, 96)
    np.testing.assert_allclose(ours["Location"].to_numpy(), wanted, atol=1e-4)
