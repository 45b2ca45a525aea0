"""Faces followed through drawn videos: ids, keypoints against the drawn truth, outputs and bad inputs.

The faces are test_framing's: 15 discs, one grey level per keypoint, whose centres a "perfect model"
reads back from any crop, so what is tested is the tracking and the framing, not a network. A face
detector that finds clusters of discs stands in for Haar (which has no reason to find discs), with its
box-to-crop mapping learned as the framing stage learns one.
"""
import cv2
import numpy as np
import pandas as pd
import pytest

from keypoints import video
from keypoints.columns import KEYPOINT_COLUMNS
from keypoints.framing import first_boxes, iou, learn_detector_mapping
from keypoints.smoothing import OneEuroFilter
from keypoints.video_tracking import FaceTracker, match
from conftest import FRAMING_SETTINGS
from test_framing import LEVELS, MEAN_SHAPE, draw_discs, to_original

SHAPE = (240, 320)
SCALE = 1.0  # a face's training crop is 96 pixels wide


def read_discs(crops, tolerance=5):
    """Each disc's centre in each crop (NaN where a disc is missing): its pixels within `tolerance` grey
    levels of its own whose neighbours are too, so video compression and resizing do not matter."""
    keypoints = np.full((len(crops), 30), np.nan)
    for row, crop in enumerate(np.asarray(crops, np.int16)):
        for index, level in enumerate(LEVELS):
            inside = cv2.erode((np.abs(crop - level) <= tolerance).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            if inside.sum() >= 3:
                ys, xs = np.nonzero(inside)
                keypoints[row, 2 * index:2 * index + 2] = xs.mean(), ys.mean()
    return keypoints


def find_disc_faces(gray):
    """Rectangles around clusters of discs brighter than the background."""
    merged = cv2.dilate((gray > 50).astype(np.uint8), np.ones((15, 15), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(merged)
    return [tuple(float(value) for value in stats[label, :4]) for label in range(1, count) if stats[label, 4] > 400]


MAPPING, _ = learn_detector_mapping(draw_discs((96, 96), MEAN_SHAPE, 3.0)[None], find_disc_faces)
FRAMING = {"mean_shape": MEAN_SHAPE.tolist(), "residuals": {"q50": 0.5, "q90": 1.0, "q99": 1.5, "q100": 2.0},
           "detectors": {"discs": MAPPING},
           "settings": {**FRAMING_SETTINGS, "detectors": ["discs"], "iterations": 4}}


def face_at(x, y):
    """Truth keypoints of a face whose training crop's first pixel is at (x, y)."""
    return to_original(MEAN_SHAPE, (x, y, 96 * SCALE))


def frame_of(truths):
    """A BGR frame: a dark gradient with the faces' discs drawn at their true keypoints."""
    ramp = np.linspace(0, 30, SHAPE[1])[None, :] + np.linspace(0, 10, SHAPE[0])[:, None]
    gray = np.round(ramp).astype(np.uint8)
    for truth in truths:
        discs = draw_discs(SHAPE, truth, radius=3.0 * SCALE)
        gray = np.where(discs > 0, discs, gray)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def two_faces(frames):
    """Face A drifts right, face B left and down, 1-2 px a frame, never overlapping: [[truth A, truth B], ...]."""
    return [[face_at(5 + 1.5 * index, 30 + 0.5 * index), face_at(215 - 1.0 * index, 60 + 1.0 * index)]
            for index in range(frames)]


def leaving_and_coming_back(frames):
    """One face that moves out of the right edge (frames 10-30) and comes back in (30-50)."""
    return [[face_at(100 + 12 * min(index, 60 - index), 70)] for index in range(frames)]


def tracker(detect_every=5, smoothing=False, calls=None):
    def counted(crops):
        if calls is not None:
            calls.append(len(crops))
        return read_discs(crops)

    make_filter = (lambda: OneEuroFilter(1.0, 0.1, 1.0)) if smoothing else None
    return FaceTracker({"discs": find_disc_faces}, counted, FRAMING, detect_every=detect_every, match_iou=0.3,
                       max_unconfirmed=2, make_filter=make_filter)


def nearest_truth(keypoints, truths):
    """(index of the truth face nearest these keypoints, their RMS distance in pixels)."""
    errors = [np.sqrt(np.mean((keypoints - truth) ** 2)) for truth in truths]
    return int(np.argmin(errors)), float(min(errors))


def inside(truth, margin=8):
    xs, ys = truth[0::2], truth[1::2]
    return xs.min() > margin and ys.min() > margin and xs.max() < SHAPE[1] - margin and ys.max() < SHAPE[0] - margin


# --- the tracker on frames in memory -------------------------------------------------------------


def test_box_overlap_and_matching():
    assert iou((0, 0, 10), (0, 0, 10)) == 1.0
    assert iou((0, 0, 10), (5, 0, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10), (10, 0, 10)) == 0.0
    assert match([(0, 0, 10), (100, 0, 10)], [(101, 0, 10), (50, 50, 10), (1, 1, 10)], 0.3) == [(1, 0), (0, 2)]


def test_every_detector_runs_and_a_face_found_twice_counts_once_its_boxes_averaged():
    identity = {"scale": 1.0, "dx": 0.0, "dy": 0.0}
    framing = {**FRAMING, "detectors": {"first": identity, "second": identity, "unmapped": None}}
    detectors = {"first": lambda gray: [(0, 0, 50, 50)], "second": lambda gray: [(2, 1, 50, 50), (100, 100, 40, 40)],
                 "unmapped": pytest.fail}  # a detector the framing has no mapping for is not run
    found = first_boxes(None, detectors, framing, 0.3)
    assert [rect for rect, _, _ in found] == [(0, 0, 50, 50), (100, 100, 40, 40)]
    assert [box for _, box, _ in found] == [(1, 0, 50), (100, 100, 40)]
    assert [names for _, _, names in found] == [("first", "second"), ("second",)]  # (0, 0, 50) and (2, 1, 50) averaged


def test_two_faces_keep_their_ids_and_land_on_the_truth():
    calls = []
    follow = tracker(detect_every=5, calls=calls)
    owner = {}
    for index, truths in enumerate(two_faces(40)):
        faces = follow.update(cv2.cvtColor(frame_of(truths), cv2.COLOR_BGR2GRAY), index / 30)
        assert len(faces) == 2, index
        for face in faces:
            which, error = nearest_truth(face["keypoints"], truths)
            assert error < 1.0, (index, face["face_id"], error)
            assert owner.setdefault(face["face_id"], which) == which, "a face kept its id"
    assert sorted(owner) == [1, 2]
    assert follow.detections == 8, "the detector ran every 5 frames, nothing was lost"
    # Between detections, both faces in one batch of two.
    assert calls.count(2) >= 40 - 8


def test_two_faces_followed_onto_one_face_become_one_and_the_older_id_stays():
    follow = tracker(detect_every=100)
    truth = face_at(60, 50)
    gray = cv2.cvtColor(frame_of([truth]), cv2.COLOR_BGR2GRAY)
    assert [face["face_id"] for face in follow.update(gray, 0.0)] == [1]
    # A second face followed onto the same one (as drift can bring it): it is the younger, so it goes.
    follow.tracks.append({**follow.tracks[0], "id": 7, "box": tuple(np.add(follow.tracks[0]["box"], (3, 2, 0)))})
    faces = follow.update(gray, 1 / 30)
    assert [face["face_id"] for face in faces] == [1]
    assert nearest_truth(faces[0]["keypoints"], [truth])[1] < 1.0


def test_a_face_that_leaves_is_dropped_and_comes_back_with_a_new_id():
    follow = tracker(detect_every=10)
    seen, inside_for = [], 0
    for index, truths in enumerate(leaving_and_coming_back(61)):
        faces = follow.update(cv2.cvtColor(frame_of(truths), cv2.COLOR_BGR2GRAY), index / 30)
        seen.append([face["face_id"] for face in faces])
        inside_for = inside_for + 1 if inside(truths[0]) else 0
        # Followed while inside; found again by the next scheduled detection once back in.
        if inside_for > (10 if index > 30 else 0):
            assert len(faces) == 1, (index, seen[-3:])
            assert nearest_truth(faces[0]["keypoints"], truths)[1] < 1.0
        if truths[0][0::2].min() > SHAPE[1]:
            assert faces == [], "nothing followed while the face is out of the frame"
    assert seen[0] == [1] and seen[-1] == [2]


def test_smoothed_keypoints_stay_near_the_truth():
    follow = tracker(smoothing=True)
    for index, truths in enumerate(two_faces(30)):
        for face in follow.update(cv2.cvtColor(frame_of(truths), cv2.COLOR_BGR2GRAY), index / 30):
            assert nearest_truth(face["keypoints"], truths)[1] < 3.0
            assert not np.array_equal(face["keypoints"], face["raw"]) or index == 0


# --- video files in, drawn video and CSV out ------------------------------------------------------


def write_video(path, frames, fps=30, fourcc="mp4v"):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (SHAPE[1], SHAPE[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def count_frames(path):
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    assert capture.get(cv2.CAP_PROP_FRAME_WIDTH) == SHAPE[1] and capture.get(cv2.CAP_PROP_FRAME_HEIGHT) == SHAPE[0]
    return count, capture.get(cv2.CAP_PROP_FPS)


# Lossless inputs: the disc reader needs each disc's grey level intact (test_video_command.py's test
# reads an mp4v file, lossy, with models that do not care).
@pytest.mark.parametrize("suffix, fourcc", [(".mkv", "FFV1"), (".avi", "png ")])
def test_a_video_file_gives_every_frame_drawn_and_a_row_per_face(tmp_path, suffix, fourcc):
    truths = two_faces(30)
    source = write_video(tmp_path / f"walk{suffix}", [frame_of(frame) for frame in truths], fps=25, fourcc=fourcc)
    table, frames = video.process(source, tracker(), tmp_path / "out", log=pytest.fail)
    assert frames == 30
    assert count_frames(tmp_path / "out" / "walk_keypoints.mp4") == (30, 25.0)
    csv = pd.read_csv(tmp_path / "out" / "walk_keypoints.csv")
    assert list(csv.columns) == video.CSV_COLUMNS
    assert csv["frame"].tolist() == [index for index in range(30) for _ in range(2)]
    np.testing.assert_allclose(csv["time_s"], csv["frame"] / 25)
    pd.testing.assert_frame_equal(csv, table, check_dtype=False)
    for _, row in csv.iterrows():
        assert nearest_truth(row[KEYPOINT_COLUMNS].to_numpy(float), truths[int(row["frame"])])[1] < 1.0
    assert sorted(set(csv["face_id"])) == [1, 2]
    assert [path.name for path in (tmp_path / "out").iterdir()] != [] and not list((tmp_path / "out").glob(".*tmp*"))


def test_a_stream_that_drops_mid_way_ends_with_what_it_read(tmp_path):
    whole = write_video(tmp_path / "whole.avi", [frame_of(frame) for frame in two_faces(40)], fourcc="png ")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])  # the end of the file never came
    table, frames = video.process(cut, tracker(), tmp_path / "out", log=lambda message: None)
    assert 5 < frames < 40
    assert count_frames(tmp_path / "out" / "cut_keypoints.mp4")[0] == frames
    assert table["frame"].max() == frames - 1


def test_bad_videos_and_cameras_are_named_and_nothing_is_written(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    empty = write_video(tmp_path / "empty.avi", [], fourcc="MJPG")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="broken.mp4"):
        video.process(broken, tracker(), out)
    with pytest.raises(ValueError, match="empty.avi"):
        video.process(empty, tracker(), out)
    with pytest.raises(FileNotFoundError, match="missing.mkv"):
        video.process(tmp_path / "missing.mkv", tracker(), out)
    with pytest.raises(ValueError, match="camera 7"):
        video.process(7, tracker(), out)
    assert not out.exists() or list(out.iterdir()) == []


def test_inputs_are_split_into_images_and_videos(tmp_path):
    (tmp_path / "clips").mkdir()
    for name in ("b.MP4", "a.webm", "notes.txt"):
        (tmp_path / "clips" / name).write_bytes(b"x")
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "face.png").write_bytes(b"x")
    (tmp_path / "mixed" / "c.mov").write_bytes(b"x")
    (tmp_path / "d.avi").write_bytes(b"x")
    images, videos = video.split_inputs([tmp_path / "d.avi", tmp_path / "clips", tmp_path / "mixed", tmp_path / "nowhere.jpg"])
    assert images == [tmp_path / "mixed", tmp_path / "nowhere.jpg"]
    assert videos == [tmp_path / "d.avi", tmp_path / "clips" / "a.webm", tmp_path / "clips" / "b.MP4", tmp_path / "mixed" / "c.mov"]
    assert video.camera_source("0") == 0 and video.camera_source("rtsp://host/cam") == "rtsp://host/cam"
    assert video.source_name(1) == "camera1" and video.source_name("rtsp://host:554/cam 1") == "stream_host_554_cam_1"


def test_show_without_a_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ValueError, match="display|GUI"):
        video.check_display()



def test_progress_is_reported_on_long_videos(tmp_path):
    source = write_video(tmp_path / "long.mkv", [frame_of(frame) for frame in two_faces(25)], fourcc="FFV1")
    messages = []
    video.process(source, tracker(), tmp_path / "out", progress_every=10, log=messages.append)
    assert [message.split(": ")[1].split(",")[0] for message in messages] == ["10 frames", "20 frames"]
    assert all("frames/s" in message for message in messages)
