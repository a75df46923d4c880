"""A real Celery worker on the test session's Redis and database: a pytest plugin.

Use it with `pytest_plugins = ["celery_fixtures"]` (so its session fixtures exist once
however many modules use them; helpers are in `celery_support`).

One `contactbook worker` process for the whole session (its defaults: prefork, two at
once), consuming the same queues as every API the tests start: tests talk to it only
through HTTP or Celery, as a deployment would. `wait_for_task` polls a task to the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery_support import ADMIN_TOKEN, forget_queues

from contactbook.config import Settings
from contactbook.jobs import QUEUES
from contactbook.worker import ContactBookCelery, create_celery_app
from contactbook.worker_health import worker_answers

CONTACTBOOK = str(Path(sys.executable).with_name("contactbook"))


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
def worker_log(worker_home: Path) -> Path:
    """What the worker logged (INFO: every task received and finished)."""
    return worker_home / "worker.log"


@pytest.fixture(scope="session")
def celery_worker(worker_settings: Settings, worker_log: Path) -> Iterator[ContactBookCelery]:
    """A real `contactbook worker` process on the session's Redis and database.

    Yields a Celery app configured like it, for sending tasks and reading results.
    """
    app = create_celery_app(worker_settings)
    with app.connection_for_write() as conn:
        forget_queues(conn, QUEUES)  # nothing left over from another run
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_", "NIMBLE_", "CONTACTBOOK_"))
    }
    env.update(
        DATABASE_URL=worker_settings.database_url,
        REDIS_URL=worker_settings.redis_url,
        CONTACTBOOK_HOME=str(worker_settings.contactbook_home),
        LOG_LEVEL="INFO",
    )
    with worker_log.open("ab") as log:
        worker = subprocess.Popen(
            [CONTACTBOOK, "worker"],
            env=env,
            cwd=worker_settings.contactbook_home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not worker_answers(app, timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the test worker did not start:\n{worker_log.read_text()}")
        yield app
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
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
