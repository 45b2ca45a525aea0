"""Face detectors that install from the package registries with their weights inside.

- haar: OpenCV's frontal-face Haar cascade (opencv-python ships the XML; OpenCV 5 dropped it);
- hog: dlib's HOG + linear SVM frontal-face detector (built into dlib, from the `dlib-bin` wheel).

Each is a function gray uint8 (H, W) -> list of rectangles (x, y, w, h) in that image's pixels. On the
346 real photos of benchmarks/bench_photos.py each misses faces the other finds, so `keypoints detect`
tries them in turn (params.yaml `framing.detectors`); dlib's CNN detector finds fewer of those small
faces and takes ~20x longer (see README).

Every detect function may be called from several threads at once: each thread gets its own native
detector (neither OpenCV's cascade nor dlib's scanner promises to be shareable), and dlib's releases
the GIL, so learning the framing (keypoints.framing) runs one per core.
"""
import threading
from pathlib import Path

import cv2

HAAR_FILE = "haarcascade_frontalface_default.xml"
# dlib's HOG window is 80x80 pixels: in small photos a face may be smaller, so they are upsampled once.
HOG_UPSAMPLE_BELOW = 400


def _downscaled(gray, detection_size):
    """The image with its longer side at most detection_size: detection cost grows with the pixel count,
    and finding a face needs less detail than framing it (the crop is cut from the full image)."""
    scale = min(1.0, detection_size / max(gray.shape))
    if scale == 1.0:
        return gray, 1.0
    return cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale


def haar_detector(detection_size):
    path = Path(cv2.data.haarcascades) / HAAR_FILE if hasattr(cv2, "data") else None
    if path is None or not path.is_file() or not hasattr(cv2, "CascadeClassifier"):
        raise ValueError(f"OpenCV {cv2.__version__} has no Haar face cascade (OpenCV 5 moved it out; "
                         "requirements.txt pins OpenCV 4)")
    cascade = _per_thread(lambda: cv2.CascadeClassifier(str(path)))
    if cascade().empty():  # this thread's, loaded now and kept for its calls
        raise ValueError(f"{path}: OpenCV could not load the Haar cascade")

    def detect(gray):
        small, scale = _downscaled(gray, detection_size)
        # Equalising makes the cascade's thresholds hold under dim or washed-out lighting.
        rects = cascade().detectMultiScale(cv2.equalizeHist(small), scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        return [tuple(float(value) / scale for value in rect) for rect in rects]

    return detect


def hog_detector(detection_size):
    try:
        import dlib
    except ImportError as error:
        raise ValueError("the hog face detector needs dlib: pip install dlib-bin (requirements.txt pins it)") from error
    detector = _per_thread(dlib.get_frontal_face_detector)

    def detect(gray):
        small, scale = _downscaled(gray, detection_size)
        # Only a photo that is small itself: a downscaled one's faces were large enough to shrink.
        upsample = 1 if scale == 1.0 and max(small.shape) < HOG_UPSAMPLE_BELOW else 0
        return [(found.left() / scale, found.top() / scale, found.width() / scale, found.height() / scale)
                for found in detector()(small, upsample)]

    return detect


def _per_thread(make):
    """A function returning this thread's own object from make(), made on its first call there."""
    local = threading.local()

    def get():
        if not hasattr(local, "value"):
            local.value = make()
        return local.value

    return get


DETECTORS = {"haar": haar_detector, "hog": hog_detector}


def make_detectors(names, detection_size):
    """{name: detect function} in the given order, each looking at images downscaled to detection_size
    pixels on their longer side (params.yaml framing.detection_size)."""
    unknown = [name for name in names if name not in DETECTORS]
    if unknown:
        raise ValueError(f"unknown face detectors {unknown}; known: {sorted(DETECTORS)}")
    if not detection_size >= 64:
        raise ValueError(f"framing.detection_size must be at least 64 pixels, not {detection_size}")
    return {name: DETECTORS[name](detection_size) for name in names}
