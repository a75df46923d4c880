"""Reads from a streaming replica (DATABASE_READ_URL) against a real primary and standby.

The module starts its own two embedded PostgreSQL servers (also when TEST_DATABASE_URL
names a server: a standby needs a primary of its own to stop and start), the standby made
with `pg_basebackup -R` (`replication.make_standby`). Each test waits for the replica to
replay what it needs; none sleeps and hopes.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg_pool import PoolTimeout
from replication import make_standby, wait_for_replay
from support import LiveServer, free_port, start_server

from contactbook import db
from contactbook.api.app import create_app
from contactbook.backup import _embedded_bin_dir
from contactbook.config import Settings
from contactbook.contacts.importer import import_csv
from contactbook.db.replica import REPLAY_LAG, prepare_to_serve, server_gone
from contactbook.embedded import EmbeddedPostgres, EmbeddedServerError
from contactbook.errors import DatabaseUnavailable
from contactbook.jobs import SEARCH_TASK
from contactbook.worker import create_celery_app

REPO = Path(__file__).resolve().parent.parent
ADMIN = {"Authorization": "Bearer replica-admin-token"}
REPLICA_LOGGER = "contactbook.db.replica"


@dataclass
class Replication:
    primary: EmbeddedPostgres
    standby: EmbeddedPostgres
    primary_url: str
    replica_url: str

    def restart_primary(self) -> None:
        _start(self.primary)

    def restart_standby(self) -> None:
        _start(self.standby)


def _start(server: EmbeddedPostgres) -> None:
    """Start a server that may be stopped; once more if the wheel's pg_ctl gave up waiting
    (10 s) on a busy machine: the second call finds the server that came up late."""
    try:
        server.start()
    except EmbeddedServerError:
        server.start()


@pytest.fixture(scope="module")
def replication(tmp_path_factory) -> Iterator[Replication]:
    home = tmp_path_factory.mktemp("replication")
    primary = EmbeddedPostgres(home / "primary")
    primary_url = primary.start()
    standby = None
    try:
        db.upgrade(primary_url)
        standby = make_standby(primary, home / "standby")
        replica_url = standby.start()
        yield Replication(primary, standby, primary_url, replica_url)
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()


@pytest.fixture
def servers(replication: Replication) -> Replication:
    """Both servers running, the contacts emptied on the primary and the replica caught up."""
    replication.restart_primary()
    replication.restart_standby()
    with psycopg.connect(replication.primary_url, autocommit=True) as conn:
        conn.execute("TRUNCATE contacts, import_runs, sync_runs RESTART IDENTITY")
    wait_for_replay(replication.primary_url, replication.replica_url)
    return replication


@pytest.fixture
def settings(servers: Replication, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        database_url=servers.primary_url,
        database_read_url=servers.replica_url,
        redis_url=None,
        contactbook_home=tmp_path / "home",
        contactbook_csv=REPO / "tests" / "data" / "empty.csv",
        contactbook_admin_token=ADMIN["Authorization"].removeprefix("Bearer "),
        db_pool_timeout=1.0,
    )


@pytest.fixture
def api(settings: Settings) -> Iterator[Callable[[], httpx.Client]]:
    """Start the API on loopback (`client = api()`), as many times as a test needs."""
    running: list[tuple[LiveServer, httpx.Client]] = []

    def start() -> httpx.Client:
        server = start_server(create_app(settings))
        client = httpx.Client(base_url=server.url, timeout=30)
        running.append((server, client))
        return client

    yield start
    for server, client in running:
        client.close()
        server.stop()


def import_people(servers: Replication, tmp_path: Path, *names: str) -> None:
    csv = tmp_path / "people.csv"
    rows = [f"{name},{name.lower()}@example.com,replica tests" for name in names]
    csv.write_text("First Name,Email,Description\n" + "\n".join(rows) + "\n", encoding="utf-8")
    import_csv(servers.primary_url, csv, source="replica test")


def found_names(client: httpx.Client, text: str) -> list[str]:
    answer = client.get("/api/v1/search", params={"text": text})
    assert answer.status_code == 200, answer.text
    return [hit["first_name"] for hit in answer.json()]


def metric(client: httpx.Client, name: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_an_import_on_the_primary_becomes_searchable_through_the_replica(
    servers: Replication, api, tmp_path: Path
) -> None:
    client = api()
    with psycopg.connect(servers.replica_url, autocommit=True) as replica:
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            import_people(servers, tmp_path, "Zebulon")
            # On the primary already, not yet replayed: the search reads the replica.
            assert found_names(client, "zebulon") == []
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")
    wait_for_replay(servers.primary_url, servers.replica_url)

    assert found_names(client, "zebulon") == ["Zebulon"]
    assert client.get("/api/v1/stats").json()["contacts"] == 1
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "replica": True}
    assert ready.json()["replication_lag_seconds"] >= 0
    assert metric(client, "contactbook_replica_up") == 1
    assert metric(client, "contactbook_replication_lag_seconds") >= 0


def test_replay_lag_is_the_age_of_the_last_replayed_transaction_while_replay_is_behind(
    servers: Replication, tmp_path: Path
) -> None:
    with psycopg.connect(servers.replica_url, autocommit=True) as replica:
        assert replica.execute(REPLAY_LAG).fetchone()[0] == 0  # caught up
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            import_people(servers, tmp_path, "Ysolde")
            with psycopg.connect(servers.primary_url) as primary:
                target = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            # Received but not replayed: lag is measured, not assumed to be zero.
            received = "SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn"
            _wait_for(lambda: replica.execute(received, (target,)).fetchone()[0])
            assert replica.execute(REPLAY_LAG).fetchone()[0] > 0
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")
    with psycopg.connect(servers.primary_url, autocommit=True) as primary:
        assert primary.execute(REPLAY_LAG).fetchone()[0] == 0  # not a standby: no lag


def test_with_the_primary_stopped_reads_answer_from_the_replica_and_writes_answer_503(
    servers: Replication, settings: Settings, api, tmp_path: Path
) -> None:
    import_people(servers, tmp_path, "Xavier", "Wilhelmina")
    wait_for_replay(servers.primary_url, servers.replica_url)
    started_before = api()
    assert found_names(started_before, "xavier") == ["Xavier"]

    servers.primary.stop()
    started_after = api()  # starts without the primary, too

    primary = db.describe_database(servers.primary_url)
    for client in (started_before, started_after):
        assert found_names(client, "wilhelmina") == ["Wilhelmina"]
        listing = client.get("/api/v1/contacts")
        assert listing.status_code == 200 and len(listing.json()) == 2
        one = client.get(f"/api/v1/contacts/{listing.json()[0]['id']}")
        assert one.status_code == 200
        assert client.get("/api/v1/stats").json()["contacts"] == 2
        write = client.post("/api/v1/contacts/undelete", json={"all": True}, headers=ADMIN)
        assert write.status_code == 503, write.text
        assert primary in write.json()["detail"] and "primary" in write.json()["detail"]
        assert write.headers["Retry-After"].isdigit()
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": False, "replica": True}

    # v2's search runs on a worker: it reads the replica too.
    worker = create_celery_app(settings)
    try:
        hits = worker.tasks[SEARCH_TASK]("xavier", limit=5)
    finally:
        worker.close()
    assert [hit["first_name"] for hit in hits] == ["Xavier"]


def test_with_the_replica_stopped_reads_fall_back_to_the_primary_with_one_log_line(
    servers: Replication, settings: Settings, api, tmp_path: Path, caplog
) -> None:
    import_people(servers, tmp_path, "Violet")
    wait_for_replay(servers.primary_url, servers.replica_url)
    client = api()
    assert found_names(client, "violet") == ["Violet"]
    fallbacks_before = metric(client, "contactbook_read_fallbacks_total")

    with caplog.at_level(logging.INFO, logger=REPLICA_LOGGER):
        servers.standby.stop()
        import_people(servers, tmp_path, "Ulrich")  # only the primary can have it now
        for _ in range(5):
            assert found_names(client, "ulrich") == ["Ulrich"]
        assert client.get("/api/v1/stats").json()["contacts"] == 2
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": True, "replica": False}
        assert ready.json()["replication_lag_seconds"] is None
        worker = create_celery_app(settings)
        try:
            hits = worker.tasks[SEARCH_TASK]("ulrich", limit=5)
        finally:
            worker.close()
        assert [hit["first_name"] for hit in hits] == ["Ulrich"]

    down = [r for r in caplog.records if r.name == REPLICA_LOGGER and r.levelno == logging.WARNING]
    api_lines = [r for r in down if "not answering" in r.getMessage()]
    # One line for the API and one for the worker's own router: never one per request.
    assert len(api_lines) == 2, [r.getMessage() for r in down]
    assert db.describe_database(servers.replica_url) in api_lines[0].getMessage()
    assert metric(client, "contactbook_replica_up") == 0
    assert metric(client, "contactbook_read_fallbacks_total") >= fallbacks_before + 6

    caplog.clear()
    with caplog.at_level(logging.INFO, logger=REPLICA_LOGGER):
        servers.restart_standby()
        wait_for_replay(servers.primary_url, servers.replica_url)
        ready = _wait_for(lambda: (r := client.get("/readyz").json())["checks"]["replica"] and r)
    assert ready["replication_lag_seconds"] is not None
    assert any("answers again" in r.getMessage() for r in caplog.records)
    fallbacks = metric(client, "contactbook_read_fallbacks_total")
    assert found_names(client, "ulrich") == ["Ulrich"]
    assert metric(client, "contactbook_read_fallbacks_total") == fallbacks  # the replica again


def test_with_both_stopped_reads_answer_503_naming_both(servers: Replication, api) -> None:
    client = api()
    servers.standby.stop()
    servers.primary.stop()

    answer = client.get("/api/v1/search", params={"text": "anyone"})

    assert answer.status_code == 503, answer.text
    detail = answer.json()["detail"]
    assert "neither the read replica" in detail
    assert db.describe_database(servers.replica_url) in detail
    assert db.describe_database(servers.primary_url) in detail
    assert client.get("/readyz").status_code == 503


def test_the_api_starts_without_the_primary_when_the_replica_has_this_versions_schema(
    servers: Replication, caplog
) -> None:
    prepare_to_serve(servers.primary_url, servers.replica_url)  # both up: migrates, no-op
    servers.primary.stop()

    with caplog.at_level(logging.WARNING, logger=REPLICA_LOGGER):
        prepare_to_serve(servers.primary_url, servers.replica_url, wait=1)
    assert any(
        "starting with reads from the read replica" in r.getMessage() for r in caplog.records
    )

    # A read URL without this version's tables is no reason to start: the primary's error.
    no_schema = servers.replica_url.replace("/contactbook?", "/postgres?")
    with pytest.raises(DatabaseUnavailable, match="cannot connect"):
        prepare_to_serve(servers.primary_url, no_schema, wait=1)


def test_the_compose_standby_script_makes_a_streaming_standby(
    servers: Replication, tmp_path_factory, tmp_path: Path
) -> None:
    """deploy/postgres/standby.sh, as the compose `replica` service runs it, with the
    embedded server's binaries: copies the primary once, streams, and resumes."""
    home = tmp_path_factory.mktemp("compose-standby")
    owner = servers.primary.data_dir.stat()
    os.chown(home, owner.st_uid, owner.st_gid)
    port = free_port()
    env = {
        "PATH": f"{_embedded_bin_dir()}:{os.environ['PATH']}",
        "PGDATA": str(home / "data"),
        "PRIMARY_HOST": psycopg.conninfo.conninfo_to_dict(servers.primary_url)["host"],
        "POSTGRES_USER": "postgres",
        "PGPORT": str(port),  # the standby's own port: not the machine's 5432
    }
    url = f"postgresql://postgres@127.0.0.1:{port}/contactbook"
    import_people(servers, tmp_path, "Tamsin")
    output = home / "standby.log"
    for _ in range(2):  # the second start resumes from its own data folder
        with output.open("ab") as log:
            standby = subprocess.Popen(
                ["sh", str(REPO / "deploy" / "postgres" / "standby.sh")],
                env=env,
                user=owner.st_uid if owner.st_uid != os.geteuid() else None,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_for(lambda process=standby: _answers(url) or process.poll() is not None)
            assert standby.poll() is None, output.read_text()
            wait_for_replay(servers.primary_url, url)
            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
                names = conn.execute("SELECT first_name FROM contacts").fetchall()
            assert names == [("Tamsin",)]
        finally:
            standby.send_signal(signal.SIGINT)
            standby.wait(timeout=60)


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


@pytest.mark.parametrize(
    ("error", "gone"),
    [
        (psycopg.OperationalError("connection lost"), True),  # libpq: no SQLSTATE
        (psycopg.errors.AdminShutdown(), True),  # 57P01: the server is shutting down
        (psycopg.errors.CannotConnectNow(), True),  # 57P03: starting up
        (psycopg.errors.QueryCanceled(), False),  # 57014: a statement timeout
        (psycopg.errors.SerializationFailure(), False),  # a recovery conflict: not gone
        (PoolTimeout(), False),  # busy, not gone: the monitor decides that
    ],
)
def test_only_errors_of_the_server_itself_send_reads_to_the_primary(error, gone) -> None:
    assert server_gone(error) is gone


def _wait_for(condition: Callable[[], object], timeout: float = 30) -> object:
    from celery_support import wait_until

    return wait_until(condition, timeout=timeout, what="the replica to be back")
