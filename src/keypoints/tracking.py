"""MLflow bookkeeping. Tracking must never cost a trained model: every call here warns and carries on
when the store cannot be reached, and the DVC outputs are written regardless."""
import hashlib
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

from keypoints import fileio


def project_root():
    # DVC sets DVC_ROOT to the parent repository even for queued and --temp experiments, which run
    # in a copy under .dvc/tmp: the store must be the parent's, not the copy's.
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri():
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


# How long a tracking server may take to accept a connection. MLflow's own client retries an
# unreachable server for minutes, silently, in every stage: check once, fast, and go on without it.
CONNECT_SECONDS = 3


def check_reachable(uri):
    """Raise ConnectionError unless the http(s) server of `uri` (or the proxy that reaches it)
    accepts a TCP connection within CONNECT_SECONDS; other stores (sqlite, file) are not checked."""
    if not is_tracking_server(uri):
        return
    parsed = urllib.parse.urlparse(uri)
    target = parsed
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname or ""):
        target = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((target.hostname, port), timeout=CONNECT_SECONDS):
            pass
    except OSError as error:
        raise ConnectionError(f"the server is unreachable: {target.hostname}:{port} did not accept a "
                              f"connection within {CONNECT_SECONDS} s ({error})") from error


def is_tracking_server(uri):
    return urllib.parse.urlparse(uri).scheme in ("http", "https")


def artifact_location():
    """Where a new experiment's artifacts go: for a store the stage opens itself (SQLite, a database
    URI), the project's mlartifacts/, so queued and --temp runs share it; for a tracking server, None:
    the server's own --artifacts-destination (or --default-artifact-root) decides, and with proxied
    artifacts the clients upload through it and need no credentials for the artifact store."""
    if is_tracking_server(tracking_uri()):
        return None
    return (project_root() / "mlartifacts").as_uri()


def shown_uri(uri):
    """`uri` without a password (http://user:secret@host -> http://user:***@host), for printed lines:
    a stage's log must not carry a credential."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.password is None:
        return uri
    netloc = f"{parsed.username}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
    return urllib.parse.urlunparse(parsed._replace(netloc=netloc))


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def files_checksum(paths):
    """One short sha256 over the files' names and sha256s (sorted), so a run records exactly which data it saw."""
    listing = "".join(f"{path.name} {fileio.sha256_of(path)}\n" for path in sorted(Path(p) for p in paths))
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


def run_tags(stage, params_hash="", data_checksum=""):
    experiment_name = os.environ.get("DVC_EXP_NAME", "")
    tags = {
        "stage": stage,
        "git_commit": git_commit(),
        "dvc_exp_name": experiment_name,
        "dvc_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
        "params_hash": params_hash,
        "data_checksum": data_checksum,
    }
    return {key: value for key, value in tags.items() if value}


def run_name(stage):
    experiment_name = os.environ.get("DVC_EXP_NAME")
    return f"{experiment_name}/{stage}" if experiment_name else stage


def _retry(call, attempts=8):
    # Two queued experiments share one SQLite file; a writer may briefly hold the lock.
    for attempt in range(attempts):
        try:
            return call()
        except Exception as error:  # MLflow wraps sqlite errors in several exception types
            if "locked" not in str(error).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt)


class Run:
    """One MLflow run addressed by id; each method is a no-op once the store has failed.

    Used as a context manager, a run the block leaves by an exception is marked FAILED (KILLED for
    Ctrl-C), so that no failed stage leaves a run RUNNING forever."""

    def __init__(self, experiment, stage, params_hash="", data_checksum="", resume_run_id=None):
        self.run_id = None
        self.client = None
        self.finished = False
        self.tags = run_tags(stage, params_hash, data_checksum)
        try:
            from mlflow.tracking import MlflowClient

            check_reachable(tracking_uri())
            self.client = MlflowClient(tracking_uri())
            experiment_id = _retry(lambda: self._experiment_id(experiment))
            if resume_run_id and self._exists(resume_run_id):
                self.run_id = resume_run_id
                _retry(lambda: self.client.update_run(resume_run_id, status="RUNNING"))
            else:
                run = _retry(
                    lambda: self.client.create_run(experiment_id, tags=self.tags, run_name=run_name(stage))
                )
                self.run_id = run.info.run_id
            print(f"MLflow run {self.run_id} in {shown_uri(tracking_uri())}", file=sys.stderr)
        except Exception as error:
            self._fail(error)

    def __enter__(self):
        return self

    def __exit__(self, error_type, error, traceback):
        if error_type is not None and not self.finished:
            self.finish("KILLED" if issubclass(error_type, KeyboardInterrupt) else "FAILED")
        return False

    def _experiment_id(self, name):
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifact_location())
        except Exception:
            # Another process created it between our lookup and create.
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _exists(self, run_id):
        try:
            self.client.get_run(run_id)
            return True
        except Exception:
            return False

    def _fail(self, error):
        warnings.warn(
            f"MLflow tracking at {shown_uri(tracking_uri())} failed ({type(error).__name__}: {error}); "
            "training and DVC outputs continue without it",
            RuntimeWarning,
            stacklevel=3,
        )
        self.run_id = None

    def _call(self, method, *args, **kwargs):
        if self.run_id is None:
            return
        try:
            _retry(lambda: getattr(self.client, method)(self.run_id, *args, **kwargs))
        except Exception as error:
            self._fail(error)

    def log_params(self, params):
        from mlflow.entities import Param

        self._call("log_batch", params=[Param(str(k), str(v)[:6000]) for k, v in params.items()])

    def log_metrics(self, metrics, step=0):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        self._call("log_batch", metrics=rows)

    def logged_steps(self, metric):
        if self.run_id is None:
            return []
        try:
            return [m.step for m in _retry(lambda: self.client.get_metric_history(self.run_id, metric))]
        except Exception as error:
            self._fail(error)
            return []

    def log_artifact(self, path, artifact_path=None):
        self._call("log_artifact", str(path), artifact_path)

    def log_model_directory(self, directory, artifact_path):
        """Upload a saved MLflow model directory under `artifact_path`; its artifact URI, the source a
        registered version points at. Unlike the other methods it raises: registering needs it done."""
        _retry(lambda: self.client.log_artifacts(self.run_id, str(directory), artifact_path))
        return f"{_retry(lambda: self.client.get_run(self.run_id)).info.artifact_uri}/{artifact_path}"

    def finish(self, status="FINISHED"):
        self.finished = True
        self._call("set_terminated", status=status)
