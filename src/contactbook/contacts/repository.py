"""SQL for reading contacts. Writes live with the pipeline that owns them (import, sync)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from contactbook.contacts import sync_runs
from contactbook.db import DictConnection, one_row

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

# A filtered list: `tags` (every one must be present) and `company` are lexemes of
# name_vector (migration 0006), so they use its GIN index. contactbook_filters (0007) is
# IMMUTABLE: PostgreSQL computes the tsquery while planning, and its statistics see how
# rare each tag is. How many match decides the plan, so that is asked first: the
# planner's estimate, then, when it expects at most COUNT_LIMIT, the exact count. A few
# matches are read from the index and sorted (walking the id index for them would read
# the whole table when they are rarer than expected: 110 ms at 300,000 contacts for a tag
# and a company that never go together); many are read walking the id index, which
# stops after the page. A tag in a third of a million contacts is not counted (80 ms at
# 300,000): the estimate stands in, as for searches.
ESTIMATE_FILTERED = """
EXPLAIN (FORMAT JSON)
SELECT 1 FROM contacts
WHERE deleted_at IS NULL
  AND name_vector @@ contactbook_filters(%(tags)s::text[], %(company)s::text)
"""

COUNT_FILTERED = """
SELECT count(*) AS n FROM contacts
WHERE deleted_at IS NULL
  AND name_vector @@ contactbook_filters(%(tags)s::text[], %(company)s::text)
"""

LIST_FEW_FILTERED = sql.SQL("""
WITH matches AS MATERIALIZED (
    SELECT {columns}
    FROM contacts
    WHERE deleted_at IS NULL
      AND name_vector @@ contactbook_filters(%(tags)s::text[], %(company)s::text)
)
SELECT * FROM matches ORDER BY id LIMIT %(limit)s OFFSET %(offset)s
""").format(columns=CONTACT_COLUMNS)

LIST_MANY_FILTERED = sql.SQL("""
SELECT {columns}
FROM contacts
WHERE deleted_at IS NULL
  AND name_vector @@ contactbook_filters(%(tags)s::text[], %(company)s::text)
ORDER BY id
LIMIT %(limit)s OFFSET %(offset)s
""").format(columns=CONTACT_COLUMNS)

#: Filtered lists expected to hold more than this many contacts are not counted.
COUNT_LIMIT = 10_000

HAS_ANY_CONTACT = "SELECT EXISTS (SELECT 1 FROM contacts) AS found"

EXPORT_CONTACTS = sql.SQL("""
SELECT {columns}
FROM contacts WHERE deleted_at IS NULL ORDER BY id
""").format(columns=CONTACT_COLUMNS)


def get_contact(conn: DictConnection, contact_id: int) -> dict | None:
    return conn.execute(GET_CONTACT, {"id": contact_id}).fetchone()


def clean_filters(tags: list[str] | None, company: str | None) -> tuple[list[str], str | None]:
    """The `tag` and `company` filters as the listing and the search take them: without
    surrounding spaces (nor NUL, which PostgreSQL text cannot hold), blank ones dropped."""

    def clean(value: str) -> str:
        return value.replace("\x00", "").strip()

    return [clean(t) for t in tags or [] if clean(t)], clean(company or "") or None


@dataclass(frozen=True)
class ContactList:
    #: How many contacts the whole list holds (an estimate above COUNT_LIMIT when filtered).
    total: int
    contacts: list[dict]


def list_contacts(
    conn: DictConnection,
    *,
    limit: int,
    offset: int,
    tags: list[str] | None = None,
    company: str | None = None,
) -> ContactList:
    """Live contacts in id order; with `tags` only those that have every one of them, with
    `company` only those of that company (the whole name, any case and accents)."""
    params = {"limit": limit, "offset": offset, "tags": tags or [], "company": company}
    if not tags and not company:
        total = count_live_contacts(conn)
        return ContactList(total, conn.execute(LIST_CONTACTS, params).fetchall())
    plan = one_row(conn.execute(ESTIMATE_FILTERED, params))["QUERY PLAN"]
    expected = int(plan[0]["Plan"]["Plan Rows"])
    if expected > COUNT_LIMIT:
        return ContactList(expected, conn.execute(LIST_MANY_FILTERED, params).fetchall())
    total = one_row(conn.execute(COUNT_FILTERED, params))["n"]
    if total <= offset:
        return ContactList(total, [])
    return ContactList(total, conn.execute(LIST_FEW_FILTERED, params).fetchall())


def count_live_contacts(conn: DictConnection) -> int:
    return one_row(conn.execute(COUNT_LIVE_CONTACTS))["n"]


def contact_stats(conn: DictConnection) -> dict[str, Any]:
    """`GET /api/v1/stats`: how many live contacts there are, when the last sync succeeded."""
    last_sync = sync_runs.last_successful_sync(conn)
    return {
        "contacts": count_live_contacts(conn),
        "last_sync": last_sync.isoformat() if last_sync else None,
    }


def has_any_contact(conn: DictConnection) -> bool:
    return one_row(conn.execute(HAS_ANY_CONTACT))["found"]


def iter_live_contacts(conn: DictConnection) -> Iterator[dict]:
    """Every live contact in id order, streamed with a server-side cursor."""
    with conn.cursor(name="export_contacts") as cursor:
        cursor.itersize = 2000
        cursor.execute(EXPORT_CONTACTS)
        yield from cursor
