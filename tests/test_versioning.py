"""Data versioning with the real DVC: checksums in dvc.lock, `dvc push`/`dvc pull` through a local-directory
remote, and a changed input (a parameter, or the downloaded file fetch.path names) rerunning exactly the
stages after it. One tiny project is reproduced once and shared; the tests run in file order on it."""
import gzip
import hashlib
import json
import os
import re
import shutil

import pytest
import yaml

from conftest import make_project, run

pytestmark = pytest.mark.slow

STAGES = {"fetch", "parse", "split", "train_8", "train_30", "framing", "predict_merge", "evaluate", "register", "export"}


def ran(result):
    """The stages a `dvc repro` / `dvc exp run` ran (not those skipped or restored from the run cache)."""
    return set(re.findall(r"Running stage '([^']+)'", result.stdout + result.stderr))


def lock(project):
    return yaml.safe_load((project / "dvc.lock").read_text())["stages"]


def entry(entries, path):
    return next(item for item in entries if item["path"] == path)


def cached_outputs(project):
    """The outputs dvc.yaml declares with the cache on: the ones `dvc push` sends to the remote."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    paths = []
    for stage in stages.values():
        for out in stage.get("outs", []):
            path, options = (out, {}) if isinstance(out, str) else next(iter(out.items()))
            if options.get("cache", True):
                paths.append(path)
    return paths


def snapshot(project, paths):
    """{file: sha256} of every file under the given outputs."""
    files = {}
    for path in paths:
        top = project / path
        for file in ([top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())):
            files[str(file.relative_to(project))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return files


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def up_to_date(project):
    status = run(["dvc", "status"], project).stdout
    assert "Data and pipelines are up to date" in status, status


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    directory = make_project(tmp_path_factory.mktemp("versioning") / "project")
    assert ran(run(["dvc", "repro"], directory)) == STAGES
    run(["git", "add", "-A"], directory)
    run(["git", "commit", "-q", "-m", "baseline results"], directory)
    return directory


@pytest.fixture(scope="module")
def download(project, tmp_path_factory):
    """A training.csv.gz outside the repository, as a user's download: the tiny project's own training data."""
    path = tmp_path_factory.mktemp("downloads") / "training.csv.gz"
    path.write_bytes(gzip.compress((project / "data/raw/training.csv").read_bytes()))
    return path


def test_lock_records_the_md5_of_every_raw_file(project):
    stages = lock(project)
    raw = entry(stages["fetch"]["outs"], "data/raw")
    assert raw["hash"] == "md5" and re.fullmatch(r"[0-9a-f]{32}\.dir", raw["md5"]) and raw["nfiles"] == 3
    # parse records the same checksum for its input: that is what decides whether parse reruns.
    assert entry(stages["parse"]["deps"], "data/raw")["md5"] == raw["md5"]
    # The .dir object in the cache lists each file's md5: the files on disk match it.
    digest = raw["md5"].removesuffix(".dir")
    listing = json.loads((project / ".dvc/cache/files/md5" / digest[:2] / f"{digest[2:]}.dir").read_text())
    assert {item["relpath"]: item["md5"] for item in listing} == {
        name: md5(project / "data/raw" / name) for name in ("training.csv", "test.csv", "IdLookupTable.csv")}
    # fetch depends on fetch.path (default data/external, where a user drops the Kaggle zip).
    assert entry(stages["fetch"]["deps"], "data/external")["md5"].endswith(".dir")


def test_push_then_pull_restores_byte_identical_outputs(project, tmp_path_factory):
    remote = tmp_path_factory.mktemp("remote") / "storage"
    run(["dvc", "remote", "add", "-d", "local", str(remote)], project)
    outputs = cached_outputs(project)
    assert {"data/raw", "data/parsed", "models/model_8.keras", "submission.csv"} <= set(outputs)
    before = snapshot(project, outputs)
    assert "data/raw/training.csv" in before and "data/split/30/train_images.npy" in before
    run(["dvc", "push"], project)
    assert "in sync" in run(["dvc", "status", "--cloud"], project).stdout
    assert sum(1 for p in remote.rglob("*") if p.is_file()) >= len(before)

    shutil.rmtree(project / ".dvc/cache")
    for path in outputs:
        target = project / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    assert snapshot(project, [p for p in outputs if (project / p).exists()]) == {}
    missing = run(["dvc", "status"], project).stdout
    assert "deleted" in missing, missing

    run(["dvc", "pull"], project)
    assert snapshot(project, outputs) == before
    up_to_date(project)
    assert ran(run(["dvc", "repro"], project)) == set()


def test_changed_parameter_reruns_only_the_stages_after_it(project):
    seed = yaml.safe_load((project / "params.yaml").read_text())["split"]["seed"]
    result = run(["dvc", "exp", "run", "-S", f"split.seed={seed + 1}"], project)
    assert ran(result) == STAGES - {"fetch", "parse"}
    up_to_date(project)


def test_settings_training_does_not_use_retrain_nothing(project):
    """The MLflow experiment's name and the presets train.preset does not pick are no dependencies;
    the chosen preset is."""
    path = project / "params.yaml"
    committed = path.read_text()

    def status_after(edit):
        params = yaml.safe_load(committed)
        edit(params)
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        return run(["dvc", "status"], project).stdout

    def rename_experiment(params):
        params["mlflow"]["experiment"] = "renamed"

    def edit_other_preset(params):
        assert params["train"]["preset"] != "best"
        params["presets"]["best"]["epochs"] += 1

    def edit_chosen_preset(params):
        params["presets"][params["train"]["preset"]] = {"epochs": 3}

    for edit in (rename_experiment, edit_other_preset):
        status = status_after(edit)
        assert "train_8" not in status and "train_30" not in status, (edit.__name__, status)
    status = status_after(edit_chosen_preset)
    assert "train_8" in status and "train_30" in status, status
    path.write_text(committed)
    up_to_date(project)


def test_a_new_file_in_data_external_reruns_fetch_alone(project):
    # Synthetic source: fetch reruns (its dependency changed) but writes the same data/raw, so nothing after it.
    note = project / "data/external/notes.txt"
    note.write_text("not data\n")
    assert run(["git", "check-ignore", "-q", "data/external/notes.txt"], project).returncode == 0
    before = entry(lock(project)["fetch"]["outs"], "data/raw")["md5"]
    assert ran(run(["dvc", "repro"], project)) == {"fetch"}
    assert entry(lock(project)["fetch"]["outs"], "data/raw")["md5"] == before
    note.unlink()
    run(["dvc", "repro"], project)  # back as committed: the run cache restores fetch
    up_to_date(project)


def test_training_file_outside_the_repo_is_a_dependency(project, download):
    result = run(["dvc", "exp", "run", "-S", "fetch.source=path", "-S", f"fetch.path={download}"], project)
    # Same training rows, but test.csv and IdLookupTable.csv are now header-only: data/parsed changes,
    # data/split/8 and data/split/30 come out identical, so neither model retrains, nor the framing; nor
    # is anything registered: the models and their held-out scores are the same.
    assert ran(result) == STAGES - {"train_8", "train_30", "framing", "register"}
    dependency = entry(lock(project)["fetch"]["deps"], str(download))
    assert dependency["md5"] == md5(download)
    assert (project / "data/raw/training.csv").read_bytes() == gzip.decompress(download.read_bytes())
    up_to_date(project)


def test_a_changed_keypoint_in_that_file_reruns_everything_after_it(project, download):
    lines = gzip.decompress(download.read_bytes()).decode().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    assert header[0] == "left_eye_center_x"
    # The first fully labelled row: in both the 8-value and the 30-value subsets.
    row = next(i for i, line in enumerate(lines[1:], 1) if "" not in line.rstrip("\n").split(",")[:-1])
    values = lines[row].split(",")
    values[0] = f"{float(values[0]) + 1.5:.6f}"
    lines[row] = ",".join(values)
    download.write_bytes(gzip.compress("".join(lines).encode()))
    raw_before = entry(lock(project)["fetch"]["outs"], "data/raw")["md5"]

    assert ran(run(["dvc", "repro"], project)) == STAGES
    assert entry(lock(project)["fetch"]["outs"], "data/raw")["md5"] != raw_before
    assert entry(lock(project)["fetch"]["deps"], str(download))["md5"] == md5(download)
    assert (project / "data/raw/training.csv").read_text().splitlines()[row].split(",")[0] == values[0]
    up_to_date(project)


def test_touching_the_file_without_changing_it_reruns_nothing(project, download):
    download.write_bytes(download.read_bytes())  # rewritten, same bytes
    later = download.stat().st_mtime + 60
    os.utime(download, (later, later))
    assert ran(run(["dvc", "repro"], project)) == set()
    up_to_date(project)


def test_same_file_by_a_relative_path_in_data_external_reruns_fetch_alone(project, download):
    shutil.copy2(download, project / "data/external/training.csv.gz")
    assert run(["git", "check-ignore", "-q", "data/external/training.csv.gz"], project).returncode == 0
    assert "data/external" not in run(["git", "status", "--porcelain"], project).stdout
    result = run(["dvc", "exp", "run", "-S", "fetch.path=data/external/training.csv.gz"], project)
    assert ran(result) == {"fetch"}  # fetch.path changed; data/raw did not
    assert entry(lock(project)["fetch"]["deps"], "data/external/training.csv.gz")["md5"] == md5(download)
    up_to_date(project)
