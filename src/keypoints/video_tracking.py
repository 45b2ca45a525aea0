"""Every face of a video, followed from frame to frame with an id of its own.

Detectors cost tens of milliseconds a frame, the models a few per face, so the detector runs only
every `detect_every` frames, or at once when a face is lost. In between, each face's crop is cut from
its keypoints in the frame before, framed as the training crops were (framing.box_from_keypoints): a
face that moves a little between frames is still well inside it, and the crop follows it. All tracked
faces of a frame are predicted in one batch. A detection continues the face whose box it overlaps
most (intersection over union; every detector runs, each finds faces the others miss, and
framing.first_boxes merges theirs). Every detection is refined (framing.refine): one that continues a
face re-anchors its box, one that continues none becomes a new face if plausible (infer.plausible). A
face is dropped when its keypoints stop looking like a face (infer.face_shaped: further from the mean
shape than framing.max_residual x the training faces' 99th percentile) or when `max_unconfirmed`
detections in a row found nothing on it.
"""
import numpy as np

from keypoints.framing import box_from_keypoints, crop_face, first_boxes, iou, refine, to_original
from keypoints.infer import face_shaped, plausible


def match(track_boxes, detection_boxes, threshold):
    """Greedy pairs (track index, detection index), the best overlap first, each at least `threshold`."""
    pairs = sorted(((iou(box, detection), track, index) for track, box in enumerate(track_boxes)
                    for index, detection in enumerate(detection_boxes)), reverse=True)
    used_tracks, used_detections, matched = set(), set(), []
    for overlap, track, index in pairs:
        if overlap < threshold or overlap <= 0:
            break
        if track not in used_tracks and index not in used_detections:
            used_tracks.add(track)
            used_detections.add(index)
            matched.append((track, index))
    return matched


class FaceTracker:
    """Call `update(gray, time_s)` once per frame; it returns that frame's faces, oldest id first, each
    {"face_id", "box" (the crop the models saw), "keypoints" (30, original pixels, smoothed if a filter
    was given), "raw" (the same unsmoothed)}.

    detectors: {name: gray -> rectangles}, tried in order (keypoints.faces.make_detectors); predict:
    uint8 (n, 96, 96) -> crop keypoints (n, 30); framing: infer.load_framing's dict; make_filter: None,
    or a function of no arguments returning a filter (values, time_s) -> smoothed values, one per face."""

    def __init__(self, detectors, predict, framing, detect_every, match_iou, max_unconfirmed, make_filter=None):
        if int(detect_every) < 1 or int(max_unconfirmed) < 1:
            raise ValueError(f"detect_every and max_unconfirmed must be at least 1, not {detect_every}, {max_unconfirmed}")
        self.detectors, self.predict, self.framing = detectors, predict, framing
        self.detect_every, self.match_iou, self.max_unconfirmed = int(detect_every), float(match_iou), int(max_unconfirmed)
        self.make_filter = make_filter
        self.tracks = []  # dicts: id, box, keypoints_96, unconfirmed, filter
        self.next_id = 1
        self.since_detection = None  # frames since the detector last ran; None: never
        self.detections = 0  # how many times the detector ran

    def _follow(self, gray):
        """Re-frame each face from its last keypoints and predict them all in one batch; drop the lost."""
        kept, crops = [], []
        for track in self.tracks:
            try:
                box = box_from_keypoints(to_original(track["keypoints_96"], track["box"]), self.framing["mean_shape"],
                                         self.framing.get("correction"))
                crops.append(crop_face(gray, box))
            except ValueError:  # not face-shaped, or its box left the image
                continue
            kept.append(dict(track, box=box))
        lost = len(kept) < len(self.tracks)
        if kept:
            for track, keypoints_96 in zip(kept, self.predict(np.stack(crops))):
                track["keypoints_96"] = np.asarray(keypoints_96, np.float64)
        faces = []
        for track in kept:  # oldest first: of two faces followed onto one, the younger goes
            if face_shaped(track["keypoints_96"], self.framing) and all(
                    iou(track["box"], other["box"]) < self.match_iou for other in faces):
                faces.append(track)
        self.tracks = faces
        return lost or len(faces) < len(kept)

    def _detect(self, gray):
        self.detections += 1
        self.since_detection = 0
        found = first_boxes(gray, self.detectors, self.framing, self.framing["settings"]["merge_overlap"])
        matched = match([track["box"] for track in self.tracks], [start for _, start, _ in found], self.match_iou)
        confirmed = {track for track, _ in matched}
        for index, track in enumerate(self.tracks):
            track["unconfirmed"] = 0 if index in confirmed else track["unconfirmed"] + 1
        if not found:
            self.tracks = [track for track in self.tracks if track["unconfirmed"] < self.max_unconfirmed]
            return
        # Every detection is refined, the followed faces' too: a face followed from its own keypoints frame
        # after frame drifts the way the model misjudges it (framing.refine), and its detection re-anchors it.
        settings = self.framing["settings"]
        boxes, keypoints, moved = refine([gray] * len(found), [start for _, start, _ in found], self.predict,
                                         self.framing["mean_shape"], settings["iterations"], settings["tolerance"],
                                         self.framing.get("correction"))
        good = [plausible(rect, start, boxes[index], keypoints[index], moved[index], self.framing)
                for index, (rect, start, _) in enumerate(found)]
        for track, index in matched:
            if good[index]:
                self.tracks[track].update(box=tuple(boxes[index]), keypoints_96=np.asarray(keypoints[index], np.float64))
        self.tracks = [track for track in self.tracks if track["unconfirmed"] < self.max_unconfirmed]
        for index in sorted(set(range(len(found))) - {index for _, index in matched}):
            if not good[index]:
                continue
            # Two detections of one face, or one of a face already followed: keep the first.
            if any(iou(boxes[index], track["box"]) >= self.match_iou for track in self.tracks):
                continue
            self.tracks.append({"id": self.next_id, "box": tuple(boxes[index]),
                                "keypoints_96": np.asarray(keypoints[index], np.float64),
                                "unconfirmed": 0, "filter": self.make_filter() if self.make_filter else None})
            self.next_id += 1

    def update(self, gray, time_s):
        lost = self._follow(gray) if self.tracks else False
        due = self.since_detection is None or self.since_detection + 1 >= self.detect_every
        if due or lost:
            self._detect(gray)
        else:
            self.since_detection += 1
        faces = []
        for track in self.tracks:
            raw = to_original(track["keypoints_96"], track["box"])
            smoothed = track["filter"](raw, time_s) if track["filter"] else raw
            faces.append({"face_id": track["id"], "box": track["box"], "keypoints": smoothed, "raw": raw})
        return faces
