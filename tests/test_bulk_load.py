"""The empty-table import: parallel COPY into contacts_loading, indexes after, one swap."""

from __future__ import annotations

import psycopg
import pytest

from contactbook.contacts.importer import UnusableCsvError, import_csv
from contactbook.contacts.search import search_contacts

HEADER = "First Name,Last Name,Email,Description\n"


def people(count: int, start: int = 0) -> str:
    return HEADER + "".join(
        f"Person{i},Surname{i},person{i}@example.test,Works on project {i}\n"
        for i in range(start, start + count)
    )


# What makes `contacts` what it is, by name: after a load it must be what the migrations made.
TABLE_SHAPE = """
SELECT 'index' AS kind, indexname AS name, regexp_replace(indexdef, ' ON public\\.\\w+', '')
    AS definition
FROM pg_indexes WHERE tablename = 'contacts'
UNION ALL
SELECT 'trigger', tgname, pg_get_triggerdef(oid) FROM pg_trigger
WHERE tgrelid = 'contacts'::regclass AND NOT tgisinternal
UNION ALL
SELECT 'constraint', conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = 'contacts'::regclass
ORDER BY 1, 2
"""


def shape(conn: psycopg.Connection) -> list[tuple]:
    return [tuple(row.values()) for row in conn.execute(TABLE_SHAPE)]


def test_a_loaded_table_has_every_index_trigger_and_constraint_of_contacts(conn, db_url, write_csv):
    before = shape(conn)
    assert any(name == "contacts_text_idx" for _, name, _ in before)

    summary = import_csv(db_url, write_csv(people(3000)))

    assert summary.inserted == 3000
    assert shape(conn) == before
    missing = conn.execute("SELECT to_regclass('contacts_loading') AS t").fetchone()["t"]
    assert missing is None


def test_ids_follow_the_file_and_continue_after_the_load(conn, db_url, write_csv):
    import_csv(db_url, write_csv(people(5000)))
    rows = conn.execute("SELECT id, first_name FROM contacts ORDER BY id").fetchall()
    assert [r["first_name"] for r in rows] == [f"Person{i}" for i in range(5000)]
    assert rows[0]["id"] == 1 and rows[-1]["id"] == 5000

    import_csv(db_url, write_csv(people(1, start=9000)))  # the merge path, next id

    last = conn.execute("SELECT max(id) AS id FROM contacts").fetchone()["id"]
    assert last == 5001


def test_ids_never_come_back_after_the_table_was_emptied(conn, db_url, write_csv):
    import_csv(db_url, write_csv(people(10)))
    conn.execute("TRUNCATE contacts")  # empty again, its ids given out

    import_csv(db_url, write_csv(people(10, start=100)))

    first = conn.execute("SELECT min(id) AS id FROM contacts").fetchone()["id"]
    assert first == 11


def test_the_loaded_table_is_searchable_and_its_triggers_fire(conn, db_url, write_csv):
    import_csv(db_url, write_csv(people(2500)))
    assert search_contacts(conn, "Surname1234").contacts[0]["first_name"] == "Person1234"
    words = {r["word"] for r in conn.execute("SELECT word FROM contact_name_words")}
    assert {f"person{i}" for i in range(2500)} | {f"surname{i}" for i in range(2500)} <= words
    assert not [word for word in words if word.startswith("^")]  # initials are no words

    import_csv(db_url, write_csv(HEADER + "Zebedee,Quaxley,zq@example.test,New\n"))

    known = conn.execute("SELECT word FROM contact_name_words WHERE word = 'quaxley'")
    assert known.fetchone() is not None  # the trigger on the swapped-in table


def test_readers_see_nothing_until_the_whole_file_is_in(conn, db_url, write_csv):
    seen_while_indexing = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "indexing" and done == 0:  # every row copied, not yet swapped in
            with psycopg.connect(db_url) as reader:
                seen_while_indexing.append(
                    reader.execute("SELECT count(*) FROM contacts").fetchone()[0]
                )

    import_csv(db_url, write_csv(people(4000)), progress=progress)

    assert seen_while_indexing == [0]
    assert conn.execute("SELECT count(*) AS n FROM contacts").fetchone()["n"] == 4000


def test_a_file_unusable_after_thousands_of_rows_leaves_the_table_as_it_was(
    conn, db_url, write_csv
):
    content = people(6000).encode() + b"Bad,Byte,bad@example.test,\xff\xfe\n"
    with pytest.raises(UnusableCsvError):
        import_csv(db_url, write_csv(content))

    assert conn.execute("SELECT count(*) AS n FROM contacts").fetchone()["n"] == 0
    assert conn.execute("SELECT to_regclass('contacts_loading') AS t").fetchone()["t"] is None
    run = conn.execute("SELECT status FROM import_runs ORDER BY id DESC LIMIT 1").fetchone()
    assert run["status"] == "failed"
    assert shape(conn)  # contacts is still the migrations' table
    assert import_csv(db_url, write_csv(people(3))).inserted == 3  # and loads again


TERMINATE_COPY_STREAMS = """
SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
WHERE query LIKE 'COPY contacts_loading%' AND pid <> pg_backend_pid()
"""


def test_a_copy_stream_that_dies_fails_the_import_and_drops_the_loading_table(
    conn, db_url, write_csv
):
    terminated = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "reading" and 0 < done < total and not terminated:
            with psycopg.connect(db_url, autocommit=True) as killer:
                terminated.append(killer.execute(TERMINATE_COPY_STREAMS).fetchone()[0])

    with pytest.raises(psycopg.OperationalError):
        import_csv(db_url, write_csv(people(30_000)), progress=progress)

    assert terminated and terminated[0] >= 1
    assert conn.execute("SELECT count(*) AS n FROM contacts").fetchone()["n"] == 0
    assert conn.execute("SELECT to_regclass('contacts_loading') AS t").fetchone()["t"] is None
    run = conn.execute("SELECT status FROM import_runs ORDER BY id DESC LIMIT 1").fetchone()
    assert run["status"] == "failed"


def test_the_same_person_twice_in_a_file_keeps_the_last_row(conn, db_url, write_csv):
    content = people(3000) + "Again,Surname7,person7@example.test,The last word\n"

    summary = import_csv(db_url, write_csv(content))

    assert summary.inserted == 3000
    assert [(s.line, s.reason) for s in summary.skipped] == [
        (9, "same person as line 3002, which is imported")
    ]
    row = conn.execute(
        "SELECT first_name, description FROM contacts WHERE email = 'person7@example.test'"
    ).fetchone()
    assert row == {"first_name": "Again", "description": "The last word"}
