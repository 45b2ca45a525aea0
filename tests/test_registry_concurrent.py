"""The registry under concurrent writers, on a real PostgreSQL store: two clones (or a queue with
several workers) registering at once must each end registered, with the better version champion."""
import threading

import pytest
from mlflow.tracking import MlflowClient

from servers import postgres_url  # noqa: F401
from keypoints import registry

WRITERS = 6


@pytest.fixture
def fresh_store(postgres_url, request):  # noqa: F811
    """A database of its own in the session's PostgreSQL cluster, so that no other test's runs or
    registered models are in it; the tracking URI of MLflow's SQLAlchemy store on it."""
    import psycopg

    name = "registry_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return postgres_url.rsplit("/", 1)[0] + "/" + name


def all_at_once(work, count=WRITERS):
    """Run work(index) in `count` threads released together; the results, or the first error raised."""
    barrier, results, errors = threading.Barrier(count), [None] * count, []

    def worker(index):
        try:
            barrier.wait(timeout=60)
            results[index] = work(index)
        except Exception as error:  # noqa: BLE001 - handed to the test to fail on
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return results


def test_writers_setting_a_new_alias_at_once_all_succeed(fresh_store, tmp_path):
    """The first write of an alias is an INSERT in MLflow's store (session.merge): writers that all read
    "no such alias" race to insert it, and the losers got a unique-key violation (BAD_REQUEST) until
    registry.set_alias retried them."""
    client = MlflowClient(fresh_store)
    versions = [registry.register(client, "race", str(tmp_path), None, {}) for _ in range(WRITERS)]
    for round_ in range(5):
        alias = f"alias-{round_}"
        all_at_once(lambda index: registry.set_alias(MlflowClient(fresh_store), "race", alias, versions[index]))
        assert str(client.get_model_version_by_alias("race", alias).version) in versions


def test_registrations_at_once_all_register_and_the_best_is_champion(fresh_store, tmp_path):
    rmses = [2.0 + 0.1 * ((index * 7) % WRITERS) for index in range(WRITERS)]

    def register_and_promote(index):
        client = MlflowClient(fresh_store)
        tags = {"data_checksum": "held-out", "merged_rmse": repr(rmses[index])}
        version = registry.register(client, "keypoints", str(tmp_path), None, tags)
        return version, registry.promote(client, "keypoints", version, "held-out", rmses[index])

    outcomes = all_at_once(register_and_promote)
    client = MlflowClient(fresh_store)
    assert len({version for version, _ in outcomes}) == WRITERS
    best = min(range(WRITERS), key=rmses.__getitem__)
    champion = client.get_model_version_by_alias("keypoints", "champion")
    assert str(champion.version) == outcomes[best][0], (champion.version, outcomes)
    # Each record names the version that ended champion, or one that was champion when it finished.
    assert outcomes[best][1]["champion_moved"] and outcomes[best][1]["champion_version"] == outcomes[best][0]
