"""Faults: the database restarting, a worker killed, Redis down, a late database, a full
pool. Real servers and processes throughout; the only fake is the Nimble simulator.

Tests that stop a server use a private one in the test's folder, so the session's
servers (and every other test) never notice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from celery_support import ADMIN_TOKEN, CELERY_WARNINGS, admin_headers, wait_until
from conftest import CLEAN, CONTACTBOOK, REPO
from nimble_fixtures import Simulator, people, simulator_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from support import dump_contacts, free_port, start_server

from contactbook import db
from contactbook.asgi import AdmissionMiddleware
from contactbook.config import Settings
from contactbook.embedded import EmbeddedPostgres, EmbeddedRedis
from contactbook.jobs import QUEUE
from contactbook.nimble.client import RetryPolicy
from contactbook.nimble.simulator import FaultPlan
from contactbook.nimble.sync import SyncError, sync_contacts
from contactbook.worker import create_celery_app
from contactbook.worker_health import worker_answers

pytestmark = CELERY_WARNINGS

EMPTY_CSV = REPO / "tests" / "data" / "empty.csv"


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def private_postgres(tmp_path_factory) -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A PostgreSQL server of this module's own, migrated, that tests may stop and start."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("faults") / "postgres")
    url = server.start()
    db.upgrade(url)
    try:
        yield server, url
    finally:
        server.stop()


@pytest.fixture
def private_db(private_postgres) -> tuple[EmbeddedPostgres, str]:
    """The private server, running, with an empty database."""
    server, url = private_postgres
    server.start()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CLEAN)
    return server, url


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with simulator_server() as running:
        running.reset([])
        yield running


def count(url: str, query: str, params: tuple = ()) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


def stop_process(process: subprocess.Popen) -> None:
    """Stop a process we started (in its own session) and everything it started."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def child_env(**values: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_", "NIMBLE_", "CONTACTBOOK_"))
    }
    env.update(values)
    return env


# --------------------------------------------------------------------------- 1. PostgreSQL restart


@pytest.mark.slow
def test_a_database_restart_during_a_sync_fails_the_run_cleanly_and_the_next_run_succeeds(
    private_db, sim: Simulator
) -> None:
    server, url = private_db
    sim.reset(people(60))
    retry = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05, max_elapsed=30)

    def sync(conn: psycopg.Connection, full: bool):
        with sim.client(per_page=10, retry=retry, timeout=20.0) as client:
            return sync_contacts(conn, client, full=full)

    with psycopg.connect(url, autocommit=True) as conn:
        assert sync(conn, full=True).inserted == 60
    for i in range(10):
        sim.state.update_contact(f"p{i:05d}", {"first_name": f"Edited{i}"})
    sim.state.delete_contact("p00020")
    sim.state.add_contact({"id": "new1", "first_name": "New", "emails": ["new1@example.com"]})
    before = dump_contacts(url)

    # Page 3 is held: the database restarts while the run waits for it.
    sim.state.clear_requests()
    sim.state.set_faults(FaultPlan().hold(3))
    outcome: dict[str, BaseException] = {}

    def run_in_thread() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            try:
                sync(conn, full=True)
            except BaseException as error:  # the assertion below says what it must be
                outcome["error"] = error

    thread = threading.Thread(target=run_in_thread)
    thread.start()
    assert sim.state.holding.wait(timeout=30), "the sync never asked for page 3"
    try:
        server.stop()
        server.start()
    finally:
        sim.state.release()
    thread.join(timeout=60)
    assert not thread.is_alive()

    error = outcome.get("error")
    assert type(error) is SyncError, repr(error)
    assert dump_contacts(url) == before  # nothing applied, nothing lost
    with psycopg.connect(url) as conn:
        failed = conn.execute(
            "SELECT status, error, finished_at FROM sync_runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert failed[0] == "failed" and failed[2] is not None
    assert "database error" in failed[1]

    sim.state.set_faults(None)
    with psycopg.connect(url, autocommit=True) as conn:
        recovered = sync(conn, full=True)
    assert (recovered.updated, recovered.inserted, recovered.removed) == (10, 1, 1)
    assert count(url, "SELECT count(*) FROM contacts") == 61
    assert count(url, "SELECT count(DISTINCT nimble_id) FROM contacts") == 61
    assert count(url, "SELECT count(*) FROM contacts WHERE deleted_at IS NULL") == 60
    statuses = [r[0] for r in _sync_statuses(url)]
    assert statuses == ["succeeded", "failed", "succeeded"]


def _sync_statuses(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT status FROM sync_runs ORDER BY id").fetchall()


# --------------------------------------------------------------------------- 2. worker killed

#: People in the CSV the killed worker imports: enough that its COPY takes seconds.
IMPORT_ROWS = 20_000
#: Seconds before Redis hands a task that nobody acknowledged to another worker. Shorter
#: than the import: the surviving worker may be handed the task again while it runs it,
#: and (one task at a time) finds the upload imported and gone, which must be a no-op.
VISIBILITY_TIMEOUT = 5


def write_people_csv(path: Path, rows: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("First Name,Last Name,Email,Description\n")
        for i in range(rows):
            out.write(f"First{i},Last{i},person{i}@example.com,Person {i} plans logistics\n")
    return path


def start_worker(env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [CONTACTBOOK, "worker", "--concurrency", "1"],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its pool children die with it under killpg
        )


def copied_rows(url: str) -> int:
    """Rows the running COPY of this database has processed so far (0 when none runs)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT max(tuples_processed) FROM pg_stat_progress_copy"
            " WHERE datname = current_database()"
        ).fetchone()
    return row[0] or 0


@pytest.mark.slow
def test_a_worker_killed_during_an_import_leaves_it_to_the_next_worker_which_imports_it_once(
    db_url: str, private_redis: EmbeddedRedis, live_api, tmp_path: Path
) -> None:
    """acks_late: the message stays unacknowledged in Redis while the import runs; the
    worker is SIGKILLed (pool child and all) during the COPY, its transaction rolls back,
    and after the visibility timeout the next worker gets the task again."""
    home = tmp_path / "home"
    home.mkdir()
    csv_path = write_people_csv(tmp_path / "people.csv", IMPORT_ROWS)
    settings = Settings(
        _env_file=None,
        database_url=db_url,
        redis_url=private_redis.url,
        contactbook_home=home,
        broker_visibility_timeout=VISIBILITY_TIMEOUT,
    )
    celery = create_celery_app(settings)
    env = child_env(
        DATABASE_URL=db_url,
        REDIS_URL=private_redis.url,
        CONTACTBOOK_HOME=str(home),
        BROKER_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
        LOG_LEVEL="INFO",
    )
    log = tmp_path / "worker.log"
    api = live_api(
        redis_url=private_redis.url, contactbook_home=home, contactbook_admin_token=ADMIN_TOKEN
    )
    first = start_worker(env, log, home)
    second = None
    try:
        wait_until(lambda: worker_answers(celery, timeout=0.5), timeout=60, what="a worker")
        with csv_path.open("rb") as body:
            answer = httpx.post(
                f"{api}/api/v1/imports",
                files={"file": ("people.csv", body, "text/csv")},
                headers=admin_headers(),
                timeout=30,
            )
        assert answer.status_code == 202, answer.text
        task_id = answer.json()["task_id"]

        wait_until(lambda: copied_rows(db_url) >= 2000, timeout=60, what="the import's COPY")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        assert count(db_url, "SELECT count(*) FROM contacts") == 0  # nothing half-written

        second = start_worker(env, log, home)

        def finished() -> dict | None:
            status = httpx.get(f"{api}/api/v1/tasks/{task_id}", headers=admin_headers()).json()
            return status if status["status"] in ("SUCCESS", "FAILURE") else None

        outcome = wait_until(finished, timeout=90, what="the import to run again")
        assert outcome["status"] == "SUCCESS", outcome
        assert outcome["result"]["inserted"] == IMPORT_ROWS
        broker = redis.Redis(unix_socket_path=str(private_redis.socket))
        wait_until(
            lambda: broker.llen(QUEUE) == 0 and broker.hlen("unacked") == 0,
            timeout=30,
            what="every delivery of the task to be acknowledged",
        )
        broker.close()
    finally:
        for worker in (first, second):
            if worker is not None:
                stop_process(worker)
        celery.close()

    assert count(db_url, "SELECT count(*) FROM contacts") == IMPORT_ROWS
    assert count(db_url, "SELECT count(DISTINCT lower(email)) FROM contacts") == IMPORT_ROWS
    with psycopg.connect(db_url) as conn:
        runs = conn.execute(
            "SELECT status, rows_read, finished_at, error, attempts, task_id FROM import_runs"
            " WHERE source LIKE 'upload of people.csv%%' ORDER BY id"
        ).fetchall()
    # The upload is one run: the killed delivery's claim went back to `queued` when the
    # next delivery found its session gone, and that delivery claimed it again.
    assert len(runs) == 1, runs
    status, rows_read, finished_at, error, attempts, run_task = runs[0]
    assert (status, rows_read, error, attempts, run_task) == (
        "succeeded",
        IMPORT_ROWS,
        None,
        2,
        task_id,
    ), runs
    assert finished_at is not None
    assert list((home / "uploads").iterdir()) == []  # the upload was removed once imported


# --------------------------------------------------------------------------- 3. Redis down


def add_people(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO contacts (first_name, last_name, email, description, source)"
            " SELECT 'Dana', 'Okafor' || i, 'dana' || i || '@example.com', 'logistics', 'csv'"
            " FROM generate_series(1, %s) AS i",
            (n,),
        )


def test_with_redis_down_reads_keep_working_and_queued_work_answers_503_until_it_is_back(
    db_url: str, private_redis: EmbeddedRedis, live_api, tmp_path: Path
) -> None:
    add_people(db_url, 30)
    api = live_api(redis_url=private_redis.url, contactbook_admin_token=ADMIN_TOKEN)
    client = httpx.Client(base_url=api, timeout=30)
    admin = admin_headers()
    issued = client.post("/api/v2/search", params={"text": "dana"})
    assert issued.status_code == 202
    task_id = issued.json()["task_id"]

    private_redis.stop()
    started = time.monotonic()

    search = client.get("/api/v1/search", params={"text": "dana"})
    assert search.status_code == 200 and len(search.json()) == 20
    assert search.headers["X-Total-Count"] == "30"
    listing = client.get("/api/v1/contacts", params={"limit": 5})
    assert listing.status_code == 200 and len(listing.json()) == 5
    assert client.get(f"/api/v1/contacts/{listing.json()[0]['id']}").status_code == 200
    assert client.get("/").status_code == 200

    refused = [
        client.post("/api/v2/search", params={"text": "dana"}),
        client.get("/api/v2/search", params={"text": "dana"}),
        client.get(f"/api/v2/search/status/{task_id}"),
        client.post("/api/v1/sync", headers=admin),
        client.get(f"/api/v1/tasks/{task_id}", headers=admin),
        client.post(
            "/api/v1/imports",
            files={"file": ("p.csv", b"First Name,Email\nAda,ada@example.com\n", "text/csv")},
            headers=admin,
        ),
    ]
    for answer in refused:
        assert answer.status_code == 503, (answer.request.url, answer.text)
        assert "not reachable" in answer.json()["detail"], answer.text
        assert answer.headers["Retry-After"].isdigit()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": True, "broker": False, "worker": False}
    assert client.get("/healthz").status_code == 200
    # Every answer came quickly: nothing waited long for the missing broker.
    assert time.monotonic() - started < 20
    assert count(db_url, "SELECT count(*) FROM import_runs WHERE source LIKE 'upload%%'") == 0
    assert list((tmp_path / "home" / "uploads").glob("*")) == []  # the refused upload is gone

    private_redis.start()
    wait_until(
        lambda: client.get("/readyz").status_code == 200, timeout=30, what="the API to recover"
    )
    again = client.post("/api/v2/search", params={"text": "dana"})
    assert again.status_code == 202
    status = client.get(f"/api/v2/search/status/{again.json()['task_id']}")
    assert status.status_code == 200 and status.json()["status"] == "PENDING"
    assert client.post("/api/v1/sync", headers=admin).status_code == 202
    client.close()


def holding_the_import_lock(url: str):
    """A session holding the importer's advisory lock: an import waits for it mid-task."""
    from contactbook.contacts.importer import IMPORT_LOCK_KEY

    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SELECT pg_advisory_lock(%s)", (IMPORT_LOCK_KEY,))
    return conn


def imports_waiting_for_the_lock(url: str) -> int:
    return count(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
    )


def test_redis_dying_mid_task_leaves_the_worker_running_and_the_task_runs_again(
    db_url: str, private_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """kombu 5.7 crashed the worker here (AttributeError in _connparams <- restore_unacked
    <- Channel.close, and again in ack): contactbook/broker.py."""
    from contactbook.jobs import IMPORT_TASK, SEARCH_TASK

    home = tmp_path / "home"
    home.mkdir()
    people = write_people_csv(tmp_path / "people.csv", 20)
    settings = Settings(_env_file=None, database_url=db_url, redis_url=private_redis.url,
                        contactbook_home=home, broker_visibility_timeout=5)  # fmt: skip
    celery = create_celery_app(settings)
    env = child_env(DATABASE_URL=db_url, REDIS_URL=private_redis.url, CONTACTBOOK_HOME=str(home),
                    BROKER_VISIBILITY_TIMEOUT="5", LOG_LEVEL="INFO")  # fmt: skip
    log = tmp_path / "worker.log"
    with log.open("ab") as out:  # as `serve` runs it
        worker = subprocess.Popen(
            [CONTACTBOOK, "worker", "--pool", "threads", "--concurrency", "2"],
            env=env, cwd=home, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    lock = holding_the_import_lock(db_url)
    try:
        wait_until(lambda: worker_answers(celery, timeout=0.5), timeout=60, what="the worker")
        celery.send_task(IMPORT_TASK, kwargs={"path": str(people), "source": "mid-task.csv"})
        wait_until(lambda: imports_waiting_for_the_lock(db_url) == 1, timeout=30,
                   what="the import to be running (waiting for the lock)")  # fmt: skip

        os.kill(int(private_redis.pid_file.read_text()), signal.SIGKILL)  # Redis dies
        wait_until(lambda: "Connection to broker lost" in log.read_text(), timeout=30,
                   what="the worker to notice")  # fmt: skip
        private_redis.start()
        wait_until(lambda: worker_answers(celery, timeout=0.5), timeout=60,
                   what="the worker to reconnect")  # fmt: skip
        lock.close()  # the import, still running, finishes on its lost connection

        wait_until(lambda: "a task finished after the broker connection" in log.read_text(),
                   timeout=30, what="the import to end")  # fmt: skip
        # Its message outlived Redis (append-only file) and is delivered again.
        wait_until(
            lambda: count(db_url, "SELECT count(*) FROM import_runs WHERE source = 'mid-task.csv'"
                          " AND status = 'succeeded'") == 2,
            timeout=60, what="the import to run again",
        )  # fmt: skip
        search = celery.send_task(SEARCH_TASK, kwargs={"text": "first3"})
        assert search.get(timeout=30)[0]["email"] == "person3@example.com"
        assert worker.poll() is None
    finally:
        lock.close()
        stop_process(worker)
        celery.close()

    logged = log.read_text()
    assert "Unrecoverable error" not in logged and "AttributeError" not in logged
    # Its unacknowledged message was either put back at once (the channel closed after
    # Redis was back: kombu restores it) or left for the visibility timeout (closed while
    # Redis was away: broker.py says so instead of crashing). Which one is a race.
    assert (
        "they return to the queue after the visibility timeout" in logged
        or "Restoring 1 unacknowledged message(s)" in logged
    )
    assert count(db_url, "SELECT count(*) FROM contacts") == 20


def test_the_kombu_internals_the_broker_fix_relies_on_are_still_there() -> None:
    """contactbook/broker.py replaces pieces of kombu's Redis transport; when this fails,
    kombu changed them: check whether the new kombu still crashes a worker when Redis dies
    (the test above, without broker.py), then drop or adapt broker.py and the pin."""
    import inspect

    import kombu
    from kombu.transport import redis as kombu_redis
    from kombu.transport.virtual.base import QoS as VirtualQoS

    from contactbook.broker import BrokerConnection, RedisTransport

    assert kombu.__version__.startswith("5.7."), f"kombu {kombu.__version__}: see broker.py"
    assert kombu_redis.Transport.Channel is kombu_redis.Channel
    assert kombu_redis.Channel.QoS is kombu_redis.QoS
    assert list(inspect.signature(kombu_redis.QoS.restore_unacked).parameters) == ["self", "client"]
    assert list(inspect.signature(kombu_redis.QoS.ack).parameters) == ["self", "delivery_tag"]
    assert "asynchronous" in inspect.signature(kombu_redis.Channel._get_pool).parameters
    assert "self._delivered = " in inspect.getsource(VirtualQoS.__init__)
    for url in ("redis+socket:///tmp/x.sock", "redis://127.0.0.1:6379/0"):
        assert BrokerConnection(url).get_transport_cls() is RedisTransport
    celery = create_celery_app(Settings(_env_file=None, redis_url="redis://127.0.0.1:1/0"))
    with celery.connection_for_write() as conn:
        assert isinstance(conn, BrokerConnection)
        assert conn.get_transport_cls() is RedisTransport


# --------------------------------------------------------------------------- 4. late database


def json_lines(path: Path) -> list[dict]:
    """Every line of a log, each of which must be one JSON object."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_the_api_waits_for_a_database_that_is_not_up_yet_and_then_serves(
    private_postgres, tmp_path: Path
) -> None:
    server, url = private_postgres
    server.stop()
    port = free_port()
    log = tmp_path / "api.log"
    env = child_env(
        DATABASE_URL=url,
        CONTACTBOOK_HOME=str(tmp_path / "home"),
        CONTACTBOOK_CSV=str(EMPTY_CSV),
        LOG_LEVEL="INFO",
    )
    with log.open("wb") as out:
        api = subprocess.Popen(
            [CONTACTBOOK, "api", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def retry_lines() -> list[dict]:
            return [
                line
                for line in json_lines(log)
                if "database not reachable yet" in line.get("message", "")
            ]

        wait_until(lambda: len(retry_lines()) >= 3, timeout=30, what="the API's retry lines")
        assert api.poll() is None  # waiting, not crashed
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)

        server.start()
        wait_until(
            lambda: _status(f"http://127.0.0.1:{port}/readyz") == 200,
            timeout=60,
            what="the API to serve once the database is up",
        )
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/contacts").status_code == 200
    finally:
        stop_process(api)

    first = retry_lines()[0]
    assert first["level"] == "WARNING"
    assert "retrying in" in first["message"] and url not in first["message"]
    assert json_lines(log)  # and every line of the log parsed as JSON


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None


# --------------------------------------------------------------------------- 5. pool exhaustion

CONCURRENT_SEARCHES = 20


@contextmanager
def searches_started(api: str, n: int) -> Iterator[list[Future[httpx.Response]]]:
    """`n` searches sent at once; the futures of their answers."""
    limits = httpx.Limits(max_connections=n)
    with (
        httpx.Client(base_url=api, timeout=60, limits=limits) as client,
        ThreadPoolExecutor(n) as pool,
    ):
        yield [
            pool.submit(client.get, "/api/v1/search", params={"text": f"dana okafor{i % 7}"})
            for i in range(n)
        ]


def concurrent_searches(api: str, n: int) -> list[httpx.Response]:
    with searches_started(api, n) as futures:
        return [future.result() for future in futures]


@contextmanager
def searches_held(url: str) -> Iterator[Callable[[], None]]:
    """Make every search wait until the test calls the function this yields: a transaction
    holds the contacts table's strongest lock, so each search holds its pooled connection
    while it waits, as a slow one would."""
    with psycopg.connect(url) as conn:
        conn.execute("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE")
        try:
            yield conn.rollback
        finally:
            conn.rollback()


def sessions_waiting_for_contacts(url: str) -> int:
    """How many sessions wait for a lock on the contacts table (the held searches)."""
    return count(
        url,
        "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted"
        " AND relation = 'contacts'::regclass",
    )


def test_more_searches_than_connections_wait_or_get_503_with_retry_after_never_500(
    db_url: str, live_api
) -> None:
    add_people(db_url, 200)
    # No statement timeout: these searches are to wait behind the lock, not be stopped.
    api = live_api(db_pool_size=2, db_pool_timeout=1.0, db_statement_timeout=0)
    assert httpx.get(f"{api}/api/v1/search", params={"text": "dana"}).status_code == 200

    # Searches held until the others have given up: two hold the connections, the others
    # give up after the bounded wait with a 503 that says when to come back.
    with searches_held(db_url) as release, searches_started(api, CONCURRENT_SEARCHES) as sent:
        wait_until(lambda: any(f.done() for f in sent), what="a search to give up")
        release()
        answers = [future.result() for future in sent]
    codes = sorted(answer.status_code for answer in answers)
    assert set(codes) <= {200, 503}, codes
    assert 200 in codes and 503 in codes, codes
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["Retry-After"].isdigit()
            assert "busy" in answer.json()["detail"]

    # With a wait longer than the held searches, they queue for the two connections and
    # every one finishes.
    patient = live_api(db_pool_size=2, db_pool_timeout=60.0, db_statement_timeout=0)
    with searches_held(db_url) as release, searches_started(patient, CONCURRENT_SEARCHES) as sent:
        wait_until(lambda: sessions_waiting_for_contacts(db_url) == 2, what="both connections held")
        release()
        answers = [future.result() for future in sent]
    assert [answer.status_code for answer in answers] == [200] * CONCURRENT_SEARCHES

    # And the service is itself again.
    assert httpx.get(f"{api}/readyz").status_code == 200
    search = httpx.get(f"{api}/api/v1/search", params={"text": "dana okafor3"})
    assert search.status_code == 200 and search.json()[0]["last_name"] == "Okafor3"


def test_many_more_searches_than_threads_and_connections_all_finish(db_url: str, live_api) -> None:
    # 150 searches at once against 2 connections and FastAPI's 40 threads. When a request
    # took its connection in a dependency (one thread) and searched in the endpoint (a
    # second thread), every thread ended up waiting for a connection while the requests
    # holding the connections waited for a thread: nothing moved until the pool timeout,
    # and under steady load the API never recovered. Such a deadlock ends only at the pool
    # timeout, with 503s; the timeout is long enough for 150 searches on a slow machine,
    # so every answer being a 200 is the proof, not how fast they came.
    add_people(db_url, 200)
    api = live_api(db_pool_size=2, db_pool_timeout=60.0)
    answers = concurrent_searches(api, 150)
    assert [answer.status_code for answer in answers] == [200] * 150
    assert httpx.get(f"{api}/healthz").status_code == 200


def test_past_its_places_the_api_sheds_requests_with_503_and_retry_after() -> None:
    # Two places, a wait of 0.3 s, requests that last until the test lets them end: two
    # are served, the others are refused after the bounded wait instead of queueing
    # without end; liveness is never queued, and the places come back.
    inside: list[Request] = []
    both_inside, finish = threading.Event(), threading.Event()

    async def slow(request: Request) -> PlainTextResponse:
        inside.append(request)
        if len(inside) >= 2:
            both_inside.set()
        await asyncio.to_thread(finish.wait, 60)
        return PlainTextResponse("done")

    async def healthz(request):
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/slow", slow), Route("/healthz", healthz)])
    server = start_server(AdmissionMiddleware(app, limit=2, wait=0.3))
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client, ThreadPoolExecutor(5) as pool:
            futures = [pool.submit(client.get, "/slow") for _ in range(5)]
            assert both_inside.wait(timeout=30), "no two requests got a place"
            # Both places are taken: a queued /healthz would be refused after 0.3 s.
            assert client.get("/healthz").status_code == 200
            # The other three are answered while the two are still being served.
            wait_until(lambda: sum(f.done() for f in futures) == 3, what="three refusals")
            refused = [future.result() for future in futures if future.done()]
            finish.set()
            answers = [future.result() for future in futures]
            assert [answer.status_code for answer in refused] == [503, 503, 503]
            assert sorted(answer.status_code for answer in answers) == [200, 200, 503, 503, 503]
            for answer in refused:
                assert answer.headers["Retry-After"] == "1"
                assert "busy" in answer.json()["detail"]
            assert len(inside) == 2  # the refused ones never reached the app
            assert client.get("/slow").status_code == 200
    finally:
        finish.set()
        server.stop()
