"""Backups: pg_dump's custom format out, pg_restore in, the same contacts afterwards, and
the password never on a command line."""

from __future__ import annotations

import logging
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from support import dump_contacts

from contactbook import backup
from contactbook.backup import BackupError, backup_database, restore_database
from contactbook.contacts.importer import import_csv

CONTACTS_CSV = """first name,last name,email,description
Zoë,Åström,zoe@example.com,"Loves ""quotes"", commas
and new lines"
Tom,Hendricks,tom@northwind.test,Buyer at Northwind
,,ops@example.org,
Renée,O'Brien,,Met at the Lisbon fair
"""


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    """A new, empty database on the test server (no schema at all)."""
    name = f"restore_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(database_url, name)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def contacts_db(db_url: str, write_csv) -> str:
    """The test database holding a few contacts (accents, quotes, a soft-deleted row)."""
    import_csv(db_url, write_csv(CONTACTS_CSV))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE contacts SET deleted_at = now() WHERE email = 'ops@example.org'")
    return db_url


def search_vectors(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id, name_vector::text, bio_vector::text FROM contacts ORDER BY id"
        ).fetchall()


def test_backup_then_restore_into_an_empty_database_gives_the_same_contacts(
    contacts_db: str, empty_database: str, tmp_path: Path, run_cli
) -> None:
    dump = backup_database(contacts_db, tmp_path / "backups")
    assert dump.parent == tmp_path / "backups"
    assert re.fullmatch(r"contactbook-\d{8}T\d{6}Z\.dump", dump.name)
    assert dump.read_bytes()[:5] == b"PGDMP"
    assert not list(dump.parent.glob("*.partial"))

    restore_database(empty_database, dump)

    assert dump_contacts(empty_database) == dump_contacts(contacts_db)
    assert len(dump_contacts(empty_database)) == 4
    assert search_vectors(empty_database) == search_vectors(contacts_db)  # generated again
    exported = [
        run_cli("export", env={"DATABASE_URL": url}) for url in (contacts_db, empty_database)
    ]
    assert all(result.returncode == 0 for result in exported), exported[0].stderr
    assert exported[0].stdout == exported[1].stdout
    assert exported[0].stdout.count("\n") == 3  # live contacts only
    with psycopg.connect(empty_database) as conn:  # migrations state came along
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()


def test_restore_replaces_what_changed_since_the_backup(contacts_db: str, tmp_path: Path) -> None:
    before = dump_contacts(contacts_db)
    dump = backup_database(contacts_db, tmp_path)
    with psycopg.connect(contacts_db, autocommit=True) as conn:
        conn.execute("DELETE FROM contacts WHERE first_name = 'Tom'")
        conn.execute("UPDATE contacts SET description = 'changed' WHERE first_name = 'Zoë'")
    restore_database(contacts_db, dump)
    assert dump_contacts(contacts_db) == before


def test_two_backups_in_the_same_second_keep_both_files(db_url: str, tmp_path: Path) -> None:
    first = backup_database(db_url, tmp_path)
    second = backup_database(db_url, tmp_path)
    assert first != second and first.exists() and second.exists()


def test_restoring_a_file_that_is_not_a_dump_says_so_and_changes_nothing(
    contacts_db: str, tmp_path: Path
) -> None:
    before = dump_contacts(contacts_db)
    not_a_dump = tmp_path / "contacts.sql"
    not_a_dump.write_text("DROP TABLE contacts;\n")
    with pytest.raises(BackupError, match="not a pg_dump custom-format archive"):
        restore_database(contacts_db, not_a_dump)
    with pytest.raises(BackupError, match="no such file"):
        restore_database(contacts_db, tmp_path / "missing.dump")
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(b"PGDMP" + b"\0" * 20)
    with pytest.raises(BackupError, match="not a readable backup"):
        restore_database(contacts_db, truncated)
    assert dump_contacts(contacts_db) == before


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    url = f"postgresql://nobody:pw@127.0.0.1:1/contactbook?host={tmp_path}"
    with pytest.raises(BackupError, match="cannot connect to the database"):
        backup_database(url, tmp_path)
    assert not list(tmp_path.glob("*.dump"))


def with_password(url: str) -> tuple[str, str]:
    """`url` carrying a password, and that password. The embedded test server trusts local
    connections, so any password works there; a TEST_DATABASE_URL keeps its own."""
    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    password = "hunter2-" + uuid.uuid4().hex
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{password}@{host}")), password


def test_the_password_travels_in_the_environment_never_on_the_command_line(
    db_url: str, empty_database: str, tmp_path: Path, monkeypatch, caplog
) -> None:
    source, password = with_password(db_url)
    target, target_password = with_password(empty_database)
    calls: list[tuple[list[str], dict | None]] = []
    real_run, real_popen = subprocess.run, subprocess.Popen

    def spy_run(command, *args, **kwargs):
        calls.append((list(command), kwargs.get("env")))
        return real_run(command, *args, **kwargs)

    def spy_popen(command, *args, **kwargs):
        calls.append((list(command), kwargs.get("env")))
        return real_popen(command, *args, **kwargs)

    monkeypatch.setattr(backup.subprocess, "run", spy_run)
    monkeypatch.setattr(backup.subprocess, "Popen", spy_popen)
    caplog.set_level(logging.DEBUG, logger="contactbook.backup")
    restore_database(target, backup_database(source, tmp_path, progress=lambda *_: None))

    work = [(argv, env) for argv, env in calls if "--version" not in argv and "--list" not in argv]
    assert [Path(argv[0]).name for argv, _ in work] == ["pg_dump", "pg_restore"]
    for argv, _ in calls:
        assert not any(password in arg or target_password in arg for arg in argv)
    assert [env["PGPASSWORD"] for _, env in work] == [password, target_password]
    assert password not in caplog.text and target_password not in caplog.text


def test_pg_dump_is_chosen_to_match_the_server(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        server_major = conn.info.server_version // 10000
    tool = backup._pick_tool("pg_dump", at_least=server_major)
    assert tool.major >= server_major
    with pytest.raises(BackupError, match="no pg_dump for PostgreSQL 99"):
        backup._pick_tool("pg_dump", at_least=99)


def test_backup_and_restore_commands(
    contacts_db: str, empty_database: str, cli, tmp_path: Path
) -> None:
    made = cli("backup", "--to", str(tmp_path / "elsewhere"))
    assert made.exit_code == 0, made.output
    dump = Path(made.stdout.strip().splitlines()[-1])
    assert dump.parent == tmp_path / "elsewhere" and dump.exists()

    restored = cli("restore", str(dump), "--yes", env={"DATABASE_URL": empty_database})
    assert restored.exit_code == 0, restored.output
    assert dump_contacts(empty_database) == dump_contacts(contacts_db)

    default = cli("backup")
    assert default.exit_code == 0, default.output
    assert Path(default.stdout.strip().splitlines()[-1]).parent == tmp_path / "home" / "backups"


def test_backup_and_restore_report_their_progress(
    contacts_db: str, empty_database: str, tmp_path: Path
) -> None:
    dumped: list[tuple[int, int | None, str]] = []
    restored: list[tuple[int, int | None, str]] = []

    path = backup_database(contacts_db, tmp_path, progress=lambda *p: dumped.append(p))
    restore_database(empty_database, path, progress=lambda *p: restored.append(p))

    size = path.stat().st_size
    assert dumped[-1] == (size, size, "written")
    assert all(done <= size for done, _, _ in dumped)
    entries = restored[-1][1]
    assert entries and entries >= 4  # tables, indexes, functions... of the archive
    assert restored[-1] == (entries, entries, "restored")
    assert [done for done, _, _ in restored] == sorted(done for done, _, _ in restored)
    assert dump_contacts(empty_database) == dump_contacts(contacts_db)


def test_backup_and_restore_show_nothing_but_the_result_on_a_pipe(
    contacts_db: str, empty_database: str, cli, tmp_path: Path
) -> None:
    made = cli("backup", "--to", str(tmp_path / "dumps"))
    dump = Path(made.stdout.strip())
    back = cli("restore", str(dump), "--yes", env={"DATABASE_URL": empty_database})

    assert made.exit_code == 0 and dump.exists(), made.output
    assert made.stdout == f"{dump}\n"
    assert made.stderr.splitlines()[1:] == []  # the database line only
    assert back.exit_code == 0, back.output
    assert back.stderr.splitlines()[1:] == []


def test_restoring_a_file_that_is_not_a_backup_exits_2(cli, tmp_path: Path) -> None:
    notes = tmp_path / "notes.sql"
    notes.write_text("select 1;\n")

    result = cli("restore", str(notes), "--yes")

    assert result.exit_code == 2
    assert "not a pg_dump custom-format archive" in result.stderr


def test_searches_during_a_restore_answer_503_and_then_find_the_restored_contacts(
    contacts_db: str, tmp_path: Path, live_api
) -> None:
    import threading

    import httpx

    dump = backup_database(contacts_db, tmp_path)
    url = live_api(db_statement_timeout=0.3)
    search = {"text": "Tom"}
    with httpx.Client(base_url=url, timeout=20) as client:
        assert client.get("/api/v1/search", params=search).status_code == 200
        with psycopg.connect(contacts_db) as reader, psycopg.connect(contacts_db) as watcher:
            # A reader keeps the restore waiting at the contacts table, so the test can
            # search while the restore holds its place in the lock queue.
            reader.execute("SELECT 1 FROM contacts LIMIT 1")
            failure: list[BaseException] = []

            def restore() -> None:
                try:
                    restore_database(contacts_db, dump)
                except BaseException as error:  # reported by the assertion below
                    failure.append(error)

            restoring = threading.Thread(target=restore)
            restoring.start()
            waiting = None
            while restoring.is_alive() and not waiting:
                waiting = watcher.execute(
                    "SELECT 1 FROM pg_locks WHERE relation = 'contacts'::regclass"
                    " AND mode = 'AccessExclusiveLock' AND NOT granted"
                ).fetchone()
                time.sleep(0.01)  # polling for the event, not ordering by time
            assert waiting, f"the restore never waited for the contacts table: {failure}"

            during = client.get("/api/v1/search", params=search)
            assert during.status_code == 503, during.text
            assert "DB_STATEMENT_TIMEOUT" in during.json()["detail"]

            reader.rollback()
            restoring.join(timeout=60)
        assert not failure, failure
        after = client.get("/api/v1/search", params=search)
        assert after.status_code == 200
        assert after.json()[0]["last_name"] == "Hendricks"
