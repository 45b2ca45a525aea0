"""keypoints.process: stages and the command run their main with the loaded modules frozen out of gc's walks.

Each case runs in its own Python process: freezing pytest's objects would change the test process."""
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)


def test_main_runs_with_collection_on_and_what_was_loaded_frozen():
    result = python(
        "import gc, json\n"
        "gc.disable()\n"
        "from keypoints.process import run_main\n"
        "def main():\n"
        "    global kept\n"
        "    kept = [[] for _ in range(1000)]\n"
        "    return {'enabled': gc.isenabled(), 'frozen': gc.get_freeze_count()}\n"
        "inside = run_main(main)\n"
        "print(json.dumps(dict(inside, frozen_after=gc.get_freeze_count())))\n"
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["enabled"] is True, "collection is back on for what main() makes"
    assert seen["frozen"] > 1000, "the objects alive before main() are frozen"
    assert seen["frozen_after"] >= seen["frozen"] + 1000, "main()'s survivors are frozen before the exit"


def test_an_error_in_main_still_reaches_the_caller():
    result = python(
        "from keypoints.process import run_main\n"
        "def main():\n"
        "    raise ValueError('bad row 7')\n"
        "run_main(main)\n"
    )
    assert result.returncode == 1 and "ValueError: bad row 7" in result.stderr


def test_every_stage_loads_its_modules_with_collection_off_and_runs_main_through_run_main():
    for script in sorted((ROOT / "stages").glob("*.py")):
        tree = ast.parse(script.read_text())
        body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        first_guard = next(index for index, node in enumerate(body) if isinstance(node, ast.If))
        later_imports = [node for node in body[first_guard:] if isinstance(node, (ast.Import, ast.ImportFrom))]
        guard_source = ast.unparse(body[first_guard])
        assert "__name__ == '__main__'" in guard_source and "gc.disable()" in guard_source, (
            f"{script.name}: gc.disable() under `if __name__ == '__main__'` before its imports")
        assert later_imports, f"{script.name}: its modules load after the guard"
        assert ast.unparse(body[-1]) == "if __name__ == '__main__':\n    run_main(main)", script.name


def test_the_command_runs_through_run_main():
    assert 'keypoints = "keypoints.__main__:command"' in (ROOT / "pyproject.toml").read_text()
    result = subprocess.run([sys.executable, "-m", "keypoints", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.startswith("usage: keypoints"), result.stderr
    result = python("import gc, keypoints.__main__ as entry, sys\n"
                    "sys.argv = ['keypoints', 'detect', '/nonexistent.png']\n"
                    "status = entry.command()\n"
                    "print(status, gc.isenabled(), gc.get_freeze_count() > 0)\n")
    assert result.stdout.split() == ["1", "True", "True"], result.stderr
    assert "nonexistent" in result.stderr
