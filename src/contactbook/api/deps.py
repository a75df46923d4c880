"""Typed dependencies shared by the routers: settings, the connection pools, the Celery
client, auth."""

from __future__ import annotations

import hmac
from typing import Annotated

from celery import Celery
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from contactbook.config import Settings
from contactbook.db import AsyncDictConnection, DictConnection
from contactbook.db.replica import ReadRouter
from contactbook.errors import BrokerUnavailable

_bearer = HTTPBearer(auto_error=False)


# Dependencies that only read app state are `async def`: FastAPI runs a plain `def`
# dependency on a thread of its pool, a hop each for nothing.


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_pool(request: Request) -> ConnectionPool[DictConnection]:
    """The connection pool. Endpoints take a connection with ``pool.connection()`` in
    their own body, never through a dependency: FastAPI enters a dependency and runs the
    endpoint on two different threads of its 40, so under load every thread could be
    waiting for a connection while the requests holding the connections waited for a
    thread. That deadlocked the API at 190 requests/s until its clients went away."""
    return request.app.state.pool


async def get_read_pool(request: Request) -> AsyncConnectionPool[AsyncDictConnection]:
    """The async pool the read endpoints use on the event loop (see db.create_async_pool)."""
    return request.app.state.read_pool


async def get_celery(request: Request) -> Celery:  # async: no thread hop per poll
    """The app's Celery client; 503 when no broker is configured (REDIS_URL unset)."""
    celery = request.app.state.celery
    if celery is None:
        raise BrokerUnavailable(
            "no task queue is configured: set REDIS_URL (or CELERY_BROKER_URL) for this API"
        )
    return celery


async def get_reads(request: Request) -> ReadRouter:
    """Where reads run: the replica (DATABASE_READ_URL) while it answers, else the primary."""
    return request.app.state.reads


def _token_matches(given: str, allowed: list[str]) -> bool:
    # Compare against every token, always, in constant time per token.
    matched = False
    for token in allowed:
        matched |= hmac.compare_digest(given.encode(), token.encode())
    return matched


async def require_reader(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Open when CONTACTBOOK_API_TOKENS is unset; otherwise one of those tokens."""
    tokens = settings.api_tokens
    if not tokens:
        return
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this endpoint needs 'Authorization: Bearer <token>' with one of the API tokens",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not _token_matches(credentials.credentials, tokens):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token is not an API token")


async def require_admin(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Admin endpoints need CONTACTBOOK_ADMIN_TOKEN; with none configured they are closed
    to every request (403, as the contract says), with or without a token."""
    admin = settings.contactbook_admin_token
    if admin is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "admin endpoints are disabled: set CONTACTBOOK_ADMIN_TOKEN to enable them",
        )
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this endpoint needs 'Authorization: Bearer <CONTACTBOOK_ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not _token_matches(credentials.credentials, [admin.get_secret_value()]):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token is not the admin token")


async def require_metrics_reader(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Open when METRICS_TOKEN is unset; otherwise that token."""
    token = settings.metrics_token
    if token is None:
        return
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this endpoint needs 'Authorization: Bearer <METRICS_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not _token_matches(credentials.credentials, [token.get_secret_value()]):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token is not the metrics token")


Pool = Annotated[ConnectionPool[DictConnection], Depends(get_pool)]
ReadPool = Annotated[AsyncConnectionPool[AsyncDictConnection], Depends(get_read_pool)]
Reads = Annotated[ReadRouter, Depends(get_reads)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
Reader = Depends(require_reader)
Admin = Depends(require_admin)
MetricsReader = Depends(require_metrics_reader)
