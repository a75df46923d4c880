"""A real Celery worker on the test session's Redis and database (import the fixtures).

One worker for the whole session, in a thread of the test process (thread pool, four
at once), consuming the same queue as every API the tests start: tests talk to it only
through HTTP or Celery, as a deployment would. `wait_for_task` polls a task to the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from celery.contrib.testing.worker import start_worker

from contactbook.config import Settings
from contactbook.tasks import QUEUE, ContactBookCelery, create_celery_app

ADMIN_TOKEN = "admin-token-for-tests"

#: Celery's Redis result backend calls redis-py's `setex`, which redis-py 8 deprecates;
#: modules that run tasks ignore that one warning (`pytestmark = CELERY_WARNINGS`).
CELERY_WARNINGS = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")


@pytest.fixture(scope="session")
def worker_home(tmp_path_factory) -> Path:
    """CONTACTBOOK_HOME shared by the worker and the APIs (uploads live there)."""
    return tmp_path_factory.mktemp("celery-home")


@pytest.fixture(scope="session")
def worker_settings(database_url: str, redis_url: str, worker_home: Path) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        redis_url=redis_url,
        contactbook_home=worker_home,
    )


@pytest.fixture(scope="session")
def celery_worker(worker_settings: Settings) -> Iterator[ContactBookCelery]:
    """A Celery worker running Contact Book's tasks; yields its app."""
    app = create_celery_app(worker_settings)
    app.conf.worker_hijack_root_logger = False
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)  # nothing left over from another run
    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=60,  # a busy machine can take more than the default 10 s
    ):
        yield app
    app.close()


@pytest.fixture
def celery_api(live_api, redis_url: str, worker_home: Path) -> Callable[..., str]:
    """`live_api` with the broker and the worker's home, and the admin token set."""

    def start(**overrides) -> str:
        overrides.setdefault("redis_url", redis_url)
        overrides.setdefault("contactbook_home", worker_home)
        overrides.setdefault("contactbook_admin_token", ADMIN_TOKEN)
        return live_api(**overrides)

    return start


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for_task(
    status_url: str, *, headers: dict[str, str] | None = None, timeout: float = 30
) -> dict:
    """Poll a task's status URL until it is SUCCESS or FAILURE; return the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(status_url, headers=headers, timeout=10)
        answer.raise_for_status()
        body = answer.json()
        if body["status"] in ("SUCCESS", "FAILURE"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"task still {body['status']} after {timeout}s: {body}")
        time.sleep(0.02)


def wait_until(condition: Callable[[], object], *, timeout: float = 30, what: str = "") -> object:
    """Poll `condition` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.05)
