"""The competition's column layout: 15 keypoints as 30 (x, y) columns, then Image."""
import numpy as np

IMAGE_SIZE = 96
PIXELS = IMAGE_SIZE * IMAGE_SIZE
# Keypoint coordinates measure from the image's top-left corner: pixel i spans [i, i + 1), its centre
# lies at i + PIXEL_OFFSET, the image's centre at 48, and a horizontal flip maps x to 96 - x. The
# competition documents no convention; real faces in its format say this one (README: Conventions):
# trained with flips at 95 - x instead (pixel i's centre at i), a model is worse on them and predicts
# their mirror images 2 to 3 px off. Arrays and image ops (cv2, tf) index pixels from 0 at their centres.
PIXEL_OFFSET = 0.5
CENTRE = (IMAGE_SIZE - 1) / 2.0 + PIXEL_OFFSET  # the image's centre, in keypoint coordinates
PIXEL_CENTRE = (IMAGE_SIZE - 1) / 2.0           # the same point in pixel indices

KEYPOINT_NAMES = [
    "left_eye_center",
    "right_eye_center",
    "left_eye_inner_corner",
    "left_eye_outer_corner",
    "right_eye_inner_corner",
    "right_eye_outer_corner",
    "left_eyebrow_inner_end",
    "left_eyebrow_outer_end",
    "right_eyebrow_inner_end",
    "right_eyebrow_outer_end",
    "nose_tip",
    "mouth_left_corner",
    "mouth_right_corner",
    "mouth_center_top_lip",
    "mouth_center_bottom_lip",
]
KEYPOINT_COLUMNS = [f"{name}_{axis}" for name in KEYPOINT_NAMES for axis in ("x", "y")]
IMAGE_COLUMN = "Image"
TRAINING_COLUMNS = KEYPOINT_COLUMNS + [IMAGE_COLUMN]
TEST_COLUMNS = ["ImageId", IMAGE_COLUMN]
LOOKUP_COLUMNS = ["RowId", "ImageId", "FeatureName"]
# The file also has a Location column, empty: the submission fills it (some copies leave it out).
LOOKUP_FILE_COLUMNS = LOOKUP_COLUMNS + ["Location"]

# Left/right eye centres, nose tip, bottom lip: labelled on ~all rows of the real data.
EIGHT_INDICES = [0, 1, 2, 3, 20, 21, 28, 29]
EIGHT_COLUMNS = [KEYPOINT_COLUMNS[i] for i in EIGHT_INDICES]

# "Left" is the subject's left; a horizontal flip swaps each pair, nose and lip centres stay.
FLIP_PAIRS = [
    ("left_eye_center", "right_eye_center"),
    ("left_eye_inner_corner", "right_eye_inner_corner"),
    ("left_eye_outer_corner", "right_eye_outer_corner"),
    ("left_eyebrow_inner_end", "right_eyebrow_inner_end"),
    ("left_eyebrow_outer_end", "right_eyebrow_outer_end"),
    ("mouth_left_corner", "mouth_right_corner"),
]


def flip_order(columns):
    """Column permutation that swaps every left/right pair; raises if a pair is only half present."""
    partner = {}
    for left, right in FLIP_PAIRS:
        partner[left], partner[right] = right, left
    position = {column: i for i, column in enumerate(columns)}
    order = []
    for column in columns:
        name, axis = column.rsplit("_", 1)
        mirrored = f"{partner.get(name, name)}_{axis}"
        if mirrored not in position:
            raise ValueError(f"column {column} has no mirror column {mirrored}: a flip would mislabel it")
        order.append(position[mirrored])
    return order


def columns_for(n_outputs):
    """Keypoint column names predicted by a model with n_outputs (8 or 30) outputs."""
    if n_outputs == len(KEYPOINT_COLUMNS):
        return list(KEYPOINT_COLUMNS)
    if n_outputs == len(EIGHT_COLUMNS):
        return list(EIGHT_COLUMNS)
    raise ValueError(f"a model has 8 or 30 outputs, not {n_outputs}")


def to_project_convention(keypoints, pixel_centre):
    """Labels (N, k) of data whose pixel i has its centre at i + pixel_centre (params.yaml
    parse.pixel_centre), moved to this project's convention (i + PIXEL_OFFSET), where flips and
    rotations turn about the image's true centre. NaN (unlabelled) stays NaN."""
    return np.asarray(keypoints, np.float32) - np.float32(pixel_centre - PIXEL_OFFSET)


def to_data_convention(keypoints, pixel_centre):
    """to_project_convention undone: keypoints (N, k) back in the data's own convention."""
    return np.asarray(keypoints, np.float32) + np.float32(pixel_centre - PIXEL_OFFSET)


# The competition labels coordinates within [0, 96]; submissions are clipped to it.
COORDINATE_MIN = 0.0
COORDINATE_MAX = float(IMAGE_SIZE)
