"""Helpers shared by the tests (importable as `support`; fixtures live in conftest.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import uvicorn

from contactbook.asgi import bounded_http


def dump_contacts(url: str) -> list[tuple]:
    """Every contact row, including deleted ones, for before/after comparisons."""
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT id, nimble_id, first_name, last_name, email, description, source,"
            " deleted_at IS NOT NULL FROM contacts ORDER BY id"
        ).fetchall()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], object], *, timeout: float = 30, what: str = "") -> object:
    """Poll `condition` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.05)


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(app, *, port: int | None = None, http=None) -> LiveServer:
    """Serve an ASGI app with uvicorn on loopback in a thread; return once it listens.
    `http`: the protocol (`bounded_http(...)`, as `contactbook api` builds it)."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        http=http or bounded_http(),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    return LiveServer(url=f"http://127.0.0.1:{port}", server=server, thread=thread)


# Search input the API must refuse with a readable 422, and a word its message names.
BAD_SEARCH_INPUT = [
    ({}, "blank"),
    ({"text": "   "}, "blank"),
    ({"text": "x" * 201}, "at most 200"),
    ({"text": "tom", "limit": 0}, "limit"),
    ({"text": "tom", "limit": 101}, "limit"),
    ({"text": "tom", "offset": -1}, "offset"),
    ({"text": "tom", "limit": "ten"}, "limit"),
]


def read_status(sock: socket.socket) -> int:
    """The status code of the HTTP response arriving on a raw socket."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def alive(pid: int) -> bool:
    """Running (a zombie is not: it has exited and waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
