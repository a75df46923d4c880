"""The v1 HTTP API over loopback: search contract, contacts, health, auth for readers."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from support import BAD_SEARCH_INPUT

from contactbook import db
from contactbook.contacts.importer import import_csv
from contactbook.contacts.search import MAX_WORDS, parse_words

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
    from contactbook import errors
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
        errors.QueryTimedOut: (503, 1),
        errors.BrokerUnavailable: (503, 1),
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


# --------------------------------------------------------------------------- bounded statements


def test_search_words_are_deduplicated_capped_and_a_text_without_words_finds_nothing(api):
    def total(text: str) -> int:
        response = api.get("/api/v1/search", params={"text": text})
        assert response.status_code == 200, response.text
        return int(response.headers["X-Total-Count"])

    assert parse_words("ma " * 66).positive == ["ma"]  # one posting list, not 66
    assert len(parse_words(" ".join(f"w{i}" for i in range(30))).positive) == MAX_WORDS == 10
    assert total(" ".join(["tom"] * 40)) == total("tom") == 1
    # Only the first ten distinct words count: an eleventh ("ada") finds nothing more.
    padding = " ".join(f"w{i}" for i in range(9))
    assert total(f"tom {padding} ada") == total(f"tom {padding}")
    assert total("- or - or & |") == 0


def test_a_query_past_the_statement_timeout_is_a_503_that_says_why(live_api, db_url, write_csv):
    import_csv(db_url, write_csv(PEOPLE))
    url = live_api(db_statement_timeout=0.2)
    with httpx.Client(base_url=url, timeout=10) as client:
        with psycopg.connect(db_url) as locker:
            # What a restore holds while it replaces the tables: searches wait behind it.
            locker.execute("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE")
            # v1 search (the async pool) and the contact reads (the sync pool) give up.
            for path in ("/api/v1/search?text=tom", "/api/v1/contacts", "/api/v1/stats"):
                response = client.get(path)
                assert response.status_code == 503, (path, response.text)
                assert "DB_STATEMENT_TIMEOUT" in response.json()["detail"]
                assert response.headers["Retry-After"] == "1"
        # The same pooled connections serve again once the lock is gone.
        for _ in range(3):
            assert client.get("/api/v1/search", params={"text": "tom"}).status_code == 200


def test_only_the_pools_serving_requests_bound_their_statements(db_url):
    def timeout_of(conn) -> str:
        return conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"]

    pool = db.create_pool(db_url, size=1, timeout=5, statement_timeout=1.5)
    pool.open(wait=True)
    try:
        with pool.connection() as conn:
            assert timeout_of(conn) == "1500ms"
            with conn.transaction():
                db.without_statement_timeout(conn)
                assert timeout_of(conn) == "0"
            assert timeout_of(conn) == "1500ms"
    finally:
        pool.close()
    # Imports, syncs and backups connect on their own: no bound.
    with db.connect(db_url) as conn:
        assert timeout_of(conn) == "0"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8443"])
def test_the_trailing_slash_redirect_never_names_the_requests_host(api, host):
    response = api.get("/api/v1/search/", params={"text": "tom"}, headers={"Host": host})

    assert response.status_code == 307
    assert response.headers["location"] == "/api/v1/search?text=tom"
    followed = api.get(response.headers["location"])
    assert followed.status_code == 200 and followed.json()[0]["first_name"] == "Tom"


def test_a_redirect_location_cannot_become_another_host():
    from contactbook.asgi import relative_location

    assert relative_location(b"http://evil.example//other.host/x?a=1") == b"/other.host/x?a=1"
    assert relative_location(b"https://h/") == b"/"


def test_metrics_need_the_metrics_token_when_one_is_set(live_api):
    open_url = live_api()
    assert httpx.get(f"{open_url}/metrics").status_code == 200

    url = live_api(metrics_token="metrics-secret-77", contactbook_api_tokens="reader-1")
    answers = {
        name: httpx.get(f"{url}/metrics", headers=headers).status_code
        for name, headers in [
            ("none", {}),
            ("reader", {"Authorization": "Bearer reader-1"}),
            ("right", {"Authorization": "Bearer metrics-secret-77"}),
        ]
    }
    assert answers == {"none": 401, "reader": 403, "right": 200}
    # Probes stay open: they show only up/ready (and which dependency is down).
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/readyz").status_code == 200
