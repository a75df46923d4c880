"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from contactbook import db, metrics
from contactbook.api.deps import MetricsReader

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process is up (on the event loop: it answers even when every thread is busy)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is not reachable."}})
def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers and, when one is configured, the broker too.

    `broker` and `worker` are the last answer of a check this process makes every 5 s in
    the background (`worker_health.QueueMonitor`), so a probe costs the broker nothing
    and a burst of probes cannot take the connections that task submission needs.

    `worker` says whether a Celery worker answered a ping within a second. It is reported
    but does not decide readiness: this process serves v1 and the page without a worker,
    and v2 searches wait in the queue until one comes, so taking the API out of a load
    balancer for a worker's absence would only make things worse. Without a broker
    (REDIS_URL unset) `broker` and `worker` are not reported. With DATABASE_READ_URL,
    `replica` says whether the read replica answers and `replication_lag_seconds` how far
    its replay is behind; either database answering is enough to be ready, since reads
    fall back to the primary and writes answer 503 while the primary is away.
    """
    checks = {"database": db.pool_answers(request.app.state.pool)}
    replica = request.app.state.reads.report()  # None without DATABASE_READ_URL
    celery = request.app.state.celery
    if celery is not None:
        queue = celery.queue_monitor.health()
        checks["broker"] = queue.broker
    ready = all(checks.values())
    body: dict = {}
    if replica is not None:
        # Reads need one of the two; writes answer 503 on their own while the primary is
        # away, and dropping the API from the balancer would stop the reads as well.
        checks["replica"] = replica.up
        others = [value for name, value in checks.items() if name not in ("database", "replica")]
        ready = all(others) and (checks["database"] or replica.up)
        body["replication_lag_seconds"] = replica.lag_seconds
    if celery is not None:
        checks["worker"] = queue.broker and queue.worker
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks, **body},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", include_in_schema=False, dependencies=[MetricsReader])
def prometheus_metrics() -> Response:
    """Prometheus metrics of this machine's API workers, Celery worker and beat."""
    body, content_type = metrics.metrics_response()
    return Response(body, media_type=content_type)
