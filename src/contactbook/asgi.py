"""What the access log and the metrics both need to know about a request: its status and
how long it took, even when the app raises before answering."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


async def call_observed(
    app: Any, scope: dict, receive: Any, send: Any, done: Callable[[int, float], None]
) -> None:
    """Run `app` for one HTTP request, then call `done(status, seconds)`.

    The status is 500 when the app raised before starting a response: that is what the
    client sees.
    """
    started = time.perf_counter()
    status = 500

    async def send_and_remember_status(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await app(scope, receive, send_and_remember_status)
    finally:
        done(status, time.perf_counter() - started)
