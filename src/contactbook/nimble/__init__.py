"""Nimble: the API client, a local simulator of the API, and the sync into PostgreSQL.

``client`` reads people from the API, ``simulator`` imitates the API for demos and
tests, ``sync`` reconciles what the client reads with the ``contacts`` table.
"""

from contactbook.nimble.client import ContactPage, NimbleClient, RemoteContact, RetryPolicy
from contactbook.nimble.errors import (
    NimbleAuthError,
    NimbleError,
    NimbleProtocolError,
    NimbleQuotaExceeded,
    NimbleUnavailable,
)
from contactbook.nimble.sync import (
    SyncAlreadyRunning,
    SyncError,
    SyncSkipped,
    SyncSummary,
    run_sync,
    sync_contacts,
)

__all__ = [
    "ContactPage",
    "NimbleAuthError",
    "NimbleClient",
    "NimbleError",
    "NimbleProtocolError",
    "NimbleQuotaExceeded",
    "NimbleUnavailable",
    "RemoteContact",
    "RetryPolicy",
    "SyncAlreadyRunning",
    "SyncError",
    "SyncSkipped",
    "SyncSummary",
    "run_sync",
    "sync_contacts",
]
