"""Whether the workers are alive, as the workers say it and as the API checks it.

* Each worker process renews a key in the result backend every few seconds
  (:class:`WorkerHeartbeat`, a worker bootstep); imports and syncs record the instance
  that runs them with STARTED (:func:`mark_started`), so a status read can tell a task
  that runs from one whose worker died (`jobs.lookup`).
* Each API process checks the broker and pings the workers in one background thread
  (:class:`QueueMonitor`); `/readyz` reads its last answer.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from celery import Celery, bootsteps, states

log = logging.getLogger(__name__)

#: Exists while the worker process `instance` runs (WorkerHeartbeat renews it).
ALIVE_KEY = "contactbook-worker-alive-{instance}"
#: A worker renews its key this often; the key lives HEARTBEAT_TTL seconds, so a task
#: whose worker died is reported so within about that long.
HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_TTL = 20


class WorkerHeartbeat(bootsteps.StartStopStep):
    """While a worker runs, a key in the result backend says so, renewed every few seconds.

    Each worker process start is an instance of its own (a restarted worker keeps its
    hostname, so a hostname would not tell the dead from the living). Imports and syncs
    record the instance that runs them with STARTED; once its key has expired, the status
    endpoints stop claiming the task runs (`lookup`).
    """

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        # Made before the pool starts, so prefork children inherit it.
        self.app = parent.app
        self.app.worker_instance = uuid.uuid4().hex
        self.key = ALIVE_KEY.format(instance=self.app.worker_instance)
        self.hostname = parent.hostname
        self._stopping = threading.Event()
        self._failing = False

    def start(self, parent: Any) -> None:
        self._renew()  # before the first task
        threading.Thread(target=self._run, name="contactbook-heartbeat", daemon=True).start()

    def stop(self, parent: Any) -> None:
        self._stopping.set()  # the key expires on its own: tasks may still be finishing

    def _run(self) -> None:
        while not self._stopping.wait(HEARTBEAT_INTERVAL):
            self._renew()

    def _renew(self) -> None:
        try:
            self.app.backend.set(self.key, self.hostname, expires=HEARTBEAT_TTL)
        except Exception as error:  # Redis away for a moment: the next beat tries again
            if not self._failing:
                log.warning("could not renew this worker's heartbeat: %s", error)
            self._failing = True
        else:
            self._failing = False


def mark_started(task: Any) -> None:
    """Record STARTED with the worker instance running the task (see WorkerHeartbeat)."""
    if task.request.is_eager:
        return
    task.update_state(
        state=states.STARTED,
        meta={
            "pid": os.getpid(),
            "hostname": task.request.hostname,
            "worker_instance": getattr(task.app, "worker_instance", None),
        },
    )


@dataclass(frozen=True)
class QueueHealth:
    """What the last background check saw: the broker answered; a worker answered a ping."""

    broker: bool
    worker: bool


class QueueMonitor:
    """The broker and the workers, checked every few seconds by one background thread.

    /readyz reads the last answer and costs the broker nothing. It used to ping the
    workers itself: `app.control.ping` takes a connection of the app's pool and, while
    holding it, a second one for its producer, so 11 probes at once took the 10
    connections and waited for ever for an eleventh (every v2 submit, sync trigger and
    upload then hung). Here the check runs on a connection of its own (never the pool's),
    every wait in it is bounded, and a single thread makes it, so its one producer is
    the only pool connection it ever holds. An answer older than `stale_after` counts as
    "not reachable": a check that hangs shows as a failing probe, not a stale success.
    """

    def __init__(
        self,
        app: Celery,
        *,
        interval: float = 5.0,
        ping_timeout: float = 1.0,
        connect_timeout: float = 2.0,
    ) -> None:
        self.app = app
        self.interval = interval
        self.ping_timeout = ping_timeout
        self.connect_timeout = connect_timeout
        self.stale_after = 3 * interval + ping_timeout + connect_timeout
        self._last: tuple[QueueHealth, float] | None = None
        self._checked = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def health(self, *, wait: float = 3.0) -> QueueHealth:
        """The last answer; the first call starts the checks and waits up to `wait` s."""
        self._start()
        self._checked.wait(wait)
        last = self._last
        if last is None or time.monotonic() - last[1] > self.stale_after:
            return QueueHealth(broker=False, worker=False)
        return last[0]

    def check(self) -> QueueHealth:
        """One check, now, on a connection of its own (not the pool's)."""
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=self.connect_timeout)
                replies = self.app.control.ping(connection=conn, timeout=self.ping_timeout, limit=1)
        except Exception:  # any failure means "not reachable"; readiness says so
            return QueueHealth(broker=False, worker=False)
        return QueueHealth(broker=True, worker=bool(replies))

    def close(self) -> None:
        self._stopping.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                if self._stopping.is_set():
                    return
                self._thread = threading.Thread(
                    target=self._run, name="contactbook-queue-monitor", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._last = (self.check(), time.monotonic())
            self._checked.set()
            self._stopping.wait(self.interval)


def worker_answers(app: Celery, *, timeout: float = 1.0) -> bool:
    """Whether at least one worker answers a ping within `timeout` seconds (on a
    connection of its own: a ping on the pool's would nest two pool acquires)."""
    try:
        with app.connection_for_write() as conn:
            return bool(app.control.ping(connection=conn, timeout=timeout, limit=1))
    except Exception:  # a broker failure shows in the broker check
        return False


__all__ = [
    "ALIVE_KEY",
    "QueueHealth",
    "QueueMonitor",
    "WorkerHeartbeat",
    "mark_started",
    "worker_answers",
]
