import pytest

from keypoints.params import flatten, training_settings

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
