"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from contactbook import metrics, tasks
from contactbook.api.deps import MetricsReader

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process is up (on the event loop: it answers even when every thread is busy)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is not reachable."}})
def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers and, when one is configured, the broker too.

    `worker` says whether a Celery worker answered a ping within a second. It is reported
    but does not decide readiness: this process serves v1 and the page without a worker,
    and v2 searches wait in the queue until one comes, so taking the API out of a load
    balancer for a worker's absence would only make things worse. Without a broker
    (REDIS_URL unset) `broker` and `worker` are not reported.
    """
    checks = {"database": _database_ok(request)}
    celery = request.app.state.celery
    if celery is not None:
        checks["broker"] = tasks.broker_reachable(celery)
    ready = all(checks.values())
    if celery is not None:
        checks["worker"] = checks["broker"] and tasks.worker_answers(celery)
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


def _database_ok(request: Request) -> bool:
    try:
        with request.app.state.pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


@router.get("/metrics", include_in_schema=False, dependencies=[MetricsReader])
def prometheus_metrics() -> Response:
    """Prometheus metrics of this machine's API workers, Celery worker and beat."""
    body, content_type = metrics.metrics_response()
    return Response(body, media_type=content_type)
