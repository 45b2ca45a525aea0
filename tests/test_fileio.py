"""Atomic writes: what a killed writer leaves behind, and the modes of what a writer leaves."""
import os
import signal
import subprocess
import sys

from keypoints import fileio

# A writer killed with SIGKILL halfway through an output directory, as `kill -9` during fetch or parse.
KILLED_WRITER = """
import os, signal, sys
from keypoints import fileio
with fileio.atomic_dir(sys.argv[1]) as staging:
    (staging / "training.csv").write_bytes(b"x" * 4096)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def hidden(folder):
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def kill_a_writer(out):
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out)], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr


def dead_pid():
    """The pid of a process that has exited."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def test_a_killed_writer_s_partial_directory_is_removed_by_the_next_write(tmp_path):
    out = tmp_path / "data" / "raw"
    kill_a_writer(out)
    [first] = hidden(out.parent)
    assert first.startswith(".raw.") and first.endswith(".tmp") and not out.exists()
    kill_a_writer(out)
    assert len(hidden(out.parent)) == 1 and first not in hidden(out.parent), "one partial copy at most"
    # A live writer's temporary (this test's parent process stands in for one) is left alone, and
    # another output's too.
    live = out.parent / f".raw.{os.getppid()}.abc.tmp"
    live.mkdir()
    other = out.parent / f".parsed.{dead_pid()}.abc.tmp"
    other.mkdir()
    with fileio.atomic_dir(out) as staging:
        (staging / "training.csv").write_text("ok")
    assert hidden(out.parent) == sorted([live.name, other.name])
    assert (out / "training.csv").read_text() == "ok"


def test_a_killed_writer_s_partial_file_is_removed_by_the_next_write(tmp_path):
    model = tmp_path / "models" / "model_8.keras"
    model.parent.mkdir()
    (model.parent / f".model_8.{dead_pid()}.x.tmp.keras").write_bytes(b"partial")
    with fileio.atomic_path(model) as temporary:
        temporary.write_bytes(b"model")
    assert sorted(path.name for path in model.parent.iterdir()) == ["model_8.keras"]


# A fresh interpreter under umask 0o002 (a team directory's), writing one file and one directory.
WRITER_UNDER_UMASK = """
import os, sys
os.umask(0o002)
from pathlib import Path
from keypoints import fileio
out = Path(sys.argv[1])
fileio.save_json(out / "metrics" / "evaluate.json", {"rmse": 1.0})
with fileio.atomic_dir(out / "raw") as staging:
    (staging / "training.csv").write_text("x")
"""


def test_outputs_get_the_modes_of_the_umask(tmp_path):
    subprocess.run([sys.executable, "-c", WRITER_UNDER_UMASK, str(tmp_path)], check=True)
    assert oct((tmp_path / "metrics" / "evaluate.json").stat().st_mode & 0o777) == oct(0o664)
    assert oct((tmp_path / "raw").stat().st_mode & 0o777) == oct(0o775)
    assert oct((tmp_path / "raw" / "training.csv").stat().st_mode & 0o777) == oct(0o664)
