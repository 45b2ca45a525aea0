"""Real servers on 127.0.0.1 for the team tests (README: Working as a team): a throwaway PostgreSQL
cluster, an S3-compatible store (moto's standalone server, as MLflow's and DVC's own tests use) and an
MLflow tracking server backed by both. Each fixture owns its process and stops it, even on failure."""
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import free_port, wait_until_serving

MLFLOW_BUCKET, DVC_BUCKET = "keypoints-mlflow", "keypoints-dvc"
# The tracking server's own credentials for the artifact store: distinctive, so that the secret test
# can tell that none of them reached a client, a run or a file.
SERVER_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAKEYPOINTS15SERVER", "AWS_SECRET_ACCESS_KEY": "srv15-secret-4f9c-never-in-a-client",
                      "AWS_DEFAULT_REGION": "us-east-1"}


def postgres_bin_dir():
    """The directory of PostgreSQL's initdb and pg_ctl (Debian puts them in /usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda path: int(path.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise AssertionError("the team tests need PostgreSQL's server binaries (initdb, pg_ctl): "
                         "apt-get install postgresql (.ci/run installs it)")


def server_user():
    """Who runs PostgreSQL: it refuses to run as root, and CI runs as root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise AssertionError("running as root, and there is neither a postgres nor a nobody user to run PostgreSQL as")


def as_user(user, command):
    return command if user is None else ["runuser", "-u", user.pw_name, "--", *command]


def checked(command, what):
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL cluster with a database `mlflow`, trust auth on 127.0.0.1 only; its URL."""
    binaries, user = postgres_bin_dir(), server_user()
    # Not under pytest's tmp_path: that is private to root, and the server user must reach its files.
    directory = Path(tempfile.mkdtemp(prefix="keypoints-postgres-"))
    data, port = directory / "data", free_port()
    if user is not None:
        os.chown(directory, user.pw_uid, user.pw_gid)
    started = False
    try:
        checked(as_user(user, [str(binaries / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust",
                               "-E", "UTF8", "--no-sync"]), "initdb")
        options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        checked(as_user(user, [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(directory / "server.log"),
                               "-o", options, "-w", "-t", "60", "start"]), "pg_ctl start")
        started = True
        checked(as_user(user, [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow"]),
                "createdb")
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        if started:
            subprocess.run(as_user(user, [str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


class Server:
    """A server process in its own session, its output in a log file; stop() ends the whole group."""

    def __init__(self, command, what, log, env=None):
        self.what, self.log = what, Path(log)
        with self.log.open("w") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)

    def wait_until_serving(self, url, timeout):
        try:
            wait_until_serving(url, self.process, self.what, timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.log.read_text()[-4000:]}") from None

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


def s3_client(endpoint, credentials=SERVER_CREDENTIALS):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """moto's S3-compatible server on 127.0.0.1 with the buckets for MLflow's artifacts and DVC's data."""
    port = free_port()
    server = Server([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                    "moto_server", tmp_path_factory.mktemp("s3") / "moto.log")
    endpoint = f"http://127.0.0.1:{port}"
    try:
        server.wait_until_serving(f"{endpoint}/moto-api/", timeout=60)
        client = s3_client(endpoint)
        for bucket in (MLFLOW_BUCKET, DVC_BUCKET):
            client.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def shared_mlflow(postgres_url, s3_endpoint, tmp_path_factory):
    """`mlflow server` with its runs and registry in PostgreSQL and its artifacts in S3, proxied: the
    clients upload through it and hold no S3 credentials. Its URL."""
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MLFLOW_"))}
    environment.update(SERVER_CREDENTIALS, MLFLOW_S3_ENDPOINT_URL=s3_endpoint)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres_url,
               "--artifacts-destination", f"s3://{MLFLOW_BUCKET}/artifacts",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    server = Server(command, "mlflow server", tmp_path_factory.mktemp("mlflow-server") / "server.log", env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_until_serving(f"{url}/health", timeout=180)
        yield url
    finally:
        server.stop()
