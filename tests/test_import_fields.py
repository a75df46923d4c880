"""The CSV import of phones, title, company, location and tags, and the rows it reports:
real PostgreSQL, the rules of DESIGN's "CSV input"."""

from __future__ import annotations

import pytest
from support import dump_contacts

from contactbook.contacts.importer import MAX_RECORDED_PROBLEMS, import_csv

NEW_FIELDS = "phones, title, company, location, tags"


def contacts(conn) -> list[tuple]:
    rows = conn.execute(
        "SELECT first_name, email, phones, title, company, location, tags FROM contacts ORDER BY id"
    )
    return [tuple(r.values()) for r in rows]


def everything(conn) -> list:
    rows = conn.execute(
        "SELECT to_jsonb(c) - 'name_vector' - 'bio_vector' AS row FROM contacts c ORDER BY id"
    )
    return [r["row"] for r in rows]


@pytest.mark.parametrize(
    "header",
    [
        "first name,email,phone,mobile,title,company,city,country,tags",
        "First Name,E-mail,Phone (work),Mobile,Job Title,Organization,City,Country,Tags",
        "FIRST_NAME,EMAIL,PHONE,MOBILE PHONE,JOB_TITLE,ORGANISATION,CITY,COUNTRY,TAG",
        "first-name;e-mail;phone;mobile;job-title;company;city;country;tags",
    ],
)
def test_header_variants_of_the_new_columns(conn, db_url, write_csv, header):
    delimiter = ";" if ";" in header else ","
    cells = [
        "Ada",
        "ada@example.org",
        "+1 415 555 0142",
        "020 7946 0958",
        "Programmer",
        "Analytical Engines",
        "London",
        "UK",
        '"vip, pioneer"' if delimiter == "," else "vip, pioneer",
    ]
    import_csv(db_url, write_csv(f"{header}\n{delimiter.join(cells)}\n"))
    assert contacts(conn) == [
        (
            "Ada",
            "ada@example.org",
            ["+1 415 555 0142", "020 7946 0958"],
            "Programmer",
            "Analytical Engines",
            "London, UK",
            ["vip", "pioneer"],
        )
    ]


HEADER = "first name,email,phone,mobile,title,company,location,tags\n"


@pytest.mark.parametrize("table", ["empty", "not empty"])
def test_importing_the_same_file_twice_changes_nothing(conn, db_url, write_csv, table):
    if table == "not empty":
        import_csv(db_url, write_csv("email\nsomeone@example.org\n"))
    path = write_csv(
        HEADER + 'Ada,ada@example.org,555 0100,555 0101,CTO,Acme,"Paris, France",vip;customer\n'
        "Bob,,,,,,,friend\n"
    )
    import_csv(db_url, path)
    before = everything(conn)
    summary = import_csv(db_url, path)
    assert (summary.inserted, summary.updated) == (0, 0)
    assert everything(conn) == before


def test_an_update_replaces_values_and_adds_phones_and_tags(conn, db_url, write_csv):
    import_csv(
        db_url,
        write_csv(HEADER + "Ada,ada@example.org,555 0100,,CTO,Acme,Paris,vip;customer\n"),
    )
    summary = import_csv(
        db_url,
        write_csv(HEADER + "Ada,ADA@example.org,555 0199,(555) 0100,CEO,,,customer;speaker\n"),
    )
    assert summary.updated == 1
    (ada,) = contacts(conn)
    # phones and tags are unions (what the contact had keeps its place, the primary
    # included); a value replaces; a blank cell never erases.
    assert ada[2:] == (
        ["555 0100", "555 0199"],
        "CEO",
        "Acme",
        "Paris",
        ["vip", "customer", "speaker"],
    )
    again = import_csv(
        db_url,
        write_csv(HEADER + "Ada,ADA@example.org,555 0199,,,,,speaker;vip\n"),
    )
    assert (again.updated, again.unchanged) == (0, 1)


def test_problems_are_reported_with_their_lines_and_recorded(conn, db_url, write_csv):
    path = write_csv(
        "first name,last name,email,description\n"
        "Ada,Lovelace,ada@example.org,Poet\n"
        "Bob,Stone,EMEA,Sales\n"  # line 3: not an address
        "Cy,Lovelace, Ada,cy@example.org,Shifted\n"  # line 4: one cell too many
        ",,a@b@c,\n"  # line 5: nothing left
    )
    summary = import_csv(db_url, path)
    assert summary.inserted == 3
    assert [(s.line, "no first name" in s.reason) for s in summary.skipped] == [(5, True)]
    problems = [(p.line, p.problem) for p in summary.problems]
    assert [line for line, _ in problems] == [3, 4, 4, 5]
    assert "'EMEA' is not an address" in problems[0][1]
    assert problems[1][1].startswith("1 more cell than the header (from 'Shifted')")
    assert "'Ada' is not an address" in problems[2][1]
    assert "'a@b@c' is not an address" in problems[3][1]
    assert summary.as_dict()["problems"][0] == {"line": 3, "problem": problems[0][1]}
    assert summary.problem_count == 4

    run = conn.execute(
        "SELECT problems, problem_count FROM import_runs WHERE id = %s", (summary.run_id,)
    ).fetchone()
    assert run["problem_count"] == 4
    assert [(p["line"], p["problem"]) for p in run["problems"]] == problems
    # The row is imported without the email that is not one.
    assert ("Bob", None) in [(c[0], c[1]) for c in contacts(conn)]


def test_an_invalid_email_never_links_a_row_to_another_contact(conn, db_url, write_csv):
    # Before this rule an import stored "EMEA" as an email; such a contact may exist.
    conn.execute("INSERT INTO contacts (first_name, email, source) VALUES ('Old', 'EMEA', 'csv')")
    path = write_csv("first name,email\nBob,EMEA\nCy,emea\n")
    summary = import_csv(db_url, path)
    assert (summary.inserted, summary.updated, summary.skipped) == (2, 0, [])
    assert [(c[0], c[1]) for c in contacts(conn)] == [("Old", "EMEA"), ("Bob", None), ("Cy", None)]


def test_at_most_so_many_problems_are_kept_but_all_are_counted(conn, db_url, write_csv):
    rows = "".join(f"P{i},p{i}@example.org,x\n" for i in range(MAX_RECORDED_PROBLEMS + 5))
    summary = import_csv(db_url, write_csv("first name,email\n" + rows))
    assert summary.inserted == MAX_RECORDED_PROBLEMS + 5
    assert summary.problem_count == MAX_RECORDED_PROBLEMS + 5
    assert len(summary.problems) == MAX_RECORDED_PROBLEMS
    assert summary.problems[-1].line == MAX_RECORDED_PROBLEMS + 1
    run = conn.execute("SELECT jsonb_array_length(problems) AS n FROM import_runs").fetchone()
    assert run["n"] == MAX_RECORDED_PROBLEMS


def test_a_failed_import_writes_no_contact(db_url, write_csv):
    bad = (HEADER + "Ada,ada@example.org,555,,,,,vip\n").encode() + b"\xff\n"
    with pytest.raises(Exception, match="not UTF-8"):
        import_csv(db_url, write_csv(bad))
    assert dump_contacts(db_url) == []
