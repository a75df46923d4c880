"""Typed dependencies shared by the routers: settings, a pooled connection, auth."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

import psycopg
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contactbook.config import Settings

_bearer = HTTPBearer(auto_error=False)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_conn(request: Request) -> Iterator[psycopg.Connection]:
    with request.app.state.pool.connection() as conn:
        yield conn


def _token_matches(given: str, allowed: list[str]) -> bool:
    # Compare against every token, always, in constant time per token.
    matched = False
    for token in allowed:
        matched |= hmac.compare_digest(given.encode(), token.encode())
    return matched


def require_reader(
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


def require_admin(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Admin endpoints need CONTACTBOOK_ADMIN_TOKEN; with none configured they are closed."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this endpoint needs 'Authorization: Bearer <CONTACTBOOK_ADMIN_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    admin = settings.contactbook_admin_token
    if admin is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "admin endpoints are disabled: set CONTACTBOOK_ADMIN_TOKEN to enable them",
        )
    if not _token_matches(credentials.credentials, [admin.get_secret_value()]):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token is not the admin token")


Conn = Annotated[psycopg.Connection, Depends(get_conn)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Reader = Depends(require_reader)
Admin = Depends(require_admin)
