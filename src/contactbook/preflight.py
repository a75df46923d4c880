"""Checks before a server starts: a free port, one `serve` per data folder, a broker.

Both fail within moments and before anything is started, with a message that says what
to do: a port in use names the port and `--port`; a second `serve` on the same
CONTACTBOOK_HOME names the one already running (it would otherwise start a second
worker and a second beat on the same database and broker).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from contactbook.errors import BrokerUnavailable, ConfigurationError

LOCK_FILE = "serve.lock"


class PortInUse(ConfigurationError):
    """Something already listens on the port a server was asked to use."""


class AlreadyServing(ConfigurationError):
    """Another `contactbook serve` runs with the same CONTACTBOOK_HOME."""


def ensure_port_free(host: str, port: int, *, command: str) -> None:
    """Raise PortInUse (or ConfigurationError) unless `host:port` can be listened on.

    The probe binds the way uvicorn will (SO_REUSEADDR, so a port whose last connections
    linger in TIME_WAIT counts as free) and lets go at once.
    """
    bind_socket(host, port, command=command).close()


def bind_socket(host: str, port: int, *, command: str) -> socket.socket:
    """A socket bound to `host:port` (not yet listening), or PortInUse / ConfigurationError
    naming the port and `--port`; `command` is the CLI command to suggest."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} on {host} is already in use. Stop the program using it, or "
                f"choose another port with --port, for example `contactbook {command} "
                f"--port {port + 1 if port < 65535 else 8001}`."
            ) from error
        if error.errno == errno.EACCES:
            raise ConfigurationError(
                f"not allowed to listen on port {port}: choose a port above 1023 with --port."
            ) from error
        reason = error.strerror or str(error)
        raise ConfigurationError(
            f"cannot listen on {host}:{port} ({reason}): check --host and --port."
        ) from error
    return sock


def check_redis(redis_url: str) -> None:
    """Raise BrokerUnavailable unless the Redis at REDIS_URL answers a PING (other
    brokers, such as RabbitMQ, are left to Celery)."""
    scheme = urlsplit(redis_url).scheme
    if scheme not in ("redis", "rediss", "unix", "redis+socket"):
        return
    import redis

    where = _redis_location(redis_url)
    try:
        if scheme == "redis+socket":
            client = redis.Redis(unix_socket_path=urlsplit(redis_url).path, socket_timeout=3)
        else:
            client = redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3)
        with contextlib.closing(client):
            client.ping()
    except (redis.RedisError, ValueError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BrokerUnavailable(
            f"cannot reach Redis at {where}: {reason}. Check REDIS_URL (unset it to use the "
            "embedded Redis) and that the server is running."
        ) from error


def _redis_location(redis_url: str) -> str:
    parts = urlsplit(redis_url)
    if parts.hostname:
        return f"{parts.hostname}:{parts.port or 6379}{parts.path or ''}"
    return parts.path or "the configured socket"


@contextlib.contextmanager
def serve_lock(home: Path) -> Iterator[None]:
    """Hold CONTACTBOOK_HOME/serve.lock for the block; AlreadyServing if another holds it.

    An flock belongs to the open file, so the kernel releases it when the holder exits,
    however it exits: a `serve` that crashed never blocks the next one.
    """
    home.mkdir(parents=True, exist_ok=True)
    path = home / LOCK_FILE
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise AlreadyServing(
                f"another `contactbook serve`{who} is already running with the data folder "
                f"{home}. Use that one (stop it with Ctrl-C or `kill {holder or '<pid>'}` "
                "first to restart it), or give this one another folder with CONTACTBOOK_HOME."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock when we held it


__all__ = [
    "AlreadyServing",
    "PortInUse",
    "bind_socket",
    "check_redis",
    "ensure_port_free",
    "serve_lock",
]
