"""The FastAPI application: routers, error handlers and the connection pool's lifetime."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from contactbook import __version__, db
from contactbook.api import admin, docs, health, page, v1, v2
from contactbook.asgi import AdmissionMiddleware, RelativeRedirectMiddleware
from contactbook.config import Settings, get_settings
from contactbook.db.replica import ReadRouter, create_read_router, primary_unavailable
from contactbook.errors import ContactBookError, QueryTimedOut
from contactbook.initial_import import start_initial_import
from contactbook.logging import AccessLogMiddleware, RequestIdMiddleware
from contactbook.metrics import MetricsMiddleware
from contactbook.worker import create_celery_app

log = logging.getLogger(__name__)

DESCRIPTION = """
Search a company's Nimble CRM contacts kept in its own PostgreSQL.

`GET /api/v1/search?text=` answers synchronously; `/api/v2/search` runs the same search on a
Celery worker. Read endpoints need a bearer token only when `CONTACTBOOK_API_TOKENS` is set;
admin endpoints always need `CONTACTBOOK_ADMIN_TOKEN`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. The database URL must already be resolved (the CLI does that)."""
    settings = settings or get_settings()
    if settings.database_url is None:
        raise RuntimeError("DATABASE_URL is not set: start the API with `contactbook api`")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        reads: ReadRouter = app.state.reads
        if reads.has_replica:
            # Reads come from the replica: start (and keep serving them) without the primary.
            await reads.start_async()
            app.state.pool.open(wait=False)
            await app.state.read_pool.open(wait=False)
        else:
            db.wait_for_database(settings.resolved_database_url)
            app.state.pool.open(wait=True, timeout=30)
            await app.state.read_pool.open(wait=True, timeout=30)
        start_initial_import(settings, app.state.pool, app.state.celery)
        try:
            yield
        finally:
            await reads.close_async()
            await app.state.read_pool.close()
            app.state.pool.close()
            if app.state.celery is not None:
                app.state.celery.close()

    app = FastAPI(
        title="Contact Book",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by docs.router, without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    pooled: db.PoolOptions = {
        "size": settings.db_pool_size,
        "timeout": settings.db_pool_timeout,
        "statement_timeout": settings.db_statement_timeout,
    }
    app.state.pool = db.create_pool(settings.resolved_database_url, **pooled)
    app.state.read_pool = db.create_async_pool(settings.resolved_database_url, **pooled)
    # Searches and contact reads go through this: the replica (DATABASE_READ_URL) while it
    # answers, the two pools above otherwise.
    app.state.reads = create_read_router(
        settings, primary=app.state.pool, primary_async=app.state.read_pool
    )
    # The Celery client that queues tasks (None without a broker: v2 and admin triggers
    # then answer 503). Built here so a bad SYNC_SCHEDULE stops the API at start too.
    app.state.celery = (
        create_celery_app(settings, submit_only=True) if settings.broker_url else None
    )
    app.include_router(health.router)
    app.include_router(v1.router)
    app.include_router(v2.router)
    app.include_router(admin.router)
    app.include_router(page.router)
    app.include_router(docs.router)
    _install_error_handlers(app)
    _describe_validation_errors(app)
    if settings.cors_origins:  # off by default: browsers then allow only same-origin calls
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Total-Count", "X-Request-ID"],
        )
    # Last added runs first: the request id exists before the access line is written,
    # and a request refused admission is logged and counted like any other.
    app.add_middleware(RelativeRedirectMiddleware)
    app.add_middleware(AdmissionMiddleware, wait=settings.db_pool_timeout)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


#: The 422 body this app sends (see `_install_error_handlers`): a readable `detail`, and
#: the individual `errors` when the request itself did not validate.
VALIDATION_ERROR_SCHEMA = {
    "title": "HTTPValidationError",
    "type": "object",
    "properties": {
        "detail": {"type": "string", "title": "Detail"},
        "errors": {"type": "array", "items": {"type": "object"}, "title": "Errors"},
    },
    "required": ["detail"],
}


def _describe_validation_errors(app: FastAPI) -> None:
    """Publish the 422 body as sent, not FastAPI's default (`detail` as a list of errors)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()  # FastAPI keeps it as app.openapi_schema
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas["HTTPValidationError"] = VALIDATION_ERROR_SCHEMA
            return schema
        return app.openapi_schema

    # FastAPI's documented way to extend the schema ("Extending OpenAPI") replaces the
    # method on the instance, which mypy reports as assigning to a method.
    app.openapi = openapi  # type: ignore[method-assign]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ContactBookError)
    async def contactbook_error(request: Request, error: ContactBookError) -> JSONResponse:
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
        return JSONResponse({"detail": str(error)}, status_code=error.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ()) if part != "query")
            problems.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        return JSONResponse(
            {"detail": "; ".join(problems), "errors": jsonable_encoder(error.errors())},
            status_code=422,
        )

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(request: Request, error: PoolTimeout) -> JSONResponse:
        settings: Settings = request.app.state.settings
        if settings.database_read_url and not await run_in_threadpool(
            _answers, settings.resolved_database_url
        ):  # no connection for a write because the primary is away, not because it is busy
            return await database_down(request, error)
        return JSONResponse(
            {"detail": "the service is busy: try again in a moment"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def query_cancelled(request: Request, error: psycopg.errors.QueryCanceled):
        # A statement past DB_STATEMENT_TIMEOUT (a subclass of OperationalError below).
        timed_out = QueryTimedOut.after(request.app.state.settings.db_statement_timeout)
        return await contactbook_error(request, timed_out)

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(request: Request, error: psycopg.OperationalError) -> JSONResponse:
        # Reads that fall back raise their own errors (db/replica.py): this is the primary.
        settings: Settings = request.app.state.settings
        if settings.database_read_url:
            detail = primary_unavailable(settings.resolved_database_url).message
        else:
            detail = "the database is not reachable: try again in a moment"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})


def _answers(database_url: str) -> bool:
    try:
        db.check_connection(database_url, timeout=1)
    except ContactBookError:
        return False
    return True
