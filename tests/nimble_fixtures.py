"""Helpers for the Nimble tests: a simulator on loopback and its records.

Fixtures stay in the test files (``simulator_server`` below is meant to back a
module-scoped fixture there); this module only holds what they share.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from contactbook.nimble.client import NimbleClient, RetryPolicy
from contactbook.nimble.simulator import (
    RequestRecord,
    SimulatorState,
    ThreadedServer,
    create_app,
    person_resource,
)

API_KEY = "sim-key-4f9b2c7e81d0"
FAST_RETRY = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_max=0.05, max_elapsed=10)


class Simulator:
    """A running simulator: its URL and its state (faults, data, request log)."""

    def __init__(self, server: ThreadedServer, state: SimulatorState) -> None:
        self.server, self.state = server, state
        self.url = server.url

    def reset(self, records: list[dict]) -> None:
        """Replace the records and forget faults and requests."""
        fresh = SimulatorState(records, API_KEY, None)
        self.state.__dict__.update(fresh.__dict__)

    def page_requests(self, page: int | None = None) -> list[RequestRecord]:
        return [
            r
            for r in self.state.requests
            if r.path == "/api/v1/contacts" and (page is None or r.params.get("page") == str(page))
        ]

    def client(self, **kwargs) -> NimbleClient:
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("timeout", 5.0)
        return NimbleClient(self.url, kwargs.pop("api_key", API_KEY), **kwargs)


@contextmanager
def simulator_server() -> Iterator[Simulator]:
    app = create_app([], API_KEY)
    with ThreadedServer(app) as running:
        yield Simulator(running, app.state.simulator)


def people(n: int, prefix: str = "p") -> list[dict]:
    """``n`` people ``{prefix}00000``…, updated a minute apart from 2024-01-01."""
    return [
        person_resource(
            nimble_id=f"{prefix}{i:05d}",
            first_name=f"First{i}",
            last_name=f"Last{i}",
            emails=[f"person{i}@example.com"],
            description=f"Person number {i}",
            updated=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=i),
        )
        for i in range(n)
    ]
