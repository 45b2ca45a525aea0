"""Whole-file writes that never leave a half-written output: write a sibling temp file, rename."""
import contextlib
import glob
import gzip
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

# Files are read and copied 1 MB at a time.
CHUNK_BYTES = 1 << 20


def _umask():
    # os.umask can only be read by setting it: set it back at once (at import, before any thread).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()


def _give_umask_mode(path, directory):
    """mkstemp and mkdtemp create 0600 and 0700 whatever the umask; an output gets the mode that
    open() and mkdir() would give it, so a shared or team directory can read it."""
    os.chmod(path, (0o777 if directory else 0o666) & ~UMASK)


def _temporary_prefix(name):
    # The writer's pid in the name tells a later run whether the temporary's writer is still alive.
    return f".{name}.{os.getpid()}."


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder, name):
    """Delete the temporaries of output `name` in `folder` whose writer has died: a process killed
    with SIGKILL (or a power cut) runs no cleanup, and its partial copy would stay, hidden, forever."""
    for candidate in Path(folder).glob(f".{glob.escape(name)}.*"):
        pid = candidate.name[len(name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.stem)
    # The temp name keeps the suffix: Keras and NumPy choose the format by it.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path.stem), suffix=f".tmp{path.suffix}")
    os.close(handle)
    try:
        yield Path(temporary)
        _give_umask_mode(temporary, directory=False)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def save_json(path, data):
    """Keys in the dict's order: metrics files list their headline numbers first, as `dvc exp show` does."""
    with atomic_path(path) as temporary:
        Path(temporary).write_text(json.dumps(data, indent=2) + "\n")


def save_csv(path, frame):
    """Write a pandas DataFrame without its index."""
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False)


def save_figure(path, figure):
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=Path(path).suffix.lstrip(".") or "png", dpi=100)


def open_text(path):
    """Open a plain or gzip-compressed text file for reading (gzip is detected by magic bytes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary directory next to `path`; on success it replaces `path` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_prefix(path.name), suffix=".tmp"))
    try:
        yield temporary
        _give_umask_mode(temporary, directory=True)
        if path.exists():
            retired = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_prefix(path.name), suffix=".old"))
            os.replace(path, retired / path.name)
            os.replace(temporary, path)
            shutil.rmtree(retired)
        else:
            os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def sha256_of(path):
    """Hex sha256 of a file's bytes, read a chunk at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
