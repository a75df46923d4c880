"""The sync of phones, title, company, location and tags: the simulator over real HTTP,
real PostgreSQL. Where a value came from decides whether a blank remote value clears it."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from nimble_fixtures import Simulator

from contactbook.contacts.importer import import_csv
from contactbook.nimble import sync
from contactbook.nimble.simulator import generate_contacts, person_resource
from contactbook.nimble.sync import sync_contacts


def run(conn: psycopg.Connection, sim: Simulator, *, full: bool = True):
    with sim.client(per_page=10) as client:
        return sync_contacts(conn, client, full=full)


def stored(conn: psycopg.Connection, nimble_id: str) -> dict:
    return conn.execute(
        "SELECT id, phones, title, company, location, tags FROM contacts WHERE nimble_id = %s",
        (nimble_id,),
    ).fetchone()


def values(row: dict) -> tuple:
    return row["phones"], row["title"], row["company"], row["location"], row["tags"]


def dump(conn: psycopg.Connection) -> list:
    rows = conn.execute(
        "SELECT to_jsonb(c) - 'name_vector' - 'bio_vector' AS row FROM contacts c ORDER BY id"
    )
    return [r["row"] for r in rows]


ADA = {
    "nimble_id": "ada",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "emails": ["ada@analytical.example"],
    "phones": [("+44 20 7946 0958", "mobile"), ("020 7946 0000", "work"), ("555-0199", "fax")],
    "employments": [
        {"company_name": "Babbage & Co", "title": "Analyst", "end_date": "12/1842"},
        {"company_name": "Analytical Engines", "title": "Programmer", "is_present": True},
    ],
    "title": "Countess",  # deprecated: the present employment wins
    "parent_company": "Old Co",
    "addresses": [{"street": "12 St James's Square", "city": "London", "country": "UK"}],
    "tags": ["pioneer", "vip"],
}
ADA_UPDATED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def test_every_new_field_is_synced(conn, sim: Simulator) -> None:
    grace = {
        "nimble_id": "grace",
        "first_name": "Grace",
        "title": "Rear Admiral",  # only the deprecated fields
        "parent_company": "US Navy",
        "addresses": ['{"city": "Arlington", "broken', {"city": "New York", "country": "US"}],
    }
    sim.reset([person_resource(**ADA), person_resource(**grace)])
    summary = run(conn, sim)
    assert summary.inserted == 2
    assert values(stored(conn, "ada")) == (
        ["+44 20 7946 0958", "020 7946 0000", "555-0199"],
        "Programmer",
        "Analytical Engines",
        "London, UK",
        ["pioneer", "vip"],
    )
    assert values(stored(conn, "grace")) == ([], "Rear Admiral", "US Navy", "New York, US", [])


def test_generated_people_sync_and_a_second_sync_changes_nothing(conn, sim: Simulator) -> None:
    records = generate_contacts(300, seed=3, csv_path=None)
    sim.reset(records)
    first = run(conn, sim)
    counts = conn.execute(
        "SELECT count(*) FILTER (WHERE cardinality(phones) > 1) AS phones,"
        " count(title) AS titles, count(company) AS companies, count(location) AS located,"
        " count(*) FILTER (WHERE cardinality(tags) > 0) AS tagged FROM contacts"
    ).fetchone()
    assert all(n > 30 for n in counts.values()), counts
    before = dump(conn)
    again = run(conn, sim)
    assert again.unchanged == again.fetched == first.inserted
    assert dump(conn) == before  # not even updated_at moved


def test_tags_added_and_removed_in_nimble_follow_and_compare_as_sets(conn, sim: Simulator) -> None:
    sim.reset([person_resource(**ADA, updated=ADA_UPDATED)])
    run(conn, sim)
    before = dump(conn)

    # The same set, and the same `updated`: the stamp moving to another second would
    # count as a change of its own.
    sim.state.update_contact("ada", {"tags": ["vip", "pioneer"]}, updated=ADA_UPDATED)
    assert run(conn, sim).unchanged == 1
    assert dump(conn) == before

    sim.state.update_contact("ada", {"tags": ["vip", "pioneer", "speaker"]})
    assert run(conn, sim).updated == 1
    assert stored(conn, "ada")["tags"] == ["pioneer", "vip", "speaker"]

    sim.state.update_contact("ada", {"tags": ["speaker"]})
    assert run(conn, sim).updated == 1
    assert stored(conn, "ada")["tags"] == ["speaker"]

    sim.state.update_contact("ada", {"tags": None})
    run(conn, sim)
    assert stored(conn, "ada")["tags"] == []


def test_phones_compare_as_ordered_lists(conn, sim: Simulator) -> None:
    sim.reset([person_resource(**ADA)])
    run(conn, sim)
    sim.state.update_contact("ada", {"phones": ["020 7946 0000", "+44 20 7946 0958"]})
    assert run(conn, sim).updated == 1  # a new primary is a change
    assert stored(conn, "ada")["phones"] == ["020 7946 0000", "+44 20 7946 0958"]


def test_employment_and_address_changes_propagate(conn, sim: Simulator) -> None:
    sim.reset([person_resource(**ADA)])
    run(conn, sim)
    sim.state.update_contact(
        "ada",
        {
            "employments": [{"company_name": "Difference Engines", "title": "Lead"}],
            "title": None,
            "parent_company": None,
            "addresses": [{"city": "Paris", "country": "France"}],
        },
    )
    assert run(conn, sim, full=False).updated == 1
    row = stored(conn, "ada")
    assert (row["title"], row["company"], row["location"]) == (
        "Lead",
        "Difference Engines",
        "Paris, France",
    )


def test_values_nimble_gave_and_then_removed_are_cleared(conn, sim: Simulator) -> None:
    sim.reset([person_resource(**ADA)])
    run(conn, sim)
    sim.state.update_contact(
        "ada",
        {
            "phones": None,
            "employments": None,
            "title": None,
            "parent_company": None,
            "addresses": None,
            "tags": None,
        },
    )
    assert run(conn, sim).updated == 1
    assert values(stored(conn, "ada")) == ([], None, None, None, [])


CSV = (
    "first name,last name,email,phone,mobile,job title,organization,city,country,tags\n"
    "Ada,Lovelace,ADA@analytical.example,+1 415 555 0142,,Poet,Byron Family,Ockham,UK,"
    "family; poetry\n"
)


def test_a_blank_remote_value_keeps_what_a_csv_import_gave(
    conn, db_url, write_csv, sim: Simulator
) -> None:
    import_csv(db_url, write_csv(CSV))
    csv_id = conn.execute("SELECT id FROM contacts").fetchone()["id"]
    sim.reset([person_resource(nimble_id="ada", first_name="Ada", emails=ADA["emails"])])

    assert run(conn, sim).linked == 1
    row = stored(conn, "ada")
    assert row["id"] == csv_id  # linked, not duplicated
    assert values(row) == (
        ["+1 415 555 0142"],
        "Poet",
        "Byron Family",
        "Ockham, UK",
        ["family", "poetry"],
    )

    # Nimble's values win, its primary phone first; the CSV's values that Nimble does
    # not replace stay.
    sim.state.update_contact(
        "ada",
        {
            "phones": ["+44 20 7946 0958", "1 (415) 555-0142"],
            "employments": [{"company_name": "Analytical Engines", "is_present": True}],
            "tags": ["pioneer", "poetry"],
        },
    )
    run(conn, sim)
    assert values(stored(conn, "ada")) == (
        ["+44 20 7946 0958", "1 (415) 555-0142"],  # one number: the same digits
        "Poet",
        "Analytical Engines",
        "Ockham, UK",
        ["family", "poetry", "pioneer"],
    )

    # Nimble removes everything it gave: what only the CSV gave is left.
    sim.state.update_contact("ada", {"phones": None, "employments": None, "tags": None})
    run(conn, sim)
    assert values(stored(conn, "ada")) == (
        [],  # the CSV's number was Nimble's too: Nimble removed it
        "Poet",
        None,
        "Ockham, UK",
        ["family"],
    )
    before = dump(conn)
    assert run(conn, sim).unchanged == 1
    assert dump(conn) == before


def test_a_csv_edit_of_a_value_nimble_gave_survives_its_removal_in_nimble(
    conn, db_url, write_csv, sim: Simulator
) -> None:
    sim.reset([person_resource(**ADA)])
    run(conn, sim)
    edit = "email,title,phone,tags\nada@analytical.example,Countess of Lovelace,555 0111,poet\n"
    summary = import_csv(db_url, write_csv(edit))
    assert summary.updated == 1
    removed = dict.fromkeys(("employments", "title", "parent_company", "phones", "tags"))
    sim.state.update_contact("ada", removed)
    run(conn, sim)
    row = stored(conn, "ada")
    assert row["title"] == "Countess of Lovelace"  # the import's, not Nimble's
    assert row["phones"] == ["555 0111"]
    assert row["tags"] == ["poet"]


def test_linking_in_many_batches_keeps_the_csv_values(
    conn, db_url, write_csv, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "BATCH_ROWS", 3)
    lines = [f"Person{i},p{i}@example.com,555 01{i:02d},csv" for i in range(10)]
    import_csv(db_url, write_csv("first name,email,phone,tags\n" + "\n".join(lines) + "\n"))
    sim.reset(
        [
            person_resource(nimble_id=f"n{i}", emails=[f"p{i}@example.com"], tags=["nimble"])
            for i in range(10)
        ]
    )
    summary = run(conn, sim)
    assert (summary.linked, summary.inserted) == (10, 0)
    rows = conn.execute("SELECT phones, tags FROM contacts ORDER BY id").fetchall()
    assert [r["phones"] for r in rows] == [[f"555 01{i:02d}"] for i in range(10)]
    assert all(r["tags"] == ["csv", "nimble"] for r in rows)
