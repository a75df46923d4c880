"""SQL for reading contacts. Writes live with the pipeline that owns them (import, sync)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg

GET_CONTACT = """
SELECT id, nimble_id, first_name, last_name, email, description,
       phones[1] AS phone, phones, title, company, location, tags
FROM contacts WHERE id = %(id)s AND deleted_at IS NULL
"""

# `tags` (every one must be present) and `company` filter through name_vector's GIN
# index; contactbook_filters (migration 0007) is NULL without any, which PostgreSQL
# folds away while planning, and otherwise a constant whose rarity it can see.
LIST_CONTACTS = """
SELECT id, nimble_id, first_name, last_name, email, description,
       phones[1] AS phone, phones, title, company, location, tags
FROM contacts
WHERE deleted_at IS NULL
  AND (contactbook_filters(%(tags)s::text[], %(company)s::text) IS NULL
       OR name_vector @@ contactbook_filters(%(tags)s::text[], %(company)s::text))
ORDER BY id
LIMIT %(limit)s OFFSET %(offset)s
"""

COUNT_LIVE_CONTACTS = """
SELECT count(*) AS n FROM contacts
WHERE deleted_at IS NULL
  AND (contactbook_filters(%(tags)s::text[], %(company)s::text) IS NULL
       OR name_vector @@ contactbook_filters(%(tags)s::text[], %(company)s::text))
"""

HAS_ANY_CONTACT = "SELECT EXISTS (SELECT 1 FROM contacts) AS found"

LAST_SUCCESSFUL_SYNC = """
SELECT max(finished_at) AS finished_at FROM sync_runs WHERE status = 'succeeded'
"""

EXPORT_CONTACTS = """
SELECT id, nimble_id, first_name, last_name, email, description,
       phones[1] AS phone, phones, title, company, location, tags
FROM contacts WHERE deleted_at IS NULL ORDER BY id
"""


def get_contact(conn: psycopg.Connection, contact_id: int) -> dict | None:
    return conn.execute(GET_CONTACT, {"id": contact_id}).fetchone()


def clean_filters(tags: list[str] | None, company: str | None) -> tuple[list[str], str | None]:
    """The `tag` and `company` filters as the listing and the search take them: without
    surrounding spaces (nor NUL, which PostgreSQL text cannot hold), blank ones dropped."""

    def clean(value: str) -> str:
        return value.replace("\x00", "").strip()

    return [clean(t) for t in tags or [] if clean(t)], clean(company or "") or None


def list_contacts(
    conn: psycopg.Connection,
    *,
    limit: int,
    offset: int,
    tags: list[str] | None = None,
    company: str | None = None,
) -> list[dict]:
    """Live contacts in id order; with `tags` only those that have every one of them, with
    `company` only those of that company (whole name, any case and accents)."""
    params = {"limit": limit, "offset": offset, "tags": tags or [], "company": company}
    return conn.execute(LIST_CONTACTS, params).fetchall()


def count_live_contacts(
    conn: psycopg.Connection, *, tags: list[str] | None = None, company: str | None = None
) -> int:
    """How many live contacts there are (with the filters of :func:`list_contacts`)."""
    params = {"tags": tags or [], "company": company}
    return conn.execute(COUNT_LIVE_CONTACTS, params).fetchone()["n"]


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
