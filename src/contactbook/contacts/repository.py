"""SQL for reading contacts. Writes live with the pipeline that owns them (import, sync)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
from psycopg import sql

#: A contact as the API shows it (`schemas.Contact`, in its field order): the one list of
#: its columns, for every statement that reads contacts.
CONTACT_COLUMNS = sql.SQL(
    "id, nimble_id, first_name, last_name, email, description, "
    "phones[1] AS phone, phones, title, company, location, tags"
)

GET_CONTACT = sql.SQL("""
SELECT {columns}
FROM contacts WHERE id = %(id)s AND deleted_at IS NULL
""").format(columns=CONTACT_COLUMNS)

LIST_CONTACTS = sql.SQL("""
SELECT {columns}
FROM contacts
WHERE deleted_at IS NULL
ORDER BY id
LIMIT %(limit)s OFFSET %(offset)s
""").format(columns=CONTACT_COLUMNS)

COUNT_LIVE_CONTACTS = "SELECT count(*) AS n FROM contacts WHERE deleted_at IS NULL"

HAS_ANY_CONTACT = "SELECT EXISTS (SELECT 1 FROM contacts) AS found"

LAST_SUCCESSFUL_SYNC = """
SELECT max(finished_at) AS finished_at FROM sync_runs WHERE status = 'succeeded'
"""

EXPORT_CONTACTS = sql.SQL("""
SELECT {columns}
FROM contacts WHERE deleted_at IS NULL ORDER BY id
""").format(columns=CONTACT_COLUMNS)


def get_contact(conn: psycopg.Connection, contact_id: int) -> dict | None:
    return conn.execute(GET_CONTACT, {"id": contact_id}).fetchone()


def list_contacts(conn: psycopg.Connection, *, limit: int, offset: int) -> list[dict]:
    return conn.execute(LIST_CONTACTS, {"limit": limit, "offset": offset}).fetchall()


def count_live_contacts(conn: psycopg.Connection) -> int:
    return conn.execute(COUNT_LIVE_CONTACTS).fetchone()["n"]


def has_any_contact(conn: psycopg.Connection) -> bool:
    return conn.execute(HAS_ANY_CONTACT).fetchone()["found"]


def last_successful_sync(conn: psycopg.Connection):
    return conn.execute(LAST_SUCCESSFUL_SYNC).fetchone()["finished_at"]


def iter_live_contacts(conn: psycopg.Connection) -> Iterator[dict]:
    """Every live contact in id order, streamed with a server-side cursor."""
    with conn.cursor(name="export_contacts") as cursor:
        cursor.itersize = 2000
        cursor.execute(EXPORT_CONTACTS)
        yield from cursor
