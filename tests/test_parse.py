"""keypoints.parse on tiny CSVs written here: exact round trips and one test per kind of bad input."""
import gzip
import re

import numpy as np
import pytest

from keypoints.columns import KEYPOINT_COLUMNS, PIXELS, TRAINING_COLUMNS
from keypoints.parse import DataError, parse_directory, parse_lookup, parse_test, parse_training
from keypoints.pixels import PixelParser


def make_images(count, seed=0):
    # Include the extremes and 1/2/3-digit values: the vectorised parser treats each length apart.
    images = np.random.default_rng(seed).integers(0, 256, (count, 96, 96), dtype=np.uint8)
    images[0, 0, :4] = [0, 255, 9, 10]
    return images


def make_keypoints(count, seed=0):
    keypoints = np.random.default_rng(seed).uniform(0.7, 95.9, (count, 30)).astype(np.float32)
    keypoints[0, 0] = 0.0
    keypoints[0, 1] = 96.0
    keypoints[1, 4:10] = np.nan
    return keypoints


def pixel_text(image):
    return " ".join(map(str, image.reshape(-1)))


def keypoint_text(value):
    return "" if np.isnan(value) else repr(float(value))


def training_text(images, keypoints, columns=TRAINING_COLUMNS, newline="\n", edit=None):
    """A training.csv; `edit(row_index, {column: text})` may spoil a row's fields."""
    lines = [",".join(columns)]
    for index, (image, points) in enumerate(zip(images, keypoints)):
        fields = {name: keypoint_text(value) for name, value in zip(KEYPOINT_COLUMNS, points)}
        fields["Image"] = pixel_text(image)
        if edit:
            edit(index, fields)
        lines.append(",".join(fields.get(name, "") for name in columns))
    return newline.join(lines) + newline


def make_test_csv(ids, images, edit=None):
    lines = ["ImageId,Image"]
    for index, (image_id, image) in enumerate(zip(ids, images)):
        fields = {"ImageId": str(image_id), "Image": pixel_text(image)}
        if edit:
            edit(index, fields)
        lines.append(f"{fields['ImageId']},{fields['Image']}")
    return "\n".join(lines) + "\n"


def write(path, text):
    path.write_text(text)
    return path


def spoiled_training(tmp_path, column, value, row_index=2, count=4):
    """training.csv with one field of row `row_index` (0-based) replaced by `value`."""
    def edit(index, fields):
        if index == row_index:
            fields[column] = value
    return write(tmp_path / "training.csv", training_text(make_images(count), make_keypoints(count), edit=edit))


def where(path, row, column):
    return re.escape(f"{path}: row {row} (line {row + 1}), column '{column}'")


# ---------------------------------------------------------------- good input


def test_round_trip_exact(tmp_path):
    images, keypoints = make_images(5), make_keypoints(5)
    parsed_images, parsed_keypoints = parse_training(write(tmp_path / "training.csv", training_text(images, keypoints)))
    assert parsed_images.dtype == np.uint8 and parsed_images.shape == (5, 96, 96)
    assert parsed_keypoints.dtype == np.float32 and parsed_keypoints.shape == (5, 30)
    np.testing.assert_array_equal(parsed_images, images)
    np.testing.assert_array_equal(parsed_keypoints, keypoints)  # NaN == NaN here


def test_nan_keypoints_for_empty_fields(tmp_path):
    images, keypoints = make_images(3), make_keypoints(3)
    keypoints[2, :] = np.nan
    _, parsed = parse_training(write(tmp_path / "training.csv", training_text(images, keypoints)))
    assert np.isnan(parsed[2]).all()
    assert np.isnan(parsed[1, 4:10]).all() and not np.isnan(parsed[1, :4]).any()


def test_gzip_and_crlf(tmp_path):
    images, keypoints = make_images(3), make_keypoints(3)
    path = tmp_path / "training.csv"
    path.write_bytes(gzip.compress(training_text(images, keypoints, newline="\r\n").encode()))
    parsed_images, parsed_keypoints = parse_training(path)
    np.testing.assert_array_equal(parsed_images, images)
    np.testing.assert_array_equal(parsed_keypoints, keypoints)


def test_column_order_and_extra_columns_do_not_matter(tmp_path):
    images, keypoints = make_images(3), make_keypoints(3)
    columns = ["Image", "comment"] + KEYPOINT_COLUMNS[::-1]
    parsed_images, parsed_keypoints = parse_training(
        write(tmp_path / "training.csv", training_text(images, keypoints, columns=columns)))
    np.testing.assert_array_equal(parsed_images, images)
    np.testing.assert_array_equal(parsed_keypoints, keypoints)


def test_unusual_but_valid_pixel_text_takes_the_slow_path(tmp_path):
    # Leading zeros beyond 3 digits and doubled spaces are not canonical, yet valid integers.
    images, keypoints = make_images(3), make_keypoints(3)
    text = pixel_text(images[1]).replace(" ", "  ", 3)
    text = "000" + text

    def edit(index, fields):
        if index == 1:
            fields["Image"] = text
    parsed_images, _ = parse_training(write(tmp_path / "training.csv", training_text(images, keypoints, edit=edit)))
    np.testing.assert_array_equal(parsed_images, images)


def test_pixel_parser_batches_match_numpy(tmp_path):
    images = make_images(40, seed=3)
    fields = [pixel_text(image).encode() for image in images]
    out = np.empty((40, PIXELS), dtype=np.uint8)
    parser = PixelParser(rows=16)
    for start in range(0, 40, 16):
        assert parser.parse(fields[start:start + 16], out[start:start + 16])
    np.testing.assert_array_equal(out.reshape(images.shape), images)


def test_pixel_parser_accepts_every_value_and_rejects_the_unusual():
    values = np.arange(PIXELS) % 256
    canonical = " ".join(map(str, values))
    out = np.empty((1, PIXELS), dtype=np.uint8)
    assert PixelParser().parse([canonical.encode()], out)
    np.testing.assert_array_equal(out[0], values)
    tail = " ".join(["1"] * (PIXELS - 1))
    for first in ["256", "300", "999", "0255", "-1", "1.5", "a", "1a", "", " 1"]:
        assert not PixelParser().parse([f"{first} {tail}".encode()], out), first
    assert not PixelParser().parse([f"1 {tail} ".encode()], out)  # trailing space: an empty token
    assert not PixelParser().parse([f"1 {tail} 1".encode()], out)  # one pixel too many


def test_parse_test_and_lookup(tmp_path):
    images = make_images(3)
    ids, parsed = parse_test(write(tmp_path / "test.csv", make_test_csv([7, 3, 9], images)))
    assert ids.dtype == np.int64 and ids.tolist() == [7, 3, 9]
    np.testing.assert_array_equal(parsed, images)
    lookup_path = tmp_path / "IdLookupTable.csv"
    lookup_path.write_bytes(b"RowId,ImageId,FeatureName,Location\r\n1,7,nose_tip_x\r\n2,9,left_eye_center_y\r\n")
    lookup = parse_lookup(lookup_path, ids)
    assert list(lookup.columns) == ["RowId", "ImageId", "FeatureName"]
    assert lookup["RowId"].tolist() == [1, 2] and lookup["ImageId"].tolist() == [7, 9]
    assert lookup["FeatureName"].tolist() == ["nose_tip_x", "left_eye_center_y"]


def test_blank_lines_are_skipped_and_counted_as_lines(tmp_path):
    images, keypoints = make_images(3), make_keypoints(3)
    text = training_text(images, keypoints).replace("\n", "\n\n", 2)  # after the header and row 1
    path = write(tmp_path / "training.csv", text + "\n\n")
    parsed_images, _ = parse_training(path)
    np.testing.assert_array_equal(parsed_images, images)

    def edit(index, fields):
        if index == 2:
            fields["Image"] = "1"
    path = write(tmp_path / "training.csv", training_text(images, keypoints, edit=edit).replace("\n", "\n\n", 2))
    with pytest.raises(DataError, match=re.escape(f"{path}: row 3 (line 6), column 'Image'")):
        parse_training(path)


def test_header_only_test_and_lookup_are_allowed(tmp_path):
    ids, images = parse_test(write(tmp_path / "test.csv", "ImageId,Image\n"))
    assert ids.shape == (0,) and images.shape == (0, 96, 96) and images.dtype == np.uint8
    assert len(parse_lookup(write(tmp_path / "IdLookupTable.csv", "RowId,ImageId,FeatureName,Location\r\n"), ids)) == 0


# ---------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'training.csv'}: file not found")):
        parse_training(tmp_path / "training.csv")


def test_empty_file(tmp_path):
    path = write(tmp_path / "training.csv", "")
    with pytest.raises(DataError, match=re.escape(f"{path}: empty file")):
        parse_training(path)


def test_header_only_training(tmp_path):
    path = write(tmp_path / "training.csv", ",".join(TRAINING_COLUMNS) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: header only, no data rows")):
        parse_training(path)


def test_missing_column(tmp_path):
    columns = [name for name in TRAINING_COLUMNS if name != "nose_tip_y"]
    path = write(tmp_path / "training.csv", training_text(make_images(2), make_keypoints(2), columns=columns))
    with pytest.raises(DataError, match=re.escape(f"{path}: header, column 'nose_tip_y': missing")):
        parse_training(path)


def test_wrong_number_of_fields(tmp_path):
    path = spoiled_training(tmp_path, "nose_tip_x", "1,2")
    with pytest.raises(DataError, match=re.escape(f"{path}: row 3 (line 4): has 32 fields, the header has 31")):
        parse_training(path)


def test_wrong_pixel_count(tmp_path):
    path = spoiled_training(tmp_path, "Image", " ".join(["7"] * (PIXELS - 1)))
    with pytest.raises(DataError, match=where(path, 3, "Image") + ": expected 9216 pixel values .* found 9215"):
        parse_training(path)


def test_non_numeric_pixel(tmp_path):
    path = spoiled_training(tmp_path, "Image", " ".join(["7"] * 100 + ["x7"] + ["7"] * (PIXELS - 101)))
    with pytest.raises(DataError, match=where(path, 3, "Image") + ": pixel 100 value 'x7' is not an integer"):
        parse_training(path)


def test_fractional_pixel(tmp_path):
    path = spoiled_training(tmp_path, "Image", " ".join(["7.5"] + ["7"] * (PIXELS - 1)))
    with pytest.raises(DataError, match=where(path, 3, "Image") + ": pixel 0 value '7.5' is not an integer"):
        parse_training(path)


@pytest.mark.parametrize("value", ["256", "-1", "1000"])
def test_pixel_outside_0_255(tmp_path, value):
    path = spoiled_training(tmp_path, "Image", " ".join(["7"] * (PIXELS - 1) + [value]))
    with pytest.raises(DataError, match=where(path, 3, "Image") + f": pixel 9215 value {value} is outside 0-255"):
        parse_training(path)


@pytest.mark.parametrize("value", ["", "NaN"])
def test_empty_or_nan_image(tmp_path, value):
    path = spoiled_training(tmp_path, "Image", value)
    with pytest.raises(DataError, match=where(path, 3, "Image") + ": Image is empty or NaN"):
        parse_training(path)


def test_non_numeric_keypoint(tmp_path):
    path = spoiled_training(tmp_path, "mouth_left_corner_y", "abc")
    with pytest.raises(DataError, match=where(path, 3, "mouth_left_corner_y") + ": keypoint value 'abc' is not a number"):
        parse_training(path)


@pytest.mark.parametrize("value", ["-0.5", "96.01", "96.000001", "inf"])
def test_keypoint_outside_0_96(tmp_path, value):
    path = spoiled_training(tmp_path, "right_eye_center_x", value)
    with pytest.raises(DataError, match=where(path, 3, "right_eye_center_x") + f": keypoint value {value} is outside"):
        parse_training(path)


def test_first_bad_row_is_reported_across_batches(tmp_path):
    # Row 20 lies in the second batch of 16; an earlier clean batch must not hide or shift it.
    path = spoiled_training(tmp_path, "Image", "1 2 3", row_index=19, count=21)
    with pytest.raises(DataError, match=where(path, 20, "Image")):
        parse_training(path)


def test_duplicated_image_id(tmp_path):
    def edit(index, fields):
        if index == 2:
            fields["ImageId"] = "5"
    path = write(tmp_path / "test.csv", make_test_csv([5, 6, 7], make_images(3), edit=edit))
    with pytest.raises(DataError, match=where(path, 3, "ImageId") + r": ImageId 5 duplicates row 1 \(line 2\)"):
        parse_test(path)


def test_bad_pixels_in_test_csv(tmp_path):
    def edit(index, fields):
        if index == 1:
            fields["Image"] = "300 " * (PIXELS - 1) + "1"
    path = write(tmp_path / "test.csv", make_test_csv([1, 2, 3], make_images(3), edit=edit))
    with pytest.raises(DataError, match=where(path, 2, "Image") + ": pixel 0 value 300 is outside 0-255"):
        parse_test(path)


@pytest.mark.parametrize("row, problem", [
    ("3,1,nose_tip_z", r"column 'FeatureName': 'nose_tip_z' is not a keypoint column"),
    ("3,99,nose_tip_x", r"column 'ImageId': ImageId 99 is not in the test images"),
    ("1,1,nose_tip_x", r"column 'RowId': RowId 1 duplicates row 1"),
])
def test_bad_lookup_rows(tmp_path, row, problem):
    path = tmp_path / "IdLookupTable.csv"
    path.write_bytes(f"RowId,ImageId,FeatureName,Location\r\n1,1,nose_tip_x\r\n2,1,nose_tip_y\r\n{row}\r\n".encode())
    with pytest.raises(DataError, match=re.escape(f"{path}: row 3 (line 4), ") + problem):
        parse_lookup(path, np.array([1, 2]))


# ---------------------------------------------------------------- parse_directory


def write_raw(raw, training):
    raw.mkdir()
    images = make_images(4)
    write(raw / "training.csv", training)
    write(raw / "test.csv", make_test_csv([1, 2], images[:2]))
    (raw / "IdLookupTable.csv").write_bytes(b"RowId,ImageId,FeatureName,Location\r\n1,1,nose_tip_x\r\n2,2,nose_tip_y\r\n")


def test_parse_directory_writes_all_outputs(tmp_path, capsys):
    images, keypoints = make_images(4), make_keypoints(4)
    write_raw(tmp_path / "raw", training_text(images, keypoints))
    parse_directory(tmp_path / "raw", tmp_path / "parsed", pixel_centre=0.5)
    parsed = tmp_path / "parsed"
    assert sorted(p.name for p in parsed.iterdir()) == [
        "id_lookup.csv", "test_ids.npy", "test_images.npy", "train_images.npy", "train_keypoints.npy"]
    np.testing.assert_array_equal(np.load(parsed / "train_images.npy"), images)
    np.testing.assert_array_equal(np.load(parsed / "test_ids.npy"), [1, 2])
    assert (parsed / "id_lookup.csv").read_text().splitlines() == [
        "RowId,ImageId,FeatureName", "1,1,nose_tip_x", "2,2,nose_tip_y"]
    assert "parsed 4/4 rows" in capsys.readouterr().err


def test_parse_directory_moves_the_labels_to_the_project_s_pixel_convention(tmp_path):
    images, keypoints = make_images(4), make_keypoints(4)
    write_raw(tmp_path / "raw", training_text(images, keypoints))
    for pixel_centre, moved_by in ((0.5, 0.0), (1.0, -0.5), (0.0, 0.5)):
        parse_directory(tmp_path / "raw", tmp_path / "parsed", pixel_centre=pixel_centre)
        parsed = np.load(tmp_path / "parsed" / "train_keypoints.npy")
        np.testing.assert_allclose(parsed, keypoints + moved_by, atol=1e-4)  # NaN (unlabelled) stays NaN
        assert np.isnan(parsed).sum() == np.isnan(keypoints).sum() > 0


def test_parse_directory_bad_input_leaves_previous_output(tmp_path):
    def edit(index, fields):
        if index == 3:
            fields["Image"] = "oops"
    write_raw(tmp_path / "raw", training_text(make_images(4), make_keypoints(4), edit=edit))
    parsed = tmp_path / "parsed"
    parsed.mkdir()
    (parsed / "train_images.npy").write_bytes(b"previous run")
    with pytest.raises(DataError, match=where(tmp_path / "raw/training.csv", 4, "Image")):
        parse_directory(tmp_path / "raw", parsed, pixel_centre=0.5)
    assert [p.name for p in parsed.iterdir()] == ["train_images.npy"]
    assert (parsed / "train_images.npy").read_bytes() == b"previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parsed", "raw"]  # no temp dirs left


# ---------------------------------------------------------------- the parallel path


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_parallel_tasks_give_the_rows_in_file_order(tmp_path, newline):
    from keypoints.parse import _parse_training_sequential
    from keypoints.parse_parallel import TASK_ROWS, parse_training_parallel

    count = 2 * TASK_ROWS + 5  # three tasks, the last one short
    images, keypoints = make_images(count, seed=3), make_keypoints(count, seed=3)
    path = write(tmp_path / "training.csv", training_text(images, keypoints, newline=newline))
    parallel = parse_training_parallel(path, progress_every=0, workers=2)
    assert parallel is not None, "a plain file with Image last takes the parallel path"
    np.testing.assert_array_equal(parallel[0], images)
    np.testing.assert_array_equal(parallel[1], keypoints)
    sequential = _parse_training_sequential(path, progress_every=0)
    np.testing.assert_array_equal(parallel[0], sequential[0])
    np.testing.assert_array_equal(parallel[1], sequential[1])


def test_a_last_line_without_newline_is_parsed(tmp_path):
    images, keypoints = make_images(3), make_keypoints(3)
    path = write(tmp_path / "training.csv", training_text(images, keypoints).rstrip("\n"))
    parsed_images, parsed_keypoints = parse_training(path, workers=2)
    np.testing.assert_array_equal(parsed_images, images)
    np.testing.assert_array_equal(parsed_keypoints, keypoints)


def test_a_bad_row_in_a_later_parallel_task_is_named(tmp_path):
    from keypoints.parse_parallel import TASK_ROWS

    path = spoiled_training(tmp_path, "Image", "1 2 3", row_index=2 * TASK_ROWS + 1, count=2 * TASK_ROWS + 4)
    with pytest.raises(DataError, match=where(path, 2 * TASK_ROWS + 2, "Image")):
        parse_training(path, workers=2)


def test_blank_lines_take_the_sequential_path_and_keep_row_numbers(tmp_path):
    from keypoints.parse_parallel import parse_training_parallel

    images, keypoints = make_images(5), make_keypoints(5)
    lines = training_text(images, keypoints).splitlines()
    path = write(tmp_path / "training.csv", "\n".join(lines[:3] + [""] + lines[3:]) + "\n")
    assert parse_training_parallel(path, progress_every=0, workers=2) is None
    parsed_images, _ = parse_training(path, workers=2)
    np.testing.assert_array_equal(parsed_images, images)
