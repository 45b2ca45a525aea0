"""The byte-level parser of the Image field: 9216 space-separated grey levels -> uint8, vectorised.

It accepts only the canonical form and reports anything else as unusual (False), so the caller can
re-read those rows one by one and word the error; see keypoints.parse.
"""
import numpy as np

from keypoints.columns import PIXELS

# Rows are handled in batches of 16 (~0.5 MB of pixel text): enough to amortise numpy's per-call
# overhead, small enough for the scratch arrays to stay in cache.
BATCH_ROWS = 16
SPACE = ord(" ")
PAD = 2  # leading spaces so that every byte can look two bytes back
ZERO = ord("0")


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
