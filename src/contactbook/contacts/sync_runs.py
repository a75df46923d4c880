"""`sync_runs`: the record of each Nimble sync, and every statement that reads or writes it.

The sync (`nimble/sync.py`) starts and finishes its run and closes runs a dead process
left "running"; the admin API lists the recent runs; `/api/v1/stats` reads when the last
one succeeded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contactbook.db import DictConnection, one_row

# Only a process holding the sync lock runs syncs, so any run still marked running
# while it holds the lock belongs to a process that died.
CLOSE_ABANDONED_RUNS = """
UPDATE sync_runs SET status = 'failed', finished_at = now(),
    error = 'interrupted: the process running this sync stopped before it finished'
WHERE status = 'running'
"""

LAST_SUCCESS = """
SELECT max(started_at) AS any_mode, max(started_at) FILTER (WHERE mode = 'full') AS full_mode
FROM sync_runs WHERE status = 'succeeded'
"""

START_RUN = "INSERT INTO sync_runs (mode) VALUES (%(mode)s) RETURNING id"

FINISH_RUN = """
UPDATE sync_runs SET finished_at = now(), status = %(status)s, error = %(error)s,
    fetched = %(fetched)s, inserted = %(inserted)s, linked = %(linked)s,
    updated = %(updated)s, removed = %(removed)s, unchanged = %(unchanged)s
WHERE id = %(run_id)s
"""

RECENT_SYNC_RUNS = """
SELECT id, mode, status, started_at, finished_at, fetched, inserted, linked, updated,
       removed, unchanged, error
FROM sync_runs
ORDER BY started_at DESC, id DESC
LIMIT %(limit)s
"""

LAST_SUCCESSFUL_SYNC = """
SELECT max(finished_at) AS finished_at FROM sync_runs WHERE status = 'succeeded'
"""


def recent_sync_runs(conn: DictConnection, *, limit: int) -> list[dict[str, Any]]:
    """The `limit` latest runs, newest first, with their figures and errors."""
    return conn.execute(RECENT_SYNC_RUNS, {"limit": limit}).fetchall()


def last_successful_sync(conn: DictConnection) -> datetime | None:
    """When the last successful sync finished (None: none ever did)."""
    return one_row(conn.execute(LAST_SUCCESSFUL_SYNC))["finished_at"]
