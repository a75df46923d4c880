"""The start-up import: the CSV (CONTACTBOOK_CSV, else the sample) a database with no
contacts gets when the API starts. The API's lifespan calls `start_initial_import`; the
work runs on a Celery worker, or in a thread of the API without one."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import psycopg

from contactbook import db
from contactbook.contacts import repository
from contactbook.contacts.importer import import_csv
from contactbook.errors import BrokerUnavailable, ContactBookError
from contactbook.jobs import IMPORT_TASK, KIND_IMPORT, submit

if TYPE_CHECKING:
    from contactbook.config import Settings
    from contactbook.db import DictPool
    from contactbook.worker import ContactBookCelery

log = logging.getLogger(__name__)


def start_initial_import(
    settings: Settings, pool: DictPool, celery: ContactBookCelery | None
) -> None:
    """Import the start-up CSV when the database has no contacts, on a Celery worker.

    The worker's import decides "empty?" again under the import's advisory lock, so API
    processes starting together import the file exactly once. Without a broker (none
    configured, or not reachable now) the import runs in a thread of this process instead,
    under the same lock.
    """
    try:
        with pool.connection() as conn, conn.transaction():
            db.without_statement_timeout(conn)  # wait out a restore rather than fail to start
            if repository.has_any_contact(conn):
                return
    except (psycopg.OperationalError, ContactBookError) as error:
        log.warning("start-up import skipped: the database is not reachable (%s)", error)
        return
    source = f"start-up import of {settings.initial_csv.name}"
    if celery is not None:
        try:
            submit(
                celery,
                IMPORT_TASK,
                kind=KIND_IMPORT,
                path=str(settings.initial_csv),
                source=source,
                only_if_empty=True,
            )
            log.info("queued the %s on a worker", source)
            return
        except BrokerUnavailable:
            log.warning("the task queue is not reachable: running the %s here", source)

    def run() -> None:
        try:
            import_csv(
                settings.resolved_database_url,
                settings.initial_csv,
                source=source,
                only_if_empty=True,
            )
        except Exception:
            log.exception("start-up import of %s failed", settings.initial_csv)

    threading.Thread(target=run, name="initial-import", daemon=True).start()
