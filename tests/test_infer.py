"""Inference on new images: crop geometry, the mapping back, and the whole command on images drawn here.

The models are real tiny Keras models whose output kernel is zero, so each predicts exactly its
output bias for any face: the expected keypoints in the original image are then known analytically.
Where detection runs, the framing's mean shape is the constant models' answer, so a detected face's
box settles at once; the tests read the boxes back from the CSV, and the fallback uses face-less images.
"""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import FRAMING_SETTINGS, model_settings
from keypoints import cli, framing, infer
from keypoints.faces import make_detectors
from keypoints.predict import merged_predictor
from keypoints.columns import EIGHT_COLUMNS, EIGHT_INDICES, KEYPOINT_COLUMNS
from keypoints.model import build_model
from keypoints.synthetic import draw_faces

# The console command `pip install -e .` puts beside this interpreter.
COMMAND = Path(sys.executable).parent / "keypoints"

FACES, FACE_KEYPOINTS = draw_faces(1, seed=11)
KNOWN_30 = FACE_KEYPOINTS[0].astype(np.float32)
# Distinct from model_30's values in the same columns, so a wrong merge shows.
KNOWN_8 = (KNOWN_30[EIGHT_INDICES] + np.float32(3.25)).astype(np.float32)
KNOWN_MERGED = KNOWN_30.astype(np.float64)
KNOWN_MERGED[EIGHT_INDICES] = KNOWN_8

SCALE = 3  # the drawn face is enlarged 3x into the canvas, so the crop of its box is exactly the face
FACE_AT = (130, 16)  # first column, first row of the placed face in the canvas
CANVAS_SHAPE = (320, 440)


def expected_in_original(keypoints_96, x, y, side):
    """The spec, written out: coordinates measure from the top-left corner in the crop as in the image
    (pixel i's centre at i + 0.5), so crop coordinate c lies at x + c * side / 96."""
    keypoints = np.asarray(keypoints_96, np.float64).copy()
    keypoints[0::2] = x + keypoints[0::2] * side / 96.0
    keypoints[1::2] = y + keypoints[1::2] * side / 96.0
    return keypoints


def constant_model(outputs, known):
    model = build_model(outputs, **model_settings(filters=[4], kernel_sizes=[3], dense_units=4), output_bias=known)
    dense = model.get_layer("keypoints")
    dense.kernel.assign(np.zeros(dense.kernel.shape, np.float32))
    return model


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    paths = folder / "model_8.keras", folder / "model_30.keras"
    constant_model(8, KNOWN_8).save(paths[0])
    constant_model(30, KNOWN_30).save(paths[1])
    return paths


@pytest.fixture(scope="module")
def predict(model_files):
    return merged_predictor(*infer.load_models(*model_files), flip_average=False)


# The framing of "training faces" shaped like the constant models' answer, so a detection settles at
# once; each detector's box taken as the crop.
FRAMING = {
    "mean_shape": KNOWN_MERGED.tolist(),
    "residuals": {"q50": 1.0, "q90": 2.0, "q99": 3.0, "q100": 4.0},
    "detectors": {name: {"scale": 1.0, "dx": 0.0, "dy": 0.0} for name in ("haar", "hog")},
    "found": {"haar": 1.0, "hog": 1.0},
    "settings": {**FRAMING_SETTINGS, "learn_faces": 10},
}


@pytest.fixture(scope="module")
def framing_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("framing") / "framing.json"
    path.write_text(json.dumps(FRAMING))
    return path


def face_canvas():
    """A colour image: a coloured background and the synthetic face enlarged 3x at FACE_AT."""
    height, width = CANVAS_SHAPE
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[..., 0] = np.linspace(40, 200, width, dtype=np.uint8)[np.newaxis, :]
    canvas[..., 1] = 90
    canvas[..., 2] = np.linspace(220, 30, height, dtype=np.uint8)[:, np.newaxis]
    face = np.repeat(np.repeat(FACES[0], SCALE, axis=0), SCALE, axis=1)
    x, y = FACE_AT
    canvas[y:y + face.shape[0], x:x + face.shape[1]] = face[..., np.newaxis]
    return canvas


def gradient(height, width):
    """A smooth gray ramp: nothing a face detector could take for a face."""
    ramp = np.linspace(30, 220, width)[np.newaxis, :] + np.linspace(0, 20, height)[:, np.newaxis]
    return np.round(ramp).astype(np.uint8)


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image), path
    return path


# --- geometry ---------------------------------------------------------------------------------------


def test_to_original_maps_crop_pixel_centres_to_the_pixels_they_average():
    box = (10, -20, 192)
    # Crop pixel 0 (centre 0.5) averages original pixels 10 and 11 (rows -20 and -19), whose edge lies at
    # 11 (-19); crop pixel 95 averages 200 and 201: 201 (171).
    points = np.array([[0.5, 0.5, 95.5, 95.5, 48.0, 48.0]])
    np.testing.assert_allclose(framing.to_original(points, box), [[11.0, -19.0, 201.0, 171.0, 106.0, 76.0]])
    np.testing.assert_allclose(framing.to_original([3.0, 4.0], (7, 9, 96)), [10.0, 13.0])
    np.testing.assert_allclose(framing.to_original(KNOWN_30, (5, 6, 288)), expected_in_original(KNOWN_30, 5, 6, 288))


@pytest.mark.parametrize("box", [(40, 30, 288), (-101, -50, 288), (150, 100, 288)])
def test_single_bright_pixel_shrunk_into_the_crop_maps_back_to_itself(box):
    x, y, side = box
    gray = np.zeros((320, 400), np.uint8)
    # A pixel at the centre of one of the crop's 3x3 blocks, so it lands wholly in one crop pixel.
    bright_x, bright_y = x + 3 * 40 + 1, y + 3 * 30 + 1
    gray[bright_y, bright_x] = 255
    crop = framing.crop_face(gray, box)
    assert crop.shape == (96, 96) and crop.dtype == np.uint8
    row, column = np.unravel_index(np.argmax(crop), crop.shape)
    assert np.count_nonzero(crop) == 1
    np.testing.assert_allclose(framing.to_original([column + 0.5, row + 0.5], box), [bright_x + 0.5, bright_y + 0.5])


@pytest.mark.parametrize("box", [(20, 10, 48), (-7, -3, 48)])
def test_single_bright_pixel_enlarged_into_the_crop_maps_back_to_itself(box):
    x, y, side = box
    gray = np.zeros((80, 90), np.uint8)
    bright_x, bright_y = x + 17, y + 30
    gray[bright_y, bright_x] = 255
    crop = framing.crop_face(gray, box).astype(np.float64)
    rows, columns = np.mgrid[0:96, 0:96]
    centroid = [np.sum(columns * crop) / crop.sum() + 0.5, np.sum(rows * crop) / crop.sum() + 0.5]
    np.testing.assert_allclose(framing.to_original(centroid, box), [bright_x + 0.5, bright_y + 0.5], atol=1e-9)


def test_crop_of_the_placed_face_box_is_the_face():
    crop = framing.crop_face(infer.to_gray(face_canvas()), (*FACE_AT, 96 * SCALE))
    np.testing.assert_array_equal(crop, FACES[0])


def test_crop_pads_with_the_edge_pixels():
    gray = np.full((96, 96), 200, np.uint8)
    gray[:, 0] = 50
    gray[0, :] = 70
    crop = framing.crop_face(gray, (-48, -10, 96))
    assert (crop[11:, :49] == 50).all(), "left of the image repeats its first column"
    assert (crop[:11, :] == 70).all(), "above the image repeats its first row, corner included"
    assert (crop[11:, 49:] == 200).all()
    with pytest.raises(ValueError, match="overlap"):
        framing.crop_face(gray, (96, 0, 50))
    with pytest.raises(ValueError, match="side"):
        framing.crop_face(gray, (0, 0, 0))


@pytest.mark.parametrize("shape, box", [((300, 400), (50, 0, 300)), ((401, 300, 3), (0, 50, 300)), ((64, 64), (0, 0, 64))])
def test_centred_box_is_the_largest_centred_square(shape, box):
    assert framing.centred_box(shape) == box


def test_locate_falls_back_to_the_centred_square_when_there_is_no_face(predict):
    detectors = make_detectors(["haar", "hog"], FRAMING_SETTINGS["detection_size"])
    box, keypoints_96, found, detector = infer.locate(gradient(120, 200), detectors, FRAMING, predict)
    assert (box, found, detector) == ((40, 0, 120), False, None)
    np.testing.assert_allclose(keypoints_96, KNOWN_MERGED, atol=1e-4)


# --- images in, CSV and drawings out -------------------------------------------------------------


def test_image_paths_takes_files_and_directory_images_once(tmp_path):
    photos = tmp_path / "photos"
    b = write(photos / "b.PNG", gradient(20, 20))
    a = write(photos / "a.jpg", gradient(20, 20))
    write(photos / "nested" / "c.png", gradient(20, 20))
    (photos / "notes.txt").write_text("not an image")
    single = write(tmp_path / "single.bmp", gradient(20, 20))
    assert infer.image_paths([single, photos, a]) == [single, a, b]
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        infer.image_paths([tmp_path / "missing.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        infer.image_paths([tmp_path / "empty"])


def test_known_predictions_are_merged_and_mapped_through_the_given_box(tmp_path, predict):
    canvas = write(tmp_path / "in" / "canvas.png", face_canvas())
    gray = write(tmp_path / "in" / "gray.png", gradient(150, 200))
    box = (*FACE_AT, 96 * SCALE)
    frame = infer.run([canvas, gray], predict, FRAMING, tmp_path / "out", box=box, log=pytest.fail)

    table = pd.read_csv(tmp_path / "out" / "keypoints.csv")
    assert list(table.columns) == ["file", "face_found", "box_x", "box_y", "box_size"] + KEYPOINT_COLUMNS
    assert table["file"].tolist() == [str(canvas), str(gray)]
    assert table["face_found"].tolist() == [True, True]
    assert table[["box_x", "box_y", "box_size"]].to_numpy().tolist() == [list(box)] * 2
    expected = expected_in_original(KNOWN_MERGED, *box)
    np.testing.assert_allclose(table[KEYPOINT_COLUMNS].to_numpy(), [expected, expected], rtol=0, atol=1e-6)
    # model_8's values (shifted by 3.25 crop pixels = 9.75 original ones) are where its columns are.
    np.testing.assert_allclose(table[EIGHT_COLUMNS].to_numpy()[0],
                               expected_in_original(KNOWN_30, *box)[EIGHT_INDICES] + 3.25 * SCALE, atol=1e-6)
    pd.testing.assert_frame_equal(frame.reset_index(drop=True), table, check_dtype=False)

    drawing = cv2.imread(str(tmp_path / "out" / "canvas_keypoints.png"))
    assert drawing.shape == face_canvas().shape
    nose_x, nose_y = expected[KEYPOINT_COLUMNS.index("nose_tip_x")], expected[KEYPOINT_COLUMNS.index("nose_tip_y")]
    assert drawing[int(round(nose_y)), int(round(nose_x))].tolist() == [0, 0, 255], "a red dot on the nose tip"
    assert drawing[box[1], box[0] + box[2] // 2].tolist() == [0, 200, 0], "the box's top edge, green"
    assert cv2.imread(str(tmp_path / "out" / "gray_keypoints.png")).shape[:2] == (150, 200)


def test_detection_path_writes_each_box_and_falls_back_on_faceless_images(tmp_path, predict):
    canvas = write(tmp_path / "canvas.jpg", face_canvas())
    faceless = write(tmp_path / "faceless.png", gradient(150, 260))
    messages = []
    frame = infer.run([canvas, faceless], predict, FRAMING, tmp_path / "out", log=messages.append)

    table = pd.read_csv(tmp_path / "out" / "keypoints.csv")
    assert len(table) == 2
    faceless_row = table.iloc[1]
    assert not faceless_row["face_found"]
    assert (faceless_row["box_x"], faceless_row["box_y"], faceless_row["box_size"]) == (55, 0, 150)
    assert any(str(faceless) in message and "centred square" in message for message in messages)
    # Whatever box detection chose for the face, the keypoints are the known ones mapped through it.
    for _, row in table.iterrows():
        np.testing.assert_allclose(
            row[KEYPOINT_COLUMNS].to_numpy(float),
            expected_in_original(KNOWN_MERGED, row["box_x"], row["box_y"], row["box_size"]), atol=1e-6,
        )
    if not frame["face_found"].iloc[0]:
        assert tuple(table.iloc[0][["box_x", "box_y", "box_size"]]) == framing.centred_box(CANVAS_SHAPE)
    for name, shape in (("canvas", CANVAS_SHAPE), ("faceless", (150, 260))):
        assert cv2.imread(str(tmp_path / "out" / f"{name}_keypoints.png")).shape[:2] == shape


def test_unreadable_images_and_missing_or_wrong_models_are_named(tmp_path, predict, model_files):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    with pytest.raises(ValueError, match="broken.jpg"):
        infer.run([broken], predict, FRAMING, tmp_path / "out", log=lambda message: None)
    assert not (tmp_path / "out" / "keypoints.csv").exists(), "no partial outputs"
    with pytest.raises(FileNotFoundError, match="nowhere.keras"):
        infer.load_models(tmp_path / "nowhere.keras", model_files[1])
    with pytest.raises(ValueError, match="model_8.keras.*30 values"):
        infer.load_models(model_files[0], model_files[0])


def test_bad_images_are_named_and_skipped_and_the_rest_is_written(tmp_path, model_files, framing_file, capsys):
    photos = tmp_path / "photos"
    write(photos / "a.png", gradient(60, 80))
    (photos / "b_empty.jpg").write_bytes(b"")
    (photos / "c_broken.png").write_bytes(b"\x89PNG but truncated")
    write(photos / "d.png", gradient(70, 50))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keypoints.csv").write_text("file\nfrom_an_older_run.png\n")
    argv = ["detect", str(photos), "--no-flip-average", "--model-8", str(model_files[0]), "--model-30", str(model_files[1]),
            "--framing", str(framing_file), "--out", str(out)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "b_empty.jpg: empty file (0 bytes)" in captured.err and "c_broken.png: not an image" in captured.err
    assert "2 images" in captured.out and "2 unreadable skipped" in captured.out
    assert pd.read_csv(out / "keypoints.csv")["file"].tolist() == [str(photos / "a.png"), str(photos / "d.png")]
    assert sorted(p.name for p in out.glob("*.png")) == ["a_keypoints.png", "d_keypoints.png"]

    # Nothing readable: an error, and no keypoints.csv of an older run left to pass for this one's.
    argv = ["detect", str(photos / "b_empty.jpg"), str(photos / "c_broken.png"), *argv[2:]]
    assert cli.main(argv) == 1
    assert "none of the 2 images could be read" in capsys.readouterr().err
    assert not (out / "keypoints.csv").exists()


def test_clashing_drawings_are_refused_before_any_output(tmp_path, predict):
    first = write(tmp_path / "a" / "face.png", gradient(40, 40))
    second = write(tmp_path / "b" / "face.jpg", gradient(40, 40))
    with pytest.raises(ValueError, match="face_keypoints.png"):
        infer.run([first, second], predict, FRAMING, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_or_wrong_framing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json.*framing stage"):
        infer.load_framing(tmp_path / "nowhere.json")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="other.json: not a framing file"):
        infer.load_framing(tmp_path / "other.json")
    older = {**FRAMING, "settings": {key: value for key, value in FRAMING["settings"].items() if key != "max_move"}}
    (tmp_path / "older.json").write_text(json.dumps(older))
    with pytest.raises(ValueError, match=r"older.json: written by an older framing stage.*max_move.*dvc repro framing"):
        infer.load_framing(tmp_path / "older.json")


def test_command_reports_a_bad_image_by_name(tmp_path, model_files, framing_file, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG but truncated")
    argv = ["detect", str(broken), "--no-flip-average", "--model-8", str(model_files[0]), "--model-30", str(model_files[1]),
            "--framing", str(framing_file), "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 1
    assert "broken.png" in capsys.readouterr().err


def test_command_on_a_directory_and_a_file(tmp_path, model_files, framing_file):
    photos = tmp_path / "photos"
    write(photos / "colour.jpg", face_canvas())
    write(photos / "gray.png", gradient(130, 170))
    single = write(tmp_path / "single.bmp", gradient(100, 90))
    result = subprocess.run(
        [str(COMMAND), "detect", str(single), str(photos), "--no-flip-average", "--model-8", str(model_files[0]),
         "--model-30", str(model_files[1]), "--out", str(tmp_path / "detections"), "--framing", str(framing_file)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "detections" / "keypoints.csv")
    assert table["file"].tolist() == [str(single), str(photos / "colour.jpg"), str(photos / "gray.png")]
    assert table.loc[0, ["box_x", "box_y", "box_size"]].tolist() == [0, 5, 90]
    for _, row in table.iterrows():
        np.testing.assert_allclose(
            row[KEYPOINT_COLUMNS].to_numpy(float),
            expected_in_original(KNOWN_MERGED, row["box_x"], row["box_y"], row["box_size"]), atol=1e-6,
        )
    for name, shape in (("single", (100, 90)), ("colour", CANVAS_SHAPE), ("gray", (130, 170))):
        assert cv2.imread(str(tmp_path / "detections" / f"{name}_keypoints.png")).shape[:2] == shape
    assert "3 images" in result.stdout


def test_haar_finds_the_drawn_face_where_it_is():
    """The pinned OpenCV ships the cascade; it must find the face the test draws, where it is."""
    gray = np.full(CANVAS_SHAPE, 120, np.uint8)
    gray[FACE_AT[1]:FACE_AT[1] + 96 * SCALE, FACE_AT[0]:FACE_AT[0] + 96 * SCALE] = np.repeat(
        np.repeat(FACES[0], SCALE, axis=0), SCALE, axis=1)
    rects = make_detectors(["haar"], FRAMING_SETTINGS["detection_size"])["haar"](gray)
    assert len(rects) == 1
    x, y, w, h = rects[0]
    face_side = 96 * SCALE
    centre_x, centre_y = FACE_AT[0] + face_side / 2, FACE_AT[1] + face_side / 2
    assert abs(x + w / 2 - centre_x) < 0.15 * face_side
    assert abs(y + h / 2 - centre_y) < 0.15 * face_side
    assert 0.5 * face_side < w < 1.5 * face_side


def test_keypoints_help_lists_the_commands():
    result = subprocess.run([str(COMMAND), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "detect" in result.stdout
    detect = subprocess.run([str(COMMAND), "detect", "--help"], capture_output=True, text=True, timeout=120)
    assert detect.returncode == 0 and "--framing" in detect.stdout


@pytest.mark.parametrize("flip_average, shift_average", [(False, 0), (True, 0), (False, 5), (True, 3)])
def test_the_traced_predictor_gives_keras_predict_s_keypoints(flip_average, shift_average):
    import keras

    from keypoints.predict import predict_merged

    keras.utils.set_random_seed(1)
    tiny = model_settings(filters=[4, 8], kernel_sizes=[3, 3], dense_units=8)
    model_8, model_30 = build_model(8, **tiny, output_bias=KNOWN_8), build_model(30, **tiny, output_bias=KNOWN_30)
    images = np.random.default_rng(2).integers(0, 256, (5, 96, 96), dtype=np.uint8)
    traced = merged_predictor(model_8, model_30, flip_average, shift_average)
    expected = predict_merged(model_8, model_30, images, batch_size=4, flip_average=flip_average,
                              shift_average=shift_average)
    assert np.ptp(expected, axis=0).max() > 1e-3, "the models' answers depend on the images"
    if shift_average:
        single = predict_merged(model_8, model_30, images, batch_size=4, flip_average=flip_average)
        assert np.abs(expected - single).max() > 1e-3, "shift averaging changes the answer: the test can tell"
    for count in (5, 1, 3):  # batches of other sizes reuse or retrace the graph, same answers
        np.testing.assert_allclose(traced(images[:count]), expected[:count], atol=0.01)
    assert traced(images[:0]).shape == (0, 30)


def test_the_command_reads_shift_average_from_params_and_the_flag_overrides_it(tmp_path, model_files, framing_file, capsys):
    """A bad value from either place stops the command with shift_average named and no output: so
    the command reads the setting, and the flag goes through in its place."""
    image = write(tmp_path / "face.png", gradient(100, 90))
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("predict:\n  flip_average: false\n  shift_average: 2\n")
    bad.write_text("predict:\n  flip_average: false\n  shift_average: -3\n")
    base = ["detect", str(image), "--box", "0", "5", "90", "--model-8", str(model_files[0]),
            "--model-30", str(model_files[1]), "--framing", str(framing_file)]
    for params, flag, works in ((good, [], True), (good, ["--shift-average", "4"], True),
                                (good, ["--shift-average", "-1"], False), (bad, [], False)):
        out = tmp_path / f"out_{params.stem}_{'_'.join(flag)}"
        code = cli.main(base + ["--params", str(params), "--out", str(out)] + flag)
        error = capsys.readouterr().err
        assert (code == 0) == works, error
        if works:
            row = pd.read_csv(out / "keypoints.csv").iloc[0]
            # Constant models answer the same in every view, and the shifts cancel.
            np.testing.assert_allclose(row[KEYPOINT_COLUMNS].to_numpy(float), expected_in_original(KNOWN_MERGED, 0, 5, 90),
                                       atol=1e-4)
        else:
            assert "shift_average" in error and not (out / "keypoints.csv").exists(), error


def test_detectors_on_a_downscaled_image_answer_in_the_image_s_own_pixels():
    """An image larger than framing.detection_size is downscaled for the detectors; their rectangles
    must come back in the full image's pixels."""
    gray = np.full(CANVAS_SHAPE, 120, np.uint8)
    gray[FACE_AT[1]:FACE_AT[1] + 96 * SCALE, FACE_AT[0]:FACE_AT[0] + 96 * SCALE] = np.repeat(
        np.repeat(FACES[0], SCALE, axis=0), SCALE, axis=1)
    large = cv2.resize(gray, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)
    assert max(large.shape) > FRAMING_SETTINGS["detection_size"]
    small_rects = make_detectors(["haar"], max(gray.shape))["haar"](gray)
    large_rects = make_detectors(["haar"], max(gray.shape))["haar"](large)
    assert len(small_rects) == len(large_rects) == 1
    np.testing.assert_allclose(np.array(large_rects[0]) / 3, small_rects[0], atol=0.06 * 96 * SCALE)
    with pytest.raises(ValueError, match="detection_size"):
        make_detectors(["haar"], 10)


def test_the_command_flip_averages_as_params_say_and_the_flag_overrides_it(tmp_path, model_files, framing_file):
    """Constant models answer the same for a face and its mirror, so flip averaging gives the mean of
    their answer and its mirrored (unflipped) self: a symmetric face, unlike the plain answer."""
    from keypoints.predict import flip_averaged, merge

    image = write(tmp_path / "face.png", gradient(100, 90))
    expected = {
        True: merge(flip_averaged(KNOWN_30[None], KNOWN_30[None]), flip_averaged(KNOWN_8[None], KNOWN_8[None]))[0],
        False: KNOWN_MERGED,
    }
    assert np.abs(expected[True] - expected[False]).max() > 1
    for setting in (True, False):
        params = tmp_path / f"params_{setting}.yaml"
        params.write_text(f"predict:\n  flip_average: {str(setting).lower()}\n")
        for flag, used in ((None, setting), ("--flip-average", True), ("--no-flip-average", False)):
            out = tmp_path / f"out_{setting}_{flag}"
            argv = ["detect", str(image), "--params", str(params), "--box", "0", "5", "90", "--out", str(out),
                    "--model-8", str(model_files[0]), "--model-30", str(model_files[1]), "--framing", str(framing_file)]
            assert cli.main(argv + ([flag] if flag else [])) == 0
            row = pd.read_csv(out / "keypoints.csv").iloc[0]
            np.testing.assert_allclose(row[KEYPOINT_COLUMNS].to_numpy(float),
                                       expected_in_original(expected[used], 0, 5, 90), atol=1e-4)
