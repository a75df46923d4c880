"""Queued work as the API and the CLI see it: the tasks' names and queues, sending a task,
and reading back what became of it.

A task is sent by name (`send_task`), so nothing here imports the tasks themselves: they
live beside their domains (`contacts/tasks.py`, `nimble/tasks.py`) and run on workers
built by `worker.py`.

* **Issued ids are remembered** for as long as results are kept
  (``SEARCH_RESULT_EXPIRES``), in the result backend: Celery calls every unknown id
  PENDING, so ``/api/v2/search/status/{id}`` answers 404 for an id that was never issued
  or whose result has expired.
* **Cheap to poll**: v2 clients poll the status endpoint, so a status read is one Redis
  round trip (issued id and state together); the API's app never subscribes to result
  channels, as it never waits. `bench/async_search.py` measures the round trip against v1.
* **Quick to refuse**: publishing retries for well under a second (`worker.celery_config`),
  so the API answers 503 (`BrokerUnavailable`) quickly when the broker is down.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from celery import Celery, states
from celery.backends.base import BaseKeyValueStoreBackend
from kombu.exceptions import ChannelError, KombuError
from kombu.exceptions import OperationalError as BrokerOperationalError

from contactbook import errors
from contactbook.contacts import runs
from contactbook.contacts.search import prepare_search
from contactbook.errors import BrokerUnavailable
from contactbook.worker_health import ALIVE_KEY

if TYPE_CHECKING:
    from contactbook.db import DictPool
    from contactbook.worker import ContactBookCelery

log = logging.getLogger(__name__)

SEARCH_TASK = "contactbook.search"
IMPORT_TASK = "contactbook.import_csv_file"
SYNC_TASK = "contactbook.sync_contacts"
SWEEP_UPLOADS_TASK = "contactbook.sweep_uploads"
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


class SearchQueueFull(errors.ServiceUnavailable):
    """SEARCH_QUEUE_LIMIT v2 searches are already waiting for a worker."""

    retry_after = 2


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


def submit_search(
    app: ContactBookCelery,
    text: str | None,
    *,
    limit: int = 20,
    offset: int = 0,
    tags: list[str] | None = None,
    company: str | None = None,
) -> str:
    """Queue a v2 search, or raise SearchQueueFull when SEARCH_QUEUE_LIMIT are waiting.

    Input v1 refuses (InvalidSearch, 422) is refused here the same way, never turned into
    a failed task.

    Without the bound, 40 slow searches submitted within 3 s delayed every search after
    them by about 270 s; refused at once with Retry-After, a client comes back when the
    workers have caught up. The count is the search queue's length (one round trip; a
    few submits at the same instant may pass the limit together, which is harmless).
    """
    request = prepare_search(text, limit=limit, offset=offset, tags=tags, company=company)
    _status_store(app)  # a backend that keeps no statuses says so before anything waits
    queue_limit = app.settings.search_queue_limit
    if queue_limit:
        waiting = waiting_searches(app)
        if waiting >= queue_limit:
            raise SearchQueueFull(
                f"{waiting} searches are already waiting for a worker (SEARCH_QUEUE_LIMIT="
                f"{queue_limit}): try again in {SearchQueueFull.retry_after} seconds"
            )
    return submit(
        app, SEARCH_TASK, kind=KIND_SEARCH,
        text=request.query, limit=limit, offset=offset, tags=request.tags,
        company=request.company,
    )  # fmt: skip


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


def search_status(app: Celery, task_id: str) -> dict | None:
    """A v2 search's `{task_id, status, result, error}`, or None when this service never
    issued `task_id` as a search (or its result has expired)."""
    kind, answer = lookup(app, task_id)
    return answer if kind == KIND_SEARCH else None


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


def task_status(app: Celery, pool: DictPool, task_id: str) -> dict | None:
    """Any task this service queued as `GET /api/v1/tasks/{id}` shows it (`{task_id, kind,
    status, result, error}`), or None when this service never issued the id.

    An upload's import answers from its run in `import_runs` when the result backend knows
    nothing more (its result expired, or Redis lost it): it never turns into "unknown".
    """
    kind, answer = lookup(app, task_id)
    if kind in (None, KIND_IMPORT) and answer["status"] == "PENDING":
        with pool.connection() as conn:
            recorded = runs.task_status(conn, task_id)
        if recorded is not None:
            kind, answer = KIND_IMPORT, recorded
    if kind is None:
        return None
    return {**answer, "kind": kind}


def _runner_is_gone(app: Celery, started: object) -> bool:
    """Whether the worker instance that recorded STARTED has stopped renewing its key."""
    instance = started.get("worker_instance") if isinstance(started, dict) else None
    if not instance:
        return False  # recorded by an older version: nothing to tell by
    unreachable: tuple[type[BaseException], ...] = (OSError, *_backend_errors(app))
    try:
        return app.backend.get(ALIVE_KEY.format(instance=instance)) is None
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


def _backend_errors(app: Celery) -> tuple[type[BaseException], ...]:
    errors = getattr(app.backend, "connection_errors", ())
    return tuple(errors) if errors else ()


__all__ = [
    "IMPORT_TASK",
    "QUEUE",
    "QUEUES",
    "SEARCH_QUEUE",
    "SEARCH_TASK",
    "SWEEP_UPLOADS_TASK",
    "SYNC_TASK",
    "SearchQueueFull",
    "lookup",
    "submit",
    "search_status",
    "submit_search",
    "task_status",
]
