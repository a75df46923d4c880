"""Reconcile the local contacts with Nimble, all or nothing.

A run reads every person (a *full* run) or only the people Nimble says were updated
since the last successful run began (an *incremental* run). Everything it does to
``contacts`` happens in **one transaction** that commits only after every page has
arrived and the records add up to ``meta.total``; anything else (a page that never
arrives, a wrong key, a count that does not match, a database error) rolls it back,
so the contacts are exactly as they were and nobody ever saw a half-applied run.

Within that transaction pages are COPYed into a small staging table as they arrive
and merged in batches of about :data:`BATCH_ROWS` people, each on a thread of its own
while the next batch downloads. DESIGN.md suggests staging everything first and merging
at the end; we measured that the merge then runs after the download instead of during
it (writing a contact costs 0.15-0.3 ms for its search vectors and indexes, so 100,000
people added half a minute to a 25 s download), while merging batch by batch inside
the same uncommitted transaction gives the same all-or-nothing result. Merging on the
caller's thread still stalled the download during every merge (1.6x the download
time in ``bench/sync.py``); on the merger thread the run takes 1.1x. Each batch:

1. contacts already linked to a Nimble id are updated, and only where something
   differs (``IS DISTINCT FROM``), so an unchanged contact is never rewritten;
   a contact Nimble had dropped and now lists again is revived;
2. local contacts without a Nimble id (CSV rows) are *linked* to a remote person when
   their email equals any of the person's emails, ignoring case: one local row per
   person and one person per row, so nothing is ever duplicated (1 and 2 are one
   statement, as both take the person's values the same way);
3. everyone else is inserted with ``source = 'nimble'``.

Then, on a full run only, linked contacts whose Nimble id did not arrive are
soft-deleted (``deleted_at``), which takes them out of search and export; they are listed
by ``GET /api/v1/contacts?removed=true`` and brought back by ``contactbook undelete``.

A remote that suddenly lists a fraction of its people is far more often a permission or
API problem than a real mass deletion, so a full run that would remove more than
``SYNC_MAX_REMOVALS_PERCENT`` (default 10) of the live linked contacts fails, changes
nothing, is recorded with its figures and says to rerun with ``--allow-removals``.

A *dry run* does everything in the transaction, then rolls it back: its figures are
exactly what the run would have done, and nothing is written (not even a ``sync_runs``
row).

Nimble is the system of record for the people it knows: a linked contact takes
Nimble's values for the four original fields (a field Nimble lacks becomes empty),
because anything else would make a field that was cleared in Nimble come back forever.
Phones, title, company, location and tags take Nimble's values as well, but a blank
remote value clears the local one only where the local value came from Nimble: each
contact remembers what Nimble last gave (the ``nimble_*`` columns, migration 0007), so a
phone a CSV import gave stays when Nimble has none, and a phone Nimble gave and then
removed goes. Nimble's phones come first (its primary is the primary), then the local
numbers it never gave; tags are the local ones less those Nimble removed, plus its new
ones. Tags compare as sets, phones as ordered lists.

The run itself is recorded in ``sync_runs`` in transactions of its own, so a failed
run is on record even though its changes were rolled back. A session advisory lock
keeps two syncs from overlapping, and the run's transaction holds the CSV import's
lock, so an import waits for a sync (and the reverse) instead of interleaving writes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg.rows import tuple_row

from contactbook import metrics
from contactbook.contacts.importer import NO_JIT, lock_out_imports
from contactbook.contacts.sync_runs import CLOSE_ABANDONED_RUNS, FINISH_RUN, LAST_SUCCESS, START_RUN
from contactbook.db import one_row
from contactbook.errors import ConfigurationError, Conflict, ContactBookError
from contactbook.nimble.client import NimbleClient, RemoteContact
from contactbook.nimble.errors import NimbleError

if TYPE_CHECKING:
    from collections.abc import Callable

    from contactbook.config import Settings
    from contactbook.db import DictConnection
logger = logging.getLogger(__name__)

#: Session advisory lock held for a whole run (the CSV import uses 7_201_002).
SYNC_LOCK_KEY = 7_201_004
#: Incremental runs look this much further back than the last run's start, so a
#: clock difference with Nimble or a late index update there cannot hide an edit.
DEFAULT_OVERLAP = timedelta(minutes=2)
#: An incremental run becomes a full one when the last successful full run is older,
#: so deletions are caught even if only incremental runs are scheduled.
DEFAULT_FULL_AFTER = timedelta(days=7)
#: The default of SYNC_MAX_REMOVALS_PERCENT.
DEFAULT_MAX_REMOVALS_PERCENT = 10.0

Mode = Literal["full", "incremental"]


class SyncError(ContactBookError):
    """The sync could not complete; the contacts were left as they were."""


class SyncAlreadyRunning(SyncError, Conflict):
    """Another sync holds the lock; this one did not start."""


class SyncSkipped(SyncError, ConfigurationError):
    """The sync is not configured (no NIMBLE_API_KEY), so it did not run."""


class TooManyRemovals(SyncError):
    """A full run would remove more than SYNC_MAX_REMOVALS_PERCENT of the linked contacts."""


@dataclass
class SyncSummary:
    """What one run did. ``fetched`` counts people read from Nimble; every one of them
    is then exactly one of inserted, linked, updated or unchanged."""

    #: None for a dry run, which records nothing.
    run_id: int | None
    mode: Mode
    dry_run: bool = False
    fetched: int = 0
    inserted: int = 0
    linked: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0

    #: Live contacts linked to Nimble when a full run began (the removal guard's base).
    linked_before: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- SQL --------------------------------------------------------------------------------

TRY_LOCK = "SELECT pg_try_advisory_lock(%(key)s)"
UNLOCK = "SELECT pg_advisory_unlock(%(key)s)"

#: People merged per batch: big enough that per-statement costs vanish, small enough
#: that the database keeps pace with the download.
BATCH_ROWS = 2000

# One batch of people as they arrived; emptied after each merge.
CREATE_BATCH = """
CREATE TEMP TABLE nimble_batch (
    nimble_id text NOT NULL,
    first_name text,
    last_name text,
    email text,
    emails text[] NOT NULL,
    description text,
    nimble_updated_at timestamptz,
    phones text[] NOT NULL,
    title text,
    company text,
    location text,
    tags text[] NOT NULL
) ON COMMIT DROP
"""

COPY_BATCH = """
COPY nimble_batch (nimble_id, first_name, last_name, email, emails, description,
    nimble_updated_at, phones, title, company, location, tags) FROM STDIN
"""

EMPTY_BATCH = "TRUNCATE nimble_batch"

# Every id the run has seen, for the removal of the ones that vanished.
CREATE_SEEN = "CREATE TEMP TABLE nimble_seen (nimble_id text NOT NULL) ON COMMIT DROP"
REMEMBER_BATCH = "INSERT INTO nimble_seen (nimble_id) SELECT nimble_id FROM nimble_batch"
INDEX_SEEN = "CREATE UNIQUE INDEX ON nimble_seen (nimble_id)"
ANALYZE_SEEN = "ANALYZE nimble_seen"

ANY_LINKED = "SELECT EXISTS (SELECT 1 FROM contacts WHERE nimble_id IS NOT NULL)"
ANY_UNLINKED = """
SELECT EXISTS (SELECT 1 FROM contacts WHERE nimble_id IS NULL AND deleted_at IS NULL)
"""

COUNT_KNOWN = """
SELECT count(*) FROM nimble_batch s JOIN contacts c ON c.nimble_id = s.nimble_id
"""

# One statement updates the contacts already linked to a person of the batch and links
# CSV rows to the others, because both take the person's values the same way:
#
# - linking: candidate pairs are (remote person, live unlinked local row) sharing an
#   address. Each local row keeps the person whose matching address comes first in
#   Nimble's list (the primary before the others), then each person keeps the best of
#   the rows left: a one-to-one pairing. A row linked by an earlier batch is no longer a
#   candidate. `find_links` / `find_known` are false when the run knows that no
#   such row exists (the planner then drops that part of the statement);
# - the values (c: the contact, s: its person): the four original fields follow Nimble
#   exactly. For phones, title, company, location and tags Nimble's value wins too, but
#   where Nimble has none the local value stays unless Nimble gave it (migration 0007:
#   the nimble_* columns remember what it gave, and its functions hold the rules);
# - a linked contact is rewritten only where something differs, so an unchanged
#   contact is never rewritten: phones compare as ordered lists (the first is the
#   primary), tags as sets. A contact Nimble had dropped and lists again is revived.
UPDATE_AND_LINK = """
WITH candidates AS (
    SELECT s.nimble_id, c.id AS contact_id, e.position
    FROM nimble_batch s
    CROSS JOIN LATERAL unnest(s.emails) WITH ORDINALITY AS e(address, position)
    JOIN contacts c ON lower(c.email) = lower(e.address)
    WHERE %(find_links)s
      AND c.nimble_id IS NULL
      AND c.deleted_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM contacts k WHERE k.nimble_id = s.nimble_id)
),
one_person_per_row AS (
    SELECT DISTINCT ON (contact_id) nimble_id, contact_id, position
    FROM candidates
    ORDER BY contact_id, position, nimble_id
),
links AS (
    SELECT DISTINCT ON (nimble_id) nimble_id, contact_id
    FROM one_person_per_row
    ORDER BY nimble_id, position, contact_id
),
targets AS (
    SELECT c.id AS contact_id, s.nimble_id, false AS linking
    FROM nimble_batch s JOIN contacts c ON c.nimble_id = s.nimble_id
    WHERE %(find_known)s
    UNION ALL
    SELECT contact_id, nimble_id, true AS linking FROM links
),
merged AS (
    SELECT t.contact_id, t.nimble_id, t.linking, c.deleted_at,
        s.first_name, s.last_name, s.email, s.description, s.nimble_updated_at,
        -- Nimble's lists, unchanged and never edited here, and empty local lists are the
        -- common cases: the functions (0.02-0.03 ms a call) run only for the others; the
        -- shortcuts give what the functions would.
        CASE WHEN c.phones = c.nimble_phones AND c.nimble_phones = s.phones THEN c.phones
             WHEN cardinality(c.phones) = 0 THEN s.phones
             ELSE contactbook_sync_phones(s.phones, c.phones, c.nimble_phones)
        END AS phones,
        contactbook_sync_text(s.title, c.title, c.nimble_title) AS title,
        contactbook_sync_text(s.company, c.company, c.nimble_company) AS company,
        contactbook_sync_text(s.location, c.location, c.nimble_location) AS location,
        CASE WHEN c.tags = c.nimble_tags AND c.nimble_tags = s.tags THEN c.tags
             WHEN cardinality(c.tags) = 0 THEN s.tags
             ELSE contactbook_sync_tags(s.tags, c.tags, c.nimble_tags)
        END AS tags,
        s.phones AS nimble_phones, s.title AS nimble_title, s.company AS nimble_company,
        s.location AS nimble_location, s.tags AS nimble_tags
    FROM targets t
    JOIN nimble_batch s ON s.nimble_id = t.nimble_id
    JOIN contacts c ON c.id = t.contact_id
),
changed AS (
    UPDATE contacts c SET
        nimble_id = m.nimble_id,
        first_name = m.first_name,
        last_name = m.last_name,
        email = m.email,
        description = m.description,
        nimble_updated_at = m.nimble_updated_at,
        phones = m.phones,
        title = m.title,
        company = m.company,
        location = m.location,
        tags = m.tags,
        nimble_phones = m.nimble_phones,
        nimble_title = m.nimble_title,
        nimble_company = m.nimble_company,
        nimble_location = m.nimble_location,
        nimble_tags = m.nimble_tags,
        deleted_at = NULL,
        updated_at = now()
    FROM merged m
    WHERE c.id = m.contact_id
      AND (m.linking
           OR m.deleted_at IS NOT NULL
           OR (c.first_name, c.last_name, c.email, c.description, c.nimble_updated_at,
               c.phones, c.title, c.company, c.location,
               c.nimble_phones, c.nimble_title, c.nimble_company, c.nimble_location)
              IS DISTINCT FROM
              (m.first_name, m.last_name, m.email, m.description, m.nimble_updated_at,
               m.phones, m.title, m.company, m.location,
               m.nimble_phones, m.nimble_title, m.nimble_company, m.nimble_location)
           OR NOT (c.tags @> m.tags AND c.tags <@ m.tags)
           OR NOT (c.nimble_tags @> m.nimble_tags AND c.nimble_tags <@ m.nimble_tags))
    RETURNING m.linking
)
SELECT count(*) FILTER (WHERE linking) AS linked, count(*) FILTER (WHERE NOT linking) AS updated
FROM changed
"""

INSERT_NEW = """
INSERT INTO contacts (nimble_id, first_name, last_name, email, description, source,
    nimble_updated_at, phones, title, company, location, tags,
    nimble_phones, nimble_title, nimble_company, nimble_location, nimble_tags)
SELECT s.nimble_id, s.first_name, s.last_name, s.email, s.description, 'nimble',
    s.nimble_updated_at, s.phones, s.title, s.company, s.location, s.tags,
    s.phones, s.title, s.company, s.location, s.tags
FROM nimble_batch s
WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.nimble_id = s.nimble_id)
"""

# The denominator of the removal guard: live contacts linked to Nimble before the run.
COUNT_LINKED_LIVE = """
SELECT count(*) FROM contacts WHERE nimble_id IS NOT NULL AND deleted_at IS NULL
"""

REMOVE_VANISHED = """
UPDATE contacts c SET deleted_at = now(), updated_at = now()
WHERE c.nimble_id IS NOT NULL
  AND c.deleted_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM nimble_seen s WHERE s.nimble_id = c.nimble_id)
"""


# -- the run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOptions:
    """How a run may behave beyond its mode."""

    #: Do everything in the transaction, then roll it back and record nothing.
    dry_run: bool = False
    #: Let a full run remove more than ``max_removals_percent`` of the linked contacts.
    allow_removals: bool = False
    max_removals_percent: float = DEFAULT_MAX_REMOVALS_PERCENT
    #: ``progress(pages_read, pages_total)``, called on the reading thread.
    progress: Callable[[int, int], None] | None = None


def sync_contacts(
    conn: DictConnection,
    client: NimbleClient,
    *,
    full: bool,
    overlap: timedelta = DEFAULT_OVERLAP,
    full_after: timedelta | None = DEFAULT_FULL_AFTER,
    options: RunOptions | None = None,
) -> SyncSummary:
    """Run one sync on ``conn`` (idle, autocommit or not) and return its figures.

    ``full=False`` asks for an incremental run; it is a full run anyway when no run
    has succeeded yet or the last successful full run is older than ``full_after``.
    Raises :class:`SyncAlreadyRunning` when another sync holds the lock,
    :class:`TooManyRemovals` when a full run would remove too many contacts, and
    :class:`SyncError` (with the cause chained) when the run fails; in every case the
    contacts are unchanged.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise SyncError("sync_contacts needs a connection that is not inside a transaction")
    options = options or RunOptions()
    try:
        return _run(
            conn, client, full=full, overlap=overlap, full_after=full_after, options=options
        )
    except psycopg.Error as exc:  # before the run began, or while recording its end
        raise SyncError(_describe(exc)) from exc


def _run(
    conn: DictConnection,
    client: NimbleClient,
    *,
    full: bool,
    overlap: timedelta,
    full_after: timedelta | None,
    options: RunOptions,
) -> SyncSummary:
    with _sync_lock(conn):
        if not options.dry_run:
            with conn.transaction():
                conn.execute(CLOSE_ABANDONED_RUNS)
        mode, since = _plan(conn, full=full, overlap=overlap, full_after=full_after)
        run_id = None
        if not options.dry_run:
            with conn.transaction():
                run_id = _scalar(conn, START_RUN, {"mode": mode})
        summary = SyncSummary(run_id=run_id, mode=mode, dry_run=options.dry_run)
        name = f"sync {run_id}" if run_id is not None else "dry-run sync"
        logger.info(
            "%s started (%s%s)",
            name,
            mode,
            f", people updated since {since.isoformat()}" if since else "",
        )
        try:
            with conn.transaction() as transaction:
                _apply(
                    conn,
                    client,
                    since,
                    summary,
                    remove_vanished=mode == "full",
                    progress=options.progress,
                )
                if mode == "full" and not options.allow_removals:
                    _check_removals(summary, options.max_removals_percent)
                if options.dry_run:
                    raise psycopg.Rollback(transaction)
        except Exception as exc:
            message = _describe(exc)
            if not options.dry_run:
                _record_failure(conn, summary, message, figures=isinstance(exc, TooManyRemovals))
                metrics.record_sync_run(status="failed", fetched=summary.fetched)
            # INFO, not ERROR: the caller reports the exception (the CLI prints it once,
            # Celery logs the task's failure), so an ERROR here would say it twice.
            logger.info("%s failed, nothing was changed: %s", name, message)
            if isinstance(exc, SyncError):
                raise
            raise SyncError(message) from exc
        if options.dry_run:
            logger.info("dry-run sync done, nothing was written: %s", _figures(summary))
            return summary
        _finish_run(conn, summary, status="succeeded", error=None)
        metrics.record_sync_run(
            status="success",
            fetched=summary.fetched,
            inserted=summary.inserted,
            linked=summary.linked,
            updated=summary.updated,
            removed=summary.removed,
            unchanged=summary.unchanged,
        )
        logger.info("sync %d succeeded: %s", run_id, _figures(summary))
        return summary


def _figures(summary: SyncSummary) -> str:
    return (
        f"{summary.fetched} fetched, {summary.inserted} inserted, {summary.linked} linked, "
        f"{summary.updated} updated, {summary.removed} removed, {summary.unchanged} unchanged"
    )


def _check_removals(summary: SyncSummary, max_percent: float) -> None:
    """Refuse a full run that removes more than ``max_percent`` of the linked contacts."""
    linked = summary.linked_before
    if summary.removed == 0 or summary.removed <= linked * max_percent / 100:
        return
    share = 100 * summary.removed / linked
    raise TooManyRemovals(
        f"this full sync would remove {summary.removed:,} of the {linked:,} contacts linked "
        f"to Nimble ({share:.0f}%), more than SYNC_MAX_REMOVALS_PERCENT ({max_percent:g}%), "
        "so nothing was changed. A remote that suddenly lists far fewer people is more often "
        "a permission or API problem than a real deletion: check the account NIMBLE_API_KEY "
        "belongs to. If the removals are real, run `contactbook sync --full --allow-removals`."
    )


@contextlib.contextmanager
def _sync_lock(conn: DictConnection) -> Iterator[None]:
    with conn.transaction():
        locked = _scalar(conn, TRY_LOCK, {"key": SYNC_LOCK_KEY})
    if not locked:
        raise SyncAlreadyRunning("Another sync is running; this one did not start.")
    try:
        yield
    finally:
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            with conn.transaction():
                conn.execute(UNLOCK, {"key": SYNC_LOCK_KEY})


def _plan(
    conn: DictConnection, *, full: bool, overlap: timedelta, full_after: timedelta | None
) -> tuple[Mode, datetime | None]:
    """The mode of this run and, for an incremental one, where its window starts."""
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cursor:
        last_any, last_full = one_row(cursor.execute(LAST_SUCCESS))
        now = one_row(cursor.execute("SELECT now()"))[0]
    if full or last_any is None:
        return "full", None
    if full_after is not None and (last_full is None or now - last_full > full_after):
        logger.info("no successful full sync within %s: this run is a full one", full_after)
        return "full", None
    return "incremental", last_any - overlap


def _apply(
    conn: DictConnection,
    client: NimbleClient,
    since: datetime | None,
    summary: SyncSummary,
    *,
    remove_vanished: bool,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Read every page and merge it, batch by batch, in the caller's transaction; raise
    (so the caller rolls back) unless the pages add up to ``meta.total``."""
    pages_read = 0
    lock_out_imports(conn)
    # The merge statements are short and run thousands of times: JIT compiling them
    # (PostgreSQL's default above a cost the large table reaches) costs more than it saves.
    conn.execute(NO_JIT)
    conn.execute(CREATE_BATCH)
    conn.execute(CREATE_SEEN)
    # The import lock keeps these true for the whole run; skipping the statements that
    # cannot match anything makes a first sync, and syncs without CSV rows, cheaper.
    work = _BatchWork(
        known_ids=bool(_scalar(conn, ANY_LINKED)), unlinked_rows=bool(_scalar(conn, ANY_UNLINKED))
    )
    if remove_vanished:
        summary.linked_before = _scalar(conn, COUNT_LINKED_LIVE) if work.known_ids else 0
    seen: set[str] = set()
    total: int | None = None
    batch: list[RemoteContact] = []
    # One batch merges on the merger thread while the next one downloads; waiting for
    # the previous merge before handing over the next keeps at most two batches in
    # memory and the connection used by one thread at a time. Leaving the ``with``
    # (normally or on an error) waits for a merge in progress, so the caller's
    # rollback never races a statement.
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-merge") as merger,
        contextlib.closing(client.iter_pages(updated_since=since)) as pages,
    ):
        merging: Future[None] | None = None
        for page in pages:
            total = page.total
            if progress is not None:
                pages_read += 1
                progress(pages_read, page.pages)
            repeated = seen.intersection(page.resource_ids)
            seen.update(page.resource_ids)
            if repeated or len(page.resource_ids) != len(set(page.resource_ids)):
                raise SyncError(
                    "The same Nimble record arrived twice (the list moved while it was "
                    "being read); nothing was changed. Run the sync again."
                )
            summary.fetched += len(page.contacts)
            batch.extend(page.contacts)
            if len(batch) >= BATCH_ROWS:
                if merging is not None:
                    merging.result()
                merging = merger.submit(_merge_batch, conn, batch, summary, work)
                batch = []
        if merging is not None:
            merging.result()
    if batch:
        _merge_batch(conn, batch, summary, work)
    if total is None or len(seen) != total:
        raise SyncError(
            f"Nimble reported meta.total = {total} but {len(seen)} records arrived; "
            f"the listing is inconsistent, so nothing was changed. Run the sync again later."
        )
    if remove_vanished:
        conn.execute(INDEX_SEEN)
        conn.execute(ANALYZE_SEEN)
        summary.removed = conn.execute(REMOVE_VANISHED).rowcount


@dataclass(frozen=True)
class _BatchWork:
    """Which merge steps can find anything in this run."""

    known_ids: bool
    unlinked_rows: bool


def _merge_batch(
    conn: DictConnection, batch: list[RemoteContact], summary: SyncSummary, work: _BatchWork
) -> None:
    with conn.cursor() as cursor, cursor.copy(COPY_BATCH) as copy:
        for contact in batch:
            copy.write_row(
                (
                    contact.nimble_id,
                    contact.first_name,
                    contact.last_name,
                    contact.email,
                    list(contact.emails),
                    contact.description,
                    contact.updated,
                    list(contact.phones),
                    contact.title,
                    contact.company,
                    contact.location,
                    list(contact.tags),
                )
            )
    if work.known_ids or work.unlinked_rows:
        known = _scalar(conn, COUNT_KNOWN) if work.known_ids else 0
        params = {"find_known": work.known_ids, "find_links": work.unlinked_rows}
        with conn.cursor(row_factory=tuple_row) as counts:
            linked, updated = one_row(counts.execute(UPDATE_AND_LINK, params))
        summary.updated += updated
        summary.unchanged += known - updated
        summary.linked += linked
    summary.inserted += conn.execute(INSERT_NEW).rowcount
    conn.execute(REMEMBER_BATCH)
    conn.execute(EMPTY_BATCH)


def _scalar(conn: DictConnection, query: str, params: dict[str, Any] | None = None) -> Any:
    with conn.cursor(row_factory=tuple_row) as cursor:
        row = cursor.execute(query, params).fetchone()
    return row[0] if row else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, NimbleError | SyncError):
        return str(exc)
    if isinstance(exc, psycopg.Error):
        first_line = (str(exc).strip().splitlines() or [""])[0]
        return f"database error: {type(exc).__name__}: {first_line}"
    return f"{type(exc).__name__}: {exc}"


def _finish_run(
    conn: psycopg.Connection[Any], summary: SyncSummary, *, status: str, error: str | None
) -> None:
    with conn.transaction():
        conn.execute(FINISH_RUN, {**summary.as_dict(), "status": status, "error": error})


def _record_failure(
    conn: DictConnection, summary: SyncSummary, message: str, *, figures: bool = False
) -> None:
    """Mark the run failed with the figures of what was read (nothing was applied), or
    with ``figures``, everything the run would have done (a refused removal)."""
    recorded = (
        summary
        if figures
        else SyncSummary(run_id=summary.run_id, mode=summary.mode, fetched=summary.fetched)
    )
    try:
        if conn.broken:
            # The server dropped the connection (a restart, a failover): record the
            # failure on a new one, or the run would look "running" until the next run.
            # The dsn leaves the password out; None adds nothing (psycopg drops it).
            password = conn.info.password or None
            with psycopg.connect(conn.info.dsn, autocommit=True, password=password) as fresh:
                _finish_run(fresh, recorded, status="failed", error=message)
        else:
            _finish_run(conn, recorded, status="failed", error=message)
    except psycopg.Error as exc:
        # The database is still away; the next run will mark this one interrupted.
        logger.warning("could not record the failure of sync %d: %s", summary.run_id, exc)


# -- the entry point for the CLI and the Celery task -------------------------------------


def run_sync(
    settings: Settings,
    full: bool = False,
    *,
    database_url: str | None = None,
    dry_run: bool = False,
    allow_removals: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SyncSummary:
    """Sync from the Nimble API configured in ``settings`` into the database.

    The database is ``database_url``, else ``settings.database_url``: the entry points
    (the CLI, the worker) resolve it, starting the embedded server when it is unset.
    ``SYNC_MAX_REMOVALS_PERCENT`` bounds a full run's removals unless ``allow_removals``.
    Raises :class:`SyncSkipped` when ``NIMBLE_API_KEY`` is unset.
    """
    if settings.nimble_api_key is None:
        metrics.record_sync_run(status="skipped")
        raise SyncSkipped(
            "NIMBLE_API_KEY is not set, so there is nothing to sync from. "
            "Set it to a Nimble API key to enable the sync."
        )
    from contactbook import db

    with contextlib.ExitStack() as stack:
        url = database_url or settings.resolved_database_url
        client = stack.enter_context(
            NimbleClient(
                settings.nimble_api_url,
                settings.nimble_api_key.get_secret_value(),
                per_page=settings.nimble_per_page,
                concurrency=settings.nimble_concurrency,
            )
        )
        try:
            conn = stack.enter_context(db.connect(url, autocommit=True))
        except psycopg.OperationalError as exc:
            raise SyncError(
                f"cannot connect to the database: {_describe(exc)}. Check DATABASE_URL."
            ) from exc
        options = RunOptions(
            dry_run=dry_run,
            allow_removals=allow_removals,
            max_removals_percent=settings.sync_max_removals_percent,
            progress=progress,
        )
        return sync_contacts(conn, client, full=full, options=options)


__all__ = [
    "RunOptions",
    "SyncAlreadyRunning",
    "SyncError",
    "SyncSkipped",
    "SyncSummary",
    "TooManyRemovals",
    "run_sync",
    "sync_contacts",
]
