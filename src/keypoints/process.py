"""One-shot processes (each DVC stage, the `keypoints` command) without garbage collections that free nothing.

CPython's cyclic garbage collector now and then walks every object alive, and once more as the
process exits. Once TensorFlow and Keras are imported that is ~675,000 objects, ~0.3 s a walk, and
they all live until the process ends: walking them frees nothing. So a stage script turns collection
off while its modules load (`gc.disable()` at its top, when run as a script) and hands its main() to
`run_main` (as keypoints.__main__ does the command's), which moves everything alive by then out of
the collector's sight (`gc.freeze`), turns collection back on for what main() makes, and freezes
again before the exit. On the default run this saves ~2 s of each training stage and ~1 s of every
other stage that imports TensorFlow or MLflow (README: Where the time goes).
"""
import gc


def run_main(main):
    """main()'s result, with what is alive now (the modules loaded) and at the end out of gc's walks."""
    gc.freeze()
    gc.enable()
    try:
        return main()
    finally:
        gc.freeze()  # CPython's last collection at exit then has nothing to walk

