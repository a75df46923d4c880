"""Helpers for the tests that use the Celery worker (its fixtures: `celery_fixtures`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import httpx
import pytest
from kombu import Connection
from support import wait_until  # noqa: F401  (the Celery tests import it from here)

ADMIN_TOKEN = "admin-token-for-tests"

#: Celery's Redis result backend calls redis-py's `setex`, which redis-py 8 deprecates;
#: modules that run tasks ignore that one warning (`pytestmark = CELERY_WARNINGS`).
CELERY_WARNINGS = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for_task(
    status_url: str, *, headers: dict[str, str] | None = None, timeout: float = 30
) -> dict:
    """Poll a task's status URL until it is SUCCESS or FAILURE; return the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(status_url, headers=headers, timeout=10)
        answer.raise_for_status()
        body = answer.json()
        if body["status"] in ("SUCCESS", "FAILURE"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"task still {body['status']} after {timeout}s: {body}")
        time.sleep(0.02)


def forget_queues(conn: Connection, queues: Iterable[str]) -> None:
    """Empty `queues` and drop their unacknowledged messages from the broker.

    A worker killed while it ran a task leaves its message unacknowledged in Redis; after
    the visibility timeout any worker on the same Redis puts it back in its queue. On a
    Redis that outlives the run (CI's second pass uses the machine's), that would hand
    an earlier run's task to this one.
    """
    channel = conn.default_channel
    names = set(queues)
    for name in names:
        channel.queue_purge(name)
    client = channel.client
    for tag, saved in client.hscan_iter(channel.unacked_key):
        _message, _exchange, routing_key = json.loads(saved)
        if routing_key in names:
            client.hdel(channel.unacked_key, tag)
            client.zrem(channel.unacked_index_key, tag)
