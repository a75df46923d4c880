"""Prometheus metrics, served by the API at `/metrics`.

Families (all prefixed `contactbook_`):

| family | type | labels |
| --- | --- | --- |
| `http_requests_total` | counter | method, route (template: `/api/v1/contacts/{id}`), status |
| `http_request_duration_seconds` | histogram | method, route, status |
| `search_results` | histogram | source (v1, v2, cli) |
| `sync_runs_total` | counter | status (success, failed, skipped) |
| `sync_last_success_timestamp_seconds`, `sync_last_failure_timestamp_seconds` | gauge | |
| `sync_last_run_contacts` | gauge | figure (fetched, inserted, linked, updated, removed, …) |
| `sync_contacts_total` | counter | figure |
| `imports_total` | counter | status |
| `import_rows_total` | counter | outcome (read, inserted, updated, unchanged, skipped) |
| `celery_tasks_total` | counter | task, state (SUCCESS, FAILURE, RETRY, …) |
| `celery_task_duration_seconds` | histogram | task, state |
| `celery_task_failures_total` | counter | task, exception (the class name) |
| `replica_up` | gauge | (1 while DATABASE_READ_URL answers, 0 while reads use the primary) |
| `replication_lag_seconds` | gauge | (the replica's replay lag; 0 once it replayed all it got) |
| `read_fallbacks_total` | counter | (reads the primary answered because the replica did not) |

`method` is GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS or `other`. Labels are bounded
sets chosen here: never a raw path, a query text, a token or a URL.

**Several processes, one view.** The API runs several uvicorn workers and Celery runs in
other processes, each with its own memory. We use prometheus-client's multiprocess mode:
every process writes its samples to memory-mapped files in one directory
(`CONTACTBOOK_HOME/metrics`, set up by `enable_multiprocess` when a role starts), and
`/metrics` merges them at scrape time. So the API's `/metrics` shows the API workers, the
Celery worker, beat and one-off commands such as `contactbook sync` on the same machine
(in docker-compose: the `metrics` volume shared by api, worker and beat). File names carry
the host name and the pid, because containers sharing the volume each number their
processes from 1. Counters of exited processes stay in the directory, so totals survive
restarts of a worker; `enable_multiprocess(..., clear=True)` starts from zero (`serve` does,
since it owns every process that writes there).

Without `enable_multiprocess` (tests, a library user) metrics live in this process only.

Callers never import prometheus_client: the API adds `MetricsMiddleware` and returns
`metrics_response()`; sync, import and search call `record_sync_run`, `record_import` and
`record_search` with plain numbers; `worker.py` calls `install_celery_metrics(app)`.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import Receive, Scope, Send

from contactbook.asgi import HttpMiddleware, call_observed

__all__ = [
    "MetricsMiddleware",
    "enable_multiprocess",
    "install_celery_metrics",
    "metrics_response",
    "record_import",
    "record_read_fallback",
    "record_replica_state",
    "record_search",
    "record_sync_run",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own switch, inherited by children
UNMATCHED_ROUTE = "<unmatched>"
SYNC_FIGURES = ("fetched", "inserted", "linked", "updated", "removed", "unchanged")
IMPORT_OUTCOMES = ("read", "inserted", "updated", "unchanged", "skipped")

# `_created` series double the output and are not exported in multiprocess mode anyway.
disable_created_metrics()

_HOSTNAME = socket.gethostname().replace("_", "-")


def _process_identifier() -> str:
    # The multiprocess collector splits file names on "_": keep it out of the identifier.
    return f"{_HOSTNAME}-{os.getpid()}"


# A process started by a parent that enabled multiprocess mode (a uvicorn worker, a Celery
# child) inherits PROMETHEUS_MULTIPROC_DIR and prometheus-client picks multiprocess mode on
# import, naming files by pid only; name them by host and pid like the parent does.
if getattr(values.ValueClass, "_multiprocess", False):
    values.ValueClass = values.MultiProcessValue(_process_identifier)


def enable_multiprocess(directory: Path, *, clear: bool = False) -> None:
    """Share metrics with the other processes that write to `directory`.

    Call once, early in a process (before any metric is recorded); child processes it starts
    inherit the mode. `clear=True` deletes earlier samples first: only for a process that
    owns every writer of the directory (`serve`), never for one of several containers.
    """
    directory = directory.expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if clear:
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.MultiProcessValue(_process_identifier)
    _families.cache_clear()
    _replica_families.cache_clear()


def multiprocess_enabled() -> bool:
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def metrics_response() -> tuple[bytes, str]:
    """The exposition for `GET /metrics`: (body, content type)."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = _families().registry
    return generate_latest(registry), CONTENT_TYPE_LATEST


def record_search(results: int, *, source: str = "v1") -> None:
    """One search answered with `results` contacts (the page size, not the total)."""
    _families().search_results.labels(source=source).observe(max(results, 0))


def record_sync_run(
    *,
    status: str = "success",
    fetched: int = 0,
    inserted: int = 0,
    linked: int = 0,
    updated: int = 0,
    removed: int = 0,
    unchanged: int = 0,
    finished_at: float | None = None,
) -> None:
    """A finished sync run. `status` is success, failed or skipped (no API key).

    A failed run changes no data, so the last-run figures describe the last successful run.
    """
    families = _families()
    families.sync_runs.labels(status=status).inc()
    finished_at = time.time() if finished_at is None else finished_at
    if status == "failed":
        families.sync_last_failure.set(finished_at)
        return
    if status != "success":
        return
    families.sync_last_success.set(finished_at)
    figures = {
        "fetched": fetched,
        "inserted": inserted,
        "linked": linked,
        "updated": updated,
        "removed": removed,
        "unchanged": unchanged,
    }
    for figure, value in figures.items():
        families.sync_last_run.labels(figure=figure).set(value)
        if value:
            families.sync_contacts.labels(figure=figure).inc(value)


def record_import(
    *,
    read: int = 0,
    inserted: int = 0,
    updated: int = 0,
    unchanged: int = 0,
    skipped: int = 0,
    status: str = "success",
) -> None:
    """A finished CSV import (`status` success or failed) and its row figures."""
    families = _families()
    families.imports.labels(status=status).inc()
    for outcome, value in (
        ("read", read),
        ("inserted", inserted),
        ("updated", updated),
        ("unchanged", unchanged),
        ("skipped", skipped),
    ):
        families.import_rows.labels(outcome=outcome).inc(max(value, 0))


# --- HTTP ---------------------------------------------------------------------------------


class MetricsMiddleware(HttpMiddleware):
    """Count and time every HTTP request by method, route template and status.

    The route is the template of the matched route (`/api/v1/contacts/{contact_id}`), read
    from the scope after routing; requests that match no route share `<unmatched>`, so a
    scan of random URLs cannot blow up the number of series.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await call_observed(
            self.app, scope, receive, send, functools.partial(_count_request, scope)
        )


#: Methods counted by name; any other of the 35 httptools parses is counted as "other".
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _count_request(scope: Scope, status: int, seconds: float) -> None:
    method = scope.get("method", "")
    labels = {
        "method": method if method in HTTP_METHODS else "other",
        "route": route_template(scope),
        "status": str(status),
    }
    families = _families()
    families.http_requests.labels(**labels).inc()
    families.http_duration.labels(**labels).observe(seconds)


def route_template(scope: Scope) -> str:
    """The path template of the route Starlette matched, or `<unmatched>`."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not template:
        return UNMATCHED_ROUTE
    return f"{scope.get('root_path', '')}{template}" if scope.get("root_path") else template


# --- Celery -------------------------------------------------------------------------------


def install_celery_metrics(app: Any) -> None:
    """Count and time Celery tasks by name and final state. Call once in `worker.py`."""
    from celery import signals

    del app  # the signals are process-wide; the argument keeps the call site explicit
    signals.task_prerun.connect(_task_started, weak=False, dispatch_uid="contactbook-metrics")
    signals.task_postrun.connect(_task_finished, weak=False, dispatch_uid="contactbook-metrics")
    signals.task_failure.connect(_task_failed, weak=False, dispatch_uid="contactbook-metrics")


_task_started_at: dict[str, float] = {}


def _task_name(task: Any) -> str:
    return getattr(task, "name", None) or "unknown"


def _task_started(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _task_started_at[task_id] = time.perf_counter()


def _task_finished(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    started = _task_started_at.pop(task_id, None) if task_id else None
    labels = {"task": _task_name(task), "state": state or "UNKNOWN"}
    families = _families()
    families.celery_tasks.labels(**labels).inc()
    if started is not None:
        families.celery_duration.labels(**labels).observe(time.perf_counter() - started)


def _task_failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    exception_name = type(exception).__name__ if exception is not None else "unknown"
    _families().celery_failures.labels(task=_task_name(sender), exception=exception_name).inc()


# --- the families ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Families:
    registry: CollectorRegistry
    http_requests: Counter
    http_duration: Histogram
    search_results: Histogram
    sync_runs: Counter
    sync_last_success: Gauge
    sync_last_failure: Gauge
    sync_last_run: Gauge
    sync_contacts: Counter
    imports: Counter
    import_rows: Counter
    celery_tasks: Counter
    celery_duration: Histogram
    celery_failures: Counter


@functools.cache
def _families() -> _Families:
    # Built on first use, after `enable_multiprocess` had its chance to pick the value class.
    registry = CollectorRegistry()
    common: dict[str, Any] = {"namespace": "contactbook", "registry": registry}
    return _Families(
        registry=registry,
        http_requests=Counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            **common,
        ),
        http_duration=Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            **common,
        ),
        search_results=Histogram(
            "search_results",
            "Contacts returned by one search (the page), by entry point.",
            ["source"],
            buckets=(0, 1, 2, 5, 10, 20, 50, 100),
            **common,
        ),
        sync_runs=Counter("sync_runs", "Nimble sync runs, by outcome.", ["status"], **common),
        sync_last_success=Gauge(
            "sync_last_success_timestamp_seconds",
            "Unix time the last successful Nimble sync finished.",
            multiprocess_mode="max",
            **common,
        ),
        sync_last_failure=Gauge(
            "sync_last_failure_timestamp_seconds",
            "Unix time the last failed Nimble sync finished.",
            multiprocess_mode="max",
            **common,
        ),
        sync_last_run=Gauge(
            "sync_last_run_contacts",
            "Contacts fetched, inserted, linked, updated, removed, unchanged by the last "
            "successful Nimble sync.",
            ["figure"],
            multiprocess_mode="mostrecent",
            **common,
        ),
        sync_contacts=Counter(
            "sync_contacts",
            "Contacts fetched, inserted, linked, updated, removed, unchanged by all syncs.",
            ["figure"],
            **common,
        ),
        imports=Counter("imports", "CSV imports, by outcome.", ["status"], **common),
        import_rows=Counter(
            "import_rows",
            "CSV rows read, inserted, updated, unchanged, skipped by imports.",
            ["outcome"],
            **common,
        ),
        celery_tasks=Counter(
            "celery_tasks",
            "Celery tasks finished, by task name and final state.",
            ["task", "state"],
            **common,
        ),
        celery_duration=Histogram(
            "celery_task_duration_seconds",
            "Run time of Celery tasks, by task name and final state.",
            ["task", "state"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
            **common,
        ),
        celery_failures=Counter(
            "celery_task_failures",
            "Celery tasks that raised, by task name and exception class.",
            ["task", "exception"],
            **common,
        ),
    )


# --- read replica (db/replica.py) -----------------------------------------------------------


def record_replica_state(*, up: bool, lag_seconds: float | None = None) -> None:
    """The read replica answered (`up`, with its replay lag) or did not."""
    families = _replica_families()
    families.up.set(1 if up else 0)
    if lag_seconds is not None:
        families.lag.set(lag_seconds)


def record_read_fallback() -> None:
    """One read answered by the primary because the replica was not answering."""
    _replica_families().fallbacks.inc()


@dataclass(frozen=True)
class _ReplicaFamilies:
    up: Gauge
    lag: Gauge
    fallbacks: Counter


@functools.cache
def _replica_families() -> _ReplicaFamilies:
    common: dict[str, Any] = {"namespace": "contactbook", "registry": _families().registry}
    return _ReplicaFamilies(
        up=Gauge(
            "replica_up",
            "1 while the read replica (DATABASE_READ_URL) answers, 0 while reads use the primary.",
            multiprocess_mode="mostrecent",
            **common,
        ),
        lag=Gauge(
            "replication_lag_seconds",
            "How far the read replica's replay is behind the primary (0: all received WAL "
            "is replayed).",
            multiprocess_mode="mostrecent",
            **common,
        ),
        fallbacks=Counter(
            "read_fallbacks",
            "Reads the primary answered because the read replica did not.",
            **common,
        ),
    )
