"""Reads from a streaming replica (DATABASE_READ_URL), with the primary as the fallback.

`ReadRouter.run(work)` (and `run_async` on the event loop) hands `work` a connection to
the replica while it answers, and to the primary (DATABASE_URL) while it does not. What
reads through it: v1 and v2 search, contact reads, `/api/v1/stats`; writes, imports,
syncs, migrations and the admin endpoints take the primary pool directly.

- **Replica down:** the read that finds it gone (its connection broken, or no new one
  can be made) runs again on the primary: a read can always run twice. The router logs
  one line when the replica goes away and one when it is back, never one per request,
  sets `contactbook_replica_up` to 0 and counts every read the primary answers instead
  (`contactbook_read_fallbacks_total`). While the replica is marked down no request
  waits for it: the `ReplicaMonitor` thread probes it every two seconds and puts it
  back in use when it answers.
- **Primary down:** reads never touch it while the replica answers; writes fail on the
  primary pool and the API answers 503 with `primary_unavailable`'s message, which names
  the primary (never its password).
- **Replication lag:** the monitor reads the replica's replay lag on each probe
  (`contactbook_replication_lag_seconds`, and `/readyz`): the age of the last replayed
  transaction, or 0 once it has replayed everything it received. An idle primary sends
  nothing new, so "last replayed transaction is ten minutes old" alone is not lag.

Without DATABASE_READ_URL the router is a thin pass-through to the primary pools, so the
endpoints read the same way in both set-ups.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import psycopg
from psycopg_pool import PoolTimeout

from contactbook import metrics
from contactbook.db import (
    PoolOptions,
    create_async_pool,
    create_pool,
    describe_database,
    first_line,
)
from contactbook.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from contactbook.config import Settings
    from contactbook.db import AsyncDictConnection, AsyncDictPool, DictConnection, DictPool

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two probes of the replica (its lag, and whether it is back).
PROBE_INTERVAL = 2.0

#: The replica's replay lag in seconds; 0 when it has replayed all the WAL it received
#: (an idle primary sends none), and 0 on a server that is not a standby at all.
REPLAY_LAG = """
SELECT CASE
         WHEN NOT pg_is_in_recovery() THEN 0.0
         WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0
         ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
       END AS lag_seconds
"""

# SQLSTATE classes of "this server is gone or going": connection exceptions (08) and
# operator intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect
# now); 57014 (a statement timeout) is the query's fault, not the server's.
_SERVER_GONE_PREFIXES = ("08", "57P")
#: A standby cancelled the read to replay WAL: the primary can answer it instead.
_RECOVERY_CONFLICT = "40001"


def server_gone(error: psycopg.Error) -> bool:
    """Whether `error` says the server (not the statement) failed. A pool with no free
    connection (PoolTimeout) is busy, not gone: a replica that is really gone is marked
    down by the monitor's next probe."""
    if isinstance(error, PoolTimeout):
        return False
    state = error.sqlstate
    return state is None or state.startswith(_SERVER_GONE_PREFIXES)


def primary_unavailable(database_url: str) -> DatabaseUnavailable:
    """The 503 a write answers while the primary (DATABASE_URL) does not."""
    return DatabaseUnavailable(
        f"the primary database ({describe_database(database_url)}, DATABASE_URL) is not "
        "reachable: writes, imports, syncs and admin requests need it (searches and reads "
        "are answered by the read replica meanwhile); try again in a moment."
    )


@dataclass(frozen=True)
class ReplicaReport:
    """The replica as the last probe saw it."""

    up: bool
    lag_seconds: float | None


class ReplicaState:
    """Whether reads go to the replica; logs each change of mind once."""

    def __init__(self, read_url: str) -> None:
        self.description = describe_database(read_url)
        self._lock = threading.Lock()
        self._up = True
        self.lag_seconds: float | None = None
        #: How many times the replica came back after being down (see ReadRouter._fresh).
        self.recoveries = 0

    @property
    def up(self) -> bool:
        return self._up

    def mark_down(self, error: BaseException) -> None:
        with self._lock:
            was_up, self._up = self._up, False
            self.lag_seconds = None
        if was_up:
            log.warning(
                "the read replica (%s) is not answering (%s): reads go to the primary "
                "until it is back",
                self.description,
                first_line(error),
            )
        metrics.record_replica_state(up=False)

    def mark_up(self, lag_seconds: float | None) -> None:
        with self._lock:
            was_up, self._up = self._up, True
            self.lag_seconds = lag_seconds
            if not was_up:
                self.recoveries += 1
        if not was_up:
            log.info("the read replica (%s) answers again: reads use it", self.description)
        metrics.record_replica_state(up=True, lag_seconds=lag_seconds)

    def report(self) -> ReplicaReport:
        return ReplicaReport(up=self._up, lag_seconds=self.lag_seconds)


class ReplicaMonitor:
    """Probes the replica every `interval` seconds on a thread of its own (one connection)."""

    def __init__(self, read_url: str, state: ReplicaState, *, interval: float = PROBE_INTERVAL):
        self.read_url = read_url
        self.state = state
        self.interval = interval
        self._conn: psycopg.Connection | None = None
        self._probe_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def probe(self) -> ReplicaReport:
        """Ask the replica its lag now; mark it up or down accordingly. While another probe
        is under way (a burst of /readyz), answer what the last one found instead of
        queueing behind it; a probe waits at most 2 s to connect and 2 s for its answer."""
        if not self._probe_lock.acquire(blocking=False):
            return self.state.report()
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self.read_url,
                    autocommit=True,
                    connect_timeout=2,
                    options="-c statement_timeout=2000",
                )
            row = self._conn.execute(REPLAY_LAG).fetchone()
        except psycopg.Error as error:
            self._close_connection()
            self.state.mark_down(error)
        else:
            lag = None if row is None or row[0] is None else max(float(row[0]), 0.0)
            self.state.mark_up(lag)
        finally:
            self._probe_lock.release()
        return self.state.report()

    def start(self) -> None:
        """Probe once now (so the first request knows where to go), then keep probing."""
        self.probe()
        self._thread = threading.Thread(target=self._run, name="replica-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._probe_lock:
            self._close_connection()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.probe()

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ReadRouter:
    """Where reads run: the replica's pools while it answers, the primary's otherwise.

    `replica` and `replica_async` are None without DATABASE_READ_URL; `primary_async` and
    `replica_async` are None for a caller that reads only off the event loop (a worker).
    """

    def __init__(
        self,
        *,
        primary: DictPool,
        primary_async: AsyncDictPool | None = None,
        replica: DictPool | None = None,
        replica_async: AsyncDictPool | None = None,
        monitor: ReplicaMonitor | None = None,
    ) -> None:
        self.primary = primary
        self.primary_async = primary_async
        self.replica = replica
        self.replica_async = replica_async
        self.monitor = monitor
        self._checked_at: dict[int, int] = {}  # id(pool) -> recoveries when last checked

    @property
    def has_replica(self) -> bool:
        return self.monitor is not None

    def run(self, work: Callable[[DictConnection], T]) -> T:
        """`work(connection)` on the replica, or on the primary when the replica is away."""
        if self.replica is not None and self._replica_in_use():
            if self._needs_check(self.replica):
                self.replica.check()
            try:
                with self.replica.connection() as conn:
                    return work(conn)
            except psycopg.OperationalError as error:
                self._replica_failed(error)
        try:
            with self.primary.connection() as conn:
                return work(conn)
        except psycopg.OperationalError as error:
            if self._replica_also_down(error):
                raise self._neither_answers() from error
            raise  # no replica involved: the API's handler names the database

    async def run_async(self, work: Callable[[AsyncDictConnection], Awaitable[T]]) -> T:
        """`run` for the event loop, on the async pools."""
        if self.replica_async is not None and self._replica_in_use():
            if self._needs_check(self.replica_async):
                await self.replica_async.check()
            try:
                async with self.replica_async.connection() as conn:
                    return await work(conn)
            except psycopg.OperationalError as error:
                self._replica_failed(error)
        assert self.primary_async is not None, "this router has no async pools"
        try:
            async with self.primary_async.connection() as conn:
                return await work(conn)
        except psycopg.OperationalError as error:
            if self._replica_also_down(error):
                raise self._neither_answers() from error
            raise  # no replica involved: the API's handler names the database

    def report(self) -> ReplicaReport | None:
        """The replica now (a fresh probe), or None without DATABASE_READ_URL."""
        return self.monitor.probe() if self.monitor is not None else None

    def _replica_in_use(self) -> bool:
        if self.monitor is None or self.monitor.state.up:
            return True
        metrics.record_read_fallback()
        return False

    def _needs_check(self, pool: object) -> bool:
        """Whether the replica came back since `pool` was last checked (then the caller
        checks it once). While the replica was down, the pool's reconnection attempts
        backed off (up to minutes apart): `check()` drops its dead connections and makes
        a new one now, so the first read after the replica's return does not wait."""
        recoveries = self.monitor.state.recoveries if self.monitor is not None else 0
        if self._checked_at.get(id(pool), 0) == recoveries:
            return False
        self._checked_at[id(pool)] = recoveries
        return True

    def _replica_failed(self, error: psycopg.OperationalError) -> None:
        """Decide what a replica's error means; re-raise it when the read itself failed."""
        if error.sqlstate == _RECOVERY_CONFLICT:
            return  # the standby cancelled it to replay WAL: the primary answers this one
        if not server_gone(error):
            raise error
        if self.monitor is not None:
            self.monitor.state.mark_down(error)
        metrics.record_read_fallback()

    def _replica_also_down(self, error: psycopg.OperationalError) -> bool:
        return self.monitor is not None and not self.monitor.state.up and server_gone(error)

    def _neither_answers(self) -> DatabaseUnavailable:
        assert self.monitor is not None
        return DatabaseUnavailable(
            f"neither the read replica ({self.monitor.state.description}, DATABASE_READ_URL) "
            f"nor the primary ({describe_database(self.primary_url)}, DATABASE_URL) is "
            "reachable: try again in a moment."
        )

    @property
    def primary_url(self) -> str:
        return str(self.primary.conninfo)

    def start(self) -> None:
        """Open the replica's pool and start probing it; waits for nothing but one probe."""
        if self.replica is not None:
            self.replica.open(wait=False)
        if self.monitor is not None:
            self.monitor.start()

    async def start_async(self) -> None:
        self.start()
        if self.replica_async is not None:
            await self.replica_async.open(wait=False)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        if self.replica is not None:
            self.replica.close()

    async def close_async(self) -> None:
        if self.replica_async is not None:
            await self.replica_async.close()
        self.close()


def create_read_router(
    settings: Settings,
    *,
    primary: DictPool,
    primary_async: AsyncDictPool | None = None,
    probe_interval: float = PROBE_INTERVAL,
) -> ReadRouter:
    """The router for these settings: replica pools (async ones too when `primary_async`
    is given) and a monitor when DATABASE_READ_URL is set, the primary pools alone when not."""
    read_url = settings.database_read_url
    if read_url is None:
        return ReadRouter(primary=primary, primary_async=primary_async)
    pooled: PoolOptions = {
        "size": settings.db_pool_size,
        "timeout": settings.db_pool_timeout,
        "statement_timeout": settings.db_statement_timeout,
    }
    return ReadRouter(
        primary=primary,
        primary_async=primary_async,
        replica=create_pool(read_url, **pooled),
        replica_async=create_async_pool(read_url, **pooled) if primary_async else None,
        monitor=ReplicaMonitor(read_url, ReplicaState(read_url), interval=probe_interval),
    )


def prepare_to_serve(database_url: str, read_url: str | None, *, wait: float = 30.0) -> None:
    """What the API does before serving: wait for the primary and apply migrations.

    With a read replica, the API may also start while the primary is away (a restart
    during its outage), provided the replica already has this version's schema: it is a
    copy of the primary, so the primary has it too and nothing is left to migrate. Reads
    are then served from the replica and writes answer 503 until the primary is back.
    """
    from contactbook import db

    if read_url is None:
        db.wait_for_database(database_url)
        db.upgrade(database_url)
        return
    try:
        db.wait_for_database(database_url, timeout=wait)
    except DatabaseUnavailable:
        if not _has_current_schema(read_url):
            raise
        log.warning(
            "the primary database (%s) is not reachable: starting with reads from the read "
            "replica (%s), which has this version's schema; writes answer 503 until the "
            "primary is back",
            describe_database(database_url),
            describe_database(read_url),
        )
        return
    db.upgrade(database_url)


def _has_current_schema(read_url: str) -> bool:
    from alembic.script import ScriptDirectory

    from contactbook.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config(read_url)).get_current_head()
    try:
        with psycopg.connect(read_url, connect_timeout=5) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] == head
