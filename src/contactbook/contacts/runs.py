"""`import_runs`: the one module with its SQL. A row per import (CLI, start-up, upload).

A CLI or start-up import starts its row as `running`. An upload's row is written by
the API before the task is sent, as `queued` with the task's id and the stored file;
the worker claims it (`running`); it ends `succeeded` or `failed`. A run names the
database session that imports (pid and start: a pid alone can be reused); a `running`
run whose session is gone was abandoned (its process died, and its transaction with it,
so nothing of it was written): an upload goes back to `queued` (its task is delivered
again, or sent again), any other import is closed as `failed`.

Every function takes an autocommit connection: run records are written on their own
connection so that a failed import still leaves one.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

START_RUN = """
INSERT INTO import_runs (source, backend_pid, backend_started)
VALUES (%(source)s, %(pid)s, (SELECT backend_start FROM pg_stat_activity WHERE pid = %(pid)s))
RETURNING id
"""

REQUEUE_ABANDONED_UPLOADS = """
UPDATE import_runs r SET status = 'queued', backend_pid = NULL, backend_started = NULL
WHERE r.status = 'running' AND r.upload_path IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                  WHERE a.pid = r.backend_pid AND a.backend_start = r.backend_started)
"""

CLOSE_ABANDONED_RUNS = """
UPDATE import_runs r SET status = 'failed', finished_at = now(),
    error = 'interrupted: the process running this import stopped before it finished; '
            'nothing of it was written'
WHERE r.status = 'running' AND r.upload_path IS NULL
  AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                  WHERE a.pid = r.backend_pid AND a.backend_start = r.backend_started)
"""

FINISH_RUN = """
UPDATE import_runs SET finished_at = now(), status = %(status)s, rows_read = %(rows_read)s,
    inserted = %(inserted)s, updated = %(updated)s, skipped = %(skipped)s, error = %(error)s,
    problems = %(problems)s, problem_count = %(problem_count)s
WHERE id = %(id)s
"""

#: An upload is recorded under a source naming its unique stored file.
SUCCEEDED_IMPORT = """
SELECT EXISTS (
    SELECT 1 FROM import_runs WHERE source = %(source)s AND status = 'succeeded'
) AS done
"""

QUEUE_UPLOAD = """
INSERT INTO import_runs (source, status, task_id, upload_path, sent_at)
VALUES (%(source)s, 'queued', %(task_id)s, %(path)s, now())
RETURNING id
"""

FORGET_UPLOAD = "DELETE FROM import_runs WHERE id = %(id)s AND status = 'queued'"

# Only a queued run can be claimed, so two deliveries of one upload never both import.
CLAIM_UPLOAD = """
UPDATE import_runs SET status = 'running', started_at = now(), attempts = attempts + 1,
    backend_pid = %(pid)s,
    backend_started = (SELECT backend_start FROM pg_stat_activity WHERE pid = %(pid)s)
WHERE id = %(id)s AND status = 'queued'
RETURNING id
"""

REQUEUE_UPLOAD = """
UPDATE import_runs SET status = 'queued', finished_at = NULL, error = NULL,
    backend_pid = NULL, backend_started = NULL
WHERE id = %(id)s AND upload_path IS NOT NULL AND status IN ('running', 'failed')
"""

RUN_STATUS = "SELECT status FROM import_runs WHERE id = %(id)s"

# Queued longer than the bound since it was last sent: no worker took it.
UNTAKEN_UPLOADS = """
SELECT id, task_id, upload_path, source, attempts FROM import_runs
WHERE status = 'queued' AND upload_path IS NOT NULL
  AND sent_at < now() - make_interval(secs => %(seconds)s)
ORDER BY id
"""

MARK_SENT = "UPDATE import_runs SET sent_at = now() WHERE id = %(id)s AND status = 'queued'"

GIVE_UP = """
UPDATE import_runs SET status = 'failed', finished_at = now(), error = %(error)s
WHERE id = %(id)s AND status = 'queued'
"""

ENDED_UPLOADS = """
SELECT id, upload_path FROM import_runs
WHERE upload_path IS NOT NULL AND status IN ('succeeded', 'failed')
ORDER BY id
"""

UPLOAD_REMOVED = "UPDATE import_runs SET upload_path = NULL WHERE id = %(id)s"

KEPT_UPLOADS = "SELECT upload_path FROM import_runs WHERE upload_path IS NOT NULL"

RUN_BY_TASK = """
SELECT id, source, status, rows_read, inserted, updated, skipped, problem_count, error
FROM import_runs WHERE task_id = %(task_id)s
"""


def _execute(conn: psycopg.Connection[Any], statement: str, params: dict | None = None):
    # Plain rows whatever the connection's row factory (the API's pool gives dicts).
    return conn.cursor(row_factory=tuple_row).execute(statement, params)


def close_abandoned(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """Put abandoned uploads back in the queue, close other abandoned runs as failed;
    returns how many of each."""
    requeued = _execute(conn, REQUEUE_ABANDONED_UPLOADS).rowcount
    closed = _execute(conn, CLOSE_ABANDONED_RUNS).rowcount
    return requeued, closed


def start(conn: psycopg.Connection[Any], source: str, importing_pid: int) -> int:
    """A new `running` run for the session `importing_pid`; its id."""
    return _execute(conn, START_RUN, {"source": source, "pid": importing_pid}).fetchone()[0]


def claim_upload(conn: psycopg.Connection[Any], run_id: int, importing_pid: int) -> bool:
    """Make a queued upload `running` for the session `importing_pid`; False when it is
    not queued (taken by another delivery, or ended)."""
    return _execute(conn, CLAIM_UPLOAD, {"id": run_id, "pid": importing_pid}).fetchone() is not None


def finish(
    conn: psycopg.Connection[Any], run_id: int, *, status: str, error: str | None, **figures: Any
) -> None:
    """End a run: `figures` are rows_read, inserted, updated, skipped, problems (a list of
    {line, problem}) and problem_count."""
    values = {**figures, "problems": Jsonb(figures["problems"])}
    _execute(conn, FINISH_RUN, {"id": run_id, "status": status, "error": error, **values})


def already_imported(conn: psycopg.Connection[Any], source: str) -> bool:
    return _execute(conn, SUCCEEDED_IMPORT, {"source": source}).fetchone()[0]


def status(conn: psycopg.Connection[Any], run_id: int) -> str | None:
    row = _execute(conn, RUN_STATUS, {"id": run_id}).fetchone()
    return None if row is None else row[0]


def queue_upload(conn: psycopg.Connection[Any], *, source: str, path: str, task_id: str) -> int:
    """Record an accepted upload as queued (before its task is sent); its run id."""
    params = {"source": source, "path": path, "task_id": task_id}
    return _execute(conn, QUEUE_UPLOAD, params).fetchone()[0]


def forget_upload(conn: psycopg.Connection[Any], run_id: int) -> None:
    """Remove the record of an upload whose task could not be sent (it was refused)."""
    _execute(conn, FORGET_UPLOAD, {"id": run_id})


def requeue_upload(conn: psycopg.Connection[Any], run_id: int) -> None:
    """An upload whose import failed for a moment (the database went away) waits again."""
    _execute(conn, REQUEUE_UPLOAD, {"id": run_id})


def untaken_uploads(conn: psycopg.Connection[Any], seconds: float) -> list[tuple]:
    """(id, task_id, upload_path, source, attempts) of uploads queued, and not taken,
    for more than `seconds` since they were last sent."""
    return _execute(conn, UNTAKEN_UPLOADS, {"seconds": seconds}).fetchall()


def mark_sent(conn: psycopg.Connection[Any], run_id: int) -> None:
    _execute(conn, MARK_SENT, {"id": run_id})


def give_up(conn: psycopg.Connection[Any], run_id: int, error: str) -> None:
    _execute(conn, GIVE_UP, {"id": run_id, "error": error})


def ended_uploads(conn: psycopg.Connection[Any]) -> list[tuple[int, str]]:
    """(id, upload_path) of ended uploads whose file is still kept."""
    return _execute(conn, ENDED_UPLOADS).fetchall()


def upload_removed(conn: psycopg.Connection[Any], run_id: int) -> None:
    _execute(conn, UPLOAD_REMOVED, {"id": run_id})


def kept_uploads(conn: psycopg.Connection[Any]) -> set[str]:
    """The paths of every upload file a run still needs or has not cleaned up."""
    return {row[0] for row in _execute(conn, KEPT_UPLOADS)}


#: What the task status endpoint shows for a run's status.
_TASK_STATUS = {"queued": "PENDING", "running": "STARTED", "succeeded": "SUCCESS",
                "failed": "FAILURE"}  # fmt: skip


def task_status(conn: psycopg.Connection[Any], task_id: str) -> dict | None:
    """`{task_id, status, result, error}` of an upload's task from its run (None: no
    upload has this task id): the answer outlives the task's result in Redis."""
    row = _execute(conn, RUN_BY_TASK, {"task_id": task_id}).fetchone()
    if row is None:
        return None
    run_id, source, run_status, rows_read, inserted, updated, skipped, problems, error = row
    shown = _TASK_STATUS[run_status]
    result = None
    if shown == "SUCCESS":
        result = {"source": source, "run_id": run_id, "rows_read": rows_read,
                  "inserted": inserted, "updated": updated, "skipped": skipped,
                  "problem_count": problems}  # fmt: skip
    return {"task_id": task_id, "status": shown, "result": result,
            "error": error if shown == "FAILURE" else None}  # fmt: skip


__all__ = ["claim_upload", "close_abandoned", "finish", "queue_upload", "start", "task_status"]
