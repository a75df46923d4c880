"""The one CSV import pipeline: used by the CLI, the start-up import and the upload endpoint.

The file is streamed into a temporary staging table with COPY, then merged into
`contacts` in the same transaction, so a file that turns out to be unusable halfway
through writes nothing. Rows link to live contacts by lower-cased email (rows without
an email by their names; an email cell that is not an address is never stored, so it
links nothing), the last row of a file wins over earlier rows with the same key, and
only rows whose values change are rewritten, so importing a file twice changes nothing
the second time. What the reader found wrong with rows it still imported (more cells
than the header, emails that are not addresses) goes into the summary and `import_runs`
with the line numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from contactbook import metrics
from contactbook.contacts import bulk_load, runs
from contactbook.contacts.csv_reader import (
    FIELDS,
    ContactsCsv,
    CsvContact,
    SkippedRow,
    UnusableCsvError,
)
from contactbook.db import one_row

log = logging.getLogger(__name__)

# Held for the whole merge: imports (and the start-up "import when empty" check) queue
# behind each other instead of racing to insert the same people twice.
IMPORT_LOCK_KEY = 7_201_002

#: A merge that writes more than this share of the table refreshes its statistics at
#: once (search plans and X-Total-Count estimates read them) rather than waiting for
#: autovacuum; a small one leaves them (ANALYZE of a million contacts takes 0.6 s, the
#: merge of 10,000 rows about as long). An empty-table load analyzes its table itself.
ANALYZE_AFTER_SHARE = 0.1

# The merge's statements plan in the cost range where PostgreSQL's JIT compiles them
# (about 120 ms on every import, for statements that take a few ms).
NO_JIT = "SET LOCAL jit = off"
# A file that is small beside the table is matched by index lookups (10,000 rows into a
# million: 110 ms; the hash join the planner prefers costs 620 ms, a pass over every
# contact); a big one by the planner's choice.
INDEX_LOOKUPS_BELOW_SHARE = 0.1
MATCH_BY_INDEX = "SET LOCAL enable_hashjoin = off"
TABLE_ROWS = "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'contacts'::regclass"

Progress = Callable[[str, int, int], None]
"""Called with (phase, done, total): "reading" counts bytes of the file as it streams in
(into the database, or into the staging table); an empty table is then "indexing"
(build steps), a non-empty one "merging" (steps)."""

CREATE_STAGING = """
CREATE TEMP TABLE import_rows (
    line integer NOT NULL,
    first_name text,
    last_name text,
    email text,
    description text,
    phones text[] NOT NULL,
    title text,
    company text,
    location text,
    tags text[] NOT NULL
) ON COMMIT DROP
"""

COPY_STAGING = """
COPY import_rows (line, first_name, last_name, email, description, phones, title, company,
    location, tags) FROM STDIN
"""

# One row per person (see contactbook_person_key); the last row of the file wins.
CREATE_LATEST = """
CREATE TEMP TABLE import_latest ON COMMIT DROP AS
SELECT DISTINCT ON (match_key) line, first_name, last_name, email, description,
    phones, title, company, location, tags, match_key
FROM (
    SELECT r.*,
        contactbook_person_key(r.email, r.first_name, r.last_name, r.description) AS match_key
    FROM import_rows r
) keyed
ORDER BY match_key, line DESC
"""

DUPLICATE_ROWS = """
SELECT r.line, l.line AS kept_line
FROM import_rows r
JOIN import_latest l
    ON l.match_key = contactbook_person_key(r.email, r.first_name, r.last_name, r.description)
WHERE r.line <> l.line
ORDER BY r.line
"""

# Which live contact each staged row belongs to (the oldest, when several share a key).
CREATE_MATCHES = """
CREATE TEMP TABLE import_matches ON COMMIT DROP AS
SELECT l.line, min(c.id) AS contact_id
FROM import_latest l
LEFT JOIN contacts c
    ON c.deleted_at IS NULL
    AND contactbook_person_key(c.email, c.first_name, c.last_name, c.description) = l.match_key
GROUP BY l.line
"""

# A blank cell never erases what the contact already has: nothing is lost by an import.
# A value in the file replaces the contact's; phones and tags are unions instead (the
# contact's, then the file's new ones, migration 0007's functions): a file holding one
# number or one tag of a person does not take the others away, and what the contact
# had keeps its place (its primary phone stays the primary). Importing the same file
# again adds nothing, so it changes nothing.
UPDATE_MATCHED = """
WITH merged AS (
    SELECT m.contact_id,
        coalesce(l.first_name, c.first_name) AS first_name,
        coalesce(l.last_name, c.last_name) AS last_name,
        coalesce(l.email, c.email) AS email,
        coalesce(l.description, c.description) AS description,
        -- The functions cost 0.02-0.03 ms a call: skipped when the file adds nothing.
        CASE WHEN l.phones <@ c.phones THEN c.phones
             ELSE contactbook_add_phones(c.phones, l.phones)
        END AS phones,
        coalesce(l.title, c.title) AS title,
        coalesce(l.company, c.company) AS company,
        coalesce(l.location, c.location) AS location,
        CASE WHEN l.tags <@ c.tags THEN c.tags ELSE contactbook_add_tags(c.tags, l.tags)
        END AS tags
    FROM import_latest l
    JOIN import_matches m USING (line)
    JOIN contacts c ON c.id = m.contact_id
)
UPDATE contacts c SET
    first_name = n.first_name,
    last_name = n.last_name,
    email = n.email,
    description = n.description,
    phones = n.phones,
    title = n.title,
    company = n.company,
    location = n.location,
    tags = n.tags,
    updated_at = now()
FROM merged n
WHERE c.id = n.contact_id
  AND (n.first_name, n.last_name, n.email, n.description, n.phones, n.title, n.company,
       n.location, n.tags)
      IS DISTINCT FROM
      (c.first_name, c.last_name, c.email, c.description, c.phones, c.title, c.company,
       c.location, c.tags)
"""

INSERT_UNMATCHED = """
INSERT INTO contacts (first_name, last_name, email, description, phones, title, company,
    location, tags, source)
SELECT l.first_name, l.last_name, l.email, l.description, l.phones, l.title, l.company,
    l.location, l.tags, 'csv'
FROM import_latest l JOIN import_matches m USING (line)
WHERE m.contact_id IS NULL
ORDER BY l.line
"""

# Held by the importing session from the "empty?" check to the end: an empty-table
# load spans several transactions (contacts/bulk_load.py). A sync and an undelete take
# the same key for their transaction (`lock_out_imports`).
LOCK_IMPORTS = "SELECT pg_advisory_lock(%(key)s)"
UNLOCK_IMPORTS = "SELECT pg_advisory_unlock(%(key)s)"
LOCK_IMPORTS_FOR_TRANSACTION = "SELECT pg_advisory_xact_lock(%(key)s)"

TABLE_IS_EMPTY = "SELECT NOT EXISTS (SELECT 1 FROM contacts) AS empty"


#: Problems kept (in the summary, the task result and import_runs) per import; the
#: count goes on. A file with a stray comma on every one of a million rows would
#: otherwise put a million messages into one row of import_runs.
MAX_RECORDED_PROBLEMS = 1000
#: Ignored column names listed (in the summary and the task result); the count goes on. A
#: 2 MB file with a million columns made a 5 MB task result of their names.
MAX_LISTED_IGNORED_COLUMNS = 100


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Something wrong with a row that was imported all the same (or skipped)."""

    line: int
    problem: str


@dataclass
class ImportSummary:
    """What an import did: the figures the CLI prints and the API reports.

    ``problems`` are rows with more cells than the header and email cells that are not
    addresses (see csv_reader), the first :data:`MAX_RECORDED_PROBLEMS` of them in line
    order; ``problem_count`` counts them all."""

    source: str
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[SkippedRow] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    #: Every ignored column, listed or not (``ignored_columns`` holds the first 100).
    ignored_column_count: int = 0
    run_id: int | None = None
    performed: bool = True
    #: About how many contacts the table had before a merge (the planner's count).
    table_rows: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    problem_count: int = 0

    def add_problems(self, line: int, problems: tuple[str, ...]) -> None:
        for problem in problems:
            self.problem_count += 1
            if len(self.problems) < MAX_RECORDED_PROBLEMS:
                self.problems.append(RowProblem(line, problem))

    def problems_as_json(self) -> list[dict]:
        return [{"line": p.line, "problem": p.problem} for p in self.problems]

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": [{"line": s.line, "reason": s.reason} for s in self.skipped],
            "ignored_columns": self.ignored_columns,
            "ignored_column_count": self.ignored_column_count,
            "run_id": self.run_id,
            "performed": self.performed,
            "problems": self.problems_as_json(),
            "problem_count": self.problem_count,
        }


def import_csv(
    database_url: str,
    path: Path,
    *,
    source: str | None = None,
    progress: Progress | None = None,
    only_if_empty: bool = False,
    run_id: int | None = None,
) -> ImportSummary:
    """Import a contacts CSV file; raise UnusableCsvError (and write nothing) for a bad file.

    With `only_if_empty`, the import happens only when the table has no contact at all,
    decided under the import lock, so processes starting together import it exactly once.
    With `run_id` (an upload's queued run), that run is claimed instead of a new one
    started; RunNotQueued when it is not queued (another delivery took it, or it ended).
    """
    source = source or str(path)
    summary = ImportSummary(source=source)
    with ContactsCsv.open(path) as csv_file:
        summary.ignored_columns = csv_file.ignored_columns[:MAX_LISTED_IGNORED_COLUMNS]
        summary.ignored_column_count = len(csv_file.ignored_columns)
        with psycopg.connect(database_url) as conn:
            run_id = _start_run(database_url, source, conn.info.backend_pid, run_id)
            summary.run_id = run_id
            try:
                with conn.transaction():
                    conn.execute(LOCK_IMPORTS, {"key": IMPORT_LOCK_KEY})
                    empty = one_row(conn.execute(TABLE_IS_EMPTY))[0]
                if only_if_empty and not empty:
                    summary.performed = False
                elif empty:
                    _load_empty_table(database_url, conn, csv_file, summary, progress)
                else:
                    with conn.transaction():
                        conn.execute(NO_JIT)
                        _stage_rows(conn, csv_file, summary, progress)
                        _merge(conn, summary, progress)
            except Exception as error:
                _finish_run(database_url, run_id, summary, status="failed", error=str(error))
                metrics.record_import(status="failed")
                raise
    _finish_run(database_url, run_id, summary, status="succeeded", error=None)
    if not empty and summary.inserted + summary.updated > ANALYZE_AFTER_SHARE * summary.table_rows:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ANALYZE contacts")
    if summary.performed:
        metrics.record_import(
            read=summary.rows_read,
            inserted=summary.inserted,
            updated=summary.updated,
            unchanged=summary.unchanged,
            skipped=len(summary.skipped),
        )
        log.info(
            "imported %s: %d rows read, %d inserted, %d updated, %d unchanged, %d skipped",
            source,
            summary.rows_read,
            summary.inserted,
            summary.updated,
            summary.unchanged,
            len(summary.skipped),
        )
    return summary


def _usable_rows(
    csv_file: ContactsCsv, summary: ImportSummary, progress: Progress | None
) -> Iterator[CsvContact]:
    """The file's rows to import; skipped rows go into the summary, progress is reported."""
    for count, item in enumerate(csv_file.rows(), start=1):
        summary.rows_read += 1
        if item.problems:
            summary.add_problems(item.line, item.problems)
        if isinstance(item, SkippedRow):
            summary.skipped.append(item)
        else:
            yield item
        if progress is not None and count % 5000 == 0:
            progress("reading", csv_file.position(), csv_file.size)
    if progress is not None:
        progress("reading", csv_file.size, csv_file.size)


def _stage_rows(
    conn: psycopg.Connection,
    csv_file: ContactsCsv,
    summary: ImportSummary,
    progress: Progress | None,
) -> None:
    conn.execute(CREATE_STAGING)
    with conn.cursor() as cursor, cursor.copy(COPY_STAGING) as copy:
        for row in _usable_rows(csv_file, summary, progress):
            copy.write_row((row.line, *row.field_values()))


#: What an empty-table load copies, in this order (contacts/bulk_load.py adds the id).
LOADED_COLUMNS = (*FIELDS, "source")


def _load_empty_table(
    database_url: str,
    conn: psycopg.Connection,
    csv_file: ContactsCsv,
    summary: ImportSummary,
    progress: Progress | None,
) -> None:
    rows = (
        (row.line, (*row.field_values(), "csv"))
        for row in _usable_rows(csv_file, summary, progress)
    )
    loaded = bulk_load.load_empty_table(database_url, conn, LOADED_COLUMNS, rows, progress=progress)
    summary.skipped += [_duplicate(line, kept_line) for line, kept_line in loaded.duplicates]
    summary.skipped.sort(key=lambda row: row.line)
    summary.inserted = loaded.inserted


def _duplicate(line: int, kept_line: int) -> SkippedRow:
    return SkippedRow(line=line, reason=f"same person as line {kept_line}, which is imported")


MERGE_STEPS = 5


def _merge(conn: psycopg.Connection, summary: ImportSummary, progress: Progress | None) -> None:
    def step(done: int) -> None:
        if progress is not None:
            progress("merging", done, MERGE_STEPS)

    step(0)
    conn.execute(CREATE_LATEST)
    step(1)
    summary.table_rows = one_row(conn.execute(TABLE_ROWS))[0]
    staged = one_row(conn.execute("SELECT count(*) FROM import_latest"))[0]
    if staged < INDEX_LOOKUPS_BELOW_SHARE * summary.table_rows:
        conn.execute(MATCH_BY_INDEX)
    for line, kept_line in conn.execute(DUPLICATE_ROWS):
        summary.skipped.append(_duplicate(line, kept_line))
    summary.skipped.sort(key=lambda row: row.line)
    conn.execute(CREATE_MATCHES)
    step(2)
    matched = one_row(
        conn.execute("SELECT count(contact_id) FROM import_matches")  # non-null ids only
    )[0]
    summary.updated = conn.execute(UPDATE_MATCHED).rowcount
    step(3)
    summary.unchanged = matched - summary.updated
    summary.inserted = conn.execute(INSERT_UNMATCHED).rowcount
    step(MERGE_STEPS)


def lock_out_imports(conn: psycopg.Connection[Any]) -> None:
    """Wait for a running import to finish, and keep the next one waiting until this
    transaction ends (call it inside `conn.transaction()`)."""
    conn.execute(LOCK_IMPORTS_FOR_TRANSACTION, {"key": IMPORT_LOCK_KEY})


class RunNotQueued(Exception):
    """The upload's run is not queued: another delivery of its task took it, or it ended."""


def _start_run(database_url: str, source: str, importing_pid: int, run_id: int | None) -> int:
    # Run records are written on their own connection so a failed import still leaves one.
    with psycopg.connect(database_url, autocommit=True) as conn:
        requeued, closed = runs.close_abandoned(conn)
        if closed:
            log.warning("%d import run(s) abandoned by a process that died marked failed", closed)
        if requeued:
            log.warning("%d upload(s) abandoned by a process that died queued again", requeued)
        if run_id is None:
            return runs.start(conn, source, importing_pid)
        if not runs.claim_upload(conn, run_id, importing_pid):
            raise RunNotQueued(f"import run {run_id} is {runs.status(conn, run_id)}, not queued")
        return run_id


def _finish_run(
    database_url: str, run_id: int, summary: ImportSummary, *, status: str, error: str | None
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        runs.finish(
            conn,
            run_id,
            status=status,
            error=error,
            rows_read=summary.rows_read,
            inserted=summary.inserted,
            updated=summary.updated,
            skipped=len(summary.skipped),
            problems=summary.problems_as_json(),
            problem_count=summary.problem_count,
        )


__all__ = ["ImportSummary", "RowProblem", "RunNotQueued", "UnusableCsvError", "import_csv"]
