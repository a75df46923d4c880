"""The Celery app: its configuration, queues, beat schedule and the tasks it runs.

One app per process, built from settings by :func:`create_celery_app`. The worker and
beat commands build it from the environment (the module attribute ``celery_app``, which
``celery -A contactbook.worker:celery_app`` names); the API builds its own from the
settings it was given, so nothing here reads the environment at import time. The tasks
live beside their domains (`contacts/tasks.py`: search, import, upload sweep;
`nimble/tasks.py`: sync); sending them and reading their outcome is `jobs.py`.

Choices, and why:

* **JSON only**, for task arguments and results: a result is exactly what an API
  client will see, and nothing in the broker can make a worker unpickle code.
* **acks_late + reject_on_worker_lost + prefetch 1**: a task whose worker dies is
  delivered again instead of lost, so every task is written to be safe to run twice
  (search reads; the import merges idempotently under its advisory lock; the sync
  skips when another holds its lock; an upload already imported and removed is a no-op).
* **Redis visibility timeout, one hour** (``BROKER_VISIBILITY_TIMEOUT``): an
  unacknowledged task is handed to another worker after that long. A redelivered import
  or sync is harmless (see above), so the timeout only bounds how long a task of a
  crashed worker waits to run again; it must exceed the longest task, or a task still
  running is delivered a second time.
* **Results expire** after ``SEARCH_RESULT_EXPIRES`` seconds (default ten minutes: a
  client polls within seconds) and are stored zlib-compressed; a search result holds at
  most ``contacts.tasks.MAX_RESULT_BYTES`` of JSON.
* **Bounded retries**: a task retries only on a lost database connection, at most three
  times with exponential back-off; bad input fails at once. Publishing a task retries
  for well under a second, so the API answers 503 quickly when the broker is down.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery import Celery
from celery.schedules import crontab

from contactbook import db
from contactbook.config import Settings, get_settings
from contactbook.contacts import tasks as contact_tasks
from contactbook.db.replica import ReadRouter, create_read_router
from contactbook.jobs import QUEUE, SEARCH_QUEUE, SEARCH_TASK, SWEEP_UPLOADS_TASK, SYNC_TASK
from contactbook.logging import install_celery_logging
from contactbook.metrics import install_celery_metrics
from contactbook.nimble import tasks as nimble_tasks
from contactbook.worker_health import QueueMonitor, WorkerHeartbeat

SYNC_SCHEDULE_ENTRY = "sync-contacts"
SWEEP_UPLOADS_ENTRY = "sweep-uploads"

#: Seconds a submit waits for a broker connection of the API's pool before it answers 503.
BROKER_POOL_ACQUIRE_TIMEOUT = 5.0


class InvalidSchedule(ValueError):
    """SYNC_SCHEDULE is not a 5-field cron expression; the message shows a valid one."""


class ContactBookCelery(Celery):
    """A Celery app that carries the settings it was built from, for its tasks."""

    settings: Settings
    #: Connects through contactbook.broker: a worker survives Redis dying mid-task.
    amqp_cls = "contactbook.broker:ContactBookAMQP"

    def __init__(self, settings: Settings, *, submit_only: bool = False, **kwargs: Any) -> None:
        super().__init__("contactbook", set_as_current=False, **kwargs)
        self.settings = settings
        self.submit_only = submit_only
        self._search_pool: db.DictPool | None = None
        self._search_reads: ReadRouter | None = None
        self._search_pool_pid = 0
        self._search_pool_lock = threading.Lock()
        self._queue_monitor: QueueMonitor | None = None

    @property
    def queue_monitor(self) -> QueueMonitor:
        """The broker and the workers as /readyz reports them (checked in the background)."""
        with self._search_pool_lock:
            if self._queue_monitor is None:
                self._queue_monitor = QueueMonitor(self)
            return self._queue_monitor

    def search_reads(self) -> ReadRouter:
        """Where search tasks read (the replica, DATABASE_READ_URL, while it answers, else
        the primary), with pools made after any fork."""
        with self._search_pool_lock:
            if self._search_reads is None or self._search_pool_pid != os.getpid():
                # A pool inherited from the parent of a prefork child holds the parent's
                # sockets and threads: start a new one in each process.
                self._search_pool = db.create_pool(
                    self.settings.resolved_database_url,
                    size=self.settings.db_pool_size,
                    timeout=self.settings.db_pool_timeout,
                    statement_timeout=self.settings.db_statement_timeout,
                )
                self._search_pool.open(wait=False)
                self._search_reads = create_read_router(self.settings, primary=self._search_pool)
                self._search_reads.start()
                self._search_pool_pid = os.getpid()
            return self._search_reads

    def _get_backend(self):
        backend = super()._get_backend()
        if self.submit_only:
            # Sending a task normally subscribes this process to the task's result channel
            # so that `.get()` can wait. The API never waits (clients poll the status
            # endpoint), and nothing would ever read those subscriptions' messages.
            backend.on_task_call = _no_result_subscription
        return backend

    def close(self) -> None:
        with self._search_pool_lock:
            if self._queue_monitor is not None:
                self._queue_monitor.close()
                self._queue_monitor = None
            if self._search_pool is not None and self._search_pool_pid == os.getpid():
                if self._search_reads is not None:  # made together with the pool
                    self._search_reads.close()
                self._search_pool.close()
            self._search_pool = self._search_reads = None
        super().close()


def _no_result_subscription(producer: Any, task_id: str) -> dict:
    return {}


def parse_sync_schedule(expression: str) -> crontab:
    """Turn a 5-field cron expression (UTC) into a crontab, or raise InvalidSchedule.

    ``0 0 * * *`` becomes ``crontab(minute=0, hour=0)``: once a day at midnight. (Leaving
    out the minute, as in ``crontab(hour=0)``, would fire every minute of that hour.)
    """
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidSchedule(
            f"SYNC_SCHEDULE {expression!r} has {len(fields)} field(s); it needs 5: "
            "minute hour day-of-month month day-of-week, for example '0 0 * * *' "
            "(daily at midnight UTC)"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except (ValueError, IndexError, KeyError) as error:
        raise InvalidSchedule(
            f"SYNC_SCHEDULE {expression!r} is not a valid cron expression ({error}); "
            "use 5 fields: minute hour day-of-month month day-of-week, "
            "for example '0 0 * * *' (daily at midnight UTC)"
        ) from error


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for Contact Book (see the module docstring for the reasons)."""
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_track_started": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "result_expires": settings.search_result_expires,
        # JSON contacts shrink to under half (tests/test_hostile_celery.py): Redis holds
        # twice as many results or more. rpc:// stores none (and warns of the setting).
        "result_compression": (
            None if (settings.result_backend or "").startswith("rpc:") else "zlib"
        ),
        "result_extended": False,
        "task_default_queue": QUEUE,
        "task_routes": {SEARCH_TASK: {"queue": SEARCH_QUEUE}},
        "timezone": "UTC",
        "enable_utc": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 2.0,
        # Waiting for one of the API's broker_pool_limit (10) connections is bounded: a
        # submit that cannot get one answers 503 instead of hanging its thread for ever.
        "broker_pool_acquire_timeout": BROKER_POOL_ACQUIRE_TIMEOUT,
        "broker_transport_options": _broker_transport_options(settings.broker_visibility_timeout),
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.4,
        },
        "redis_socket_connect_timeout": 2.0,
        "redis_socket_timeout": 10.0,
        "result_backend_transport_options": {
            "retry_policy": {
                "max_retries": 3,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            }
        },
        "beat_schedule": {
            SYNC_SCHEDULE_ENTRY: {
                "task": SYNC_TASK,
                "schedule": parse_sync_schedule(settings.sync_schedule),
                "kwargs": {"full": False},
            },
            # Uploads no worker took are sent again, ended uploads' files removed.
            SWEEP_UPLOADS_ENTRY: {"task": SWEEP_UPLOADS_TASK, "schedule": 60.0},
        },
    }


def _broker_transport_options(visibility_timeout: int) -> dict[str, Any]:
    options: dict[str, Any] = {"visibility_timeout": visibility_timeout}
    if visibility_timeout < 600:
        # kombu looks for abandoned messages every 10 x 10 s by default: with a short
        # timeout, look every second so that it is honoured.
        options.update(unacked_restore_interval=1, unacked_restore_throttle=1)
    return options


def create_celery_app(settings: Settings, *, submit_only: bool = False) -> ContactBookCelery:
    """A Celery app with Contact Book's configuration, tasks and beat schedule.

    `submit_only` is for the API: it queues tasks and reads their state, never waits.
    Raises InvalidSchedule for a bad SYNC_SCHEDULE, so every process refuses to start
    with the same message rather than beat alone failing at midnight.
    """
    app = ContactBookCelery(settings, submit_only=submit_only)
    app.conf.update(celery_config(settings))
    contact_tasks.register(app)
    nimble_tasks.register(app)
    install_celery_logging(app)
    install_celery_metrics(app)
    app.steps["worker"].add(WorkerHeartbeat)
    return app


celery_app: ContactBookCelery  # no value until first use: see __getattr__


def __getattr__(name: str) -> Any:
    # `celery_app` is built on first use, from the environment as it is by then (the CLI
    # exports embedded servers' URLs first), not when this module is imported.
    if name == "celery_app":
        global celery_app
        celery_app = create_celery_app(get_settings())
        return celery_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ContactBookCelery",
    "InvalidSchedule",
    "celery_config",
    "create_celery_app",
    "parse_sync_schedule",
]
