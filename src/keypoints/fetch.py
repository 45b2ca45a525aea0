"""The competition's three CSVs into one directory, all or nothing, from one of three sources.

- synthetic: faces keypoints.synthetic draws (no download, no credentials);
- path: a directory, the competition zip or a lone training.csv(.gz) the user downloaded;
- kaggle: the competition zip through the official `kaggle` package.

Whatever the source, the output is plain training.csv, test.csv and IdLookupTable.csv, checked
for their columns (and, if pinned, their sha256) before they replace the previous output.
"""
import contextlib
import gzip
import shutil
import socket
import sys
import warnings
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from keypoints import fileio
from keypoints.columns import LOOKUP_COLUMNS, LOOKUP_FILE_COLUMNS, TEST_COLUMNS, TRAINING_COLUMNS

SOURCES = ("synthetic", "path", "kaggle")
REQUIRED_COLUMNS = {
    "training.csv": TRAINING_COLUMNS,
    "test.csv": TEST_COLUMNS,
    "IdLookupTable.csv": LOOKUP_COLUMNS,
}
# Written when only training.csv is given: a valid but empty test set and lookup table.
EMPTY_TEST = ",".join(TEST_COLUMNS) + "\n"
EMPTY_LOOKUP = ",".join(LOOKUP_FILE_COLUMNS) + "\n"
EMPTY = {"test.csv": EMPTY_TEST, "IdLookupTable.csv": EMPTY_LOOKUP}
HEADER_LIMIT = 1 << 16  # a real header is ~700 bytes; never read a 240 MB line looking for one


class FetchError(ValueError):
    """A source that cannot give the competition files; the message names the file and the fault."""


def log(message):
    print(f"fetch: {message}", file=sys.stderr, flush=True)


def fetch(source, out, path="", competition="", synthetic=None, sha256=None):
    """Write out/training.csv, out/test.csv and out/IdLookupTable.csv, or leave `out` as it was.

    Only the chosen source's argument is needed: `path`, `competition` (kaggle) or `synthetic`."""
    expected = _expected_digests(sha256)
    if source not in SOURCES:
        raise FetchError(f"fetch.source is {source!r}; valid sources: {', '.join(SOURCES)}")
    out = Path(out)
    location = _resolve_path(path, out) if source == "path" else None
    with fileio.atomic_dir(out) as staging:
        if source == "synthetic":
            _from_synthetic(staging, synthetic)
        elif source == "path":
            _from_path(location, staging)
        else:
            if not competition:
                raise FetchError("source kaggle needs fetch.competition, e.g. facial-keypoints-detection")
            _from_kaggle(competition, staging)
        _validate(staging, expected)
    log(f"wrote {out}")


# ---------------------------------------------------------------- sources


def _from_synthetic(staging, settings):
    if not settings:
        raise FetchError("source synthetic needs fetch.synthetic (train_rows, test_rows, seed, full_fraction)")
    from keypoints.synthetic import write_competition_files  # only this source needs it

    log(f"drawing synthetic faces {dict(settings)}")
    write_competition_files(staging, **settings)


def _resolve_path(path, out):
    if not path or not str(path).strip():
        raise FetchError("source path needs fetch.path: set it in params.yaml to a directory, the competition "
                         "zip or a training.csv(.gz), e.g. dvc exp run -S fetch.path=/data/facial-keypoints-detection.zip")
    # DVC runs stages at the repo root, so a relative path is relative to the project.
    location = (Path.cwd() / Path(path).expanduser()).absolute()
    if not location.exists():
        raise FetchError(f"fetch.path {str(path)!r}: {location} does not exist")
    output = (Path.cwd() / out).absolute()
    if location == output or output in location.parents:
        # The output is replaced whole: a source inside it would be deleted by its own fetch.
        raise FetchError(f"fetch.path {location} is inside the output {output}; keep downloads outside it")
    return location


def _from_path(location, staging):
    if location.is_dir():
        _from_directory(location, staging)
    elif _is_zip(location):
        _from_zip(location, staging)
    else:
        _from_training_only(location, staging)


def _is_zip(path):
    # By magic bytes as well as by name: a truncated zip must still be reported as a zip.
    with open(path, "rb") as handle:
        return path.suffix.lower() == ".zip" or handle.read(4) == b"PK\x03\x04"


def _from_directory(folder, staging):
    """Each file as name, name.gz, or stem.zip (as the competition zip holds training and test)."""
    for name in REQUIRED_COLUMNS:
        candidates = [folder / name, folder / f"{name}.gz"]
        zipped = folder / f"{Path(name).stem}.zip"
        found = next((candidate for candidate in candidates if candidate.is_file()), None)
        if found:
            _copy_file(found, staging / name)
        elif zipped.is_file():
            _copy_from_zip(zipped, name, staging / name)
        elif name in EMPTY:
            _write_empty(staging, name, f"{folder} has no {name}, {name}.gz or {zipped.name}")
        else:
            raise FetchError(f"{folder}: no {name}, {name}.gz or {zipped.name}")


def _from_zip(archive, staging, label=None):
    """The competition zip: training.zip and test.zip (one CSV each), IdLookupTable.csv, ..."""
    label = label or str(archive)
    with _reading(label), zipfile.ZipFile(archive) as outer:
        for name in REQUIRED_COLUMNS:
            zipped = f"{Path(name).stem}.zip"
            member = _member(outer, name)
            if member:
                _copy_stream(outer.open(member), staging / name, f"{label}:{member}")
                continue
            member = _member(outer, zipped)
            if not member and name in EMPTY:
                _write_empty(staging, name, f"{label} has no member {name} or {zipped}")
                continue
            if not member:
                raise FetchError(f"{label}: no member {name} or {zipped} (it holds {', '.join(outer.namelist())})")
            # A zip inside a zip: unpack the inner one next to the output first, then read it.
            inner = staging / f".{zipped}"
            _copy_stream(outer.open(member), inner, f"{label}:{member}")
            _copy_from_zip(inner, name, staging / name, label=f"{label}:{member}")
            inner.unlink()


def _from_training_only(path, staging):
    """A lone training.csv(.gz), e.g. a face set in the competition format: no test set to predict."""
    _copy_file(path, staging / "training.csv")
    for name in EMPTY:
        _write_empty(staging, name, f"{path} holds only training data")


def _write_empty(staging, name, reason):
    """A header-only test.csv or IdLookupTable.csv for a source without one: training needs neither."""
    (staging / name).write_text(EMPTY[name])
    message = f"{reason}: {name} is written header-only, so the submission will be empty"
    warnings.warn(message, UserWarning, stacklevel=2)
    log(f"warning: {message}")


def _from_kaggle(competition, staging):
    log(f"downloading competition {competition} with the kaggle package")
    download = staging / ".download"
    download.mkdir()
    download_competition(competition, str(download))
    archives = sorted(download.glob("*.zip"))
    if not archives:
        raise FetchError(f"kaggle download of {competition} left no zip in {download} "
                         f"(it holds {sorted(p.name for p in download.iterdir())})")
    _from_zip(archives[0], staging, label=f"kaggle:{archives[0].name}")
    shutil.rmtree(download)


def download_competition(competition, dest_dir):
    """The competition zip into dest_dir through the kaggle package, which finds the credentials
    itself. This is the network call; tests that need a download replace it."""
    # Imported here: importing kaggle authenticates, which needs its configuration directory.
    from kaggle.api.kaggle_api_extended import KaggleApi

    rules = f"https://www.kaggle.com/competitions/{competition}/rules"
    api = KaggleApi()
    try:
        api.authenticate()
    except SystemExit as error:  # kaggle prints where it looked, then calls exit(1)
        raise FetchError(
            "source kaggle: the kaggle package found no credentials (its help is above). Export "
            "KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY, or save the kaggle.json from "
            f"https://www.kaggle.com/settings/api as {api.config}; and accept the rules at {rules}") from error
    try:
        api.competition_download_files(competition, path=dest_dir, quiet=False)
    except Exception as error:  # HTTP 401/403 for rejected keys or rules not accepted, 404 for a wrong name
        network = _network_fault(error)
        if network:
            raise FetchError(f"kaggle download of {competition} failed: {network}. Check the network connection "
                             f"(and HTTPS_PROXY, if one is set), then retry") from error
        raise FetchError(f"kaggle download of {competition} failed: {error}; check the credentials and the name, "
                         f"and accept the rules at {rules}") from error


def _network_fault(error):
    """What kept the request from reaching Kaggle at all (DNS, refused, timed out), or None when Kaggle
    answered: only an answer can mean wrong credentials, a wrong name or rules not accepted."""
    import requests  # the kaggle package's HTTP client

    unreachable = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError)
    found = None
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, socket.gaierror):
            return f"the network could not be reached: a host name could not be resolved (DNS: {error})"
        if isinstance(error, unreachable):
            found = found or f"the network could not be reached ({type(error).__name__})"
        error = error.__cause__ or error.__context__
    return found


# ---------------------------------------------------------------- copying


@contextlib.contextmanager
def _reading(label):
    """Turn the ways a compressed file can be broken into one FetchError naming the file."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, gzip.BadGzipFile, NotImplementedError) as error:
        raise FetchError(f"{label}: corrupt, truncated or unreadable archive ({type(error).__name__}: {error})") from error


def _member(archive, name):
    """The member of an open zip whose base name is `name` (Kaggle zips have no folders, others may)."""
    for member in archive.namelist():
        if PurePosixPath(member).name == name and not member.startswith("__MACOSX/"):
            return member
    return None


def _copy_stream(stream, target, label):
    log(f"extracting {label} -> {target.name}")
    with _reading(label), stream, open(target, "wb") as handle:
        shutil.copyfileobj(stream, handle, fileio.CHUNK_BYTES)


def _copy_file(source, target):
    """A plain or gzip file (told apart by its magic bytes), decompressed as it streams."""
    _copy_stream(fileio.open_text(source).detach(), target, str(source))


def _copy_from_zip(archive, name, target, label=None):
    label = label or str(archive)
    with _reading(label), zipfile.ZipFile(archive) as opened:
        member = _member(opened, name)
        if not member:
            raise FetchError(f"{label}: no member {name} (it holds {', '.join(opened.namelist())})")
        _copy_stream(opened.open(member), target, f"{label}:{member}")


# ---------------------------------------------------------------- checking


def _expected_digests(sha256):
    expected = dict(sha256 or {})
    unknown = sorted(set(expected) - set(REQUIRED_COLUMNS))
    if unknown:
        raise FetchError(f"fetch.sha256 names {unknown}; it may pin only {', '.join(REQUIRED_COLUMNS)}")
    return {name: str(digest).strip().lower() for name, digest in expected.items()}


def _validate(folder, expected):
    for name, required in REQUIRED_COLUMNS.items():
        _check_columns(folder / name, required)
    digests = {name: fileio.sha256_of(folder / name) for name in REQUIRED_COLUMNS}
    log("sha256 of the files (pin them under fetch.sha256 in params.yaml):")
    for name, digest in digests.items():
        print(f"  {name}: {digest}", file=sys.stderr)
    for name, digest in expected.items():
        if digests[name] != digest:
            raise FetchError(f"{name}: sha256 is {digests[name]}, fetch.sha256 expects {digest}")


def _check_columns(path, required):
    if not path.is_file():
        raise FetchError(f"{path.name}: missing from the fetched files")
    with open(path, "rb") as handle:
        first = handle.readline(HEADER_LIMIT)
        has_rows = bool(handle.readline(2).strip())
    if not first.strip():
        raise FetchError(f"{path.name}: empty file")
    header = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    columns = {column.strip().strip('"') for column in header.split(",")}
    missing = [column for column in required if column not in columns]
    if missing:
        raise FetchError(f"{path.name}: header lacks columns {missing} (it starts {header[:80]!r})")
    if path.name == "training.csv" and not has_rows:
        raise FetchError(f"{path.name}: header only, no training rows")


