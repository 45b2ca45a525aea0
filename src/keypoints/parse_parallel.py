"""The fast path of keypoints.parse.parse_training: groups of rows parsed on one thread per core.

The newlines are indexed first, so each task knows its rows and byte range, reads them with pread
into a buffer of its own thread and writes straight into the output arrays: the numpy work of two
tasks overlaps, and no line is split, copied or joined in Python more than once. On 2 cores it
parses 2.2x as fast as the sequential path (benchmarks/bench_parse.py).
"""
import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from keypoints import fileio
from keypoints.columns import IMAGE_COLUMN, IMAGE_SIZE, KEYPOINT_COLUMNS, PIXELS, TRAINING_COLUMNS
from keypoints.csvrows import keypoints_fast, open_binary, progress, read_header
from keypoints.pixels import BATCH_ROWS, PixelParser

# Rows per task: ~4 MB of text, few enough tasks for little overhead, enough to balance.
TASK_ROWS = 128


def _line_ends(handle, start):
    """Byte offsets just past every newline from `start` on, read 1 MB at a time into one buffer."""
    ends, block, offset = [], bytearray(fileio.CHUNK_BYTES), start
    handle.seek(start)
    while size := handle.readinto(block):
        position = block.find(b"\n", 0, size)
        while position >= 0:
            ends.append(offset + position + 1)
            position = block.find(b"\n", position + 1, size)
        offset += size
    return ends, offset


def parse_training_parallel(path, progress_every, workers):
    """(images, keypoints) as parse_training gives them, or None where this path does not apply or a
    row is unusual (then nothing is lost: the sequential path rereads the file and words the error)."""
    with open_binary(path) as probe:
        if not isinstance(probe, io.BufferedReader):  # gzip: no random access
            return None
    with open(path, "rb") as handle:
        positions, n_columns = read_header(handle, path, TRAINING_COLUMNS)
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
                fast_keypoints = keypoints_fast(values, keypoint_positions)
                if fast_keypoints is None or not local.parser.parse(fields, images[batch:stop]):
                    return False
                keypoints[batch:stop] = fast_keypoints
            return last - first

        done = 0
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            for count in pool.map(task, range(0, rows, TASK_ROWS)):
                if count is False:
                    return None  # the sequential path rereads it all and says what is wrong
                progress(path.name, done + count, rows, progress_every, done)
                done += count
    return images.reshape(rows, IMAGE_SIZE, IMAGE_SIZE), keypoints
