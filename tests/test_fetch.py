"""keypoints.fetch on tiny competition files built here: each source, each way a source can be broken."""
import gzip
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

import keypoints.fetch as fetch_module
from keypoints.columns import PIXELS, TRAINING_COLUMNS
from keypoints import fileio
from keypoints.fetch import FetchError, fetch
from keypoints.fileio import sha256_of

NAMES = ["training.csv", "test.csv", "IdLookupTable.csv"]


def competition_files(rows=3, seed=0):
    """{name: bytes} of a tiny training.csv, test.csv and IdLookupTable.csv; `seed` changes every row."""
    training = [",".join(TRAINING_COLUMNS)]
    for row in range(rows):
        # Missing labels are empty fields, as in the real data.
        points = ["" if (row and column % 7 == 3) else f"{10 + seed + row + column * 0.5:.4f}" for column in range(30)]
        training.append(",".join(points + [pixels(row + seed)]))
    test = ["ImageId,Image"] + [f"{image_id},{pixels(image_id + seed)}" for image_id in (1, 2)]
    lookup = ["RowId,ImageId,FeatureName,Location"]
    lookup += [f"{row_id},1,{name},{seed or ''}" for row_id, name in enumerate(["left_eye_center_x", "nose_tip_y"], 1)]
    return {name: ("\n".join(lines) + "\n").encode() for name, lines in zip(NAMES, [training, test, lookup])}


def pixels(seed):
    return " ".join(str((seed * 31 + index) % 256) for index in range(PIXELS))


def write_directory(folder, files, gz=()):
    """The files as plain CSVs, except those named in `gz`, written as name.gz."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if name in gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def zip_bytes(members, compression=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def competition_zip(path, files, leave_out=()):
    """The zip Kaggle serves: training.zip and test.zip (each one CSV), IdLookupTable.csv, SampleSubmission.csv."""
    members = {
        "IdLookupTable.csv": files["IdLookupTable.csv"],
        "SampleSubmission.csv": b"RowId,Location\n1,0\n",
        "training.zip": zip_bytes({"training.csv": files["training.csv"]}),
        "test.zip": zip_bytes({"test.csv": files["test.csv"]}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zip_bytes({name: data for name, data in members.items() if name not in leave_out}))
    return path


def contents(folder):
    return {path.name: path.read_bytes() for path in Path(folder).iterdir()}


def leftovers(folder):
    """Temporary files and directories (atomic writes name them .something) left in `folder`."""
    return sorted(path.name for path in Path(folder).iterdir() if path.name.startswith("."))


@pytest.fixture
def files():
    return competition_files()


@pytest.fixture
def out(tmp_path):
    return tmp_path / "data" / "raw"


@pytest.fixture(autouse=True)
def no_kaggle_config(tmp_path, monkeypatch):
    """This machine's Kaggle credentials must neither help nor hurt a test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / "kaggle-config"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------- sources that work


def test_directory_of_plain_csvs(tmp_path, out, files):
    fetch("path", out, path=write_directory(tmp_path / "download", files))
    assert contents(out) == files
    assert leftovers(out.parent) == []


def test_directory_of_gzip_csvs(tmp_path, out, files):
    fetch("path", out, path=write_directory(tmp_path / "download", files, gz=NAMES))
    assert contents(out) == files


def test_directory_of_the_unpacked_competition_zip(tmp_path, out, files):
    folder = tmp_path / "download"
    with zipfile.ZipFile(competition_zip(tmp_path / "c.zip", files)) as archive:
        archive.extractall(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["IdLookupTable.csv", "SampleSubmission.csv", "test.zip", "training.zip"]
    fetch("path", out, path=folder)
    assert contents(out) == files


def test_competition_zip_with_nested_zips(tmp_path, out, files, capsys):
    fetch("path", out, path=competition_zip(tmp_path / "facial-keypoints-detection.zip", files))
    assert contents(out) == files  # no inner zip or SampleSubmission.csv left beside them
    assert leftovers(out.parent) == []
    log = capsys.readouterr().err
    assert "facial-keypoints-detection.zip:training.zip:training.csv -> training.csv" in log
    for name, data in files.items():  # the digests a user can pin
        assert f"{name}: {hashlib.sha256(data).hexdigest()}" in log


def test_relative_path_is_resolved_against_the_working_directory(tmp_path, out, files, monkeypatch):
    write_directory(tmp_path / "project" / "downloads", files)
    monkeypatch.chdir(tmp_path / "project")
    fetch("path", "raw", path="downloads")
    assert contents(tmp_path / "project" / "raw") == files


@pytest.mark.parametrize("kind", ["training.csv.gz", "directory", "zip"])
def test_a_source_without_test_and_lookup_files_warns_and_writes_them_header_only(tmp_path, out, files, capsys, kind):
    if kind == "training.csv.gz":
        source = tmp_path / "faces" / "training.csv.gz"
        source.parent.mkdir()
        source.write_bytes(gzip.compress(files["training.csv"]))
    elif kind == "directory":
        source = write_directory(tmp_path / "in", {"training.csv": files["training.csv"]})
    else:
        source = competition_zip(tmp_path / "in" / "facial-keypoints-detection.zip", files,
                                 leave_out=["test.zip", "IdLookupTable.csv"])
    with pytest.warns(UserWarning, match="test.csv is written header-only"):
        fetch("path", out, path=source)
    assert contents(out) == {
        "training.csv": files["training.csv"],
        "test.csv": b"ImageId,Image\n",
        "IdLookupTable.csv": b"RowId,ImageId,FeatureName,Location\n",
    }
    err = capsys.readouterr().err
    assert "IdLookupTable.csv is written header-only" in err and "submission will be empty" in err


def fake_download(files, calls):
    def download_competition(competition, dest_dir):
        calls.append(competition)
        competition_zip(Path(dest_dir) / f"{competition}.zip", files)
    return download_competition


@pytest.mark.parametrize("credentials", ["environment", "kaggle.json"])
def test_kaggle_source(tmp_path, out, files, monkeypatch, credentials):
    if credentials == "environment":
        monkeypatch.setenv("KAGGLE_USERNAME", "someone")
        monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    else:
        config = tmp_path / "home" / "kaggle-config"
        config.mkdir()
        (config / "kaggle.json").write_text('{"username": "someone", "key": "0123456789abcdef"}')
    calls = []
    monkeypatch.setattr(fetch_module, "download_competition", fake_download(files, calls))
    fetch("kaggle", out, competition="facial-keypoints-detection")
    assert calls == ["facial-keypoints-detection"]
    assert contents(out) == files  # the downloaded zip is not kept in the output
    assert leftovers(out.parent) == []


def test_pinned_digests_that_match_pass(tmp_path, out, files):
    pinned = {name: hashlib.sha256(data).hexdigest().upper() for name, data in files.items()}
    fetch("path", out, path=write_directory(tmp_path / "download", files), sha256=pinned)
    assert contents(out) == files


def test_a_second_fetch_replaces_the_output_whole(tmp_path, out, files):
    fetch("path", out, path=write_directory(tmp_path / "first", files))
    (out / "stale.txt").write_text("from an older run")
    newer = competition_files(rows=5, seed=1)
    assert newer["training.csv"] != files["training.csv"]
    fetch("path", out, path=competition_zip(tmp_path / "second.zip", newer))
    assert contents(out) == newer
    assert leftovers(out.parent) == []


def test_sha256_of_streams_a_file(tmp_path, monkeypatch):
    data = bytes(range(256)) * 9000
    monkeypatch.setattr(fileio, "CHUNK_BYTES", 1000)  # many chunks, one digest
    (tmp_path / "blob").write_bytes(data)
    assert sha256_of(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- sources that fail, leaving no trace
# Each case builds a broken source and returns (fetch's arguments, the error text expected).


def truncated_zip(tmp_path, files, monkeypatch):
    archive = competition_zip(tmp_path / "in" / "facial-keypoints-detection.zip", files)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    return dict(source="path", path=archive), r"facial-keypoints-detection\.zip: corrupt, truncated"


def random_bytes_zip(tmp_path, files, monkeypatch):
    archive = tmp_path / "in" / "download.zip"
    archive.parent.mkdir()
    archive.write_bytes(bytes((index * 7919) % 251 for index in range(5000)))
    return dict(source="path", path=archive), r"download\.zip: corrupt, truncated.*BadZipFile"


def crc_mismatch(tmp_path, files, monkeypatch):
    # Stored (uncompressed) members: a flipped byte reads fine but fails the CRC check.
    folder = write_directory(tmp_path / "in", {name: files[name] for name in NAMES[1:]})
    data = zip_bytes({"training.csv": files["training.csv"]}, zipfile.ZIP_STORED)
    position = data.index(b"left_eye_center_x")
    (folder / "training.zip").write_bytes(data[:position] + b"L" + data[position + 1:])
    return dict(source="path", path=folder), r"training\.zip:training\.csv: corrupt.*Bad CRC-32"


def truncated_gzip(tmp_path, files, monkeypatch):
    folder = write_directory(tmp_path / "in", files, gz=["test.csv"])
    gz = folder / "test.csv.gz"
    gz.write_bytes(gz.read_bytes()[:-20])
    return dict(source="path", path=folder), r"test\.csv\.gz: corrupt, truncated.*EOFError"


def missing_zip_member(tmp_path, files, monkeypatch):
    archive = competition_zip(tmp_path / "in" / "facial-keypoints-detection.zip", files, leave_out=["training.zip"])
    return dict(source="path", path=archive), r"facial-keypoints-detection\.zip: no member training\.csv or training\.zip"


def missing_inner_member(tmp_path, files, monkeypatch):
    folder = write_directory(tmp_path / "in", {name: files[name] for name in NAMES[1:]})
    (folder / "training.zip").write_bytes(zip_bytes({"train.csv": files["training.csv"]}))
    return dict(source="path", path=folder), r"training\.zip: no member training\.csv \(it holds train\.csv\)"


def missing_file_in_directory(tmp_path, files, monkeypatch):
    folder = write_directory(tmp_path / "in", {name: files[name] for name in NAMES[1:]})
    return dict(source="path", path=folder), r"no training\.csv, training\.csv\.gz or training\.zip"


def wrong_columns(tmp_path, files, monkeypatch):
    spoiled = dict(files, **{"training.csv": files["training.csv"].replace(b"nose_tip_y", b"nose_y", 1)})
    return dict(source="path", path=write_directory(tmp_path / "in", spoiled)), r"training\.csv: header lacks columns \['nose_tip_y'\]"


def wrong_lookup_columns(tmp_path, files, monkeypatch):
    spoiled = dict(files, **{"IdLookupTable.csv": b"RowId,Feature,Location\n1,x,\n"})
    return (dict(source="path", path=write_directory(tmp_path / "in", spoiled)),
            r"IdLookupTable\.csv: header lacks columns \['ImageId', 'FeatureName'\]")


def empty_file(tmp_path, files, monkeypatch):
    spoiled = dict(files, **{"test.csv": b""})
    return dict(source="path", path=write_directory(tmp_path / "in", spoiled)), r"test\.csv: empty file"


def header_only_training(tmp_path, files, monkeypatch):
    source = tmp_path / "in" / "training.csv"
    source.parent.mkdir()
    source.write_bytes(files["training.csv"].split(b"\n")[0] + b"\n")
    return dict(source="path", path=source), r"training\.csv: header only"


def checksum_mismatch(tmp_path, files, monkeypatch):
    actual = hashlib.sha256(files["test.csv"]).hexdigest()
    return (dict(source="path", path=write_directory(tmp_path / "in", files), sha256={"test.csv": "ab" * 32}),
            rf"test\.csv: sha256 is {actual}, fetch\.sha256 expects {'ab' * 32}")


def unknown_checksum_name(tmp_path, files, monkeypatch):
    return (dict(source="path", path=write_directory(tmp_path / "in", files), sha256={"train.csv": "ab" * 32}),
            r"fetch\.sha256 names \['train\.csv'\]")


def empty_path(tmp_path, files, monkeypatch):
    return dict(source="path", path=""), r"needs fetch\.path"


def nonexistent_path(tmp_path, files, monkeypatch):
    return dict(source="path", path=tmp_path / "nowhere.zip"), r"nowhere\.zip does not exist"


def unknown_source(tmp_path, files, monkeypatch):
    return dict(source="s3"), r"'s3'; valid sources: synthetic, path, kaggle"


def missing_credentials(tmp_path, files, monkeypatch):
    """The real kaggle package looks for credentials and finds none; only its download is replaced."""
    from kaggle.api.kaggle_api_extended import KaggleApi

    def must_not_download(*args, **kwargs):
        raise AssertionError("downloaded without credentials")
    monkeypatch.setattr(KaggleApi, "competition_download_files", must_not_download)
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")  # a username alone is not enough
    return dict(source="kaggle", competition="facial-keypoints-detection"), r"KAGGLE_USERNAME and KAGGLE_KEY.*kaggle-config/kaggle\.json"


def download_without_zip(tmp_path, files, monkeypatch):
    monkeypatch.setenv("KAGGLE_API_TOKEN", "token")
    monkeypatch.setattr(fetch_module, "download_competition", lambda competition, dest_dir: None)
    return dict(source="kaggle", competition="facial-keypoints-detection"), r"kaggle download of facial-keypoints-detection left no zip"


def corrupt_download(tmp_path, files, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")

    def download_competition(competition, dest_dir):
        archive = competition_zip(Path(dest_dir) / f"{competition}.zip", files)
        archive.write_bytes(archive.read_bytes()[:-100])
    monkeypatch.setattr(fetch_module, "download_competition", download_competition)
    return dict(source="kaggle", competition="facial-keypoints-detection"), r"kaggle:facial-keypoints-detection\.zip: corrupt, truncated"


def unreachable_network(tmp_path, files, monkeypatch):
    """The real download, through a proxy whose name cannot resolve (.invalid never does): a DNS failure."""
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
    return (dict(source="kaggle", competition="facial-keypoints-detection"),
            r"the network could not be reached: a host name could not be resolved \(DNS.*HTTPS_PROXY(?!.*rules)")


FAILURES = [
    truncated_zip, random_bytes_zip, crc_mismatch, truncated_gzip, missing_zip_member, missing_inner_member,
    missing_file_in_directory, wrong_columns, wrong_lookup_columns, empty_file, header_only_training,
    checksum_mismatch, unknown_checksum_name, empty_path, nonexistent_path,
    unknown_source, missing_credentials, download_without_zip, corrupt_download, unreachable_network,
]


@pytest.mark.filterwarnings("ignore:.*submission will be empty:UserWarning")  # header_only_training
@pytest.mark.parametrize("existing", [False, True], ids=["no-output", "previous-output"])
@pytest.mark.parametrize("case", FAILURES, ids=[case.__name__ for case in FAILURES])
def test_failure_names_the_fault_and_leaves_the_output_alone(tmp_path, out, files, monkeypatch, case, existing):
    if existing:
        fetch("path", out, path=write_directory(tmp_path / "previous", competition_files(seed=2)))
        before = contents(out)
    arguments, expected_error = case(tmp_path, files, monkeypatch)
    with pytest.raises(FetchError, match=expected_error):
        fetch(out=out, **arguments)
    if existing:
        assert contents(out) == before
    else:
        assert not out.exists()
    if out.parent.exists():
        assert leftovers(out.parent) == []


@pytest.mark.parametrize("inside", ["training.csv", "."])
def test_a_source_inside_the_output_is_refused(out, files, inside):
    # Replacing the output whole would delete the source with it.
    write_directory(out, files)
    with pytest.raises(FetchError, match=r"is inside the output"):
        fetch("path", out, path=out / inside)
    assert contents(out) == files
