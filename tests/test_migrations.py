"""A database filled before the contact fields existed, upgraded with Alembic to head."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from psycopg import sql

from contactbook import db
from contactbook.contacts import repository
from contactbook.contacts.importer import import_csv
from contactbook.contacts.search import search_contacts

BEFORE_FIELDS = "0004"  # the newest revision before 0006 in this branch

OLD_CONTACTS = """
INSERT INTO contacts (nimble_id, first_name, last_name, email, description, source,
    nimble_updated_at, deleted_at)
VALUES
    (NULL, 'Ada', 'Lovelace', 'ada@analytical.example', 'Wrote the first program', 'csv',
     NULL, NULL),
    ('n-grace', 'Grace', 'Hopper', 'grace@navy.example', 'Compiler pioneer', 'nimble',
     '2024-01-01T00:00:00Z', NULL),
    (NULL, 'Zoë', 'Ødegaard', NULL, 'Négociatrice à Genève', 'csv', NULL, NULL),
    ('n-gone', 'Old', 'Gone', 'gone@example.org', NULL, 'nimble', NULL, now())
"""


def _on_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.fixture
def old_database(database_url: str) -> Iterator[str]:
    """A database of its own at revision 0004, with contacts and an import run."""
    admin = _on_database(database_url, "postgres")
    name = f"contactbook_migration_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _on_database(database_url, name)
    try:
        command.upgrade(db.alembic_config(url), BEFORE_FIELDS)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(OLD_CONTACTS)
            conn.execute("INSERT INTO import_runs (source, status) VALUES ('old.csv', 'succeeded')")
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_contacts_filled_before_the_new_fields_survive_the_upgrade(old_database):
    with db.connect(old_database, autocommit=True) as conn:
        before = conn.execute(
            "SELECT id, nimble_id, first_name, last_name, email, description, source,"
            " nimble_updated_at, deleted_at, created_at FROM contacts ORDER BY id"
        ).fetchall()

    db.upgrade(old_database)

    with db.connect(old_database, autocommit=True) as conn:
        head = ScriptDirectory.from_config(db.alembic_config(old_database)).get_current_head()
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == {
            "version_num": head
        }
        after = conn.execute(
            "SELECT id, nimble_id, first_name, last_name, email, description, source,"
            " nimble_updated_at, deleted_at, created_at FROM contacts ORDER BY id"
        ).fetchall()
        assert after == before
        defaults = conn.execute(
            "SELECT DISTINCT phones, title, company, location, tags, nimble_phones, nimble_title,"
            " nimble_company, nimble_location, nimble_tags FROM contacts"
        ).fetchall()
        assert defaults == [
            {
                "phones": [],
                "title": None,
                "company": None,
                "location": None,
                "tags": [],
                "nimble_phones": [],
                "nimble_title": None,
                "nimble_company": None,
                "nimble_location": None,
                "nimble_tags": [],
            }
        ]
        run = conn.execute("SELECT problems, problem_count FROM import_runs").fetchone()
        assert run == {"problems": [], "problem_count": 0}

        # The old contacts are found as before, and in the new contact JSON.
        (ada,) = search_contacts(conn, "lovelace").contacts
        assert (ada["first_name"], ada["phone"], ada["phones"], ada["tags"]) == (
            "Ada",
            None,
            [],
            [],
        )
        assert [c["first_name"] for c in search_contacts(conn, "hopp").contacts] == ["Grace"]
        assert [c["first_name"] for c in search_contacts(conn, "odegaard").contacts] == ["Zoë"]
        assert [c["first_name"] for c in search_contacts(conn, "négociatrice").contacts] == ["Zoë"]
        assert search_contacts(conn, "gone").contacts == []  # removed stays removed
        assert repository.count_live_contacts(conn) == 3
        assert repository.list_contacts(conn, limit=10, offset=0, tags=["vip"]).contacts == []


def test_an_upgraded_database_takes_the_new_fields(old_database, write_csv):
    db.upgrade(old_database)
    path = write_csv("email,phone,company,tags\nada@analytical.example,555 0100,Engines,vip\n")

    summary = import_csv(old_database, path)

    assert (summary.updated, summary.inserted) == (1, 0)
    with db.connect(old_database, autocommit=True) as conn:
        (ada,) = repository.list_contacts(conn, limit=10, offset=0, tags=["vip"]).contacts
        assert (ada["first_name"], ada["phones"], ada["company"]) == (
            "Ada",
            ["555 0100"],
            "Engines",
        )
        hits = search_contacts(conn, "ada", tags=["vip"], company="engines").contacts
        assert [hit["id"] for hit in hits] == [ada["id"]]


def test_0007_downgrades_and_upgrades_again(old_database):
    db.upgrade(old_database)
    config = db.alembic_config(old_database)
    command.downgrade(config, "0006")
    with db.connect(old_database, autocommit=True) as conn:
        columns = {
            row["column_name"]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'contacts'"
            )
        }
        assert "phones" in columns and "nimble_phones" not in columns
    db.upgrade(old_database)
    with db.connect(old_database, autocommit=True) as conn:
        assert repository.count_live_contacts(conn) == 3


def test_0012_queued_uploads_downgrade_and_upgrade_again(old_database):
    db.upgrade(old_database)
    with db.connect(old_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO import_runs (source, status, task_id, upload_path)"
            " VALUES ('upload of a.csv (x.csv)', 'queued', 't-1', '/tmp/x.csv')"
        )
    config = db.alembic_config(old_database)

    command.downgrade(config, "0011")

    with db.connect(old_database, autocommit=True) as conn:
        statuses = [row["status"] for row in conn.execute("SELECT status FROM import_runs")]
        assert sorted(statuses) == ["failed", "succeeded"]  # the queued upload ended
        columns = {
            row["column_name"]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'import_runs'"
            )
        }
        assert "task_id" not in columns and "upload_path" not in columns
    db.upgrade(old_database)
    with db.connect(old_database, autocommit=True) as conn:
        conn.execute("INSERT INTO import_runs (source, status) VALUES ('b', 'queued')")
        assert conn.execute("SELECT count(*) AS n FROM import_runs").fetchone()["n"] == 3
