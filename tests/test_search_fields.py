"""Search over the fields Nimble keeps beside the names: phones, company, title, tags."""

from __future__ import annotations

import psycopg
import pytest

from contactbook.contacts.search import search_contacts

INSERT = """
INSERT INTO contacts (first_name, last_name, email, description, source, phones, title,
                      company, location, tags)
VALUES (%(first)s, %(last)s, %(email)s, %(bio)s, 'csv', %(phones)s, %(title)s, %(company)s,
        %(location)s, %(tags)s)
"""

PEOPLE = [
    dict(first="Ada", last="Quist", email="ada@quist.test", bio="Buys freight capacity.",
         phones=["+1 (415) 555-0142", "020 7946 0958"], title="Head of Logistics",
         company="Northwind Traders", location="Lisbon, Portugal", tags=["customer", "vip"]),
    dict(first="Ben", last="Orr", email="ben@orr.test", bio="Sells spare parts.",
         phones=["415-555-0199"], title="Account Executive", company="Lumen Labs",
         location="Berlin, Germany", tags=["customer"]),
    dict(first="Cleo", last="Lumen", email="cleo@cleo.test", bio="Paints lighthouses.",
         phones=[], title=None, company=None, location=None, tags=["vip"]),
    dict(first="Dag", last="Vik", email="dag@vik.test", bio="Once worked for Lumen on lamps.",
         phones=["+44 20 7946 0000"], title="Founder", company="Vik & Sons",
         location="Oslo, Norway", tags=["customer", "vip", "board"]),
    dict(first="Eli", last="Park", email="eli@park.test", bio="Lumen fan.",
         phones=["5550142"], title=None, company="Northwind Traders", location=None, tags=[]),
]  # fmt: skip


@pytest.fixture
def fields_conn(conn: psycopg.Connection) -> psycopg.Connection:
    for person in PEOPLE:
        conn.execute(INSERT, person)
    conn.execute("ANALYZE contacts")
    return conn


def names(conn, text: str, **filters) -> list[str]:
    page = search_contacts(conn, text, limit=20, **filters)
    return [f"{c['first_name']} {c['last_name']}" for c in page.contacts]


@pytest.mark.parametrize(
    "typed", ["+1 (415) 555-0142", "415 555 0142", "4155550142", "(415) 555.0142", "14155550142"]
)
def test_a_phone_number_typed_any_way_finds_its_person_first(fields_conn, typed):
    page = search_contacts(fields_conn, typed)
    assert page.contacts[0]["last_name"] == "Quist"
    assert page.contacts[0]["highlight"]["phone"] == "<mark>+1 (415) 555-0142</mark>"


def test_the_last_seven_digits_find_every_number_ending_with_them(fields_conn):
    found = names(fields_conn, "555-0142")
    assert set(found[:2]) == {"Ada Quist", "Eli Park"}


def test_a_country_code_the_stored_number_lacks_still_finds_it(fields_conn):
    assert names(fields_conn, "+1 415 555 0199")[0] == "Ben Orr"


def test_a_second_number_is_found_and_highlighted(fields_conn):
    hit = search_contacts(fields_conn, "020 7946 0958").contacts[0]
    assert hit["last_name"] == "Quist"
    assert hit["phone"] == "+1 (415) 555-0142"  # the primary stays the primary
    assert hit["highlight"]["phone"] == "<mark>020 7946 0958</mark>"


def test_a_few_digits_are_no_phone_number(fields_conn):
    assert names(fields_conn, "0142") == []


def test_company_ranks_below_a_name_and_above_the_bio(fields_conn):
    found = names(fields_conn, "lumen")
    assert found[:2] == ["Cleo Lumen", "Ben Orr"]
    assert set(found[2:]) == {"Dag Vik", "Eli Park"}
    hit = search_contacts(fields_conn, "lumen").contacts[1]
    assert hit["highlight"]["company"] == "<mark>Lumen</mark> Labs"


def test_a_company_name_finds_its_people(fields_conn):
    assert set(names(fields_conn, "northwind traders")) == {"Ada Quist", "Eli Park"}
    assert set(names(fields_conn, "Northw")) == {"Ada Quist", "Eli Park"}


def test_a_name_with_its_company_or_a_tag_ranks_above_the_bio(fields_conn):
    # Band 7 with several words: one word in the name, the other in the company or the
    # tags; a phrase or an excluded word still counts as typed.
    assert names(fields_conn, "ben lumen")[0] == "Ben Orr"
    assert names(fields_conn, "dag board")[0] == "Dag Vik"
    assert names(fields_conn, "ada northw")[0] == "Ada Quist"
    assert names(fields_conn, '"lumen labs" ben')[0] == "Ben Orr"
    assert "Ben Orr" not in names(fields_conn, "lumen labs -ben")
    assert names(fields_conn, "ben or vik")[:2] == ["Ben Orr", "Dag Vik"]


def test_title_words_are_found_like_bio_words(fields_conn):
    page = search_contacts(fields_conn, "logistics")
    assert [c["last_name"] for c in page.contacts] == ["Quist"]
    assert page.contacts[0]["highlight"]["title"] == "Head of <mark>Logistics</mark>"
    assert "Founder" in [c["title"] for c in search_contacts(fields_conn, "founders").contacts]


def test_the_location_is_searchable(fields_conn):
    assert names(fields_conn, "lisbon") == ["Ada Quist"]


def test_tag_filters_with_text_and_repeated(fields_conn):
    assert set(names(fields_conn, "lumen", tags=["vip"])) == {"Cleo Lumen", "Dag Vik"}
    assert names(fields_conn, "lumen", tags=["VIP", "board"]) == ["Dag Vik"]
    assert names(fields_conn, "lumen", tags=["nobody-has-this"]) == []


def test_company_filter_is_the_whole_name_in_any_case(fields_conn):
    assert set(names(fields_conn, "buys or fan", company="northwind TRADERS")) == {
        "Ada Quist",
        "Eli Park",
    }
    assert names(fields_conn, "ada", company="Northwind") == []


def test_a_filtered_search_reports_the_filtered_total(fields_conn):
    page = search_contacts(fields_conn, "lumen", tags=["vip"], limit=1)
    assert page.total == 2 and len(page.contacts) == 1


def test_the_contact_carries_every_field(fields_conn):
    hit = search_contacts(fields_conn, "Quist").contacts[0]
    assert hit["phones"] == ["+1 (415) 555-0142", "020 7946 0958"]
    assert hit["phone"] == "+1 (415) 555-0142"
    assert (hit["title"], hit["company"], hit["location"]) == (
        "Head of Logistics",
        "Northwind Traders",
        "Lisbon, Portugal",
    )
    assert hit["tags"] == ["customer", "vip"]
