"""Removed contacts: the ones a full sync soft-deleted because Nimble no longer lists them.

They stay in the table (`deleted_at` set) and out of search and export. This module lists
them (`GET /api/v1/contacts?removed=true`, `contactbook export --removed`) and brings them
back (`contactbook undelete`, `POST /api/v1/contacts/undelete`). Its statements read the
same columns as `repository`'s, so a removed contact has the same JSON as a live one.

A contact brought back keeps its Nimble id: if Nimble lists the person again, syncs keep
it up to date; if Nimble still lacks it, the next full sync removes it again (counted
against SYNC_MAX_REMOVALS_PERCENT like any removal).
"""

from __future__ import annotations

from collections.abc import Iterator

from psycopg import sql

from contactbook.contacts.importer import lock_out_imports
from contactbook.contacts.repository import CONTACT_COLUMNS, ContactList
from contactbook.db import DictConnection, one_row, without_statement_timeout

LIST_REMOVED_CONTACTS = sql.SQL("""
SELECT {columns} FROM contacts
WHERE deleted_at IS NOT NULL
ORDER BY id
LIMIT %(limit)s OFFSET %(offset)s
""").format(columns=CONTACT_COLUMNS)

COUNT_REMOVED_CONTACTS = "SELECT count(*) AS n FROM contacts WHERE deleted_at IS NOT NULL"

EXPORT_REMOVED_CONTACTS = sql.SQL("""
SELECT {columns}
FROM contacts WHERE deleted_at IS NOT NULL ORDER BY id
""").format(columns=CONTACT_COLUMNS)

UNDELETE_CONTACTS = """
UPDATE contacts SET deleted_at = NULL, updated_at = now()
WHERE deleted_at IS NOT NULL AND id = ANY(%(ids)s)
RETURNING id
"""

UNDELETE_ALL_CONTACTS = """
UPDATE contacts SET deleted_at = NULL, updated_at = now()
WHERE deleted_at IS NOT NULL
RETURNING id
"""


def list_removed_contacts(conn: DictConnection, *, limit: int, offset: int) -> list[dict]:
    return conn.execute(LIST_REMOVED_CONTACTS, {"limit": limit, "offset": offset}).fetchall()


def count_removed_contacts(conn: DictConnection) -> int:
    return one_row(conn.execute(COUNT_REMOVED_CONTACTS))["n"]


def removed_page(conn: DictConnection, *, limit: int, offset: int) -> ContactList:
    """A page of removed contacts and how many there are (`?removed=true`)."""
    return ContactList(
        total=count_removed_contacts(conn),
        contacts=list_removed_contacts(conn, limit=limit, offset=offset),
    )


def iter_removed_contacts(conn: DictConnection) -> Iterator[dict]:
    """Every removed contact in id order, streamed with a server-side cursor."""
    with conn.cursor(name="export_removed_contacts") as cursor:
        cursor.itersize = 2000
        cursor.execute(EXPORT_REMOVED_CONTACTS)
        yield from cursor


def undelete_contacts(conn: DictConnection, ids: list[int] | None) -> list[int]:
    """Bring back the removed contacts among `ids` (every removed contact for None) in one
    transaction; return the ids brought back, in order. Ids that are not removed
    contacts are left alone."""
    with conn.transaction():
        without_statement_timeout(conn)  # a pooled connection's limit: it waits for the lock
        # Waits for a running import or sync (a sync holds this lock for its
        # transaction), so a contact is never brought back in the middle of a run that
        # is removing it.
        lock_out_imports(conn)
        if ids is None:
            rows = conn.execute(UNDELETE_ALL_CONTACTS).fetchall()
        else:
            rows = conn.execute(UNDELETE_CONTACTS, {"ids": list(ids)}).fetchall()
    return sorted(row["id"] if isinstance(row, dict) else row[0] for row in rows)


__all__ = [
    "count_removed_contacts",
    "iter_removed_contacts",
    "list_removed_contacts",
    "removed_page",
    "undelete_contacts",
]
