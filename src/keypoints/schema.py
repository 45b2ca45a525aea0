"""The declared shape of params.yaml: every key with its type and range, checked before any stage works.

One declaration per key: a key added to params.yaml is added here too (an undeclared key is refused as
unknown, which is how a typo such as `train.epoch` is caught). Every key is optional here: the values
still come from params.yaml alone, and reading a missing one is an error naming its path
(keypoints.params.MissingParam), so a file may hold only the groups a tool reads. Types are strict:
`epochs: 1.5`, `"5"` or `true` are refused, not converted; a number may be written as an integer.
"""
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class InvalidParams(ValueError):
    """params.yaml breaks the schema; the message has one line per fault, each naming its key path."""


def whole(minimum):
    return Annotated[int, Field(ge=minimum)]


def number(**bounds):
    """A float (or an integer) within bounds given as pydantic's gt, ge, lt, le."""
    return Annotated[float, Field(**bounds)]


Fraction = number(ge=0, le=1)
Name = Annotated[str, Field(min_length=1)]


class Group(BaseModel):
    # strict: YAML's types as written; forbid: an unknown key is a typo until declared here.
    model_config = ConfigDict(extra="forbid", strict=True)


class Synthetic(Group):
    train_rows: whole(1) = None
    test_rows: whole(0) = None
    full_fraction: Fraction = None
    seed: int = None


class Fetch(Group):
    source: Literal["synthetic", "path", "kaggle"] = None
    path: Name = None
    competition: str = None
    sha256: dict[Literal["training.csv", "test.csv", "IdLookupTable.csv"], str] = None
    synthetic: Synthetic = None


class Parse(Group):
    pixel_centre: number(ge=-1, le=2) = None


class Split(Group):
    holdout_fraction: number(gt=0, lt=1) = None  # evaluate scores the held-out rows: some must be held out
    seed: int = None


class Model(Group):
    filters: Annotated[list[whole(1)], Field(min_length=1)] = None
    kernel_sizes: Annotated[list[whole(1)], Field(min_length=1)] = None
    convs_per_block: whole(1) = None
    leaky_relu_slope: number(ge=0) = None
    dense_units: whole(1) = None
    dropout: number(ge=0, lt=1) = None
    first_stride: Literal[1, 2] = None


class ReduceLr(Group):
    monitor: Name = None
    patience: whole(0) = None
    factor: number(gt=0, lt=1) = None
    min_lr: number(ge=0) = None


class EarlyStopping(Group):
    monitor: Name = None
    patience: whole(0) = None
    restore_best_weights: bool = None


class Augment(Group):
    flip: bool = None
    shift: number(ge=0) = None
    rotation: number(ge=0) = None
    scale: number(ge=0, lt=1) = None
    brightness: number(ge=0) = None
    contrast: number(ge=0) = None


class Training(Group):
    """The settings of one fit: the train group, and what a preset or per_model may override."""

    seed: int = None
    deterministic: bool = None
    epochs: whole(1) = None
    batch_size: whole(1) = None
    validation_fraction: number(gt=0, lt=1) = None
    optimizer: Literal["adam", "adamw", "sgd"] = None
    learning_rate: number(gt=0) = None
    loss: Name = None
    output_bias: Literal["mean", "zeros"] = None
    precise_batchnorm_rows: whole(0) = None
    start_from_model_8: bool = None
    refit_outputs: bool = None
    refit_ridge: number(ge=0) = None
    model: Model = None
    lr_schedule: Literal["plateau", "cosine"] = None
    reduce_lr: ReduceLr = None
    early_stopping: EarlyStopping = None
    augment: Augment = None
    mixed_precision: bool = None
    jit_compile: bool = None
    # Not multi_worker_mirrored: Keras 3's fit fails under MultiWorkerMirroredStrategy (README: Several GPUs).
    distribute: Literal["none", "mirrored"] = None


class PerModel(Group):
    model_8: Optional[Training] = None
    model_30: Optional[Training] = None


class Overrides(Training):
    """A preset: any keys of train (same types and ranges), plus per_model."""

    per_model: Optional[PerModel] = None


class Train(Overrides):
    preset: Name = None


class Predict(Group):
    batch_size: whole(1) = None
    flip_average: bool = None
    shift_average: whole(0) = None


class Framing(Group):
    detectors: Annotated[list[Literal["haar", "hog"]], Field(min_length=1)] = None
    detection_size: whole(64) = None
    merge_overlap: Fraction = None
    learn_faces: whole(1) = None
    correction_ridge: number(ge=0) = None
    iterations: whole(1) = None
    tolerance: number(ge=0) = None
    max_move: number(gt=0) = None
    max_residual: number(gt=0) = None


class Video(Group):
    detect_every: whole(1) = None
    match_iou: Fraction = None
    max_unconfirmed: whole(1) = None
    smoothing: bool = None
    min_cutoff: number(gt=0) = None
    beta: number(ge=0) = None
    d_cutoff: number(gt=0) = None
    progress_every: whole(1) = None


class Evaluate(Group):
    faces: whole(1) = None


class Register(Group):
    model_name: Name = None


class Mlflow(Group):
    experiment: Name = None


class Params(Group):
    fetch: Fetch = None
    parse: Parse = None
    split: Split = None
    train: Train = None
    presets: dict[str, Optional[Overrides]] = None
    predict: Predict = None
    framing: Framing = None
    video: Video = None
    evaluate: Evaluate = None
    # Named apart: `register` is a method every pydantic model inherits (ABCMeta.register).
    register_stage: Register = Field(None, alias="register")
    mlflow: Mlflow = None


def validate(values, source="params.yaml"):
    """Raise InvalidParams listing every key of `values` (params.yaml as loaded) that is unknown, of
    the wrong type or out of range, each by its key path."""
    try:
        Params.model_validate(values)
    except ValidationError as error:
        faults = [_describe(fault) for fault in error.errors()]
        raise InvalidParams(f"{source}: " + ("\n  " if len(faults) > 1 else "") + "\n  ".join(faults)) from None


def _describe(fault):
    path = ".".join(str(part) for part in fault["loc"])
    if fault["type"] == "extra_forbidden":
        return f"{path}: unknown key (a typo? every key is declared in src/keypoints/schema.py)"
    given = fault["input"]
    message = f"{path}: {fault['msg'][0].lower()}{fault['msg'][1:]}, not {given!r}"
    if isinstance(given, str) and _is_number(given):
        # YAML 1.1 (PyYAML) reads 1e-4 as text: an exponent needs a dot, as in 1.0e-4.
        message += " (text, not a number: " + ("write 1.0e-4, not 1e-4)" if "e" in given.lower() else "drop the quotes)")
    return message


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True
