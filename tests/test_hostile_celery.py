"""The task queue under hostile traffic and bad luck (issue 12): bursts of readiness probes,
floods of v2 searches, results that would fill Redis, workers that die mid-task.

Each test runs the real thing: a `contactbook api` process (its own broker-connection
pool, so a wedged pool cannot leak into the rest of the session), the session's Redis
and PostgreSQL, and the session's `contactbook worker`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
from celery_support import CELERY_WARNINGS, forget_queues, wait_for_task, wait_until
from kombu import Exchange, Queue
from support import free_port

from contactbook import errors, jobs, worker, worker_health
from contactbook.config import SAMPLE_CSV
from contactbook.contacts.importer import IMPORT_LOCK_KEY, import_csv

pytest_plugins = ["celery_fixtures"]
pytestmark = CELERY_WARNINGS

CONTACTBOOK = str(Path(sys.executable).with_name("contactbook"))
REPO = Path(__file__).resolve().parent.parent

#: A client that gives up: on a wedged API a request fails instead of hanging the test.
CLIENT_TIMEOUT = 20.0


@pytest.fixture
def api_process(celery_worker, worker_settings, db_url, tmp_path) -> Iterator[Callable[..., str]]:
    """Start `contactbook api` (one process) on the session's Redis and database:
    `url = api_process(**extra_env)`; it is killed at the end of the test."""
    started: list[subprocess.Popen] = []

    def start(**extra_env: str) -> str:
        port = free_port()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(
                ("DATABASE_URL", "REDIS_URL", "CELERY_", "NIMBLE_", "CONTACTBOOK_", "SEARCH_")
            )
        }
        env.update(
            DATABASE_URL=db_url,
            REDIS_URL=worker_settings.redis_url,
            CONTACTBOOK_HOME=str(worker_settings.contactbook_home),
            CONTACTBOOK_CSV=str(REPO / "tests" / "data" / "empty.csv"),
            LOG_LEVEL="WARNING",
            **extra_env,
        )
        with (tmp_path / f"api-{port}.log").open("wb") as log:
            process = subprocess.Popen(
                [CONTACTBOOK, "api", "--port", str(port), "--workers", "1"],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(process)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError((tmp_path / f"api-{port}.log").read_text())
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=60, what="the API to start")
        return url

    yield start
    for process in started:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def submit_and_wait(url: str, text: str) -> dict:
    submitted = httpx.post(f"{url}/api/v2/search", params={"text": text}, timeout=CLIENT_TIMEOUT)
    assert submitted.status_code == 202, submitted.text
    task_id = submitted.json()["task_id"]
    return wait_for_task(f"{url}/api/v2/search/status/{task_id}", timeout=CLIENT_TIMEOUT)


# --------------------------------------------------------------------------- critical 1


def readyz(url: str) -> int | str:
    try:
        return httpx.get(f"{url}/readyz", timeout=CLIENT_TIMEOUT).status_code
    except httpx.HTTPError as error:
        return type(error).__name__


@pytest.mark.parametrize("burst", [24, 40])
def test_a_burst_of_readiness_probes_leaves_v2_working(api_process, db_url, burst):
    # Before: 11 probes at once deadlocked the API's broker-connection pool for good
    # (each ping held one pool connection and waited for a second); every later v2
    # submit hung, here until the client gave up.
    import_csv(db_url, SAMPLE_CSV)
    url = api_process()

    with ThreadPoolExecutor(max_workers=burst) as pool:
        answers = list(pool.map(lambda _: readyz(url), range(burst)))
    outcome = submit_and_wait(url, "Tom Brooks")
    after = httpx.get(f"{url}/readyz", timeout=CLIENT_TIMEOUT)

    assert outcome["status"] == "SUCCESS"
    assert outcome["result"][0]["last_name"] == "Brooks"
    assert answers == [200] * burst
    assert after.status_code == 200
    assert after.json()["checks"] == {"database": True, "broker": True, "worker": True}


# --------------------------------------------------------------------------- high 3


@pytest.fixture
def searches_paused(celery_worker) -> Iterator[None]:
    """The session's worker stops taking searches (and only searches) for the test."""
    control = celery_worker.control
    names = [name for reply in control.ping(timeout=2) for name in reply]
    assert names, "no worker answered"
    control.cancel_consumer(jobs.SEARCH_QUEUE, destination=names, reply=True, timeout=5)
    try:
        yield
    finally:
        control.add_consumer(jobs.SEARCH_QUEUE, destination=names, reply=True, timeout=5)


TWO_PEOPLE = "First Name,Last Name,Email\nAda,Lovelace,ada@example.com\nAlan,Turing,alan@x.org\n"


def test_waiting_searches_hold_up_neither_an_import_nor_each_other_past_the_limit(
    api_process, celery_worker, db_url, searches_paused, write_csv
):
    url = api_process(SEARCH_QUEUE_LIMIT="3")
    accepted = [
        httpx.post(f"{url}/api/v2/search", params={"text": f"ada {n}"}, timeout=CLIENT_TIMEOUT)
        for n in range(3)
    ]
    refused = httpx.post(f"{url}/api/v2/search", params={"text": "ada"}, timeout=CLIENT_TIMEOUT)

    # Searches wait in a queue of their own: an import is not behind them.
    imported = celery_worker.send_task(
        jobs.IMPORT_TASK, kwargs={"path": str(write_csv(TWO_PEOPLE))}
    ).get(timeout=CLIENT_TIMEOUT)
    pending = [
        httpx.get(f"{url}/api/v2/search/status/{answer.json()['task_id']}").json()["status"]
        for answer in accepted
    ]

    assert [answer.status_code for answer in accepted] == [202] * 3
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "2"
    assert "SEARCH_QUEUE_LIMIT=3" in refused.json()["detail"]
    assert imported["inserted"] == 2
    assert pending == ["PENDING"] * 3


def test_a_search_past_its_statement_timeout_fails_once_with_a_clear_message(make_settings, db_url):
    # Run in this thread, as the threads pool runs it: no signal can interrupt it, so
    # the database's statement_timeout is the limit (soft_time_limit did nothing here).
    import_csv(db_url, SAMPLE_CSV)
    settings = make_settings(redis_url="redis://unused", db_statement_timeout=0.2)
    app = worker.create_celery_app(settings)
    try:
        with psycopg.connect(db_url) as holder:
            holder.execute("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE")
            outcome = app.tasks[jobs.SEARCH_TASK].apply(kwargs={"text": "Tom Brooks"})
            holder.rollback()
    finally:
        app.close()

    assert outcome.state == "FAILURE"
    assert isinstance(outcome.result, errors.QueryTimedOut), repr(outcome.result)
    assert "DB_STATEMENT_TIMEOUT" in str(outcome.result)


# --------------------------------------------------------------------------- high 7


def test_a_stored_search_result_is_compressed(celery_worker, db_url):
    import_csv(db_url, SAMPLE_CSV)

    task_id = jobs.submit(celery_worker, jobs.SEARCH_TASK, kind="search", text="a", limit=20)
    shown = wait_until(
        lambda: (
            (answer := jobs.lookup(celery_worker, task_id)[1])["status"] == "SUCCESS" and answer
        ),
        what="the search",
    )
    stored = celery_worker.backend.client.get(celery_worker.backend.get_key_for_task(task_id))
    as_json = len(json.dumps(shown["result"]))

    assert len(shown["result"]) == 20
    assert len(stored) < as_json / 2, (len(stored), as_json)  # before: about as_json


def test_a_result_over_the_byte_cap_fails_with_a_message_instead_of_filling_redis(
    celery_worker, db_url, write_csv
):
    bio = "giant " + "word " * (60 * 1024 // 5)  # 60 KB each: 20 of them are over 1 MiB
    rows = "".join(f"Big,Person{n},big{n}@example.com,{bio}\n" for n in range(20))
    import_csv(db_url, write_csv("First Name,Last Name,Email,Description\n" + rows))

    task_id = jobs.submit(celery_worker, jobs.SEARCH_TASK, kind="search", text="giant", limit=20)
    shown = wait_until(
        lambda: (
            (answer := jobs.lookup(celery_worker, task_id)[1])["status"] in ("SUCCESS", "FAILURE")
            and answer
        ),
        what="the search",
    )

    assert shown["status"] == "FAILURE", shown["status"]
    assert "SearchResultTooLarge" in shown["error"]
    assert "a smaller limit" in shown["error"]


# --------------------------------------------------------------------------- low 10


@pytest.fixture
def lost_queue(celery_worker) -> Iterator[str]:
    """A queue of this test's own, removed afterwards with the killed worker's message.

    That message stays unacknowledged in Redis, and after the visibility timeout any
    worker on the same Redis puts it back in its queue. On a Redis that outlives the run
    (CI's second pass uses the machine's), a fixed queue name handed the next run's
    doomed worker, which runs one task at a time, an old import first: it waited on the
    lock this test holds, and the new import never started.
    """
    name = f"contactbook-test-lost-{uuid.uuid4().hex}"
    yield name
    with celery_worker.connection_for_write() as conn:
        forget_queues(conn, [name])
        queue = Queue(name, Exchange(name), routing_key=name)(conn.default_channel)
        queue.declare()  # kombu deletes only the bindings this channel knows
        queue.delete()


def test_a_task_whose_worker_died_is_not_shown_as_running(
    celery_worker, worker_settings, db_url, write_csv, tmp_path, lost_queue
):
    # Before: it stayed STARTED until the visibility timeout (an hour by default).
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_", "CONTACTBOOK_"))
    }
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=worker_settings.redis_url,
        CONTACTBOOK_HOME=str(worker_settings.contactbook_home),
    )
    path = write_csv(TWO_PEOPLE)
    with psycopg.connect(db_url, autocommit=True) as holder:
        # The import waits for this lock, so it is STARTED when its worker is killed.
        holder.execute("SELECT pg_advisory_lock(%s)", (IMPORT_LOCK_KEY,))
        with (tmp_path / "lost-worker.log").open("wb") as log:
            doomed = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "contactbook.worker:celery_app", "worker",
                 "--pool", "threads", "--concurrency", "1", "--queues", lost_queue,
                 "--hostname", "doomed@%h", "--without-gossip", "--without-mingle"],
                env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            task_id = celery_worker.send_task(
                jobs.IMPORT_TASK, kwargs={"path": str(path)}, queue=lost_queue
            ).id
            try:
                wait_until(
                    lambda: jobs.lookup(celery_worker, task_id)[1]["status"] == "STARTED",
                    timeout=60,
                    what="the import to start",
                )
            except AssertionError as error:
                logged = (tmp_path / "lost-worker.log").read_text(errors="replace")
                raise AssertionError(f"{error}; the worker logged:\n{logged}") from None
        finally:
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait()
        # Its heartbeat key would expire within HEARTBEAT_TTL seconds: check that it
        # would, then remove it rather than wait (the suite's slowest 20 s).
        instance = celery_worker.backend.get_task_meta(task_id)["result"]["worker_instance"]
        alive_key = worker_health.ALIVE_KEY.format(instance=instance)
        client = celery_worker.backend.client
        assert 0 < client.ttl(alive_key) <= worker_health.HEARTBEAT_TTL
        client.delete(alive_key)
        shown = wait_until(
            lambda: (
                (answer := jobs.lookup(celery_worker, task_id)[1])["status"] != "STARTED" and answer
            ),
            timeout=3 * worker_health.HEARTBEAT_TTL,
            what="the status to notice the dead worker",
        )

    assert shown["status"] == "PENDING"
    assert "doomed@" in shown["error"] and "stopped before it finished" in shown["error"]
    assert "BROKER_VISIBILITY_TIMEOUT" in shown["error"]
