"""Connections (psycopg 3, psycopg_pool) and schema migrations (Alembic)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def connect(database_url: str, *, autocommit: bool = False) -> psycopg.Connection:
    """One connection whose rows are dicts."""
    return psycopg.connect(database_url, autocommit=autocommit, row_factory=dict_row)


def create_pool(database_url: str, *, size: int, timeout: float) -> ConnectionPool:
    """A pool of dict-row connections, opened by the caller (`pool.open()`)."""
    return ConnectionPool(
        database_url,
        min_size=min(2, size),
        max_size=size,
        timeout=timeout,
        kwargs={"row_factory": dict_row, "autocommit": True},
        open=False,
        name="contactbook",
    )


def create_async_pool(database_url: str, *, size: int, timeout: float) -> AsyncConnectionPool:
    """The API's pool for reads on the event loop, opened by the caller (`await pool.open()`).

    Requests use it without a thread hop: an endpoint awaits a connection, awaits the one
    statement of its search and answers.
    """
    return AsyncConnectionPool(
        database_url,
        min_size=min(2, size),
        max_size=size,
        timeout=timeout,
        kwargs={"row_factory": dict_row, "autocommit": True},
        open=False,
        name="contactbook-reads",
    )


def wait_for_database(database_url: str, *, timeout: float = 60.0) -> None:
    """Block until the database answers, logging once per attempt; raise after `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        try:
            with psycopg.connect(database_url, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as error:
            if time.monotonic() + delay > deadline:
                raise
            log.warning(
                "database not reachable yet, retrying in %.1fs: %s",
                delay,
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def sqlalchemy_url(database_url: str) -> str:
    """Alembic speaks SQLAlchemy; point it at psycopg 3."""
    scheme, _, rest = database_url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return database_url


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would read a '%' in a password as a placeholder.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str) -> None:
    """Apply every pending migration. Safe when several processes start together."""
    command.upgrade(alembic_config(database_url), "head")
