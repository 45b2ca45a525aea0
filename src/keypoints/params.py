"""Reading params.yaml, the single home of every setting: code indexes it and holds no defaults."""
import copy
import hashlib
import json
from pathlib import Path

import yaml

from keypoints.schema import validate


class MissingParam(KeyError):
    """A setting params.yaml lacks; the message names its key path."""

    def __str__(self):
        return self.args[0]


class Group(dict):
    """A group of params.yaml whose missing keys raise MissingParam naming the whole path
    (`params.yaml has no train.epochs`) instead of a bare KeyError('epochs')."""

    def __init__(self, values, path):
        super().__init__({key: Group(value, f"{path}.{key}") if isinstance(value, dict) else value
                          for key, value in values.items()})
        self.path = path

    def __missing__(self, key):
        raise MissingParam(f"params.yaml has no {self.path}.{key}" if self.path else f"params.yaml has no {key}")


def load_params(path="params.yaml"):
    """params.yaml, checked against keypoints.schema first: every stage and tool reads it through here,
    so an unknown key, a wrong type or an out-of-range value stops it before any work."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: parameters file not found (run from the project root)")
    with open(path) as handle:
        values = yaml.safe_load(handle) or {}
    validate(values, source=str(path))
    return Group(values, "")


def merge(base, overrides):
    """Recursive dict update that returns a new dict; nested groups are merged, not replaced."""
    merged = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def training_settings(params, outputs):
    """Settings of the model with `outputs` (8 or 30) outputs: `train`, then the preset it names.

    `train` and each preset may hold `per_model: {model_8: {...}, model_30: {...}}`, applied right
    after the group it sits in: model_8 sees ~3x more faces per epoch, so budgets differ per model.
    """
    train = params["train"]
    presets = params["presets"]
    preset_name = train["preset"]
    if preset_name not in presets:
        raise ValueError(f"params.yaml: train.preset is {preset_name!r}; presets defines {sorted(presets)}")
    settings = {}
    for group in (train, presets[preset_name] or {}):
        group = dict(group)
        per_model = group.pop("per_model", None) or {}
        unknown = sorted(set(per_model) - {"model_8", "model_30"})
        if unknown:
            raise ValueError(f"params.yaml: per_model names {unknown}; it may name model_8 and model_30")
        settings = merge(merge(settings, group), per_model.get(f"model_{outputs}"))
    return Group(settings, "train")


def overridden_train_keys(params, outputs):
    """{flat train key: (its value in `train`, the value used)} for each `train` key the preset or a
    per_model group changes: `-S train.batch_size=64` does nothing under a preset that sets batch_size,
    and the training stage says so."""
    train = flatten({key: value for key, value in params["train"].items() if key != "per_model"})
    used = flatten(dict(training_settings(params, outputs)))
    return {key: (value, used[key]) for key, value in train.items() if key in used and used[key] != value}


def flatten(settings, prefix=""):
    """{'model': {'filters': [32]}} -> {'model.filters': '[32]'}: the shape MLflow params take."""
    flat = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else value
    return flat


def settings_hash(settings):
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
