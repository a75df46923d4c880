"""The contacts' Celery tasks: the v2 search, the CSV import (start-up import and
uploads) and the sweep of uploads no worker took.

Each task is thin: it takes what it needs from its app (settings, the search pool),
calls the one function that does the work (`search_contacts`, `import_csv`,
`uploads.sweep_uploads`) and returns a JSON summary. `worker.create_celery_app`
registers them; `jobs.py` names them and sends them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from celery.exceptions import Ignore
from psycopg_pool import PoolTimeout

from contactbook import errors
from contactbook.contacts import runs, uploads
from contactbook.contacts.importer import RunNotQueued, UnusableCsvError, import_csv
from contactbook.contacts.search import search_contacts
from contactbook.jobs import IMPORT_TASK, SEARCH_TASK, SWEEP_UPLOADS_TASK
from contactbook.metrics import record_search
from contactbook.worker_health import mark_started

if TYPE_CHECKING:
    from contactbook.config import Settings
    from contactbook.worker import ContactBookCelery

log = logging.getLogger(__name__)

#: The most a v2 search result may hold, as JSON (before compression). A page of 20
#: sample contacts is about 11 KB.
MAX_RESULT_BYTES = 1024 * 1024

#: Retried on the worker: the database went away for a moment.
TRANSIENT_ERRORS = (psycopg.OperationalError, PoolTimeout)

#: A task retries only on a lost database connection, at most three times, backing off.
RETRYING: dict[str, Any] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "max_retries": 3,
    "retry_backoff": True,
    "retry_backoff_max": 30,
    "retry_jitter": True,
}


class UploadMissing(RuntimeError):
    """An upload to import is not on this worker's disk (and was never imported)."""


class SearchResultTooLarge(RuntimeError):
    """A search's contacts, as JSON, exceed MAX_RESULT_BYTES (never retried)."""


def register(app: ContactBookCelery) -> None:
    """Add the contacts' tasks to `app`.

    shared=False: each app gets its own tasks, bound to its own settings (Celery would
    otherwise copy every task into every app created later in the process).
    """

    # resultrepr_maxsize: the worker logs a repr of each result; keep contacts out of logs.
    @app.task(
        name=SEARCH_TASK,
        bind=True,
        shared=False,
        track_started=False,  # done in milliseconds: a STARTED write would only cost time
        # No soft_time_limit/time_limit: they do nothing under the threads pool that
        # `serve` and compose run. A search is one statement, so its limit is the
        # statement_timeout of the search pool's connections (errors.QueryTimedOut).
        resultrepr_maxsize=80,
        # Also retried: the replica and the primary both gone at once (ReadRouter says so).
        **{**RETRYING, "autoretry_for": (*TRANSIENT_ERRORS, errors.DatabaseUnavailable)},
    )
    def search(
        self,
        text: str,
        limit: int = 20,
        offset: int = 0,
        tags: list[str] | None = None,
        company: str | None = None,
    ) -> list[dict]:
        """The v1 search, on a worker: returns exactly v1's JSON list."""
        return search_for_v2(self.app, text, limit=limit, offset=offset, tags=tags, company=company)

    # track_started=False: mark_started records STARTED with the worker instance instead.
    @app.task(name=IMPORT_TASK, bind=True, shared=False, track_started=False, **RETRYING)
    def import_csv_file(
        self,
        path: str,
        source: str | None = None,
        only_if_empty: bool = False,
        remove_after: bool = False,
        run_id: int | None = None,
    ) -> dict:
        """Import a CSV file: the start-up import (only_if_empty) or an upload (remove_after,
        with its queued run: contacts/uploads.py)."""
        mark_started(self)
        return import_file(
            self.app.settings,
            Path(path),
            source=source,
            only_if_empty=only_if_empty,
            remove_after=remove_after,
            run_id=run_id,
        )

    @app.task(name=SWEEP_UPLOADS_TASK, bind=True, shared=False, ignore_result=True)
    def sweep_uploads(self) -> dict:
        """Send again the uploads no worker took; remove the files of ended uploads."""
        return uploads.sweep_uploads(self.app, self.app.settings)


def search_for_v2(
    app: ContactBookCelery,
    text: str,
    *,
    limit: int,
    offset: int,
    tags: list[str] | None,
    company: str | None,
) -> list[dict]:
    """`search_contacts`'s contacts (already plain JSON values, in the API's field order),
    read where the worker's searches read (`ContactBookCelery.search_reads`)."""
    try:
        page = app.search_reads().run(
            lambda conn: search_contacts(
                conn, text, limit=limit, offset=offset, tags=tags, company=company
            )
        )
    except psycopg.errors.QueryCanceled as error:
        # Not retried (it would cost the same again): the task fails with the reason.
        raise errors.QueryTimedOut.after(app.settings.db_statement_timeout) from error
    hits = page.contacts
    size = len(json.dumps(hits))
    if size > MAX_RESULT_BYTES:
        # Every v2 result is kept in Redis for SEARCH_RESULT_EXPIRES: a page of 100
        # contacts with megabyte bios would be 100 MB there.
        raise SearchResultTooLarge(
            f"the {len(hits)} contacts found come to {size // 1024} KiB, more than "
            f"the {MAX_RESULT_BYTES // 1024} KiB a v2 result may hold: ask for fewer "
            "(a smaller limit) or use GET /api/v1/search"
        )
    record_search(len(hits), source="v2")
    return hits


def import_file(
    settings: Settings,
    path: Path,
    *,
    source: str | None,
    only_if_empty: bool,
    remove_after: bool,
    run_id: int | None = None,
) -> dict:
    """Run the one import pipeline; remove an upload once it is imported (or unusable).

    An upload's task carries its queued run (`run_id`): a delivery that finds the run
    taken or ended (a second delivery: acks_late, or a re-send) stores no result.
    """
    is_upload = remove_after and path.resolve().parent == uploads.uploads_dir(settings)
    if is_upload and not path.exists():
        with psycopg.connect(settings.resolved_database_url, autocommit=True) as conn:
            if run_id is not None and runs.status(conn, run_id) != "queued":
                log.info("upload %s is gone: another delivery imported it", path.name)
                raise Ignore()
            if run_id is None and runs.already_imported(conn, source or str(path)):
                # Delivered twice (acks_late): the first delivery imported and removed it.
                log.info("upload %s is gone: already imported", path.name)
                return {
                    "source": source or str(path),
                    "performed": False,
                    "reason": "already imported",
                }
            missing = UploadMissing(
                f"the uploaded file {path.name} is not on this worker: the API and the "
                f"workers must share CONTACTBOOK_HOME ({uploads.uploads_dir(settings)}); "
                "nothing was imported"
            )
            if run_id is not None:
                runs.give_up(conn, run_id, str(missing))
        raise missing
    try:
        summary = import_csv(
            settings.resolved_database_url,
            path,
            source=source,
            only_if_empty=only_if_empty,
            run_id=run_id,
        )
    except RunNotQueued as taken:
        log.info("upload %s: %s (another delivery took it)", path.name, taken)
        raise Ignore() from taken
    except UnusableCsvError:
        if is_upload:
            path.unlink(missing_ok=True)  # retrying cannot make it usable
        raise
    except TRANSIENT_ERRORS:
        if run_id is not None:
            _requeue_upload(settings.resolved_database_url, run_id)  # the retry claims it again
        raise
    if is_upload:
        path.unlink(missing_ok=True)
    return summary.as_dict()


def _requeue_upload(database_url: str, run_id: int) -> None:
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            runs.requeue_upload(conn, run_id)
    except psycopg.OperationalError:
        # Still unreachable: the run stays `running` for a session that is gone, and the
        # next import or upload sweep puts it back in the queue.
        log.warning("import run %d could not be queued again yet", run_id)


__all__ = ["MAX_RESULT_BYTES", "import_file", "register", "search_for_v2"]
