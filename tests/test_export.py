"""`contactbook export`: jsonl is the API's contact; a CSV export imports back unchanged."""

from __future__ import annotations

import csv
import io
import json

from nimble_fixtures import API_KEY

from contactbook.contacts.importer import import_csv
from contactbook.contacts.schemas import Contact
from contactbook.nimble.simulator import person_resource

# Values that a spreadsheet would run as formulas, separators inside values, several
# lines, accents, and the shapes lists take.
CONTACTS = [
    ("Ada", "Lovelace", "ada@example.org", "=1+1 is a formula", ["+44 20 7946 0958"],
     "Programmer", "Analytical Engines", "London, UK", ["vip", "Smith, Jones & Co"]),
    ("François", "Müller", "francois@alpine.example", "-- first line\nsecond, \"quoted\" line",
     ["+1 (415) 555-0142", "020 7946 0000", "@home 555"], "@Chef", "+Plus GmbH",
     "Zürich, Switzerland", ["Smith, Jones & Co"]),
    ("Bo", None, None, None, [], None, None, None, []),
    (None, "Ng", "bo.ng@example.org", "Plain", ["555 0100"], None, "Acme", None, ["-1", "=x"]),
]  # fmt: skip

INSERT = """
INSERT INTO contacts (first_name, last_name, email, description, phones, title, company,
    location, tags, source)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'csv')
"""


def stored(conn) -> list[tuple]:
    rows = conn.execute(
        "SELECT first_name, last_name, email, description, phones, title, company, location,"
        " tags FROM contacts ORDER BY id"
    ).fetchall()
    return [tuple(row.values()) for row in rows]


def test_a_csv_export_imports_back_as_the_same_contacts(conn, db_url, cli, tmp_path):
    for contact in CONTACTS:
        conn.execute(INSERT, contact)
    before = stored(conn)

    exported = cli("export", "--format", "csv")
    assert exported.exit_code == 0, exported.stderr
    path = tmp_path / "exported.csv"
    path.write_text(exported.stdout, encoding="utf-8")
    conn.execute("TRUNCATE contacts RESTART IDENTITY")
    imported = cli("import", str(path))

    assert imported.exit_code == 0, imported.stderr
    assert stored(conn) == before
    # Importing the export into the contacts it came from changes nothing either.
    again = import_csv(db_url, path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, len(CONTACTS))
    assert (again.skipped, again.problems) == ([], [])
    assert stored(conn) == before


def test_the_csv_has_the_new_columns_joined_and_formula_safe(conn, cli):
    conn.execute(INSERT, CONTACTS[1])
    result = cli("export", "--format", "csv")
    (row,) = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(row) == [
        "id",
        "nimble_id",
        "first_name",
        "last_name",
        "email",
        "description",
        "phones",
        "title",
        "company",
        "location",
        "tags",
    ]
    assert row["phones"] == "'+1 (415) 555-0142; 020 7946 0000; @home 555"
    assert (row["title"], row["company"]) == ("'@Chef", "'+Plus GmbH")
    assert row["description"] == '\'-- first line\nsecond, "quoted" line'
    assert row["location"] == "Zürich, Switzerland"
    assert row["tags"] == "Smith, Jones & Co;"  # one tag, though it holds a comma


def test_jsonl_carries_every_key_of_the_contact_json(conn, cli):
    conn.execute(INSERT, CONTACTS[0])
    conn.execute(INSERT, CONTACTS[2])
    result = cli("export")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [list(row) for row in rows] == [list(Contact.model_fields)] * 2
    assert rows[0]["phone"] == "+44 20 7946 0958"  # the primary, unguarded in JSON
    assert rows[0]["tags"] == ["vip", "Smith, Jones & Co"]
    assert (rows[1]["phone"], rows[1]["phones"], rows[1]["tags"]) == (None, [], [])


def test_synced_contacts_round_trip_too(conn, cli, sim, tmp_path):
    resource = person_resource(
        nimble_id="n1",
        first_name="Grace",
        emails=["grace@navy.example"],
        phones=["+1 703 555 0100", "(703) 555-0199"],
        employments=[{"company_name": "US Navy", "title": "Rear Admiral", "is_present": True}],
        addresses=[{"city": "Arlington", "country": "US"}],
        tags=["navy", "pioneer"],
    )
    sim.reset([resource])
    env = {"NIMBLE_API_URL": sim.url, "NIMBLE_API_KEY": API_KEY}
    assert cli("sync", "--full", env=env).exit_code == 0
    before = stored(conn)
    assert before[0][4:] == (
        ["+1 703 555 0100", "(703) 555-0199"],
        "Rear Admiral",
        "US Navy",
        "Arlington, US",
        ["navy", "pioneer"],
    )
    path = tmp_path / "exported.csv"
    path.write_text(cli("export", "--format", "csv").stdout, encoding="utf-8")
    conn.execute("TRUNCATE contacts RESTART IDENTITY")
    assert cli("import", str(path)).exit_code == 0
    assert stored(conn) == before
