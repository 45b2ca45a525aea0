"""Rows of the competition's CSVs: lines read in chunks, fields split, each field checked.

Errors are DataErrors that name the file, row, line and column of the first problem.
"""
import math
import sys

import numpy as np

from keypoints import fileio
from keypoints.columns import COORDINATE_MAX, COORDINATE_MIN, IMAGE_SIZE, KEYPOINT_COLUMNS, PIXELS
from keypoints.pixels import BATCH_ROWS


class DataError(ValueError):
    """Bad input data; the message names the file, row (and line) and column."""


def where(path, row, line, column):
    return f"{path}: row {row} (line {line}), column '{column}'"


# ---------------------------------------------------------------- reading rows


def open_binary(path):
    """The raw byte stream of a plain or gzip file (detached from fileio's text wrapper)."""
    try:
        return fileio.open_text(path).detach()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None


def split_line(line):
    line = line.rstrip(b"\r\n")
    if not line.strip():
        return None
    fields = line.split(b",")
    return [unquote(field) for field in fields] if b'"' in line else fields


def unquote(field):
    # Writers may quote a field (e.g. the space-separated Image); numeric data never holds a comma.
    if len(field) >= 2 and field[:1] == b'"' and field[-1:] == b'"':
        return field[1:-1]
    return field


def read_header(handle, path, required):
    """Column name -> position for every required column, from the first line."""
    first = handle.readline()
    if first.startswith(b"\xef\xbb\xbf"):
        first = first[3:]
    fields = split_line(first)
    if fields is None:
        raise DataError(f"{path}: empty file (no header line)")
    names = [field.decode("utf-8", "replace").strip() for field in fields]
    positions = {}
    for position, name in enumerate(names):
        if name in positions:
            raise DataError(f"{path}: header, column '{name}': appears twice")
        positions[name] = position
    for name in required:
        if name not in positions:
            raise DataError(f"{path}: header, column '{name}': missing (header has {len(names)} columns)")
    return positions, len(names)


def count_data_lines(path):
    """Lines after the header, counted cheaply on the raw bytes, to preallocate the output."""
    lines, last = 0, b"\n"
    block = bytearray(fileio.CHUNK_BYTES)  # reused: a fresh buffer per read would page-fault every time
    with open_binary(path) as handle:
        while size := handle.readinto(block):
            lines += block.count(b"\n", 0, size)
            last = block[size - 1:size]
    return max(lines + (last != b"\n") - 1, 0)


def row_chunks(handle, path, n_columns, min_fields=None):
    """Yield lists of up to BATCH_ROWS (row, line, fields); blank lines skipped, field counts checked.

    min_fields allows rows that leave trailing optional columns off (the real IdLookupTable
    has a Location header but 3-field rows)."""
    min_fields = n_columns if min_fields is None else min_fields
    row, line, chunk = 0, 1, []
    while lines := handle.readlines(fileio.CHUNK_BYTES):
        for text in lines:
            line += 1
            fields = split_line(text)
            if fields is None:
                continue
            row += 1
            if not min_fields <= len(fields) <= n_columns:
                raise DataError(f"{path}: row {row} (line {line}): has {len(fields)} fields, the header has {n_columns}")
            chunk.append((row, line, fields))
            if len(chunk) == BATCH_ROWS:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def no_rows(path):
    return DataError(f"{path}: header only, no data rows")


# ---------------------------------------------------------------- pixels


def pixels_checked(field, where):
    """One Image field -> uint8 (PIXELS,), or a DataError saying exactly what is wrong."""
    tokens = field.split()
    if not tokens or field.strip().lower() == b"nan":
        raise DataError(f"{where}: Image is empty or NaN")
    if len(tokens) != PIXELS:
        raise DataError(f"{where}: expected {PIXELS} pixel values ({IMAGE_SIZE}x{IMAGE_SIZE}), found {len(tokens)}")
    for index, token in enumerate(tokens):
        if not token.isdigit():
            shown = token[:20].decode("utf-8", "replace")
            if token.lstrip(b"-").isdigit():
                raise DataError(f"{where}: pixel {index} value {shown} is outside 0-255")
            raise DataError(f"{where}: pixel {index} value '{shown}' is not an integer")
        if int(token) > 255:
            raise DataError(f"{where}: pixel {index} value {int(token)} is outside 0-255")
    return np.array([int(token) for token in tokens], dtype=np.uint8)


# ---------------------------------------------------------------- keypoints


def keypoints_fast(rows, positions):
    """Keypoint fields of many rows -> float32 (rows, 30) with NaN for empty, or None if unusual."""
    try:
        values = [
            [float(fields[position]) if fields[position] else math.nan for position in positions]
            for _, _, fields in rows
        ]
    except ValueError:
        return None
    # Checked in float64, as the slow path does: float32 rounds 96.000001 to 96.
    array = np.array(values, dtype=np.float64).reshape(len(rows), len(positions))
    inside = np.isnan(array) | ((array >= COORDINATE_MIN) & (array <= COORDINATE_MAX))
    return array.astype(np.float32) if inside.all() else None


def keypoint_checked(field, where):
    if not field.strip():
        return math.nan
    shown = field[:30].decode("utf-8", "replace")
    try:
        value = float(field)
    except ValueError:
        raise DataError(f"{where}: keypoint value '{shown}' is not a number") from None
    if not math.isnan(value) and not COORDINATE_MIN <= value <= COORDINATE_MAX:
        raise DataError(f"{where}: keypoint value {shown} is outside [{COORDINATE_MIN:g}, {COORDINATE_MAX:g}]")
    return value


def keypoints_checked(path, row, line, fields, positions):
    return [keypoint_checked(fields[position], where(path, row, line, name))
            for name, position in zip(KEYPOINT_COLUMNS, positions)]


def integer(field, where):
    try:
        return int(field)
    except ValueError:
        raise DataError(f"{where}: '{field[:30].decode('utf-8', 'replace')}' is not an integer") from None


def progress(label, done, total, every, previous):
    if every and (done // every > previous // every or done == total):
        print(f"{label}: parsed {done}/{total} rows", file=sys.stderr, flush=True)
