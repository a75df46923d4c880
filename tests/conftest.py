"""Shared fixtures: real PostgreSQL and Redis, a live API over loopback, the real CLI.

By default the session starts embedded servers in a temporary folder. Set
TEST_DATABASE_URL (a server where we may create databases) and TEST_REDIS_URL to run
against standard servers instead; each test session then works in a database of its own.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from nimble_fixtures import Simulator, simulator_server
from psycopg import sql
from support import LiveServer, start_server

from contactbook import db
from contactbook.config import Settings
from contactbook.embedded import EmbeddedPostgres, EmbeddedRedis

REPO = Path(__file__).resolve().parent.parent
CONTACTBOOK = str(Path(sys.executable).with_name("contactbook"))


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def server_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def database_url(server_home: Path) -> Iterator[str]:
    """A migrated database for this test session (on TEST_DATABASE_URL's server if set)."""
    external = os.environ.get("TEST_DATABASE_URL")
    embedded = None
    if external:
        admin_url = external
    else:
        embedded = EmbeddedPostgres(server_home / "postgres")
        admin_url = embedded.start()
    name = f"contactbook_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_database(admin_url, name)
    db.upgrade(url)
    try:
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        if embedded is not None:
            embedded.stop()


def _with_database(url: str, name: str) -> str:
    """The same server URL, pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def redis_url(server_home: Path) -> Iterator[str]:
    """A Redis server for this test session (TEST_REDIS_URL if set, else embedded)."""
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis(server_home / "redis")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


# --------------------------------------------------------------------------- data


CLEAN = "TRUNCATE contacts, import_runs, sync_runs RESTART IDENTITY"


@pytest.fixture
def db_url(database_url: str) -> str:
    """The session database, emptied for this test."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(CLEAN)
    return database_url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit dict-row connection to an empty database."""
    with db.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write text (or bytes) to a CSV file in the test's folder and return its path."""
    counter = iter(range(1_000_000))

    def write(content: str | bytes, name: str | None = None) -> Path:
        path = tmp_path / (name or f"contacts-{next(counter)}.csv")
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
        return path

    return write


# --------------------------------------------------------------------------- settings


@pytest.fixture
def make_settings(db_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for this test: the test database, a private home, no .env file."""

    def make(**overrides) -> Settings:
        values = {"database_url": db_url, "contactbook_home": tmp_path / "home"}
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


# --------------------------------------------------------------------------- HTTP


@pytest.fixture
def live_api(make_settings) -> Iterator[Callable[..., str]]:
    """Start the real API over loopback: `url = live_api(**settings_overrides)`."""
    from contactbook.api.app import create_app

    servers: list[LiveServer] = []

    def start(**overrides) -> str:
        overrides.setdefault("contactbook_csv", REPO / "tests" / "data" / "empty.csv")
        server = start_server(create_app(make_settings(**overrides)))
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


# --------------------------------------------------------------------------- Nimble


@pytest.fixture(scope="module")
def nimble_server() -> Iterator[Simulator]:
    """The Nimble simulator on loopback, one per test module."""
    with simulator_server() as running:
        yield running


@pytest.fixture
def sim(nimble_server: Simulator) -> Simulator:
    """The module's simulator, emptied: each test loads its own records and faults."""
    nimble_server.reset([])
    return nimble_server


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running the real `contactbook` command against the test database."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "REDIS_URL", "NIMBLE_", "CONTACTBOOK_"))
    }
    env.update(
        DATABASE_URL=db_url,
        CONTACTBOOK_HOME=str(tmp_path / "home"),
        COLUMNS="200",
        NO_COLOR="1",
    )
    return env


#: Variables of the developer's or CI's environment that would change what a command does.
_SETTINGS_PREFIXES = (
    "DATABASE_URL", "DATABASE_READ_URL", "REDIS_URL", "CELERY_", "NIMBLE_", "CONTACTBOOK_",
    "SYNC_", "LOG_", "XDG_DATA_HOME",
)  # fmt: skip


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch) -> Callable[..., object]:
    """Run `contactbook ARGS…` in this process (Typer's CliRunner) against the test
    database: `result = cli("search", "tom", env={...})`; `result.stdout`, `.stderr`,
    `.exit_code`, `.exception` (a SystemExit for an exit code, anything else a traceback)."""
    from typer.testing import CliRunner

    from contactbook import cli as cli_module
    from contactbook.config import get_settings

    monkeypatch.chdir(tmp_path)  # never a `.env` of the checkout
    base: dict[str, str | None] = {
        key: None for key in os.environ if key.startswith(_SETTINGS_PREFIXES)
    }
    base.update(DATABASE_URL=db_url, CONTACTBOOK_HOME=str(tmp_path / "home"), NO_COLOR="1")
    runner = CliRunner()

    def run(*args: str, env: dict[str, str | None] | None = None, input: str | None = None):
        get_settings.cache_clear()
        try:
            return runner.invoke(cli_module.app, list(args), env={**base, **(env or {})},
                                 input=input)  # fmt: skip
        finally:
            get_settings.cache_clear()
            root = logging.getLogger()
            for handler in [h for h in root.handlers if isinstance(h, cli_module._StderrHandler)]:
                root.removeHandler(handler)

    return run


@pytest.fixture
def run_cli(cli_env: dict[str, str], tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run `contactbook ARGS…` through its installed entry point."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120, **kwargs):
        return subprocess.run(
            [CONTACTBOOK, *args],
            env={**cli_env, **(env or {})},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    return run


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of the test's own, which it may stop and start (and no worker listens on
    until the test starts one)."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
