"""The `tag` and `company` filters: the contact listing, v1 search and `contactbook search`,
over loopback against real PostgreSQL. (v2 answers what v1 does: test_v2.py.)"""

from __future__ import annotations

import json

import httpx
import pytest

from contactbook.contacts import repository
from contactbook.contacts.importer import import_csv

PEOPLE = (
    "First Name,Last Name,Email,Phone,Title,Company,City,Country,Tags\n"
    "Tom,Brooks,tbrooks@northwind.io,+1 415 555 0142,Freight buyer,Northwind,Oslo,Norway,"
    '"vip, EMEA"\n'
    "Ada,Hendricks,ada@lumen.dev,,Researcher,Lumen,,,vip\n"
    "François,Müller,francois@alpine.co,,Baker,Alpine Bäckerei,Zürich,Switzerland,"
    "EMEA;bakery;conference 2024\n"
    "Tina,Brooks,tina@northwind.io,,,Northwind,,,\n"
)


@pytest.fixture
def api(live_api, db_url, write_csv) -> httpx.Client:
    import_csv(db_url, write_csv(PEOPLE))
    with httpx.Client(base_url=live_api(), timeout=10) as client:
        yield client


def listed(api: httpx.Client, **params) -> tuple[list[str], int]:
    response = api.get("/api/v1/contacts", params=params)
    assert response.status_code == 200, response.text
    return [c["first_name"] for c in response.json()], int(response.headers["X-Total-Count"])


def found(api: httpx.Client, **params) -> list[str]:
    response = api.get("/api/v1/search", params=params)
    assert response.status_code == 200, response.text
    return [c["first_name"] for c in response.json()]


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({}, ["Tom", "Ada", "François", "Tina"]),
        ({"tag": "vip"}, ["Tom", "Ada"]),
        ({"tag": "VIP"}, ["Tom", "Ada"]),  # any case
        ({"tag": ["vip", "emea"]}, ["Tom"]),  # every tag given must be present
        ({"tag": ["emea", "bakery", "conference 2024"]}, ["François"]),
        ({"tag": ["vip", "bakery"]}, []),
        ({"tag": "conference"}, []),  # a whole tag, not a word of one
        ({"company": "Northwind"}, ["Tom", "Tina"]),
        ({"company": "alpine backerei"}, ["François"]),  # any case or accents
        ({"company": "North"}, []),  # the whole name
        ({"tag": "emea", "company": "northwind"}, ["Tom"]),
        ({"tag": ["", "  "], "company": " "}, ["Tom", "Ada", "François", "Tina"]),  # blank: none
    ],
)
def test_the_listing_filters_by_tags_and_company(api, params, names):
    assert listed(api, **params) == (names, len(names))


def test_the_listing_pages_through_a_filtered_list(api):
    assert listed(api, tag="vip", limit=1, offset=1) == (["Ada"], 2)
    assert listed(api, tag="vip", limit=1, offset=2) == ([], 2)


@pytest.mark.parametrize("params", [{"tag": "vip"}, {"tag": "emea"}, {"company": "northwind"}])
def test_a_filter_expected_to_match_many_walks_the_list_and_reports_an_estimate(
    api, monkeypatch, params
):
    exact, _ = listed(api, **params)
    monkeypatch.setattr(repository, "COUNT_LIMIT", 0)  # every filter "matches many"
    walked, estimate = listed(api, **params)
    assert walked == exact
    assert estimate >= 1  # PostgreSQL's estimate, not a count


def test_listed_contacts_carry_the_new_fields(api):
    (tom,) = api.get("/api/v1/contacts", params={"tag": ["vip", "emea"]}).json()
    assert {k: tom[k] for k in ("phone", "phones", "title", "company", "location", "tags")} == {
        "phone": "+1 415 555 0142",
        "phones": ["+1 415 555 0142"],
        "title": "Freight buyer",
        "company": "Northwind",
        "location": "Oslo, Norway",
        "tags": ["vip", "EMEA"],
    }
    one = api.get(f"/api/v1/contacts/{tom['id']}").json()
    assert one == tom


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"text": "brooks"}, ["Tom", "Tina"]),
        ({"text": "brooks", "tag": "vip"}, ["Tom"]),
        ({"text": "brooks", "tag": ["vip", "EMEA"]}, ["Tom"]),
        ({"text": "brooks", "tag": ["vip", "bakery"]}, []),
        ({"text": "brooks", "company": "NORTHWIND"}, ["Tom", "Tina"]),
        ({"text": "brooks", "company": "Lumen"}, []),
        ({"text": "researcher", "tag": "vip"}, ["Ada"]),
    ],
)
def test_search_filters_by_tags_and_company(api, params, names):
    assert sorted(found(api, **params)) == sorted(names)
    response = api.get("/api/v1/search", params=params)
    assert response.headers["X-Total-Count"] == str(len(names))


@pytest.mark.parametrize(
    "value", ["'", '"', "\\", "a & b", "x:*", "(", "!", "é" * 300, "$vip", "%northwind", "x\x00y"]
)
def test_any_filter_value_is_a_filter_never_a_500(api, value):
    for path, extra in (("/api/v1/contacts", {}), ("/api/v1/search", {"text": "brooks"})):
        for params in ({"tag": value}, {"company": value}):
            response = api.get(path, params={**extra, **params})
            assert response.status_code == 200, (path, params, response.text)
            assert response.json() == [], (path, params)


def test_the_cli_search_takes_the_same_filters(cli, api):
    params = {"text": "brooks", "tag": ["vip", "emea"], "company": "northwind"}
    expected = api.get("/api/v1/search", params=params).json()
    result = cli(
        "search", "brooks", "--tag", "vip", "--tag", "emea", "--company", "northwind", "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == expected
    assert [hit["first_name"] for hit in expected] == ["Tom"]
