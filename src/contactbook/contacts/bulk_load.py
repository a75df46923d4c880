"""Fill an empty `contacts` the fast way: parallel COPY streams, indexes afterwards, one swap.

Used by the import (contacts/importer.py) when the table has no row at all, under the
import's advisory lock:

1. `contacts_loading` is made in the shape of `contacts` (migration 0010);
2. the file's rows are COPYed into it by :data:`STREAMS` connections at once, this
   process parsing the CSV while the servers compute the search vectors; each row gets
   its id here, in file order, so ids still follow the file;
3. a person named twice in the file keeps the last row (as the merge path does);
4. the constraints and indexes (`contactbook_contacts_ddl`) are built by two
   connections at once, the biggest first, beside the name words and the statistics;
5. one short transaction puts the table in the place of `contacts`.

Readers never see half a file: until step 5 nothing they read changes, and step 5 is
one transaction. A failure anywhere drops `contacts_loading` and leaves `contacts` as
it was. Memory stays bounded: a few batches of rows in flight, and the file line of
each copied row (8 bytes a row) for the duplicates' report.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
from psycopg import sql

from contactbook.db import one_row

log = logging.getLogger(__name__)

#: COPY streams, each on a connection of its own: one per core of a small server, and
#: the parsing here keeps a third busy part of the time.
STREAMS = 2
#: Rows handed to a stream at a time, and batches waiting per stream: memory stays at
#: STREAMS * (QUEUED + 1) batches however long the file is.
BATCH_ROWS = 2_000
QUEUED = 4
#: Index builds run this many at once (each on its own connection), with this much
#: memory each: PostgreSQL's default, whatever the server is configured with. More is
#: slower for a GIN index of many distinct words (the name vector's, at a million
#: contacts: 7.9 s with 64MB, 10.4 s with 256MB, 11.5 s with 1GB).
BUILDERS = 2
MAINTENANCE_WORK_MEM = "64MB"

CREATE_LOADING_TABLE = "SELECT contactbook_create_loading_table()"
DROP_LOADING_TABLE = "DROP TABLE IF EXISTS contacts_loading"
# Never wait long to drop it (the streams have ended by then; the next load drops it too).
DROP_LOADING_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '10s'"
FIRST_ID = (
    "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('contacts', 'id')), 0) + 1"
)
LOADING_DDL = """
SELECT kind, name, statement FROM contactbook_contacts_ddl('contacts_loading')
WHERE kind IN ('constraint', 'index')
"""
BUILD_SETTINGS = "SELECT set_config('maintenance_work_mem', %(memory)s, false)"
SWAP_IN = "SELECT contactbook_swap_in_loading_table()"
NO_JIT = "SET LOCAL jit = off"  # a plan over a million rows would be compiled first

# Same person twice in one file: the last row (the highest id) wins.
DELETE_EARLIER_DUPLICATES = """
WITH keyed AS (
    SELECT id, contactbook_person_key(email, first_name, last_name, description) AS key
    FROM contacts_loading
), duplicated AS (
    SELECT key, max(id) AS kept FROM keyed GROUP BY key HAVING count(*) > 1
)
DELETE FROM contacts_loading c
USING keyed JOIN duplicated USING (key)
WHERE c.id = keyed.id AND keyed.id <> duplicated.kept
RETURNING c.id, duplicated.kept
"""
REMEMBER_NAME_WORDS = """
INSERT INTO contact_name_words (word)
SELECT DISTINCT words.lexeme
FROM contacts_loading, unnest(ts_filter(contacts_loading.name_vector, '{a}')) AS words
WHERE words.lexeme NOT LIKE '^%'
ORDER BY 1
ON CONFLICT DO NOTHING
"""
ANALYZE_LOADING = "ANALYZE contacts_loading, contact_name_words"

#: Called with (phase, done, total): phase "copying" counts bytes of the file (reported
#: by the caller), "indexing" counts the build steps.
PhaseProgress = Callable[[str, int, int], None]


@dataclass
class LoadResult:
    inserted: int
    #: (file line of a dropped row, file line of the row kept for the same person)
    duplicates: list[tuple[int, int]]


class _Stream:
    """One COPY into contacts_loading on a connection of its own, fed batch by batch
    from the parsing thread through a bounded queue."""

    def __init__(self, database_url: str, copy_statement: sql.Composed) -> None:
        self._conn = psycopg.connect(database_url)
        self._copy_statement = copy_statement
        self._batches: queue.Queue[list[tuple] | None] = queue.Queue(maxsize=QUEUED)
        self._stop = threading.Event()  # the load failed: roll back, take nothing more
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="import-copy", daemon=True)
        self._thread.start()

    def _next_batch(self) -> list[tuple] | None:
        while not self._stop.is_set():
            try:
                return self._batches.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Abandoned

    def _run(self) -> None:
        try:
            with self._conn.cursor() as cursor, cursor.copy(self._copy_statement) as copy:
                while (batch := self._next_batch()) is not None:
                    for row in batch:
                        copy.write_row(row)
            self._conn.commit()
        except BaseException as error:  # handed to the parsing thread, which raises it
            self.error = error
            self._stop.set()
            with contextlib.suppress(psycopg.Error):  # a broken connection: nothing to undo
                self._conn.rollback()

    def put(self, batch: list[tuple] | None) -> None:
        """Hand over a batch (None: the end), waiting for room; raise this stream's error
        if it failed."""
        while self.error is None:
            try:
                self._batches.put(batch, timeout=0.1)
                return
            except queue.Full:
                continue
        raise self.error

    def finish(self) -> None:
        self.put(None)
        self._thread.join()
        self._conn.close()
        if self.error is not None:
            raise self.error

    def abandon(self) -> None:
        """Stop this COPY after a failure elsewhere (its rows go with the loading table)."""
        self._stop.set()
        self._thread.join()
        self._conn.close()


class _Abandoned(Exception):
    """The load failed elsewhere; this stream stops and rolls back."""


def load_empty_table(
    database_url: str,
    lock_conn: psycopg.Connection,
    columns: Sequence[str],
    rows: Iterable[tuple[int, tuple]],
    *,
    progress: PhaseProgress | None = None,
) -> LoadResult:
    """Load `rows` ((file line, values for `columns`) in file order) into the empty
    contacts table. `lock_conn` holds the import lock and is idle; the caller checked that
    `contacts` has no row. Raises whatever went wrong, with `contacts` unchanged."""
    with lock_conn.transaction():
        lock_conn.execute(CREATE_LOADING_TABLE)
    try:
        with lock_conn.transaction():
            first_id = one_row(lock_conn.execute(FIRST_ID))[0]
        started = time.monotonic()
        lines = _copy_rows(database_url, columns, rows, first_id)
        copied = time.monotonic()
        log.info("copied %d rows in %.1f s on %d streams", len(lines), copied - started, STREAMS)
        if not lines:
            _drop_loading_table(lock_conn)
            return LoadResult(inserted=0, duplicates=[])
        with lock_conn.transaction():
            lock_conn.execute(NO_JIT)
            dropped = lock_conn.execute(DELETE_EARLIER_DUPLICATES).fetchall()
        duplicates = sorted(
            (lines[dropped_id - first_id], lines[kept_id - first_id])
            for dropped_id, kept_id in dropped
        )
        deduplicated = time.monotonic()
        _build_indexes(database_url, lock_conn, progress)
        indexed = time.monotonic()
        with lock_conn.transaction():
            lock_conn.execute(SWAP_IN)
        log.info(
            "duplicates removed in %.1f s, indexes built in %.1f s, swapped in in %.2f s",
            deduplicated - copied,
            indexed - deduplicated,
            time.monotonic() - indexed,
        )
    except BaseException:
        _drop_loading_table(lock_conn)
        raise
    return LoadResult(inserted=len(lines) - len(duplicates), duplicates=duplicates)


def _copy_rows(
    database_url: str, columns: Sequence[str], rows: Iterable[tuple[int, tuple]], first_id: int
) -> array:
    """COPY every row over STREAMS connections; return the file line of each id."""
    copy_statement = sql.SQL("COPY contacts_loading ({}) FROM STDIN").format(
        sql.SQL(", ").join(sql.Identifier(name) for name in ("id", *columns))
    )
    lines = array("q")
    streams = [_Stream(database_url, copy_statement) for _ in range(STREAMS)]
    try:
        batch: list[tuple] = []
        turn = 0
        next_id = first_id
        for line, values in rows:
            batch.append((next_id, *values))
            lines.append(line)
            next_id += 1
            if len(batch) == BATCH_ROWS:
                streams[turn].put(batch)
                turn = (turn + 1) % STREAMS
                batch = []
        if batch:
            streams[turn].put(batch)
        for stream in streams:
            stream.finish()
    except BaseException:
        for stream in streams:
            stream.abandon()
        raise
    return lines


def _build_indexes(
    database_url: str, lock_conn: psycopg.Connection, progress: PhaseProgress | None
) -> None:
    """Constraints and indexes on BUILDERS connections at once (the biggest first, so
    they finish together), then the name words and the planner's statistics (which
    need the expression index to exist, for its own statistics)."""
    with lock_conn.transaction():
        steps = [row[2] for row in lock_conn.execute(LOADING_DDL)]  # the longest first
    steps.insert(2, REMEMBER_NAME_WORDS)  # (about as long as the third index)
    total = len(steps) + 1
    done = 0
    done_lock = threading.Lock()

    def report() -> None:
        nonlocal done
        with done_lock:
            done += 1
            if progress is not None:
                progress("indexing", done, total)

    work: queue.SimpleQueue[str] = queue.SimpleQueue()
    for step in steps:
        work.put(step)

    def builder() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(BUILD_SETTINGS, {"memory": MAINTENANCE_WORK_MEM})
            while True:
                try:
                    statement = work.get_nowait()
                except queue.Empty:
                    return
                step_started = time.monotonic()
                conn.execute(statement)
                log.debug("%.1f s: %s", time.monotonic() - step_started, statement[:60])
                report()

    if progress is not None:
        progress("indexing", 0, total)
    with ThreadPoolExecutor(max_workers=BUILDERS, thread_name_prefix="import-index") as pool:
        for future in [pool.submit(builder) for _ in range(BUILDERS)]:
            future.result()
    with lock_conn.transaction():
        lock_conn.execute(ANALYZE_LOADING)
    report()


def _drop_loading_table(conn: psycopg.Connection) -> None:
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        with conn.transaction():
            conn.execute(DROP_LOADING_LOCK_TIMEOUT)
            conn.execute(DROP_LOADING_TABLE)
    except psycopg.Error as error:  # the next load drops it
        log.warning("could not drop contacts_loading after a failed import: %s", error)
