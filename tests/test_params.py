import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_project

from keypoints.params import flatten, overridden_train_keys, training_settings

PARAMS = {
    "train": {"preset": "reference", "epochs": 6, "batch_size": 64, "model": {"filters": [32, 64], "dense_units": 512},
              "per_model": {"model_8": {"epochs": 4}}},
    "presets": {
        "reference": {},
        "fast": {"epochs": 60, "model": {"filters": [16, 32]}, "per_model": {"model_30": {"epochs": 150}}},
    },
}


def with_preset(name):
    return {**PARAMS, "train": {**PARAMS["train"], "preset": name}}


def test_reference_preset_is_train_with_its_per_model_overrides():
    assert training_settings(PARAMS, 30)["epochs"] == 6
    assert training_settings(PARAMS, 8)["epochs"] == 4
    assert "per_model" not in training_settings(PARAMS, 8)


def test_a_preset_overrides_train_and_merges_nested_groups():
    settings_30 = training_settings(with_preset("fast"), 30)
    assert settings_30["epochs"] == 150
    assert settings_30["model"] == {"filters": [16, 32], "dense_units": 512}
    assert settings_30["batch_size"] == 64
    assert training_settings(with_preset("fast"), 8)["epochs"] == 60


def test_the_train_keys_a_preset_overrides_are_named_with_both_values():
    assert overridden_train_keys(with_preset("fast"), 30) == {"epochs": (6, 150), "model.filters": ("[32, 64]", "[16, 32]")}
    assert overridden_train_keys(with_preset("fast"), 8) == {"epochs": (6, 60), "model.filters": ("[32, 64]", "[16, 32]")}
    assert overridden_train_keys(PARAMS, 8) == {"epochs": (6, 4)}, "train's own per_model counts too"
    assert overridden_train_keys(PARAMS, 30) == {}


def test_unknown_preset_and_per_model_names_are_refused():
    with pytest.raises(ValueError, match=r"train.preset is 'turbo'; presets defines \['fast', 'reference'\]"):
        training_settings(with_preset("turbo"), 30)
    bad = {**PARAMS, "train": {**PARAMS["train"], "per_model": {"model_15": {}}}}
    with pytest.raises(ValueError, match=r"per_model names \['model_15'\]"):
        training_settings(bad, 30)


def test_flatten_gives_mlflow_shaped_params():
    assert flatten({"model": {"filters": [32, 64]}, "seed": 1}) == {"model.filters": "[32, 64]", "seed": 1}


def test_a_missing_setting_is_an_error_naming_its_key_path(tmp_path):
    from keypoints.params import load_params

    path = tmp_path / "params.yaml"
    path.write_text("train:\n  preset: reference\n  model:\n    filters: [4]\npresets:\n  reference: {}\n")
    settings = training_settings(load_params(path), 8)
    with pytest.raises(KeyError, match=r"^params.yaml has no train.epochs$"):
        settings["epochs"]
    with pytest.raises(KeyError, match=r"^params.yaml has no train.model.dropout$"):
        settings["model"]["dropout"]
    with pytest.raises(KeyError, match=r"^params.yaml has no split$"):
        load_params(path)["split"]


ROOT = Path(__file__).resolve().parents[1]


def params_with(tmp_path, edit):
    """A copy of the project's params.yaml with `edit(values)` applied; returns its path."""
    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def test_the_project_params_follow_the_schema():
    from keypoints.params import load_params

    assert load_params(ROOT / "params.yaml")["train"]["epochs"] >= 1


def test_loading_changes_no_value_so_no_stage_depends_on_the_schema():
    """dvc.yaml leaves schema.py out of every stage's deps: true only while the check refuses and never
    converts, fills in or drops a value."""
    from keypoints.params import load_params

    written = yaml.safe_load((ROOT / "params.yaml").read_text())
    loaded = load_params(ROOT / "params.yaml")
    assert json.dumps(loaded, sort_keys=True) == json.dumps(written, sort_keys=True)
    assert type(loaded["train"]["learning_rate"]) is float and type(loaded["train"]["epochs"]) is int


@pytest.mark.parametrize("edit, message", [
    (lambda v: v["train"].update(epoch=5), r"train.epoch: unknown key"),
    (lambda v: v["train"].update(learning_rate=-0.001), r"train.learning_rate: input should be greater than 0, not -0.001"),
    (lambda v: v["train"].update(epochs=1.5), r"train.epochs: input should be a valid integer, not 1.5"),
    (lambda v: v["train"].update(validation_fraction=1.0), r"train.validation_fraction: input should be less than 1"),
    (lambda v: v["train"]["model"].update(dropout="0.1"), r"train.model.dropout: .*drop the quotes"),
    (lambda v: v["train"].update(learning_rate="1e-4"), r"train.learning_rate: .*write 1.0e-4"),
    (lambda v: v["split"].update(holdout_fraction=0), r"split.holdout_fraction: input should be greater than 0"),
    (lambda v: v["presets"]["fast"].update(batch_szie=8), r"presets.fast.batch_szie: unknown key"),
    (lambda v: v["presets"]["fast"]["augment"].update(shift=-1), r"presets.fast.augment.shift: input should be greater"),
    (lambda v: v["presets"]["fast"]["per_model"].update(model_15={}), r"presets.fast.per_model.model_15: unknown key"),
    (lambda v: v["fetch"].update(source="s3"), r"fetch.source: input should be 'synthetic', 'path' or 'kaggle'"),
    (lambda v: v["train"].update(distribute="multi_worker_mirrored"), r"train.distribute: input should be 'none' or 'mirrored'"),
    (lambda v: v["video"].update(smoothing="yes"), r"video.smoothing: input should be a valid boolean"),
    (lambda v: v.update(tarin={}), r"tarin: unknown key"),
    (lambda v: v["fetch"].update(path=""), r"fetch.path: string should have at least 1 character"),
])
def test_params_breaking_the_schema_are_refused_by_key_path(tmp_path, edit, message):
    from keypoints.params import load_params
    from keypoints.schema import InvalidParams

    with pytest.raises(InvalidParams, match=message):
        load_params(params_with(tmp_path, edit))


def test_a_preset_may_override_any_subset_of_train(tmp_path):
    from keypoints.params import load_params

    path = params_with(tmp_path, lambda v: v["presets"].update(tiny={"model": {"dropout": 0.0}}, empty=None))
    assert load_params(path)["presets"]["tiny"]["model"]["dropout"] == 0.0


def test_a_stage_refuses_bad_params_before_any_work(tmp_path):
    """The training stage, with no data at all: the params fail first, naming the key."""
    params_with(tmp_path, lambda v: v["train"].update(epoch=5))
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "train.py"), "--outputs", "8", "--data", "missing", "--model", "m.keras",
         "--history", "h.csv", "--metrics", "m.json", "--checkpoints", "c"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0 and "train.epoch: unknown key" in result.stderr, result.stderr[-2000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["params.yaml"]


def test_an_empty_fetch_path_breaks_dvc_itself_and_a_stage_script_names_it(tmp_path):
    """README's account of DVC's limitation: DVC fails on the empty dependency path before any stage
    (if a DVC release fixes it, this test says README needs updating), and a stage script names the key."""
    project = make_project(tmp_path / "project", {"fetch": {"path": ""}})
    result = subprocess.run([str(Path(sys.executable).parent / "dvc"), "status"], cwd=project, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "unexpected error" in result.stderr, result.stderr[-2000:]
    result = subprocess.run([sys.executable, "stages/fetch.py", "--out", "data/raw"], cwd=project,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, result.stderr[-2000:]
    assert "params.yaml: fetch.path: string should have at least 1 character" in result.stderr
