"""Connections (psycopg 3, psycopg_pool) and schema migrations (Alembic).

Failures a user can cause (a wrong DATABASE_URL, a server that is down, a database that
was never migrated) leave this module as `errors.DatabaseUnavailable`,
`errors.ConfigurationError` or `errors.DatabaseNotMigrated`, with a message that names
the database (never its password) and says what to do. Alembic (and SQLAlchemy under
it) is imported only when migrating: it costs a fifth of a second.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypedDict, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row

from contactbook.errors import ConfigurationError, DatabaseNotMigrated, DatabaseUnavailable

if TYPE_CHECKING:
    from alembic.config import Config
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

log = logging.getLogger(__name__)

#: What `connect` and the pools hand out: connections whose rows are dicts (`dict_row`).
#: Annotate with these, not a bare `psycopg.Connection` (whose rows type as tuples).
DictConnection: TypeAlias = psycopg.Connection[DictRow]
AsyncDictConnection: TypeAlias = psycopg.AsyncConnection[DictRow]

if TYPE_CHECKING:  # psycopg_pool is imported when a pool is made
    DictPool: TypeAlias = ConnectionPool[DictConnection]
    AsyncDictPool: TypeAlias = AsyncConnectionPool[AsyncDictConnection]

Row = TypeVar("Row")


class PoolOptions(TypedDict):
    """The keyword arguments `create_pool` and `create_async_pool` share."""

    size: int
    timeout: float
    statement_timeout: float


MIGRATIONS = Path(__file__).parent / "migrations"

#: What a query raises on a database that lacks this version's schema.
SCHEMA_MISSING = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.UndefinedColumn,
)


def connect(database_url: str, *, autocommit: bool = False) -> DictConnection:
    """One connection whose rows are dicts."""
    return psycopg.connect(database_url, autocommit=autocommit, row_factory=dict_row)


def one_row(cursor: psycopg.Cursor[Row]) -> Row:
    """The row of a statement that always returns exactly one (an aggregate, `EXISTS`,
    `INSERT … RETURNING`): `fetchone()` typed as a row rather than `Row | None`."""
    row = cursor.fetchone()
    if row is None:  # pragma: no cover - only a statement that returns no row gets here
        raise LookupError("the statement returned no row")
    return row


def create_pool(
    database_url: str, *, size: int, timeout: float, statement_timeout: float = 0
) -> DictPool:
    """A pool of dict-row connections, opened by the caller (`pool.open()`).

    `statement_timeout` (seconds, 0 for none) bounds every statement run on its
    connections: see `bound_statements`.
    """
    from psycopg_pool import ConnectionPool

    bound = bound_statements(statement_timeout)

    def configure(conn: DictConnection) -> None:
        if bound is not None:
            conn.execute(*bound)

    return ConnectionPool(
        database_url,
        connection_class=DictConnection,
        min_size=min(2, size),
        max_size=size,
        timeout=timeout,
        kwargs={"row_factory": dict_row, "autocommit": True},
        configure=configure if bound else None,
        open=False,
        name="contactbook",
    )


def create_async_pool(
    database_url: str, *, size: int, timeout: float, statement_timeout: float = 0
) -> AsyncDictPool:
    """The API's pool for reads on the event loop, opened by the caller (`await pool.open()`).

    Requests use it without a thread hop: an endpoint awaits a connection, awaits the one
    statement of its search and answers. `statement_timeout` as in `create_pool`.
    """
    from psycopg_pool import AsyncConnectionPool

    bound = bound_statements(statement_timeout)

    async def configure(conn: AsyncDictConnection) -> None:
        if bound is not None:
            await conn.execute(*bound)

    return AsyncConnectionPool(
        database_url,
        connection_class=AsyncDictConnection,
        min_size=min(2, size),
        max_size=size,
        timeout=timeout,
        kwargs={"row_factory": dict_row, "autocommit": True},
        configure=configure if bound else None,
        open=False,
        name="contactbook-reads",
    )


SET_STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', %(milliseconds)s, false)"
#: For one transaction of a pooled connection that may run long by design (an undelete
#: waits for a running import's lock).
LIFT_STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', '0', true)"
#: The cheapest statement that proves a connection answers.
PING = "SELECT 1"


def bound_statements(statement_timeout: float) -> tuple[str, dict[str, Any]] | None:
    """The statement that gives a pooled connection its `statement_timeout` (seconds;
    None for 0, no bound).

    The pools serving requests and searches (the API's two, the worker's) run it once
    per new connection, so it costs no round trip per query. PostgreSQL then cancels any
    statement that runs longer, lock waits included: a search built to be slow, or one
    stuck behind a restore's locks, ends in `psycopg.errors.QueryCanceled` (the API
    answers 503) instead of holding a connection and a core. Imports, syncs, migrations
    and backups open their own connections (`connect`) and are not bounded.
    """
    milliseconds = round(statement_timeout * 1000)
    if milliseconds <= 0:
        return None
    return SET_STATEMENT_TIMEOUT, {"milliseconds": str(milliseconds)}


def pool_answers(pool: DictPool, *, timeout: float = 2.0) -> bool:
    """Whether a connection of `pool` can be had within `timeout` s and answers a query."""
    try:
        with pool.connection(timeout=timeout) as conn:
            conn.execute(PING)
    except Exception:  # any failure means "not reachable"; readiness says so
        return False
    return True


def without_statement_timeout(conn: DictConnection) -> None:
    """Lift a pooled connection's statement timeout until its transaction ends (call it
    inside `conn.transaction()`)."""
    conn.execute(LIFT_STATEMENT_TIMEOUT)


def describe_database(database_url: str) -> str:
    """The database for people: `PostgreSQL database "crm" on db.example:5432 as app`.
    Never the password."""
    try:
        params = conninfo_to_dict(database_url)
    except psycopg.ProgrammingError:
        return "an unreadable URL"
    name = params.get("dbname") or params.get("user") or "postgres"
    host = params.get("host") or params.get("hostaddr") or "the local socket"
    port = params.get("port")
    where = f"{host}:{port}" if port and not str(host).startswith("/") else str(host)
    user = f" as {params['user']}" if params.get("user") else ""
    return f'PostgreSQL database "{name}" on {where}{user}'


def check_connection(database_url: str, *, timeout: float = 5.0) -> None:
    """Connect once; raise DatabaseUnavailable (or ConfigurationError for a URL that is
    not one) with a message saying what to check."""
    try:
        with psycopg.connect(database_url, connect_timeout=max(1, round(timeout))):
            pass
    except psycopg.ProgrammingError as error:  # libpq could not parse the URL
        raise invalid_url(database_url, error) from error
    except psycopg.OperationalError as error:
        raise unreachable(database_url, error) from error


def unreachable(database_url: str | None, error: BaseException) -> DatabaseUnavailable:
    """The error to raise when `database_url` (None: the one in use) does not answer, or
    refuses us."""
    which = describe_database(database_url) if database_url else "database"
    return DatabaseUnavailable(
        f"cannot connect to the {which}: {_reason(error, database_url)}. Check DATABASE_URL "
        "(unset it to use the embedded database) and that the server is running and reachable."
    )


def invalid_url(database_url: str | None, error: BaseException) -> ConfigurationError:
    return ConfigurationError(
        f"DATABASE_URL is not a PostgreSQL connection URL ({_reason(error, database_url)}); "
        "write it as postgresql://user:password@host:5432/dbname"
    )


def not_migrated(database_url: str | None, error: BaseException) -> DatabaseNotMigrated:
    """The error for a query that found this version's tables or functions missing."""
    which = describe_database(database_url) if database_url else "database"
    return DatabaseNotMigrated(
        f"the {which} does not have this version's tables ({_reason(error, database_url)}): "
        "run `contactbook db upgrade` first."
    )


def first_line(error: BaseException) -> str:
    """A driver message's first line, any password it quoted replaced by `***`."""
    return _reason(error, None)


def wait_for_database(database_url: str, *, timeout: float = 60.0) -> None:
    """Block until the database answers, logging once per attempt; raise
    DatabaseUnavailable after `timeout` (at once for a URL that does not parse)."""
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        try:
            with psycopg.connect(database_url, connect_timeout=5) as conn:
                conn.execute(PING)
            return
        except psycopg.ProgrammingError as error:
            raise invalid_url(database_url, error) from error
        except psycopg.OperationalError as error:
            if time.monotonic() + delay > deadline:
                raise unreachable(database_url, error) from error
            log.warning(
                "database not reachable yet, retrying in %.1fs: %s",
                delay,
                _reason(error, database_url),
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
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation would read a '%' in a password as a placeholder.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str) -> None:
    """Apply every pending migration. Safe when several processes start together."""
    from alembic import command
    from sqlalchemy.exc import ArgumentError, OperationalError

    try:
        command.upgrade(alembic_config(database_url), "head")
    except OperationalError as error:
        raise unreachable(database_url, error.orig or error) from error
    except ArgumentError as error:  # not a URL SQLAlchemy can read
        raise invalid_url(database_url, error) from error


def _reason(error: BaseException, database_url: str | None) -> str:
    """The first line of a driver message, without the password if it echoed it."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    reason = lines[0] if lines else type(error).__name__
    reason = reason.removeprefix("connection failed: ")
    try:
        password = conninfo_to_dict(database_url).get("password") if database_url else None
    except psycopg.ProgrammingError:
        password = None
    if password:
        reason = reason.replace(str(password), "***")
    return _URL_PASSWORD.sub(r"\1***@", reason)


# user:password@ inside a URL that a message quotes (one libpq could not even parse).
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
