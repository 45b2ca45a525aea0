"""The `keypoints` command (pyproject.toml) and `python -m keypoints`: keypoints.cli.main, run through
keypoints.process.run_main as a stage's main is. The command loads TensorFlow inside main, and only
for the subcommand that needs it (`keypoints --help` answers at once), so what this spares it is the
garbage collector's walk over TensorFlow's objects at exit (~0.9 s)."""
import sys

from keypoints.cli import main
from keypoints.process import run_main


def command():
    return run_main(main)


if __name__ == "__main__":
    sys.exit(command())
