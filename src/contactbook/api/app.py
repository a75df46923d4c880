"""The FastAPI application: routers, error handlers and the connection pool's lifetime."""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from contactbook import __version__, db
from contactbook.api import health, v1
from contactbook.config import Settings, get_settings
from contactbook.contacts.importer import import_csv
from contactbook.contacts.search import InvalidSearch

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
        db.wait_for_database(settings.database_url)
        app.state.pool.open(wait=True, timeout=30)
        start_initial_import(settings)
        try:
            yield
        finally:
            app.state.pool.close()

    app = FastAPI(
        title="Contact Book",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.pool = db.create_pool(
        settings.database_url, size=settings.db_pool_size, timeout=settings.db_pool_timeout
    )
    app.include_router(health.router)
    app.include_router(v1.router)
    _install_error_handlers(app)
    return app


def start_initial_import(settings: Settings) -> None:
    """Import the start-up CSV in the background when the database has no contacts.

    The import decides "empty?" under its advisory lock, so API processes starting
    together import the file exactly once.
    """

    def run() -> None:
        try:
            import_csv(
                settings.database_url,
                settings.initial_csv,
                source=f"start-up import of {settings.initial_csv.name}",
                only_if_empty=True,
            )
        except Exception:
            log.exception("start-up import of %s failed", settings.initial_csv)

    threading.Thread(target=run, name="initial-import", daemon=True).start()


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidSearch)
    async def invalid_search(request: Request, error: InvalidSearch) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

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
        return JSONResponse(
            {"detail": "the service is busy: try again in a moment"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(request: Request, error: psycopg.OperationalError) -> JSONResponse:
        return JSONResponse(
            {"detail": "the database is not reachable: try again in a moment"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
