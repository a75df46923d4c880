"""Uploaded CSV files, from the moment the API accepts one until its file is removed.

An accepted upload is recorded in `import_runs` as `queued` (with its task id and its
file in `CONTACTBOOK_HOME/uploads/`) before its task is sent, so no upload exists only
in the broker: a worker that dies between Redis's BRPOP and kombu recording the message
as unacked loses the message, not the upload. Beat runs :func:`sweep_uploads` every
minute on a worker:

* uploads still `queued` `UPLOAD_RESEND_AFTER` seconds (default 600) after they were
  last sent were not taken by any worker: they are sent again, with the same task id
  (a second delivery of one upload is harmless: only a queued run can be claimed);
* an upload whose worker died mid-import goes back to `queued` (the broker, or the
  next sweep, delivers it again), after `MAX_ATTEMPTS` claims it fails for good;
* the file of every run that has ended (succeeded or failed) is removed, and so are
  files no run knows that nobody has written to for an hour (an upload cut off while it
  was being received, or left by a version before this one).
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from celery import Celery

from contactbook import db
from contactbook.config import Settings
from contactbook.contacts import runs
from contactbook.contacts.csv_reader import ContactsCsv, UnusableCsvError
from contactbook.errors import BrokerUnavailable, UnusableInput
from contactbook.jobs import IMPORT_TASK, KIND_IMPORT, submit

if TYPE_CHECKING:
    from contactbook.db import DictPool

log = logging.getLogger(__name__)

#: Claims of one upload (deliveries that started importing it) before it fails for good.
MAX_ATTEMPTS = 5
#: A file in uploads/ that no run knows, untouched this long (seconds), is removed.
ORPHAN_AGE = 3600


def uploads_dir(settings: Settings) -> Path:
    """Where the API keeps uploaded CSV files until a worker has imported them."""
    return settings.contactbook_home.expanduser().resolve() / "uploads"


def upload_source(original_name: str, path: Path) -> str:
    # The stored name makes the source unique: a second delivery of the task can tell
    # "already imported" from "not on this worker's disk".
    return f"upload of {original_name} ({path.name})"


def accept_upload(celery: Celery, pool: DictPool, path: Path, original_name: str) -> str:
    """Accept the uploaded file at `path`: refuse it now when its header or encoding makes
    it unusable (UnusableInput), else record it as queued and send its import task;
    returns the task id.

    The record is committed before any worker can look for it (the pool's connections
    autocommit). When the task cannot be sent (BrokerUnavailable), the record is removed:
    the upload was refused.
    """
    try:
        with ContactsCsv.open(path, display_name=original_name):
            pass
    except UnusableCsvError as error:
        raise UnusableInput(f"{error}; nothing was imported") from error
    task_id = str(uuid.uuid4())
    source = upload_source(original_name, path)
    with pool.connection() as conn:
        run_id = runs.queue_upload(conn, source=source, path=str(path), task_id=task_id)
        try:
            _send(celery, task_id, run_id, path, source)
        except BrokerUnavailable:
            runs.forget_upload(conn, run_id)
            raise
    return task_id


def _send(celery: Celery, task_id: str, run_id: int, path: Path | str, source: str) -> None:
    submit(
        celery, IMPORT_TASK, kind=KIND_IMPORT, task_id=task_id,
        path=str(path), source=source, remove_after=True, run_id=run_id,
    )  # fmt: skip


def sweep_uploads(celery: Celery, settings: Settings) -> dict:
    """Send again the uploads no worker took, remove the files of ended runs (see the
    module docstring). Returns what it did, as counts."""
    done = {"resent": 0, "given_up": 0, "removed": 0, "orphans_removed": 0}
    with db.connect(settings.resolved_database_url, autocommit=True) as conn:
        requeued, _ = runs.close_abandoned(conn)
        if requeued:
            log.warning("%d upload(s) abandoned by a worker that died queued again", requeued)
        for run_id, task_id, path, source, attempts in runs.untaken_uploads(
            conn, settings.upload_resend_after
        ):
            if attempts >= MAX_ATTEMPTS or not Path(path).exists():
                why = (
                    f"gave up after {attempts} attempts; upload the file again"
                    if attempts >= MAX_ATTEMPTS
                    else "the uploaded file is gone from uploads/; upload it again"
                )
                runs.give_up(conn, run_id, why)
                log.error("upload %s (run %d) failed: %s", source, run_id, why)
                done["given_up"] += 1
                continue
            _send(celery, task_id, run_id, path, source)
            runs.mark_sent(conn, run_id)
            log.warning("upload %s (run %d) was not taken by a worker within %d s; sent again",
                        source, run_id, settings.upload_resend_after)  # fmt: skip
            done["resent"] += 1
        for run_id, path in runs.ended_uploads(conn):
            Path(path).unlink(missing_ok=True)
            runs.upload_removed(conn, run_id)
            done["removed"] += 1
        kept = runs.kept_uploads(conn)
    folder = uploads_dir(settings)
    if folder.is_dir():
        now = time.time()
        for file in folder.iterdir():
            if str(file) in kept or not file.is_file():
                continue
            try:
                if now - file.stat().st_mtime > ORPHAN_AGE:
                    file.unlink()
                    done["orphans_removed"] += 1
            except FileNotFoundError:
                continue  # removed meanwhile
    if done["removed"] or done["orphans_removed"]:
        log.info("removed %d uploaded file(s) of ended imports and %d orphaned file(s)",
                 done["removed"], done["orphans_removed"])  # fmt: skip
    return done


__all__ = ["accept_upload", "sweep_uploads", "uploads_dir"]
