"""The sync's Celery task (beat sends it on SYNC_SCHEDULE, `POST /api/v1/sync` on
demand) and the one function that queues it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from celery import Celery

from contactbook.jobs import KIND_SYNC, SYNC_TASK, submit
from contactbook.worker_health import mark_started

if TYPE_CHECKING:
    from contactbook.config import Settings
    from contactbook.worker import ContactBookCelery

log = logging.getLogger(__name__)


def register(app: ContactBookCelery) -> None:
    """Add the sync task to `app` (shared=False, as for the contacts' tasks)."""

    # Not retried: a sync that failed rolled everything back, and the next one (beat's,
    # or one asked for) starts from the same point.
    @app.task(name=SYNC_TASK, bind=True, shared=False, track_started=False)
    def sync_contacts(
        self, full: bool = False, dry_run: bool = False, allow_removals: bool = False
    ) -> dict:
        """Sync from Nimble; skipped (not failed) without a key or while another sync runs."""
        mark_started(self)
        return run_sync_task(
            self.app.settings, full=full, dry_run=dry_run, allow_removals=allow_removals
        )


def queue_sync(
    celery: Celery, *, full: bool = False, dry_run: bool = False, allow_removals: bool = False
) -> str:
    """Send a sync to the workers; returns its task id (raises BrokerUnavailable)."""
    return submit(
        celery, SYNC_TASK, kind=KIND_SYNC,
        full=full, dry_run=dry_run, allow_removals=allow_removals,
    )  # fmt: skip


def run_sync_task(
    settings: Settings, *, full: bool, dry_run: bool = False, allow_removals: bool = False
) -> dict:
    """One sync run, or a skip with one clear log line saying why."""
    if settings.nimble_api_key is None:
        log.warning("sync skipped: NIMBLE_API_KEY is not set")
        return {"status": "skipped", "reason": "NIMBLE_API_KEY is not set"}
    # Imported here: the API registers this task (to send it) but never runs a sync.
    from contactbook.nimble.sync import SyncAlreadyRunning, SyncSkipped, run_sync

    try:
        summary = run_sync(settings, full=full, dry_run=dry_run, allow_removals=allow_removals)
    except SyncAlreadyRunning as error:
        log.warning("sync skipped: another sync is running (%s)", error)
        return {"status": "skipped", "reason": "another sync is running"}
    except SyncSkipped as error:
        log.warning("sync skipped: %s", error)
        return {"status": "skipped", "reason": str(error)}
    return {"status": "succeeded", **summary.as_dict()}


__all__ = ["queue_sync", "register", "run_sync_task"]
