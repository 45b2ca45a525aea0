"""`keypoints detect` on video files, end to end: test_infer's constant tiny models, Haar on a drawn face."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import PROJECT_ROOT
from keypoints import cli
from keypoints.columns import KEYPOINT_COLUMNS
from test_video import SHAPE, count_frames, write_video


@pytest.fixture(scope="module")
def command_files(tmp_path_factory):
    """Constant tiny models (test_infer's), their framing file, and a copy of params.yaml."""
    from test_infer import FRAMING as CONSTANT_FRAMING, KNOWN_8, KNOWN_30, constant_model

    folder = tmp_path_factory.mktemp("command")
    constant_model(8, KNOWN_8).save(folder / "model_8.keras")
    constant_model(30, KNOWN_30).save(folder / "model_30.keras")
    (folder / "framing.json").write_text(json.dumps(CONSTANT_FRAMING))
    shutil.copy(PROJECT_ROOT / "params.yaml", folder / "params.yaml")
    return folder


def synthetic_face_video(path, frames):
    """test_infer's drawn face, enlarged 2x, drifting right 1 px a frame over a coloured background."""
    from test_infer import FACES

    face = np.repeat(np.repeat(FACES[0], 2, axis=0), 2, axis=1)
    drawn = []
    for index in range(frames):
        canvas = np.zeros((*SHAPE, 3), np.uint8)
        canvas[..., 0] = np.linspace(40, 200, SHAPE[1], dtype=np.uint8)[None, :]
        canvas[..., 1] = 90
        canvas[24:24 + 192, 60 + index:60 + index + 192] = face[..., None]
        drawn.append(canvas)
    return write_video(path, drawn)


def command(files, *arguments):
    return cli.main(["detect", *map(str, arguments), "--no-flip-average", "--model-8", str(files / "model_8.keras"),
                     "--model-30", str(files / "model_30.keras"), "--framing", str(files / "framing.json")])


def test_the_command_on_an_mp4_file(tmp_path, command_files, monkeypatch, capsys):
    from test_infer import KNOWN_MERGED, expected_in_original

    source = synthetic_face_video(tmp_path / "clip.mp4", 24)
    monkeypatch.chdir(command_files)  # --params defaults to params.yaml here
    assert command(command_files, source, "--out", tmp_path / "out", "--detect-every", 5, "--no-smoothing") == 0, capsys.readouterr().err
    assert count_frames(tmp_path / "out" / "clip_keypoints.mp4") == (24, 30.0)
    table = pd.read_csv(tmp_path / "out" / "clip_keypoints.csv")
    assert table["frame"].tolist() == list(range(24)), "Haar found the face in the first frame and it was followed"
    assert set(table["face_id"]) == {1}
    for _, row in table.iterrows():
        np.testing.assert_allclose(row[KEYPOINT_COLUMNS].to_numpy(float),
                                   expected_in_original(KNOWN_MERGED, row["box_x"], row["box_y"], row["box_size"]), atol=1e-3)
    assert "24 frames" in capsys.readouterr().out


def test_the_command_names_a_missing_params_file_or_a_bad_video(tmp_path, command_files, capsys):
    source = synthetic_face_video(tmp_path / "clip.avi", 3)
    assert command(command_files, source, "--params", tmp_path / "nowhere.yaml", "--out", tmp_path / "out") == 1
    assert "nowhere.yaml" in capsys.readouterr().err
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"not a video" * 50)
    assert command(command_files, broken, "--params", command_files / "params.yaml", "--out", tmp_path / "out") == 1
    assert "broken.webm" in capsys.readouterr().err
    assert command(command_files, "--camera", "9", "--params", command_files / "params.yaml", "--out", tmp_path / "out") == 1
    assert "camera 9" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.mp4"))
