"""The v1 HTTP API over loopback: search contract, contacts, health, auth for readers."""

from __future__ import annotations

import httpx
import pytest
from support import BAD_SEARCH_INPUT

from contactbook.contacts.importer import import_csv

PEOPLE = (
    "First Name,Last Name,Email,Description\n"
    "Tom,Brooks,tbrooks@northwind.io,Negotiates freight contracts\n"
    "Ada,Hendricks,ada@lumen.dev,Machine learning researcher\n"
    "François,Müller,francois@alpine.co,Runs logistics for a bakery chain\n"
)


@pytest.fixture
def api(live_api, db_url, write_csv) -> httpx.Client:
    import_csv(db_url, write_csv(PEOPLE))
    with httpx.Client(base_url=live_api(), timeout=10) as client:
        yield client


def test_search_returns_a_list_best_first_with_a_total(api):
    response = api.get("/api/v1/search", params={"text": "Tom Brooks"})

    assert response.status_code == 200
    hits = response.json()
    assert isinstance(hits, list)
    assert hits[0]["first_name"] == "Tom"
    assert response.headers["X-Total-Count"] == str(len(hits))
    assert set(hits[0]) >= {"id", "nimble_id", "first_name", "last_name", "email", "description"}


def test_no_match_is_an_empty_list(api):
    response = api.get("/api/v1/search", params={"text": "zyxwvut"})

    assert (response.status_code, response.json(), response.headers["X-Total-Count"]) == (
        200,
        [],
        "0",
    )


@pytest.mark.parametrize(("params", "fragment"), BAD_SEARCH_INPUT)
def test_bad_search_input_is_a_readable_422(api, params, fragment):
    response = api.get("/api/v1/search", params=params)

    assert response.status_code == 422
    assert fragment in response.json()["detail"]


@pytest.mark.parametrize(
    "text", ['"', "'", "&", "|", "!", ":*", "(", ")", "\\", "a & b | !c", "tom:*", "<>", "to\x00m"]
)
def test_any_text_is_a_query_never_a_500(api, text):
    response = api.get("/api/v1/search", params={"text": text})

    assert response.status_code == 200, response.text


def test_paging_with_limit_and_offset(api):
    first = api.get("/api/v1/search", params={"text": "brooks or hendricks", "limit": 1}).json()
    second = api.get(
        "/api/v1/search", params={"text": "brooks or hendricks", "limit": 1, "offset": 1}
    )

    assert len(first) == 1
    assert second.headers["X-Total-Count"] == "2"
    assert second.json()[0]["id"] != first[0]["id"]


def test_a_page_past_the_end_still_reports_the_total(api):
    response = api.get("/api/v1/search", params={"text": "brooks", "offset": 50})

    assert (response.json(), response.headers["X-Total-Count"]) == ([], "1")


def test_contacts_list_and_one_contact(api):
    listing = api.get("/api/v1/contacts", params={"limit": 2})
    one = api.get(f"/api/v1/contacts/{listing.json()[1]['id']}")

    assert listing.status_code == 200
    assert len(listing.json()) == 2
    assert listing.headers["X-Total-Count"] == "3"
    assert one.json()["last_name"] == "Hendricks"


def test_a_missing_contact_is_404(api):
    response = api.get("/api/v1/contacts/999999")

    assert response.status_code == 404
    assert "999999" in response.json()["detail"]


def test_a_deleted_contact_is_gone_from_reads_and_search(api, conn):
    conn.execute("UPDATE contacts SET deleted_at = now() WHERE last_name = 'Brooks'")

    assert api.get("/api/v1/search", params={"text": "brooks"}).json() == []
    assert api.get("/api/v1/contacts").headers["X-Total-Count"] == "2"


def test_stats_count_live_contacts(api):
    assert api.get("/api/v1/stats").json() == {"contacts": 3, "last_sync": None}


def test_health_and_readiness(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] is True


def test_openapi_describes_the_search(api):
    spec = api.get("/openapi.json").json()

    assert "/api/v1/search" in spec["paths"]


def test_read_tokens_guard_reads_when_configured(live_api):
    url = live_api(contactbook_api_tokens="alpha,beta")
    with httpx.Client(base_url=url) as client:
        missing = client.get("/api/v1/contacts")
        wrong = client.get("/api/v1/contacts", headers={"Authorization": "Bearer gamma"})
        right = client.get("/api/v1/contacts", headers={"Authorization": "Bearer beta"})
        health = client.get("/healthz")

    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 403, 200)
    assert health.status_code == 200
    assert "gamma" not in wrong.text and "beta" not in wrong.text


def test_the_initial_import_fills_an_empty_database(live_api, conn, write_csv):
    import time

    live_api(contactbook_csv=write_csv(PEOPLE))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if conn.execute("SELECT count(*) AS n FROM contacts").fetchone()["n"] == 3:
            break
        time.sleep(0.05)
    assert conn.execute("SELECT count(*) AS n FROM contacts").fetchone()["n"] == 3
