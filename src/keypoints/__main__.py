"""The `keypoints` command (pyproject.toml) and `python -m keypoints`: keypoints.cli.main, run as a stage's
main is (keypoints.process): TensorFlow loads with garbage collection off, then is frozen out of its walks."""
import gc
import sys

from keypoints.process import run_main


def command():
    gc.disable()
    from keypoints.cli import main  # here, with collection off: it loads TensorFlow

    return run_main(main)


if __name__ == "__main__":
    sys.exit(command())
