"""Competition CSVs -> validated arrays, streamed in batches of rows into preallocated arrays.

Pixels are parsed vectorised on the raw bytes of a batch of rows (the common, valid case); when
anything in a batch looks unusual it is re-read row by row, which either accepts it or raises a
DataError naming the file, row, line and column of the first problem.
"""
import sys
from pathlib import Path

import numpy as np

from keypoints import fileio
from keypoints.columns import (IMAGE_COLUMN, IMAGE_SIZE, KEYPOINT_COLUMNS, LOOKUP_COLUMNS, PIXELS, TEST_COLUMNS,
                               TRAINING_COLUMNS, to_project_convention)
from keypoints.csvrows import (  # noqa: F401 (DataError: the parsers' error, raised from csvrows)
    DataError,
    count_data_lines,
    integer,
    keypoints_checked,
    keypoints_fast,
    no_rows,
    open_binary,
    pixels_checked,
    progress,
    read_header,
    row_chunks,
    where,
)
from keypoints.parse_parallel import parse_training_parallel
from keypoints.pixels import PixelParser

def parse_training(path, progress_every=1000, workers=None):
    """training.csv -> (images uint8 (N,96,96), keypoints float32 (N,30) in KEYPOINT_COLUMNS order).

    A plain (not gzip) file whose last column is Image, the competition's layout, is parsed by
    `workers` threads (default: one per core) on disjoint groups of rows; anything else, or any
    unusual row, goes through the sequential path, which also words the errors."""
    path = Path(path)
    parsed = parse_training_parallel(path, progress_every, workers)
    if parsed is not None:
        return parsed
    return _parse_training_sequential(path, progress_every)


def _parse_training_sequential(path, progress_every):
    capacity = count_data_lines(path)
    with open_binary(path) as handle:
        positions, n_columns = read_header(handle, path, TRAINING_COLUMNS)
        keypoint_positions = [positions[name] for name in KEYPOINT_COLUMNS]
        image_position = positions[IMAGE_COLUMN]
        images = np.empty((capacity, PIXELS), dtype=np.uint8)
        keypoints = np.empty((capacity, len(KEYPOINT_COLUMNS)), dtype=np.float32)
        pixel_parser, done = PixelParser(), 0
        for chunk in row_chunks(handle, path, n_columns):
            block = slice(done, done + len(chunk))
            fast_keypoints = keypoints_fast(chunk, keypoint_positions)
            image_fields = [fields[image_position] for _, _, fields in chunk]
            if fast_keypoints is not None and pixel_parser.parse(image_fields, images[block]):
                keypoints[block] = fast_keypoints
            else:
                for offset, (row, line, fields) in enumerate(chunk):
                    keypoints[done + offset] = keypoints_checked(path, row, line, fields, keypoint_positions)
                    images[done + offset] = pixels_checked(fields[image_position], where(path, row, line, IMAGE_COLUMN))
            progress(path.name, done + len(chunk), capacity, progress_every, done)
            done += len(chunk)
    if done == 0:
        raise no_rows(path)
    if done < capacity:  # blank lines were counted but skipped
        images, keypoints = images[:done].copy(), keypoints[:done].copy()
    return images.reshape(done, IMAGE_SIZE, IMAGE_SIZE), keypoints


def parse_test(path, progress_every=1000):
    """test.csv -> (image_ids int64 (M,), images uint8 (M,96,96)); a header-only file gives M=0."""
    path = Path(path)
    capacity = count_data_lines(path)
    with open_binary(path) as handle:
        positions, n_columns = read_header(handle, path, TEST_COLUMNS)
        image_ids = np.empty(capacity, dtype=np.int64)
        images = np.empty((capacity, PIXELS), dtype=np.uint8)
        seen, pixel_parser, done = {}, PixelParser(), 0
        for chunk in row_chunks(handle, path, n_columns):
            for offset, (row, line, fields) in enumerate(chunk):
                image_id = integer(fields[positions["ImageId"]], where(path, row, line, "ImageId"))
                if image_id in seen:
                    first_row, first_line = seen[image_id]
                    raise DataError(f"{where(path, row, line, 'ImageId')}: ImageId {image_id} duplicates "
                                    f"row {first_row} (line {first_line})")
                seen[image_id] = (row, line)
                image_ids[done + offset] = image_id
            image_fields = [fields[positions[IMAGE_COLUMN]] for _, _, fields in chunk]
            if not pixel_parser.parse(image_fields, images[done:done + len(chunk)]):
                for offset, (row, line, fields) in enumerate(chunk):
                    images[done + offset] = pixels_checked(image_fields[offset], where(path, row, line, IMAGE_COLUMN))
            progress(path.name, done + len(chunk), capacity, progress_every, done)
            done += len(chunk)
    if done < capacity:  # blank lines were counted but skipped
        image_ids, images = image_ids[:done].copy(), images[:done].copy()
    return image_ids, images.reshape(done, IMAGE_SIZE, IMAGE_SIZE)


def parse_lookup(path, image_ids):
    """IdLookupTable.csv -> DataFrame[RowId, ImageId, FeatureName]; the Location column is dropped."""
    import pandas as pd  # only here: keeps pandas out of the memory-measured training parse

    path = Path(path)
    known_ids = set(np.asarray(image_ids).tolist())
    features = set(KEYPOINT_COLUMNS)
    row_ids, ids, names, seen = [], [], [], {}
    with open_binary(path) as handle:
        positions, n_columns = read_header(handle, path, LOOKUP_COLUMNS)
        min_fields = max(positions[name] for name in LOOKUP_COLUMNS) + 1
        for chunk in row_chunks(handle, path, n_columns, min_fields):
            for row, line, fields in chunk:
                row_id = integer(fields[positions["RowId"]], where(path, row, line, "RowId"))
                if row_id in seen:
                    raise DataError(f"{where(path, row, line, 'RowId')}: RowId {row_id} duplicates row {seen[row_id]}")
                seen[row_id] = row
                image_id = integer(fields[positions["ImageId"]], where(path, row, line, "ImageId"))
                if image_id not in known_ids:
                    raise DataError(f"{where(path, row, line, 'ImageId')}: ImageId {image_id} is not in the test images")
                name = fields[positions["FeatureName"]].decode("utf-8", "replace").strip()
                if name not in features:
                    raise DataError(f"{where(path, row, line, 'FeatureName')}: '{name}' is not a keypoint column")
                row_ids.append(row_id)
                ids.append(image_id)
                names.append(name)
    return pd.DataFrame({
        "RowId": np.array(row_ids, dtype=np.int64),
        "ImageId": np.array(ids, dtype=np.int64),
        "FeatureName": pd.Series(names, dtype=object),
    })


def parse_directory(raw_dir, out_dir, pixel_centre):
    """raw_dir/{training,test,IdLookupTable}.csv -> out_dir/*.npy + id_lookup.csv, all or nothing.
    The labels are moved from the data's pixel-centre convention (parse.pixel_centre) to the project's."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    images, keypoints = parse_training(raw_dir / "training.csv")
    keypoints = to_project_convention(keypoints, pixel_centre)
    test_ids, test_images = parse_test(raw_dir / "test.csv")
    lookup = parse_lookup(raw_dir / "IdLookupTable.csv", test_ids)
    with fileio.atomic_dir(out_dir) as temporary:
        np.save(temporary / "train_images.npy", images)
        np.save(temporary / "train_keypoints.npy", keypoints)
        np.save(temporary / "test_images.npy", test_images)
        np.save(temporary / "test_ids.npy", test_ids)
        lookup.to_csv(temporary / "id_lookup.csv", index=False)
    print(f"parsed {len(images)} training rows, {len(test_ids)} test images, {len(lookup)} lookup rows "
          f"-> {out_dir}", file=sys.stderr)
