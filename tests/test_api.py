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


# --------------------------------------------------------------------------- docs offline


def test_docs_load_every_asset_from_this_server(api):
    from html.parser import HTMLParser
    from urllib.parse import urlsplit

    class Assets(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.urls: list[str] = []

        def handle_starttag(self, tag, attrs) -> None:
            self.urls += [value for name, value in attrs if name in ("src", "href") and value]

    page = api.get("/docs")
    assert page.status_code == 200
    parser = Assets()
    parser.feed(page.text)

    assert len(parser.urls) >= 3  # script, stylesheet, icon
    for url in parser.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), url
        asset = api.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    assert "http://" not in page.text and "https://" not in page.text  # no host named at all
    assert '"validatorUrl": null' in page.text  # no badge from validator.swagger.io
    assert api.get("/openapi.json").json()["info"]["title"] == "Contact Book"


def test_docs_serve_only_swagger_ui_s_own_files(api):
    assert (
        api.get("/docs/static/swagger-ui-bundle.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    for name in ("index.html", "..%2F__init__.py", "swagger-ui.js.map"):
        assert api.get(f"/docs/static/{name}").status_code == 404, name
    assert api.get("/redoc").status_code == 404  # ReDoc would load from a CDN


# --------------------------------------------------------------------------- one error tree


def test_every_error_of_the_tree_knows_its_status_and_exit_code():
    from contactbook import errors, tasks
    from contactbook.backup import BackupError, UnusableBackup
    from contactbook.embedded import EmbeddedServerError
    from contactbook.nimble.errors import NimbleAuthError
    from contactbook.nimble.sync import SyncAlreadyRunning, SyncError, TooManyRemovals
    from contactbook.preflight import AlreadyServing, PortInUse

    expected = {
        errors.UnusableInput: (422, 2),
        errors.InvalidSetting: (500, 2),
        errors.DatabaseUnavailable: (503, 1),
        errors.DatabaseNotMigrated: (503, 1),
        tasks.BrokerUnavailable: (503, 1),
        NimbleAuthError: (502, 1),
        SyncError: (500, 1),
        TooManyRemovals: (500, 1),
        SyncAlreadyRunning: (409, 1),
        BackupError: (500, 1),
        UnusableBackup: (422, 2),
        EmbeddedServerError: (500, 1),
        PortInUse: (500, 1),
        AlreadyServing: (500, 1),
    }
    for error, (status, exit_code) in expected.items():
        assert issubclass(error, errors.ContactBookError), error
        assert (error.status_code, error.exit_code) == (status, exit_code), error
