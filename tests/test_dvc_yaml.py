"""dvc.yaml as the map of the project: read as text, no DVC run needed."""
import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "keypoints"


def package_imports(path):
    """Names of the keypoints modules a file imports, anywhere in it (function-level imports too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "keypoints":
                names.update(alias.name for alias in node.names)
            elif node.module.startswith("keypoints."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("keypoints."))
    return {name for name in names if (PACKAGE / f"{name}.py").is_file()}


# schema.py only refuses params (load_params returns the values as written): no output depends on it.
NOT_DEPENDENCIES = {"schema"}


def modules_behind(script):
    """Every package module the script runs, following imports from module to module, but NOT_DEPENDENCIES."""
    seen, todo = set(), list(package_imports(script))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(package_imports(PACKAGE / f"{name}.py"))
    return seen - NOT_DEPENDENCIES


def test_every_stage_depends_on_exactly_the_modules_it_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        deps = [dep for dep in stage["deps"] if isinstance(dep, str)]
        scripts = [dep for dep in deps if dep.startswith("stages/")]
        assert len(scripts) == 1 and f"python {scripts[0]} " in stage["cmd"], name
        declared = {Path(dep).stem for dep in deps if dep.startswith("src/keypoints/")}
        assert declared == modules_behind(ROOT / scripts[0]), name


def test_stage_commands_need_no_pythonpath():
    text = (ROOT / "dvc.yaml").read_text()
    assert "PYTHONPATH" not in text
    for script in (ROOT / "stages").glob("*.py"):
        tree = ast.parse(script.read_text())
        assert any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body), script


# DVC's own checks of the artifacts section, in a process of their own: run in pytest's process after
# test_serving, DVC's modules left pytest's captured stderr closed and the session crashed at its end.
CHECK_ARTIFACTS = """
import json, sys, yaml
from dvc.repo.artifacts import check_name_format
from dvc.schema import SINGLE_ARTIFACT_SCHEMA
artifacts = SINGLE_ARTIFACT_SCHEMA(yaml.safe_load(open(sys.argv[1]))["artifacts"])
for name in artifacts:
    check_name_format(name)
print(json.dumps(artifacts))
"""


def test_the_models_are_dvc_artifacts_of_type_model_made_by_stages():
    import json
    import subprocess
    import sys

    checked = subprocess.run([sys.executable, "-c", CHECK_ARTIFACTS, str(ROOT / "dvc.yaml")],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr[-3000:]
    artifacts = json.loads(checked.stdout)
    assert set(artifacts) == {"keypoints-predictor", "keypoints-tflite", "model-8", "model-30", "framing"}
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outputs = {next(iter(out)) if isinstance(out, dict) else out for stage in stages.values() for out in stage["outs"]}
    for name, artifact in artifacts.items():
        assert artifact["type"] == "model" and artifact["desc"] and artifact["labels"], name
        assert artifact["path"] in outputs, f"{name}: {artifact['path']} is no stage's output"
