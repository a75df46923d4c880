"""The CSV import pipeline against real PostgreSQL: the rules of DESIGN's "CSV input"."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest
from support import dump_contacts

from contactbook.contacts.importer import (
    MAX_LISTED_IGNORED_COLUMNS,
    UnusableCsvError,
    import_csv,
)

HEADER = "First Name,Last Name,Email,Description\n"


def people(conn) -> list[tuple]:
    return [
        (r["first_name"], r["last_name"], r["email"], r["description"])
        for r in conn.execute(
            "SELECT first_name, last_name, email, description FROM contacts ORDER BY id"
        )
    ]


@pytest.mark.parametrize(
    "header",
    [
        "first_name,last_name,email,description",
        "First Name,Last Name,Email,Description",
        "first name,last name,e-mail,description",
        "FIRST NAME,LAST NAME,Email (work),DESCRIPTION",
        "First-Name,Last_Name,E-mail,Description",
    ],
)
def test_header_variants_map_to_the_same_columns(conn, db_url, write_csv, header):
    path = write_csv(f"{header}\nAda,Hendricks,ada@example.org,Builds bridges\n")

    summary = import_csv(db_url, path)

    assert summary.inserted == 1
    assert people(conn) == [("Ada", "Hendricks", "ada@example.org", "Builds bridges")]


def test_bom_and_crlf_are_read_as_plain_utf8(conn, db_url, write_csv):
    content = "\ufeffFirst Name,Last Name,Email\r\nZoë,Søren,zoe@example.org\r\n"
    path = write_csv(content.encode("utf-8"))

    import_csv(db_url, path)

    assert people(conn) == [("Zoë", "Søren", "zoe@example.org", None)]


def test_quoted_fields_keep_their_newlines(conn, db_url, write_csv):
    path = write_csv(HEADER + 'Ann,Lee,ann@example.org,"Line one\nline two"\n')

    import_csv(db_url, path)

    assert people(conn) == [("Ann", "Lee", "ann@example.org", "Line one\nline two")]


def test_blank_rows_are_skipped_with_their_line_numbers(conn, db_url, write_csv):
    path = write_csv(HEADER + 'Ann,Lee,ann@example.org,"two\nlines"\n,,,\nBo,Ng,bo@example.org,\n')

    summary = import_csv(db_url, path)

    assert summary.inserted == 2
    assert [(row.line, "no first name" in row.reason) for row in summary.skipped] == [(4, True)]


def test_unknown_columns_are_ignored_and_reported_once(conn, db_url, write_csv):
    path = write_csv("Email,Owner,Notes\nann@example.org,555,Acme\nbo@example.org,556,Acme\n")

    summary = import_csv(db_url, path)

    assert summary.ignored_columns == ["Owner", "Notes"]
    assert people(conn) == [
        (None, None, "ann@example.org", None),
        (None, None, "bo@example.org", None),
    ]


def test_importing_the_same_file_twice_changes_nothing(conn, db_url, write_csv):
    path = write_csv(HEADER + "Ann,Lee,ann@example.org,Sales\nBo,Ng,,Support\n,,,Only a bio\n")
    import_csv(db_url, path)
    before = dump_contacts(db_url)
    stamps = conn.execute("SELECT updated_at FROM contacts ORDER BY id").fetchall()

    summary = import_csv(db_url, path)

    assert (summary.inserted, summary.updated, summary.unchanged) == (0, 0, 3)
    assert dump_contacts(db_url) == before
    assert conn.execute("SELECT updated_at FROM contacts ORDER BY id").fetchall() == stamps


def test_a_row_with_a_known_email_updates_that_contact(conn, db_url, write_csv):
    import_csv(db_url, write_csv(HEADER + "Ann,Lee,Ann@Example.org,Sales\n"))

    summary = import_csv(db_url, write_csv(HEADER + "Annie,Lee,ann@EXAMPLE.org,\n"))

    assert (summary.inserted, summary.updated) == (0, 1)
    # A blank cell does not erase what the contact had.
    assert people(conn) == [("Annie", "Lee", "ann@EXAMPLE.org", "Sales")]


def test_the_last_row_wins_within_one_file(conn, db_url, write_csv):
    path = write_csv(HEADER + "Ann,Lee,ann@example.org,Old\nAnn,Lee,ANN@example.org,New\n")

    summary = import_csv(db_url, path)

    assert people(conn) == [("Ann", "Lee", "ANN@example.org", "New")]
    assert [(row.line, row.reason) for row in summary.skipped] == [
        (2, "same person as line 3, which is imported")
    ]


def test_a_run_is_recorded(conn, db_url, write_csv):
    summary = import_csv(db_url, write_csv(HEADER + "Ann,Lee,ann@example.org,\n,,,\n"))

    run = conn.execute("SELECT * FROM import_runs WHERE id = %s", (summary.run_id,)).fetchone()
    assert (run["status"], run["rows_read"], run["inserted"], run["skipped"]) == (
        "succeeded",
        2,
        1,
        1,
    )


def test_runs_whose_session_is_gone_are_closed_by_the_next_import(conn, db_url, write_csv):
    # An import whose process died left its run `running`; one still waiting for the
    # import lock (its session alive) must stay so.
    start = (
        "INSERT INTO import_runs (source, backend_pid, backend_started)"
        " SELECT %s, pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        " RETURNING id"
    )
    with psycopg.connect(db_url, autocommit=True) as gone:
        dead = gone.execute(start, ("killed.csv",)).fetchone()[0]
    with psycopg.connect(db_url, autocommit=True) as waiting:
        alive = waiting.execute(start, ("waiting.csv",)).fetchone()[0]
        legacy = waiting.execute(
            "INSERT INTO import_runs (source) VALUES ('before 0004') RETURNING id"
        ).fetchone()[0]

        summary = import_csv(db_url, write_csv(HEADER + "Ann,Lee,ann@example.org,\n"))

        runs = {
            r["id"]: r
            for r in conn.execute("SELECT id, status, finished_at, error FROM import_runs")
        }
    for closed in (dead, legacy):
        assert runs[closed]["status"] == "failed" and runs[closed]["finished_at"] is not None
        assert runs[closed]["error"].startswith("interrupted: the process running this import")
    assert (runs[alive]["status"], runs[alive]["error"]) == ("running", None)
    assert runs[summary.run_id]["status"] == "succeeded"


UNUSABLE = {
    "empty": b"",
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
    "no known column": b"Owner,Notes\nTom,Acme\n",
    "not utf-8": "First Name,Last Name\nFran\xe7ois,M\xfcller\n".encode("latin-1"),
    "not utf-8 late": (HEADER + "Ann,Lee,ann@example.org,x\n" * 3000).encode()
    + "Fran\xe7ois,X,f@example.org,y\n".encode("latin-1"),
}


@pytest.mark.parametrize("kind", sorted(UNUSABLE))
def test_an_unusable_file_writes_nothing(conn, db_url, write_csv, kind):
    import_csv(db_url, write_csv(HEADER + "Kept,Person,kept@example.org,\n"))
    before = dump_contacts(db_url)

    with pytest.raises(UnusableCsvError):
        import_csv(db_url, write_csv(UNUSABLE[kind]))

    assert dump_contacts(db_url) == before


def test_a_missing_file_or_a_directory_is_refused(db_url, tmp_path):
    with pytest.raises(UnusableCsvError, match="does not exist"):
        import_csv(db_url, tmp_path / "nope.csv")
    with pytest.raises(UnusableCsvError):
        import_csv(db_url, tmp_path)


def test_spreadsheet_formulas_are_stored_as_text(conn, db_url, write_csv):
    path = write_csv(HEADER + '=cmd(),+1,-sales@x.org,"@x -2+3"\n')

    import_csv(db_url, path)

    assert people(conn) == [("=cmd()", "+1", "-sales@x.org", "@x -2+3")]


def test_only_if_empty_imports_exactly_once_when_started_together(conn, db_url, write_csv):
    path = write_csv(HEADER + "".join(f"P{i},Q,p{i}@example.org,\n" for i in range(500)))
    results = []

    def start() -> None:
        results.append(import_csv(db_url, path, only_if_empty=True).performed)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False, False, True]
    assert conn.execute("SELECT count(*) AS n FROM contacts").fetchone()["n"] == 500


def test_rows_without_email_link_by_names_and_bio(conn, db_url, write_csv):
    import_csv(db_url, write_csv(HEADER + "Bo,Ng,,Support\n"))

    same = import_csv(db_url, write_csv(HEADER + "BO,NG,,Support\n"))
    namesake = import_csv(db_url, write_csv(HEADER + "Bo,Ng,,Field engineer\n"))

    assert (same.inserted, same.updated) == (0, 1)
    # Another person with the same name is never merged into the first.
    assert namesake.inserted == 1
    assert people(conn) == [("BO", "NG", None, "Support"), ("Bo", "Ng", None, "Field engineer")]


def test_a_soft_deleted_contact_is_not_revived_by_its_email(conn, db_url, write_csv):
    import_csv(db_url, write_csv(HEADER + "Ann,Lee,ann@example.org,\n"))
    conn.execute("UPDATE contacts SET deleted_at = now()")

    summary = import_csv(db_url, write_csv(HEADER + "Ann,Lee,ann@example.org,\n"))

    assert summary.inserted == 1
    live = conn.execute("SELECT count(*) AS n FROM contacts WHERE deleted_at IS NULL")
    assert live.fetchone()["n"] == 1


def test_a_failed_import_is_recorded_as_failed(conn, db_url, write_csv):
    with pytest.raises(UnusableCsvError):
        import_csv(db_url, write_csv(UNUSABLE["not utf-8 late"]))

    run = conn.execute("SELECT status, error FROM import_runs").fetchone()
    assert run["status"] == "failed"
    assert "UTF-8" in run["error"]


def test_the_database_keeps_working_after_a_refused_file(db_url, write_csv):
    with pytest.raises(UnusableCsvError):
        import_csv(db_url, write_csv(UNUSABLE["not utf-8 late"]))
    with psycopg.connect(db_url) as connection:
        assert connection.execute("SELECT count(*) FROM contacts").fetchone() == (0,)


@pytest.mark.parametrize("table", ["empty", "not empty"])
def test_the_last_row_wins_whatever_the_table_holds(conn, db_url, write_csv, table):
    if table == "not empty":
        import_csv(db_url, write_csv(HEADER + "Zed,Old,zed@example.org,\n"))
    path = write_csv(HEADER + "A,One,a@example.org,first\nB,Two,,x\nA,One,A@example.org,second\n")

    summary = import_csv(db_url, path)

    assert summary.inserted == 2
    assert [(row.line, row.reason) for row in summary.skipped] == [
        (2, "same person as line 4, which is imported")
    ]
    assert ("A", "One", "A@example.org", "second") in people(conn)


def test_a_million_ignored_columns_are_counted_not_all_listed(conn, db_url, write_csv):
    # Before: every name went into the summary, and so into a 5 MB task result.
    columns = 1_000_000
    path = write_csv("Email" + "," * columns + "\nann@example.org" + "," * columns + "\n")

    summary = import_csv(db_url, path)
    result = json.dumps(summary.as_dict())

    assert summary.inserted == 1
    assert summary.ignored_column_count == columns
    assert len(summary.ignored_columns) == MAX_LISTED_IGNORED_COLUMNS
    assert summary.ignored_columns[0] == "column 2 (no header)"
    assert len(result) < 10_000
