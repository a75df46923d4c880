"""`contactbook healthcheck [ROLE]`: is this container's process doing its job?

One command for the Docker image's HEALTHCHECK, whatever role the container runs:

- api / serve: `GET /healthz` on the local port answers 200 (`--url` to probe another
  address, for instance `/readyz`, which also checks the database and the broker);
- worker: the Celery worker of this host (`contactbook@<hostname>`) answers a `ping`
  through the broker;
- beat: the beat process is alive and the broker accepts a connection (beat only ever
  talks to the broker).

Without ROLE the role is read from the running `contactbook <role>` process (in a
container: PID 1, or the first such process when an init runs as PID 1), so the image's
HEALTHCHECK needs no per-service configuration. Exit status 0 means healthy, 1 unhealthy;
one line on stdout says why, which `docker inspect` shows under `.State.Health`.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ROLES", "HealthResult", "check", "healthcheck"]

ROLES = ("api", "worker", "beat", "serve")
DEFAULT_PORT = 8000


@dataclass(frozen=True)
class HealthResult:
    healthy: bool
    detail: str

    @property
    def exit_code(self) -> int:
        return 0 if self.healthy else 1


def healthcheck(role: str | None = None, *, url: str | None = None, timeout: float = 5.0) -> int:
    """Check, print one line, return the exit status (0 healthy, 1 not). For the CLI."""
    result = check(role, url=url, timeout=timeout)
    print(("healthy: " if result.healthy else "unhealthy: ") + result.detail, flush=True)
    return result.exit_code


def check(role: str | None = None, *, url: str | None = None, timeout: float = 5.0) -> HealthResult:
    """The health of `role` on this machine (detected from the running process if None)."""
    process = _find_role_process(role)
    if role is None:
        if process is None:
            return HealthResult(False, "no running `contactbook api|worker|beat|serve` process")
        role = process.role
    if role not in ROLES:
        return HealthResult(False, f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if role in ("api", "serve"):
        return _check_http(url or _local_url(process), timeout)
    if role == "worker":
        return _check_worker(timeout)
    if process is None and _proc_available():
        return HealthResult(False, "no running `contactbook beat` process")
    return _check_broker(timeout, what="beat")


# --- checks --------------------------------------------------------------------------------


def _check_http(url: str, timeout: float) -> HealthResult:
    import httpx

    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as error:
        return HealthResult(False, f"GET {url}: {type(error).__name__}: {error}")
    if response.status_code != 200:
        return HealthResult(False, f"GET {url}: HTTP {response.status_code}")
    return HealthResult(True, f"GET {url}: HTTP 200")


def _check_worker(timeout: float) -> HealthResult:
    here = socket.gethostname()
    # The names `contactbook worker` (contactbook@%h) and plain Celery (celery@%h) give a
    # worker on this host; asking only them lets the ping return on the first answer.
    names = [f"contactbook@{here}", f"celery@{here}"]
    try:
        app = _celery_app()
        try:
            replies: list[dict[str, Any]] = (
                app.control.ping(destination=names, timeout=timeout, limit=1) or []
            )
        finally:
            app.close()
    except Exception as error:  # the broker is down or refuses us: unhealthy, say why
        return HealthResult(False, f"cannot reach the broker: {type(error).__name__}: {error}")
    answered = [node for reply in replies for node in reply]
    if answered:
        return HealthResult(True, f"{', '.join(answered)} answered ping")
    return HealthResult(False, f"no worker on host {here} answered ping within {timeout}s")


def _check_broker(timeout: float, *, what: str) -> HealthResult:
    try:
        app = _celery_app()
        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=timeout)
        finally:
            app.close()
    except Exception as error:  # any transport error means the role cannot work
        return HealthResult(False, f"{what}: broker unreachable: {type(error).__name__}: {error}")
    return HealthResult(True, f"{what} running, broker reachable")


def _celery_app() -> Any:
    """A Celery client for the broker the roles use (the embedded Redis when REDIS_URL and
    CELERY_BROKER_URL are unset and it runs under CONTACTBOOK_HOME)."""
    from contactbook.config import get_settings
    from contactbook.worker import create_celery_app

    settings = get_settings()
    if settings.broker_url is None:
        from contactbook.embedded import EmbeddedRedis

        embedded = EmbeddedRedis(settings.contactbook_home / "redis")
        if embedded.is_running():
            settings = settings.model_copy(update={"redis_url": embedded.url})
    if settings.broker_url is None:
        raise RuntimeError("no broker: REDIS_URL is unset and no embedded Redis runs")
    return create_celery_app(settings)


# --- the running process ---------------------------------------------------------------------


@dataclass(frozen=True)
class _RoleProcess:
    pid: int
    role: str
    argv: tuple[str, ...]


def _proc_available() -> bool:
    return Path("/proc/self/cmdline").exists()


def _find_role_process(role: str | None) -> _RoleProcess | None:
    """The lowest-numbered `contactbook <role>` process (any role when `role` is None)."""
    if not _proc_available():
        return None
    found: list[_RoleProcess] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:  # exited meanwhile, or not ours to read
            continue
        argv = tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
        detected = role_from_argv(argv)
        if detected is not None and (role is None or detected == role):
            found.append(_RoleProcess(int(entry.name), detected, argv))
    return min(found, key=lambda process: process.pid) if found else None


def role_from_argv(argv: Sequence[str]) -> str | None:
    """`api` for `[…/python, …/contactbook, api, --port, 8000]`, None for other commands."""
    for index, arg in enumerate(argv[:-1]):
        if Path(arg).name == "contactbook" or arg.endswith("contactbook.cli"):
            candidate = argv[index + 1]
            return candidate if candidate in ROLES else None
    return None


def _local_url(process: _RoleProcess | None) -> str:
    argv = process.argv if process is not None else ()
    port = _option(argv, "--port") or str(DEFAULT_PORT)
    host = _option(argv, "--host") or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def _option(argv: Sequence[str], name: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None
