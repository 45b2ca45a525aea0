"""Epoch-end snapshots of a fit, so that a killed training stage resumes instead of starting over.

A snapshot lives outside DVC's outputs (a killed `dvc repro` must find it) and is keyed by a
fingerprint of the settings and the data, so a changed parameter never resumes a stale fit.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from keypoints import fileio
from keypoints.params import settings_hash

# Callback attributes that make up their progress; saved so a resumed fit continues, not restarts.
CALLBACK_STATE = ("wait", "best", "best_epoch", "cooldown_counter", "stopped_epoch")


def fingerprint(settings, data_checksum):
    """The key of a snapshot. `epochs` is left out: raising it after a stop is a reason to resume;
    but not under train.lr_schedule cosine, whose every step's rate depends on the number of epochs."""
    resumable = {key: value for key, value in settings.items()
                 if key != "epochs" or settings.get("lr_schedule") == "cosine"}
    return settings_hash({"settings": resumable, "data": data_checksum})


def callback_state(callback):
    return {name: _plain(getattr(callback, name)) for name in CALLBACK_STATE if hasattr(callback, name)}


def _plain(value):
    return None if value is None else float(value) if isinstance(value, (float, np.floating)) else value


class Checkpoint:
    """The snapshot in `directory`: model + optimizer, history, callback state, MLflow run id.

    `state` is the snapshot found when opened (None for a fresh start); `run_id` its MLflow run."""

    def __init__(self, directory, key):
        self.directory = Path(directory)
        self.key = key
        self.state_path = self.directory / "state.json"
        self.model_path = self.directory / "model.keras"
        self.best_path = self.directory / "best_weights.npz"
        self.state = self._load()

    @property
    def run_id(self):
        return self.state["run_id"] if self.state else None

    def _load(self):
        if not self.state_path.is_file() or not self.model_path.is_file():
            return None
        state = json.loads(self.state_path.read_text())
        if state.get("fingerprint") != self.key:
            print(f"{self.directory}: checkpoint is for other settings or data; starting over", file=sys.stderr)
            self.clear()
            return None
        if self.best_path.is_file():
            with np.load(self.best_path) as arrays:
                state["best_weights"] = [arrays[f"w{i}"] for i in range(len(arrays.files))]
        return state

    def save(self, model, state, best_weights):
        self.directory.mkdir(parents=True, exist_ok=True)
        with fileio.atomic_path(self.model_path) as temporary:
            model.save(temporary)
        if best_weights is not None:
            with fileio.atomic_path(self.best_path) as temporary:
                with open(temporary, "wb") as handle:
                    np.savez(handle, **{f"w{i}": w for i, w in enumerate(best_weights)})
        # The state file is written last: it names a complete snapshot.
        fileio.save_json(self.state_path, dict(state, fingerprint=self.key))

    def clear(self):
        shutil.rmtree(self.directory, ignore_errors=True)
