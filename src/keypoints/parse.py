"""Competition CSVs -> validated arrays, streamed in batches of rows into preallocated arrays.

Pixels are parsed vectorised on the raw bytes of a batch of rows (the common, valid case); when
anything in a batch looks unusual it is re-read row by row, which either accepts it or raises a
DataError naming the file, row, line and column of the first problem.
"""
import io
import math
import sys
from pathlib import Path

import numpy as np

from keypoints import fileio
from keypoints.columns import (
    COORDINATE_MAX,
    COORDINATE_MIN,
    IMAGE_COLUMN,
    IMAGE_SIZE,
    KEYPOINT_COLUMNS,
    LOOKUP_COLUMNS,
    PIXELS,
    TEST_COLUMNS,
    TRAINING_COLUMNS,
)

# Lines are read ~1 MB at a time and handled in batches of 16 rows (~0.5 MB of pixel text):
# enough to amortise numpy's per-call overhead, small enough for the scratch arrays to stay cached.
CHUNK_BYTES = 1 << 20
BATCH_ROWS = 16
SPACE = ord(" ")
PAD = 2  # leading spaces so that every byte can look two bytes back
ZERO = ord("0")


class DataError(ValueError):
    """Bad input data; the message names the file, row (and line) and column."""


def _where(path, row, line, column):
    return f"{path}: row {row} (line {line}), column '{column}'"


# ---------------------------------------------------------------- reading rows


def _open_binary(path):
    """The raw byte stream of a plain or gzip file (detached from fileio's text wrapper)."""
    try:
        return fileio.open_text(path).detach()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None


def _split_line(line):
    line = line.rstrip(b"\r\n")
    if not line.strip():
        return None
    fields = line.split(b",")
    return [_unquote(field) for field in fields] if b'"' in line else fields


def _unquote(field):
    # Writers may quote a field (e.g. the space-separated Image); numeric data never holds a comma.
    if len(field) >= 2 and field[:1] == b'"' and field[-1:] == b'"':
        return field[1:-1]
    return field


def _read_header(handle, path, required):
    """Column name -> position for every required column, from the first line."""
    first = handle.readline()
    if first.startswith(b"\xef\xbb\xbf"):
        first = first[3:]
    fields = _split_line(first)
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


def _count_data_lines(path):
    """Lines after the header, counted cheaply on the raw bytes, to preallocate the output."""
    lines, last = 0, b"\n"
    block = bytearray(CHUNK_BYTES)  # reused: a fresh buffer per read would page-fault every time
    with _open_binary(path) as handle:
        while size := handle.readinto(block):
            lines += block.count(b"\n", 0, size)
            last = block[size - 1:size]
    return max(lines + (last != b"\n") - 1, 0)


def _row_chunks(handle, path, n_columns, min_fields=None):
    """Yield lists of up to BATCH_ROWS (row, line, fields); blank lines skipped, field counts checked.

    min_fields allows rows that leave trailing optional columns off (the real IdLookupTable
    has a Location header but 3-field rows)."""
    min_fields = n_columns if min_fields is None else min_fields
    row, line, chunk = 0, 1, []
    while lines := handle.readlines(CHUNK_BYTES):
        for text in lines:
            line += 1
            fields = _split_line(text)
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


def _no_rows(path):
    return DataError(f"{path}: header only, no data rows")


# ---------------------------------------------------------------- pixels


class PixelParser:
    """Vectorised parse of Image fields, a batch of up to `rows` rows at a time.

    Works on the batch's bytes with whole-array operations: a byte is a digit or a separator;
    at each byte, units + 10 * previous digit + 100 * the one before (zero across a separator)
    is the value of the token ending there; the values at bytes followed by a separator are the
    pixels. Scratch arrays are reused: fresh multi-MB temporaries per batch cost more in page
    faults than the parse. Only the canonical form is accepted (1-3 digit tokens separated by
    single spaces); otherwise parse() returns False and the caller checks the rows one by one.
    """

    def __init__(self, rows=BATCH_ROWS):
        self.rows = rows
        size = PAD + rows * PIXELS * 4  # at most 3 digits + 1 separator per pixel
        self.text = np.full(size, SPACE, dtype=np.uint8)
        self.digits = np.empty(size, dtype=np.uint8)
        self.is_digit = np.empty(size, dtype=bool)
        self.is_separator = np.empty(size, dtype=bool)
        self.flags = np.empty(size, dtype=bool)
        self.values = np.empty(size, dtype=np.uint16)
        self.hundreds = np.empty(size, dtype=np.uint16)
        self.pixels = np.empty(rows * PIXELS, dtype=np.uint16)

    def parse(self, fields, out):
        """Fill out (len(fields), PIXELS) uint8 from the fields; False if any field is unusual."""
        if len(fields) > self.rows:
            raise ValueError(f"at most {self.rows} rows per batch, got {len(fields)}")
        copied = self._copy_fields(fields)
        if copied is None:
            return False
        size, starts = copied
        is_digit, is_separator, flags = self.is_digit[:size], self.is_separator[:size], self.flags[:size - 3]
        digits = np.subtract(self.text[:size], ZERO, out=self.digits[:size])
        np.less(digits, 10, out=is_digit)
        np.logical_not(is_digit, out=is_separator)
        digits *= is_digit  # separators count as 0 in the sums below
        # No empty token: no two separators in a row (the pad's are not in the data).
        np.logical_and(is_separator[PAD + 1:], is_separator[PAD:-1], out=flags[:size - PAD - 1])
        if is_separator[PAD] or flags[:size - PAD - 1].any():
            return False
        # PIXELS separators (so PIXELS tokens, none empty) in every row, and all of them spaces.
        for start, end in zip(starts, starts[1:]):
            if np.count_nonzero(is_separator[start:end]) != PIXELS:
                return False
        if np.count_nonzero(np.equal(self.text[PAD:size], SPACE, out=self.flags[:size - PAD])) != len(fields) * PIXELS:
            return False
        # No token longer than 3 digits.
        np.logical_and(is_digit[3:], is_digit[2:-1], out=flags)
        flags &= is_digit[1:-2]
        flags &= is_digit[:-3]
        if flags.any():
            return False
        # values[i] is the token ending at byte i + 2; the hundreds digit only counts when the
        # tens byte is a digit too (else it belongs to the previous token).
        values, hundreds = self.values[:size - 2], self.hundreds[:size - 2]
        np.multiply(digits[1:-1], 10, out=values, dtype=np.uint16)
        values += digits[2:]
        np.multiply(digits[:-2], 100, out=hundreds, dtype=np.uint16)  # 900 overflows uint8
        hundreds *= is_digit[1:-1]
        values += hundreds
        token_ends = is_separator[3:]
        pixels = np.compress(token_ends, values[:-1], out=self.pixels[:out.size])
        if pixels.max() > 255:
            return False
        out[...] = pixels.reshape(out.shape)
        return True

    def _copy_fields(self, fields):
        """Copy the fields, each followed by one space, after the pad; None if a field is unusual.

        Returns (end of the text, each field's start)."""
        size, starts = PAD, []
        for field in fields:
            if len(field) > PIXELS * 4 - 1:
                return None
            starts.append(size)
            self.text[size:size + len(field)] = np.frombuffer(field, dtype=np.uint8)
            self.text[size + len(field)] = SPACE
            size += len(field) + 1
        return size, starts + [size]


def _pixels_slow(field, where):
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


def _keypoints_fast(rows, positions):
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


def _keypoint_slow(field, where):
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


def _keypoints_slow(path, row, line, fields, positions):
    return [_keypoint_slow(fields[position], _where(path, row, line, name))
            for name, position in zip(KEYPOINT_COLUMNS, positions)]


# ---------------------------------------------------------------- public parsers


def _progress(label, done, total, every, previous):
    if every and (done // every > previous // every or done == total):
        print(f"{label}: parsed {done}/{total} rows", file=sys.stderr, flush=True)


def parse_training(path, progress_every=1000, workers=None):
    """training.csv -> (images uint8 (N,96,96), keypoints float32 (N,30) in KEYPOINT_COLUMNS order).

    A plain (not gzip) file whose last column is Image, the competition's layout, is parsed by
    `workers` threads (default: one per core) on disjoint groups of rows; anything else, or any
    unusual row, goes through the sequential path, which also words the errors."""
    path = Path(path)
    parsed = _parse_training_parallel(path, progress_every, workers)
    if parsed is not None:
        return parsed
    return _parse_training_sequential(path, progress_every)


def _parse_training_sequential(path, progress_every):
    capacity = _count_data_lines(path)
    with _open_binary(path) as handle:
        positions, n_columns = _read_header(handle, path, TRAINING_COLUMNS)
        keypoint_positions = [positions[name] for name in KEYPOINT_COLUMNS]
        image_position = positions[IMAGE_COLUMN]
        images = np.empty((capacity, PIXELS), dtype=np.uint8)
        keypoints = np.empty((capacity, len(KEYPOINT_COLUMNS)), dtype=np.float32)
        pixel_parser, done = PixelParser(), 0
        for chunk in _row_chunks(handle, path, n_columns):
            block = slice(done, done + len(chunk))
            fast_keypoints = _keypoints_fast(chunk, keypoint_positions)
            image_fields = [fields[image_position] for _, _, fields in chunk]
            if fast_keypoints is not None and pixel_parser.parse(image_fields, images[block]):
                keypoints[block] = fast_keypoints
            else:
                for offset, (row, line, fields) in enumerate(chunk):
                    keypoints[done + offset] = _keypoints_slow(path, row, line, fields, keypoint_positions)
                    images[done + offset] = _pixels_slow(fields[image_position], _where(path, row, line, IMAGE_COLUMN))
            _progress(path.name, done + len(chunk), capacity, progress_every, done)
            done += len(chunk)
    if done == 0:
        raise _no_rows(path)
    if done < capacity:  # blank lines were counted but skipped
        images, keypoints = images[:done].copy(), keypoints[:done].copy()
    return images.reshape(done, IMAGE_SIZE, IMAGE_SIZE), keypoints


# Rows per parallel task: ~4 MB of text, few enough tasks for little overhead, enough to balance.
TASK_ROWS = 128


def _line_ends(handle, start):
    """Byte offsets just past every newline from `start` on, read 1 MB at a time into one buffer."""
    ends, block, offset = [], bytearray(CHUNK_BYTES), start
    handle.seek(start)
    while size := handle.readinto(block):
        position = block.find(b"\n", 0, size)
        while position >= 0:
            ends.append(offset + position + 1)
            position = block.find(b"\n", position + 1, size)
        offset += size
    return ends, offset


def _parse_training_parallel(path, progress_every, workers):
    """The fast path of parse_training, or None where it does not apply (then nothing is lost).

    The newlines are indexed first, so each task knows its rows and byte range, reads them with
    pread into a buffer of its own thread and writes straight into the output arrays: the numpy
    work of two tasks overlaps, and no line is split, copied or joined in Python more than once."""
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor

    with _open_binary(path) as probe:
        if not isinstance(probe, io.BufferedReader):  # gzip: no random access
            return None
    with open(path, "rb") as handle:
        positions, n_columns = _read_header(handle, path, TRAINING_COLUMNS)
        if positions[IMAGE_COLUMN] != n_columns - 1:
            return None
        header_end = handle.tell()
        ends, size = _line_ends(handle, header_end)
        if size > header_end and (not ends or ends[-1] != size):
            ends.append(size)  # a last line without a newline
        starts = [header_end] + ends[:-1]
        rows = len(ends)
        if rows == 0:
            return None
        keypoint_positions = [positions[name] for name in KEYPOINT_COLUMNS]
        images = np.empty((rows, PIXELS), dtype=np.uint8)
        keypoints = np.empty((rows, len(KEYPOINT_COLUMNS)), dtype=np.float32)
        local = threading.local()
        descriptor = handle.fileno()

        def task(first):
            last = min(first + TASK_ROWS, rows)
            begin, end = starts[first], ends[last - 1]
            if not hasattr(local, "parser"):
                local.parser, local.buffer = PixelParser(), bytearray()
            if len(local.buffer) < end - begin:
                local.buffer = bytearray(end - begin)
            text = memoryview(local.buffer)[:end - begin]
            if os.preadv(descriptor, [text], begin) != end - begin:
                return False
            for batch in range(first, last, BATCH_ROWS):
                stop = min(batch + BATCH_ROWS, last)
                fields, values = [], []
                for row in range(batch, stop):
                    line_start, line_end = starts[row] - begin, ends[row] - begin
                    while line_end > line_start and local.buffer[line_end - 1] in b"\r\n":
                        line_end -= 1
                    comma = local.buffer.rfind(b",", line_start, line_end)
                    if comma < 0:
                        return False
                    labels = bytes(text[line_start:comma]).split(b",")
                    if len(labels) != n_columns - 1 or b'"' in labels[-1]:
                        return False
                    values.append((None, None, labels))
                    fields.append(text[comma + 1:line_end])
                fast_keypoints = _keypoints_fast(values, keypoint_positions)
                if fast_keypoints is None or not local.parser.parse(fields, images[batch:stop]):
                    return False
                keypoints[batch:stop] = fast_keypoints
            return last - first

        done = 0
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            for count in pool.map(task, range(0, rows, TASK_ROWS)):
                if count is False:
                    return None  # the sequential path rereads it all and says what is wrong
                _progress(path.name, done + count, rows, progress_every, done)
                done += count
    return images.reshape(rows, IMAGE_SIZE, IMAGE_SIZE), keypoints


def parse_keypoint_labels(path):
    """A keypoints-only CSV (training.csv without Image) -> float32 (N,30) in KEYPOINT_COLUMNS order."""
    path = Path(path)
    with _open_binary(path) as handle:
        positions, n_columns = _read_header(handle, path, KEYPOINT_COLUMNS)
        keypoint_positions = [positions[name] for name in KEYPOINT_COLUMNS]
        rows = []
        for chunk in _row_chunks(handle, path, n_columns):
            values = _keypoints_fast(chunk, keypoint_positions)
            if values is None:
                values = [_keypoints_slow(path, row, line, fields, keypoint_positions) for row, line, fields in chunk]
            rows.extend(values)
    if not rows:
        raise _no_rows(path)
    return np.array(rows, dtype=np.float32)


def parse_test(path, progress_every=1000):
    """test.csv -> (image_ids int64 (M,), images uint8 (M,96,96)); a header-only file gives M=0."""
    path = Path(path)
    capacity = _count_data_lines(path)
    with _open_binary(path) as handle:
        positions, n_columns = _read_header(handle, path, TEST_COLUMNS)
        image_ids = np.empty(capacity, dtype=np.int64)
        images = np.empty((capacity, PIXELS), dtype=np.uint8)
        seen, pixel_parser, done = {}, PixelParser(), 0
        for chunk in _row_chunks(handle, path, n_columns):
            for offset, (row, line, fields) in enumerate(chunk):
                image_id = _integer(fields[positions["ImageId"]], _where(path, row, line, "ImageId"))
                if image_id in seen:
                    first_row, first_line = seen[image_id]
                    raise DataError(f"{_where(path, row, line, 'ImageId')}: ImageId {image_id} duplicates "
                                    f"row {first_row} (line {first_line})")
                seen[image_id] = (row, line)
                image_ids[done + offset] = image_id
            image_fields = [fields[positions[IMAGE_COLUMN]] for _, _, fields in chunk]
            if not pixel_parser.parse(image_fields, images[done:done + len(chunk)]):
                for offset, (row, line, fields) in enumerate(chunk):
                    images[done + offset] = _pixels_slow(image_fields[offset], _where(path, row, line, IMAGE_COLUMN))
            _progress(path.name, done + len(chunk), capacity, progress_every, done)
            done += len(chunk)
    if done < capacity:  # blank lines were counted but skipped
        image_ids, images = image_ids[:done].copy(), images[:done].copy()
    return image_ids, images.reshape(done, IMAGE_SIZE, IMAGE_SIZE)


def _integer(field, where):
    try:
        return int(field)
    except ValueError:
        raise DataError(f"{where}: '{field[:30].decode('utf-8', 'replace')}' is not an integer") from None


def parse_lookup(path, image_ids):
    """IdLookupTable.csv -> DataFrame[RowId, ImageId, FeatureName]; the Location column is dropped."""
    import pandas as pd  # only here: keeps pandas out of the memory-measured training parse

    path = Path(path)
    known_ids = set(np.asarray(image_ids).tolist())
    features = set(KEYPOINT_COLUMNS)
    row_ids, ids, names, seen = [], [], [], {}
    with _open_binary(path) as handle:
        positions, n_columns = _read_header(handle, path, LOOKUP_COLUMNS)
        min_fields = max(positions[name] for name in LOOKUP_COLUMNS) + 1
        for chunk in _row_chunks(handle, path, n_columns, min_fields):
            for row, line, fields in chunk:
                row_id = _integer(fields[positions["RowId"]], _where(path, row, line, "RowId"))
                if row_id in seen:
                    raise DataError(f"{_where(path, row, line, 'RowId')}: RowId {row_id} duplicates row {seen[row_id]}")
                seen[row_id] = row
                image_id = _integer(fields[positions["ImageId"]], _where(path, row, line, "ImageId"))
                if image_id not in known_ids:
                    raise DataError(f"{_where(path, row, line, 'ImageId')}: ImageId {image_id} is not in the test images")
                name = fields[positions["FeatureName"]].decode("utf-8", "replace").strip()
                if name not in features:
                    raise DataError(f"{_where(path, row, line, 'FeatureName')}: '{name}' is not a keypoint column")
                row_ids.append(row_id)
                ids.append(image_id)
                names.append(name)
    return pd.DataFrame({
        "RowId": np.array(row_ids, dtype=np.int64),
        "ImageId": np.array(ids, dtype=np.int64),
        "FeatureName": pd.Series(names, dtype=object),
    })


def parse_directory(raw_dir, out_dir):
    """raw_dir/{training,test,IdLookupTable}.csv -> out_dir/*.npy + id_lookup.csv, all or nothing."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    images, keypoints = parse_training(raw_dir / "training.csv")
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
