"""The registered champion served by the real `mlflow models serve` on 127.0.0.1: its answers are the
pipeline's own predictions (predict_merge's for faces, `keypoints detect`'s for a photo), and a bad
request is a 400 with a message that leaves the server up."""
import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import free_port, run, wait_until_serving
from keypoints.columns import KEYPOINT_COLUMNS
from keypoints.synthetic import draw_faces

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(reproduced_project):
    port = free_port()
    environment = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{reproduced_project / 'mlflow.db'}",
                       PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    process = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", "models:/facial-keypoints@champion", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        cwd=reproduced_project, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{url}/ping", process, "mlflow models serve", timeout=240)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def post(url, body):
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_served_faces_get_predict_merge_s_keypoints(server, reproduced_project):
    faces = np.load(reproduced_project / "data/split/30/holdout_images.npy")[:6]
    expected = np.load(reproduced_project / "data/predictions/holdout_merged.npy")[:6]
    status, answer = post(server, {"dataframe_records": [{"face": face.tolist()} for face in faces]})
    assert status == 200, answer
    table = pd.DataFrame(answer["predictions"])
    np.testing.assert_allclose(table[KEYPOINT_COLUMNS].to_numpy(), expected, atol=1e-3)


def test_a_served_photo_gets_keypoints_detect_s_answer(server, reproduced_project, tmp_path):
    faces, _ = draw_faces(1, seed=4)
    photo = np.full((480, 640), 90, np.uint8)
    photo[60:252, 200:392] = cv2.resize(faces[0], (192, 192), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(tmp_path / "photo.jpg"), photo)
    run(["keypoints", "detect", str(tmp_path / "photo.jpg"), "--out", str(tmp_path / "out")], reproduced_project)
    expected = pd.read_csv(tmp_path / "out" / "keypoints.csv").iloc[0]
    encoded = base64.b64encode((tmp_path / "photo.jpg").read_bytes()).decode()
    status, answer = post(server, {"dataframe_records": [{"image": encoded}]})
    assert status == 200, answer
    row = answer["predictions"][0]
    assert [row[key] for key in ("face_found", "box_x", "box_y", "box_size")] == \
        [bool(expected["face_found"]), *expected[["box_x", "box_y", "box_size"]].astype(int).tolist()]
    np.testing.assert_allclose([row[name] for name in KEYPOINT_COLUMNS], expected[KEYPOINT_COLUMNS].to_numpy(float),
                               atol=1e-3)


def test_bad_requests_are_400s_with_a_message_and_the_server_stays_up(server, reproduced_project):
    for body, message in (({"dataframe_records": [{"face": [[0] * 95] * 96}]}, "face 0: expected 96 rows of 96 values"),
                          ({"dataframe_records": [{"image": base64.b64encode(b"no image").decode()}]},
                           "not an image OpenCV can read"),
                          ({"dataframe_records": [{"image": "%%%"}]}, "not base64")):
        status, answer = post(server, body)
        assert status == 400 and message in answer["message"], answer
    face = np.load(reproduced_project / "data/split/30/holdout_images.npy")[0]
    status, answer = post(server, {"dataframe_records": [{"face": face.tolist()}]})
    assert status == 200 and len(answer["predictions"]) == 1
