"""Celery: the app, its three tasks, the beat schedule, and the helpers the API uses to
submit work and read its outcome.

One app per process, built from settings by :func:`create_celery_app`. The worker and
beat commands build it from the environment (the module attribute ``celery_app``, which
``celery -A contactbook.tasks:celery_app`` names); the API builds its own from the settings it
was given, so nothing here reads the environment at import time.

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
  client polls within seconds), are stored zlib-compressed, and a search result holds at
  most ``MAX_RESULT_BYTES`` of JSON (more fails the task with a message); the
  ids the API issued are remembered for exactly as long, in the result backend: Celery
  calls every unknown id PENDING, so ``/api/v2/search/status/{id}`` answers 404 for an
  id that was never issued or whose result has expired.
* **Bounded retries**: a task retries only on a lost database connection, at most three
  times with exponential back-off; bad input fails at once. Publishing a task retries
  for well under a second, so the API answers 503 quickly when the broker is down.
* **Cheap to poll**: v2 clients poll the status endpoint, so a status read is one Redis
  round trip (issued id and state together); searches do not record STARTED (they last
  milliseconds); the API's app never subscribes to result channels, as it never waits.
  `bench/async_search.py` measures the round trip against v1.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from celery import Celery, bootsteps, states
from celery.backends.base import BaseKeyValueStoreBackend
from celery.exceptions import Ignore
from celery.schedules import crontab
from kombu.exceptions import ChannelError, KombuError
from kombu.exceptions import OperationalError as BrokerOperationalError
from psycopg_pool import PoolTimeout

from contactbook import db, errors
from contactbook.config import Settings, get_settings
from contactbook.contacts.uploads import uploads_dir
from contactbook.db.replica import ReadRouter, create_read_router
from contactbook.logging import install_celery_logging
from contactbook.metrics import install_celery_metrics, record_search

if TYPE_CHECKING:
    from contactbook.db import DictConnection

log = logging.getLogger(__name__)

SEARCH_TASK = "contactbook.search"
IMPORT_TASK = "contactbook.import_csv_file"
SYNC_TASK = "contactbook.sync_contacts"
SWEEP_UPLOADS_TASK = "contactbook.sweep_uploads"
SYNC_SCHEDULE_ENTRY = "sync-contacts"
SWEEP_UPLOADS_ENTRY = "sweep-uploads"
#: Imports and syncs (and anything not routed elsewhere): the queue of earlier versions.
QUEUE = "contactbook"
#: v2 searches, apart, so that a flood of them cannot hold up an upload or the sync.
SEARCH_QUEUE = "contactbook-search"
#: What `contactbook worker` consumes unless told otherwise.
QUEUES = (SEARCH_QUEUE, QUEUE)

#: What each kind of task id may be looked up as (v2 status only shows searches).
KIND_SEARCH = "search"
KIND_IMPORT = "import"
KIND_SYNC = "sync"

_ISSUED_KEY = "contactbook-issued-{task_id}"
#: Exists while the worker process `instance` runs (WorkerHeartbeat renews it).
_ALIVE_KEY = "contactbook-worker-alive-{instance}"
#: A worker renews its key this often; the key lives HEARTBEAT_TTL seconds, so a task
#: whose worker died is reported so within about that long.
HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_TTL = 20

#: The most a v2 search result may hold, as JSON (before compression). A page of 20
#: sample contacts is about 11 KB.
MAX_RESULT_BYTES = 1024 * 1024

#: Seconds a submit waits for a broker connection of the API's pool before it answers 503.
BROKER_POOL_ACQUIRE_TIMEOUT = 5.0

#: Retried on the worker: the database went away for a moment.
TRANSIENT_ERRORS = (psycopg.OperationalError, PoolTimeout)


class InvalidSchedule(ValueError):
    """SYNC_SCHEDULE is not a 5-field cron expression; the message shows a valid one."""


class UploadMissing(RuntimeError):
    """An upload to import is not on this worker's disk (and was never imported)."""


class BrokerUnavailable(errors.BrokerUnavailable):
    """The broker (or result backend) cannot be reached, or none is configured."""


class SearchResultTooLarge(RuntimeError):
    """A search's contacts, as JSON, exceed MAX_RESULT_BYTES (never retried)."""


class SearchQueueFull(errors.ServiceUnavailable):
    """SEARCH_QUEUE_LIMIT v2 searches are already waiting for a worker."""

    retry_after = 2


# --------------------------------------------------------------------------- the app


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
    _register_tasks(app)
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
        self.key = _ALIVE_KEY.format(instance=self.app.worker_instance)
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


# --------------------------------------------------------------------------- the tasks


def _register_tasks(app: ContactBookCelery) -> None:
    # shared=False: each app gets its own tasks, bound to its own settings (Celery would
    # otherwise copy every task into every app created later in the process).
    retrying = {
        "autoretry_for": TRANSIENT_ERRORS,
        "max_retries": 3,
        "retry_backoff": True,
        "retry_backoff_max": 30,
        "retry_jitter": True,
    }

    # resultrepr_maxsize: the worker logs a repr of each result; keep contacts out of logs.
    @app.task(
        name=SEARCH_TASK,
        bind=True,
        shared=False,
        track_started=False,  # done in milliseconds: a STARTED write would only cost time
        # No soft_time_limit/time_limit: they do nothing under the threads pool that
        # `serve` and compose run. A search is one statement, so its limit is the
        # statement_timeout of the search pool's connections (errors.QueryTimedOut).
        resultrepr_maxsize=80,
        # Also retried: the replica and the primary both gone at once (ReadRouter says so).
        **{**retrying, "autoretry_for": (*TRANSIENT_ERRORS, errors.DatabaseUnavailable)},
    )
    def search(
        self,
        text: str,
        limit: int = 20,
        offset: int = 0,
        tags: list[str] | None = None,
        company: str | None = None,
    ) -> list[dict]:
        """The v1 search, on a worker: returns exactly v1's JSON list."""
        try:
            hits = self.app.search_reads().run(
                lambda conn: search_hits(
                    conn, text, limit=limit, offset=offset, tags=tags, company=company
                )
            )
        except psycopg.errors.QueryCanceled as error:
            # Not retried (it would cost the same again): the task fails with the reason.
            raise errors.QueryTimedOut.after(self.app.settings.db_statement_timeout) from error
        size = len(json.dumps(hits))
        if size > MAX_RESULT_BYTES:
            # Every v2 result is kept in Redis for SEARCH_RESULT_EXPIRES: a page of 100
            # contacts with megabyte bios would be 100 MB there.
            raise SearchResultTooLarge(
                f"the {len(hits)} contacts found come to {size // 1024} KiB, more than "
                f"the {MAX_RESULT_BYTES // 1024} KiB a v2 result may hold: ask for fewer "
                "(a smaller limit) or use GET /api/v1/search"
            )
        record_search(len(hits), source="v2")
        return hits

    # track_started=False: mark_started records STARTED with the worker instance instead.
    @app.task(name=IMPORT_TASK, bind=True, shared=False, track_started=False, **retrying)
    def import_csv_file(
        self,
        path: str,
        source: str | None = None,
        only_if_empty: bool = False,
        remove_after: bool = False,
        run_id: int | None = None,
    ) -> dict:
        """Import a CSV file: the start-up import (only_if_empty) or an upload (remove_after,
        with its queued run: contacts/uploads.py)."""
        mark_started(self)
        return import_file(
            self.app.settings,
            Path(path),
            source=source,
            only_if_empty=only_if_empty,
            remove_after=remove_after,
            run_id=run_id,
        )

    @app.task(name=SWEEP_UPLOADS_TASK, bind=True, shared=False, ignore_result=True)
    def sweep_uploads(self) -> dict:
        """Send again the uploads no worker took; remove the files of ended uploads."""
        from contactbook.contacts.uploads import sweep_uploads

        return sweep_uploads(self.app, self.app.settings)

    @app.task(name=SYNC_TASK, bind=True, shared=False, track_started=False)
    def sync_contacts(
        self, full: bool = False, dry_run: bool = False, allow_removals: bool = False
    ) -> dict:
        """Sync from Nimble; skipped (not failed) without a key or while another sync runs."""
        mark_started(self)
        return run_sync_task(
            self.app.settings, full=full, dry_run=dry_run, allow_removals=allow_removals
        )


def search_hits(
    conn: DictConnection,
    text: str,
    *,
    limit: int,
    offset: int,
    tags: list[str] | None = None,
    company: str | None = None,
) -> list[dict]:
    """`search_contacts`'s contacts: the list v1 and `contactbook search --json` answer
    (already plain JSON values, in the API's field order)."""
    from contactbook.contacts.search import search_contacts

    page = search_contacts(conn, text, limit=limit, offset=offset, tags=tags, company=company)
    return page.contacts


def import_file(
    settings: Settings,
    path: Path,
    *,
    source: str | None,
    only_if_empty: bool,
    remove_after: bool,
    run_id: int | None = None,
) -> dict:
    """Run the one import pipeline; remove an upload once it is imported (or unusable).

    An upload's task carries its queued run (`run_id`): a delivery that finds the run
    taken or ended (a second delivery: acks_late, or a re-send) stores no result.
    """
    from contactbook.contacts import runs
    from contactbook.contacts.importer import RunNotQueued, UnusableCsvError, import_csv

    is_upload = remove_after and path.resolve().parent == uploads_dir(settings)
    if is_upload and not path.exists():
        with psycopg.connect(settings.resolved_database_url, autocommit=True) as conn:
            if run_id is not None and runs.status(conn, run_id) != "queued":
                log.info("upload %s is gone: another delivery imported it", path.name)
                raise Ignore()
            if run_id is None and runs.already_imported(conn, source or str(path)):
                # Delivered twice (acks_late): the first delivery imported and removed it.
                log.info("upload %s is gone: already imported", path.name)
                return {
                    "source": source or str(path),
                    "performed": False,
                    "reason": "already imported",
                }
            missing = UploadMissing(
                f"the uploaded file {path.name} is not on this worker: the API and the "
                f"workers must share CONTACTBOOK_HOME ({uploads_dir(settings)}); nothing "
                "was imported"
            )
            if run_id is not None:
                runs.give_up(conn, run_id, str(missing))
        raise missing
    try:
        summary = import_csv(
            settings.resolved_database_url,
            path,
            source=source,
            only_if_empty=only_if_empty,
            run_id=run_id,
        )
    except RunNotQueued as taken:
        log.info("upload %s: %s (another delivery took it)", path.name, taken)
        raise Ignore() from taken
    except UnusableCsvError:
        if is_upload:
            path.unlink(missing_ok=True)  # retrying cannot make it usable
        raise
    except TRANSIENT_ERRORS:
        if run_id is not None:
            _requeue_upload(settings.resolved_database_url, run_id)  # the retry claims it again
        raise
    if is_upload:
        path.unlink(missing_ok=True)
    return summary.as_dict()


def _requeue_upload(database_url: str, run_id: int) -> None:
    from contactbook.contacts import runs

    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            runs.requeue_upload(conn, run_id)
    except psycopg.OperationalError:
        # Still unreachable: the run stays `running` for a session that is gone, and the
        # next import or upload sweep puts it back in the queue.
        log.warning("import run %d could not be queued again yet", run_id)


def run_sync_task(
    settings: Settings, *, full: bool, dry_run: bool = False, allow_removals: bool = False
) -> dict:
    """One sync run, or a skip with one clear log line saying why."""
    if settings.nimble_api_key is None:
        log.warning("sync skipped: NIMBLE_API_KEY is not set")
        return {"status": "skipped", "reason": "NIMBLE_API_KEY is not set"}
    from contactbook.nimble.sync import SyncAlreadyRunning, SyncSkipped, run_sync

    try:
        summary = run_sync(settings, full=full, dry_run=dry_run, allow_removals=allow_removals)
    except SyncAlreadyRunning as error:
        log.warning("sync skipped: another sync is running (%s)", error)
        return {"status": "skipped", "reason": "another sync is running"}
    except SyncSkipped as error:
        log.warning("sync skipped: %s", error)
        return {"status": "skipped", "reason": str(error)}
    return {"status": "succeeded", **summary.as_dict()}


# --------------------------------------------------------------------------- for the API


def submit(
    app: Celery, task_name: str, *, kind: str, task_id: str | None = None, **kwargs: Any
) -> str:
    """Queue a task and remember its id (as `kind`) for as long as its result is kept.
    `task_id`: an id chosen beforehand (an upload's, recorded with its run).

    Raises BrokerUnavailable, with a message for the API client, when the broker or the
    result backend cannot be reached.
    """
    task_id = task_id or str(uuid.uuid4())
    backend = _status_store(app)
    try:
        # Remember first: a worker may finish before send_task returns.
        backend.set(_ISSUED_KEY.format(task_id=task_id), kind)
        app.send_task(task_name, kwargs=kwargs, task_id=task_id)
    except (KombuError, BrokerOperationalError, OSError) + _backend_errors(app) as error:
        log.warning("could not queue %s: %s", task_name, error)
        raise BrokerUnavailable("the task queue is not reachable: try again in a moment") from error
    return task_id


def submit_search(app: ContactBookCelery, **kwargs: Any) -> str:
    """Queue a v2 search, or raise SearchQueueFull when SEARCH_QUEUE_LIMIT are waiting.

    Without the bound, 40 slow searches submitted within 3 s delayed every search after
    them by about 270 s; refused at once with Retry-After, a client comes back when the
    workers have caught up. The count is the search queue's length (one round trip; a
    few submits at the same instant may pass the limit together, which is harmless).
    """
    _status_store(app)  # a backend that keeps no statuses says so before anything waits
    limit = app.settings.search_queue_limit
    if limit:
        waiting = waiting_searches(app)
        if waiting >= limit:
            raise SearchQueueFull(
                f"{waiting} searches are already waiting for a worker (SEARCH_QUEUE_LIMIT="
                f"{limit}): try again in {SearchQueueFull.retry_after} seconds"
            )
    return submit(app, SEARCH_TASK, kind=KIND_SEARCH, **kwargs)


def waiting_searches(app: Celery) -> int:
    """How many v2 searches wait in the broker for a worker (0 when it cannot tell)."""
    failure: BaseException | None = None
    try:
        with app.connection_or_acquire() as conn:
            if conn.transport.driver_type != "redis":
                return 0  # only Redis says how long a queue is without side effects
            try:
                return conn.default_channel.queue_declare(SEARCH_QUEUE, passive=True).message_count
            except ChannelError:  # an empty queue is no key at all in Redis
                return 0
            except (*conn.connection_errors, *conn.channel_errors) as error:
                failure = error
    except (KombuError, BrokerOperationalError, OSError) as error:
        failure = error
    log.warning("could not count the waiting searches: %s", failure)
    raise BrokerUnavailable("the task queue is not reachable: try again in a moment") from failure


def issued_kind(app: Celery, task_id: str) -> str | None:
    """The kind a task id was issued as, or None when this service never issued it."""
    return lookup(app, task_id)[0]


def lookup(app: Celery, task_id: str) -> tuple[str | None, dict]:
    """The kind a task was issued as (None: never issued) and its `{task_id, status,
    result, error}`, read in one round trip: the status endpoints are polled often."""
    backend = _status_store(app)
    keys = [_ISSUED_KEY.format(task_id=task_id), backend.get_key_for_task(task_id)]
    try:
        if hasattr(backend, "mget"):
            kind, payload = backend.mget(keys)
        else:
            kind, payload = backend.get(keys[0]), backend.get(keys[1])
        meta = backend.decode_result(payload) if payload else None
    except (OSError,) + _backend_errors(app) as error:
        raise BrokerUnavailable("the result store is not reachable: try again") from error
    if isinstance(kind, bytes):
        kind = kind.decode()
    if meta is None:
        meta = {"status": states.PENDING, "result": None}
    if meta["status"] == states.STARTED and _runner_is_gone(app, meta.get("result")):
        return kind, _lost(task_id, meta["result"], app)
    return kind, _shown_status(task_id, meta["status"], meta.get("result"))


def _runner_is_gone(app: Celery, started: object) -> bool:
    """Whether the worker instance that recorded STARTED has stopped renewing its key."""
    instance = started.get("worker_instance") if isinstance(started, dict) else None
    if not instance:
        return False  # recorded by an older version: nothing to tell by
    unreachable: tuple[type[BaseException], ...] = (OSError, *_backend_errors(app))
    try:
        return app.backend.get(_ALIVE_KEY.format(instance=instance)) is None
    except unreachable as error:
        raise BrokerUnavailable("the result store is not reachable: try again") from error


def _lost(task_id: str, started: dict, app: Celery) -> dict:
    """A task whose worker died while running it: waiting to be delivered again (acks_late
    keeps its message; Redis hands it out after the visibility timeout)."""
    timeout = app.conf.broker_transport_options.get("visibility_timeout")
    return {
        "task_id": task_id,
        "status": "PENDING",
        "result": None,
        "error": (
            f"the worker that was running this task ({started.get('hostname')}) stopped "
            f"before it finished; the broker hands the task to a worker again within "
            f"{timeout} s of its start (BROKER_VISIBILITY_TIMEOUT), or submit it again"
        ),
    }


#: What the API shows for Celery's states (the contract names four).
_SHOWN_STATE = {
    states.PENDING: "PENDING",
    states.RECEIVED: "PENDING",
    states.RETRY: "PENDING",  # it failed for a moment and will run again
    states.STARTED: "STARTED",
    states.SUCCESS: "SUCCESS",
    states.FAILURE: "FAILURE",
    states.REVOKED: "FAILURE",
    states.REJECTED: "FAILURE",
}


def _status_store(app: Celery) -> BaseKeyValueStoreBackend:
    """The result backend, if it keeps statuses the API can read back (rpc:// sends them
    to the caller over the broker instead, which the API never waits for)."""
    backend = app.backend
    if not isinstance(backend, BaseKeyValueStoreBackend):
        raise BrokerUnavailable(
            f"the result backend ({type(backend).__name__}) keeps no task statuses to read: "
            "set CELERY_RESULT_BACKEND to redis://… (or leave it unset to use REDIS_URL)"
        )
    return backend


def _shown_status(task_id: str, state: str, outcome: object) -> dict:
    shown = _SHOWN_STATE.get(state, "PENDING")
    if shown == "FAILURE":
        error_text = (
            f"{type(outcome).__name__}: {outcome}"
            if isinstance(outcome, BaseException)
            else f"task {state.lower()}"
        )
        return {"task_id": task_id, "status": shown, "result": None, "error": error_text}
    return {
        "task_id": task_id,
        "status": shown,
        "result": outcome if shown == "SUCCESS" else None,
        "error": None,
    }


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


def _backend_errors(app: Celery) -> tuple[type[BaseException], ...]:
    errors = getattr(app.backend, "connection_errors", ())
    return tuple(errors) if errors else ()


__all__ = [
    "BrokerUnavailable",
    "ContactBookCelery",
    "InvalidSchedule",
    "QueueHealth",
    "QueueMonitor",
    "SearchQueueFull",
    "create_celery_app",
    "parse_sync_schedule",
    "submit",
]
