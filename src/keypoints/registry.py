"""The MLflow Model Registry: each registered predictor becomes the `candidate`; `champion` moves to it
only when it beats the champion on the same held-out data.

Like tracking, the registry never costs a DVC output: a store that is down or has no registry warns,
and the stage's record says why nothing was registered.
"""
import math
import sys
import time
import warnings

CANDIDATE, CHAMPION = "candidate", "champion"
# Version tags the champion rule reads; the RMSEs are the held-out ones of metrics/evaluate.json.
RMSE_KEYS = ("merged_rmse", "model_8_rmse", "model_30_rmse")


def version_tags(run_tags, metrics):
    """The tags of a model version: the run's provenance (git commit, DVC experiment, data checksum)
    and the held-out RMSEs."""
    tags = {key: value for key, value in run_tags.items() if key != "stage"}
    tags.update({key: repr(float(metrics[key])) for key in RMSE_KEYS})
    return tags


def ensure_registered_model(client, name):
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(name, description="facial keypoints: model_8 and model_30 merged "
                                                              "(keypoints.serving)")
        except MlflowException as raced:
            # Two queued experiments may both create it; the second finds it made.
            if raced.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def current_champion(client, name):
    """The version the alias `champion` points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def _rmse(tags):
    try:
        value = float(tags.get("merged_rmse", "nan"))
    except ValueError:
        return math.nan
    return value


def champion_verdict(champion, data_checksum, merged_rmse):
    """(whether champion moves to the new version, why) under the rule: it moves only if there is no
    champion, or the new merged RMSE is lower than the champion's on the same held-out data."""
    if champion is None:
        return True, "no champion yet: the first registered version becomes it"
    tags = champion.tags or {}
    held_out = tags.get("data_checksum")
    if held_out != data_checksum:
        return False, (f"champion v{champion.version} was scored on other held-out data (data_checksum "
                       f"{held_out or 'unknown'}, this one {data_checksum}): the RMSEs are not comparable")
    theirs = _rmse(tags)
    if not math.isfinite(theirs):
        return False, f"champion v{champion.version} has no merged_rmse tag to compare with"
    if merged_rmse < theirs:
        return True, f"merged RMSE {merged_rmse:.4f} beats champion v{champion.version}'s {theirs:.4f}"
    return False, f"merged RMSE {merged_rmse:.4f} does not beat champion v{champion.version}'s {theirs:.4f}"


def set_alias(client, name, alias, version, attempts=5):
    """Point `alias` at `version`, retrying a write that lost a race. MLflow's SQL store writes an alias
    as a read-then-insert (session.merge): when two registrations set a new alias at once, both read
    "none" and the second insert breaks the unique key (BAD_REQUEST over REST). The write is
    idempotent, and by the retry the row exists and the write becomes an update."""
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            return client.set_registered_model_alias(name, alias, version)
        except MlflowException as error:
            if attempt == attempts - 1 or error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            time.sleep(0.05 * 2 ** attempt)


def register(client, name, source, run_id, tags):
    """A new version of `name` from the model at `source`, tagged, with the alias candidate; its number."""
    ensure_registered_model(client, name)
    version = client.create_model_version(name, source, run_id=run_id, tags=tags, await_creation_for=0).version
    set_alias(client, name, CANDIDATE, version)
    return str(version)


def settle_champion(client, name, data_checksum, rounds=20):
    """Point `champion` at the lowest merged RMSE of the versions scored on `data_checksum`, if it points
    at one of them; the version it ends at. Two experiments registering at once (two clones, a queue
    with several workers) can each read the champion before the other moves it, and the slower write
    would win whatever its RMSE: each re-reads after its own write until the alias agrees.

    Every writer moves the alias once to its own version, then only ever to the best it sees, so the
    writes stop; but with several writers a re-read may find another's write each time. So the rounds
    are many and wait longer each time (~8 s in all at the most). Five rounds without a wait could run
    out under six writers at once: in one CI run the best version ended champion, but its own record
    named another."""
    for round_ in range(rounds):
        if round_:
            time.sleep(min(0.02 * 2**round_, 0.5))
        champion = current_champion(client, name)
        if champion is None or (champion.tags or {}).get("data_checksum") != data_checksum:
            return champion
        scored = [candidate for candidate in client.search_model_versions(f"name='{name}'")
                  if (candidate.tags or {}).get("data_checksum") == data_checksum
                  and math.isfinite(_rmse(candidate.tags))]
        best = min(scored, key=lambda candidate: (_rmse(candidate.tags), int(candidate.version)))
        if _rmse(best.tags) >= _rmse(champion.tags or {}):
            return champion
        set_alias(client, name, CHAMPION, best.version)
    return current_champion(client, name)


def promote(client, name, version, data_checksum, merged_rmse):
    """Apply the champion rule to a registered version: the record of what happened."""
    champion = current_champion(client, name)
    moved, reason = champion_verdict(champion, data_checksum, merged_rmse)
    if moved:
        set_alias(client, name, CHAMPION, version)
        settled = settle_champion(client, name, data_checksum)
        if settled is not None and str(settled.version) != str(version):
            moved, champion = False, settled
            reason = (f"{reason}, but v{settled.version}, registered at the same time, scores "
                      f"{_rmse(settled.tags):.4f}: it is champion")
    return {
        "champion_moved": moved,
        "champion_version": version if moved else (str(champion.version) if champion else None),
        "reason": reason,
    }


def publish(run, model_dir, name, metrics, data_checksum):
    """Log the pyfunc model directory to the MLflow run, register it and apply the champion rule; the
    record for models/registered.json. A failing store or registry warns and is recorded, not raised."""
    record = {"model_name": name, "registered": False, "version": None, "aliases": [],
              "merged_rmse": float(metrics["merged_rmse"]), "data_checksum": data_checksum}
    if run.run_id is None:
        return {**record, "reason": "the MLflow store is unreachable (see the warning above): nothing registered"}
    try:
        source = run.log_model_directory(model_dir, "predictor")
        version = register(run.client, name, source, run.run_id, version_tags(run.tags, metrics))
        outcome = promote(run.client, name, version, data_checksum, float(metrics["merged_rmse"]))
    except Exception as error:  # MLflow raises many types for a store that is down or lacks a registry
        warnings.warn(f"MLflow Model Registry failed ({type(error).__name__}: {error}); the model is not "
                      "registered, the DVC outputs are written", RuntimeWarning, stacklevel=2)
        return {**record, "reason": f"registry failed: {type(error).__name__}: {str(error)[:300]}"}
    aliases = [CANDIDATE] + ([CHAMPION] if outcome["champion_moved"] else [])
    print(f"registered {name} v{version} ({', '.join(aliases)}): {outcome['reason']}", file=sys.stderr)
    return {**record, "registered": True, "version": version, "aliases": aliases, **outcome}
