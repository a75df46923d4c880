"""Admin endpoints over loopback: sync trigger and runs, CSV uploads, task status, auth."""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from celery_support import ADMIN_TOKEN, CELERY_WARNINGS, admin_headers, wait_for_task, wait_until
from prometheus_client.parser import text_string_to_metric_families

from contactbook import jobs, worker
from contactbook.contacts.uploads import uploads_dir
from contactbook.nimble import tasks as nimble_tasks

#: The session's worker and its fixtures, defined once for every module that uses them.
pytest_plugins = ["celery_fixtures"]
pytestmark = CELERY_WARNINGS

PEOPLE = (
    "First Name,Last Name,Email,Description\n"
    "Grace,Hopper,grace@navy.example,Wrote the first compiler\n"
    "Edsger,Dijkstra,ewd@tue.example,Shortest paths\n"
    "Barbara,Liskov,liskov@mit.example,Substitution\n"
)

ADMIN_ROUTES = [
    ("POST", "/api/v1/sync"),
    ("GET", "/api/v1/sync/runs"),
    ("POST", "/api/v1/imports"),
    ("GET", "/api/v1/tasks/some-id"),
]


@pytest.fixture
def api(celery_worker, celery_api, db_url) -> httpx.Client:
    with httpx.Client(base_url=celery_api(), headers=admin_headers(), timeout=10) as client:
        yield client


def uploads(worker_settings) -> list[str]:
    folder = uploads_dir(worker_settings)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def metric(name: str, **labels: str) -> float:
    """A sample of this process's metrics (the test APIs run in it)."""
    from contactbook.metrics import metrics_response

    for family in text_string_to_metric_families(metrics_response()[0].decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def task_outcome(api: httpx.Client, task_id: str) -> dict:
    return wait_for_task(f"{api.base_url}/api/v1/tasks/{task_id}", headers=admin_headers())


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_need_the_admin_token(celery_api, method, path):
    url = celery_api()

    missing = httpx.request(method, url + path)
    wrong = httpx.request(method, url + path, headers=admin_headers("not-the-token"))

    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert wrong.status_code == 403


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_are_closed_when_no_admin_token_is_configured(celery_api, method, path):
    url = celery_api(contactbook_admin_token=None)

    response = httpx.request(method, url + path, headers=admin_headers())

    assert response.status_code == 403
    assert "CONTACTBOOK_ADMIN_TOKEN" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), [*ADMIN_ROUTES, ("POST", "/api/v1/contacts/undelete")])
def test_without_an_admin_token_configured_even_a_bare_request_is_403(live_api, method, path):
    url = live_api(contactbook_admin_token=None)

    response = httpx.request(method, url + path)

    assert response.status_code == 403
    assert "CONTACTBOOK_ADMIN_TOKEN" in response.json()["detail"]


def test_a_read_token_is_not_an_admin_token(celery_api):
    url = celery_api(contactbook_api_tokens="reader")

    response = httpx.post(f"{url}/api/v1/sync", headers=admin_headers("reader"))

    assert response.status_code == 403


# --------------------------------------------------------------------------- sync


def test_sync_trigger_queues_a_sync_on_the_worker(api):
    response = api.post("/api/v1/sync", params={"full": "true"})

    assert response.status_code == 202
    outcome = task_outcome(api, response.json()["task_id"])
    # The test worker has no NIMBLE_API_KEY: the sync is skipped, not failed.
    assert outcome["status"] == "SUCCESS"
    assert outcome["kind"] == "sync"
    assert outcome["result"] == {"status": "skipped", "reason": "NIMBLE_API_KEY is not set"}


def test_sync_runs_lists_recent_runs_newest_first_with_figures_and_errors(api, db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sync_runs (mode, started_at, finished_at, status, fetched, inserted)"
            " VALUES ('full', now() - interval '2 days', now() - interval '2 days',"
            " 'succeeded', 10, 10)"
        )
        conn.execute(
            "INSERT INTO sync_runs (mode, started_at, finished_at, status, error)"
            " VALUES ('incremental', now() - interval '1 day', now() - interval '1 day',"
            " 'failed', 'Nimble refused the key')"
        )

    runs = api.get("/api/v1/sync/runs").json()
    one = api.get("/api/v1/sync/runs", params={"limit": 1}).json()

    assert [(r["mode"], r["status"], r["error"]) for r in runs] == [
        ("incremental", "failed", "Nimble refused the key"),
        ("full", "succeeded", None),
    ]
    assert (runs[1]["fetched"], runs[1]["inserted"], runs[1]["removed"]) == (10, 10, 0)
    assert [r["id"] for r in one] == [runs[0]["id"]]


# --------------------------------------------------------------------------- imports


def test_an_uploaded_csv_is_imported_by_the_worker_and_then_removed(api, db_url, worker_settings):
    response = api.post(
        "/api/v1/imports", files={"file": ("people.csv", PEOPLE.encode(), "text/csv")}
    )

    assert response.status_code == 202
    outcome = task_outcome(api, response.json()["task_id"])
    assert outcome["status"] == "SUCCESS", outcome
    assert outcome["kind"] == "import"
    assert (outcome["result"]["rows_read"], outcome["result"]["inserted"]) == (3, 3)
    assert outcome["result"]["source"].startswith("upload of people.csv (")
    assert api.get("/api/v1/search", params={"text": "Grace Hopper"}).json()[0]["email"] == (
        "grace@navy.example"
    )
    assert uploads(worker_settings) == []


def test_a_raw_csv_body_is_accepted_too(api, worker_settings):
    response = api.post(
        "/api/v1/imports", content=PEOPLE.encode(), headers={"Content-Type": "text/csv"}
    )

    outcome = task_outcome(api, response.json()["task_id"])
    assert outcome["result"]["inserted"] == 3
    assert uploads(worker_settings) == []


def test_an_upload_reports_its_problems_with_their_lines_in_the_task_result(api):
    content = "first name,email\nAda,ada@example.org\nBob,EMEA\nCy,cy@example.org,extra\n"
    response = api.post("/api/v1/imports", files={"file": ("p.csv", content.encode())})

    result = task_outcome(api, response.json()["task_id"])["result"]
    assert result["inserted"] == 3
    assert result["problem_count"] == 2
    assert [(p["line"], p["problem"][:24]) for p in result["problems"]] == [
        (3, "the email 'EMEA' is not "),
        (4, "1 more cell than the hea"),
    ]


def test_an_import_task_id_is_not_a_search_task_id(api):
    response = api.post("/api/v1/imports", files={"file": ("p.csv", PEOPLE.encode())})
    task_id = response.json()["task_id"]
    task_outcome(api, task_id)

    assert api.get(f"/api/v2/search/status/{task_id}").status_code == 404


def test_an_upload_over_the_limit_is_413_by_its_content_length(celery_api, worker_settings):
    url = celery_api(max_upload_bytes=1000)
    body = b"First Name,Email\n" + b"x,x@example.com\n" * 20_000  # ~320 kB

    response = httpx.post(
        f"{url}/api/v1/imports",
        files={"file": ("big.csv", body, "text/csv")},
        headers=admin_headers(),
    )

    assert response.status_code == 413
    assert "1000 bytes" in response.json()["detail"]
    assert uploads(worker_settings) == []


@pytest.mark.parametrize("as_form", [True, False])
def test_a_streamed_upload_is_cut_off_at_the_limit(celery_api, worker_settings, as_form):
    url = celery_api(max_upload_bytes=1000)
    csv_bytes = b"First Name,Email\n" + b"x,x@example.com\n" * 300  # ~4.8 kB, no length
    boundary = "contactbook-test-boundary"
    if as_form:
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="big.csv"\r\nContent-Type: text/csv\r\n\r\n'
            ).encode()
            + csv_bytes
            + f"\r\n--{boundary}--\r\n".encode()
        )
        content_type = f"multipart/form-data; boundary={boundary}"
    else:
        body, content_type = csv_bytes, "text/csv"

    def chunks():
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    response = httpx.post(
        f"{url}/api/v1/imports",
        content=chunks(),  # chunked: the server cannot know the size up front
        headers={**admin_headers(), "Content-Type": content_type},
    )

    assert response.status_code == 413
    assert uploads(worker_settings) == []


def _form(boundary: str, *parts: tuple[str, str | None, bytes]) -> bytes:
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def test_a_boundary_too_long_to_parse_is_a_readable_422(celery_api, worker_settings):
    url = celery_api()
    boundary = "b" * 300
    response = httpx.post(
        f"{url}/api/v1/imports",
        content=_form(boundary, ("file", "p.csv", PEOPLE.encode())),
        headers={**admin_headers(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert response.status_code == 422, response.text
    assert "boundary" in response.json()["detail"]
    assert uploads(worker_settings) == []


def test_the_whole_form_counts_against_the_upload_limit(celery_api, worker_settings):
    url = celery_api(max_upload_bytes=1000)
    boundary = "contactbook-test-boundary"
    body = _form(boundary, ("note", None, b"n" * 200_000), ("file", "small.csv", PEOPLE.encode()))

    def chunks():  # no Content-Length: the server counts what arrives
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = httpx.post(
        f"{url}/api/v1/imports",
        content=chunks(),
        headers={**admin_headers(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert response.status_code == 413, response.text
    assert uploads(worker_settings) == []


def test_a_form_of_many_tiny_parts_is_refused(celery_api, worker_settings):
    url = celery_api()
    boundary = "contactbook-test-boundary"
    tiny = [(f"f{i}", None, b"x") for i in range(1_000)]
    body = _form(boundary, ("file", "p.csv", PEOPLE.encode()), *tiny)

    response = httpx.post(
        f"{url}/api/v1/imports",
        content=body,
        headers={**admin_headers(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert response.status_code == 422, response.text
    assert "more than 100 parts" in response.json()["detail"]
    assert uploads(worker_settings) == []


def test_a_client_leaving_mid_upload_is_no_server_error(celery_api, worker_settings, caplog):
    url = celery_api()
    parts = urlsplit(url)
    route = {"method": "POST", "route": "/api/v1/imports"}
    errors_before = metric("contactbook_http_requests_total", **route, status="500")
    left_before = metric("contactbook_http_requests_total", **route, status="499")
    head = (
        "POST /api/v1/imports HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: {admin_headers()['Authorization']}\r\n"
        "Content-Type: text/csv\r\nContent-Length: 1000000\r\n\r\n"
    )
    with caplog.at_level(logging.INFO):
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(head.encode() + PEOPLE.encode())
        # Wait for the server to notice: the request is counted when it ends.
        wait_until(
            lambda: metric("contactbook_http_requests_total", **route, status="499") > left_before,
            what="the abandoned upload to be counted",
        )

    assert metric("contactbook_http_requests_total", **route, status="500") == errors_before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert any("disconnected during an upload" in r.getMessage() for r in caplog.records)
    assert uploads(worker_settings) == []


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02\xff\xfe binary", ""),
    ],
)
def test_an_unusable_upload_is_422_at_once(api, worker_settings, content, fragment):
    response = api.post("/api/v1/imports", files={"file": ("bad.csv", content, "text/csv")})

    assert response.status_code == 422
    assert fragment in response.json()["detail"].lower()
    assert "nothing was imported" in response.json()["detail"]
    assert uploads(worker_settings) == []


def test_a_form_without_a_file_is_422(api):
    response = api.post("/api/v1/imports", files={"note": (None, "no file here")})

    assert response.status_code == 422
    assert "no file" in response.json()["detail"]


def test_an_upload_that_is_neither_a_form_nor_csv_is_415(api):
    response = api.post("/api/v1/imports", json={"rows": []})

    assert response.status_code == 415


def test_unknown_task_id_is_404(api):
    assert api.get("/api/v1/tasks/never-issued").status_code == 404


def test_admin_token_check_happens_before_the_upload_is_read(celery_api, worker_settings):
    url = celery_api(max_upload_bytes=10**9)

    response = httpx.post(f"{url}/api/v1/imports", files={"file": ("p.csv", PEOPLE.encode())})

    assert response.status_code == 401
    assert uploads(worker_settings) == []


# --------------------------------------------------------------------------- removed contacts


def remove(db_url: str, *last_names: str) -> list[int]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "UPDATE contacts SET deleted_at = now() WHERE last_name = ANY(%s) RETURNING id",
            (list(last_names),),
        ).fetchall()
    return sorted(row[0] for row in rows)


@pytest.fixture
def three_people(db_url: str, write_csv) -> str:
    from contactbook.contacts.importer import import_csv

    import_csv(db_url, write_csv(PEOPLE))
    return db_url


def test_removed_contacts_are_listed_with_removed_true_like_live_ones(live_api, three_people):
    url = live_api()
    gone = remove(three_people, "Dijkstra", "Liskov")

    removed = httpx.get(f"{url}/api/v1/contacts", params={"removed": "true", "limit": 1})
    live = httpx.get(f"{url}/api/v1/contacts")

    assert removed.status_code == 200 and removed.headers["X-Total-Count"] == "2"
    assert [c["id"] for c in removed.json()] == gone[:1]
    assert [c["last_name"] for c in live.json()] == ["Hopper"]
    assert set(removed.json()[0]) == set(live.json()[0])


def test_removed_listing_reads_the_same_columns_as_the_live_one(conn, three_people):
    from contactbook.contacts import removed, repository

    listed = repository.list_contacts(conn, limit=10, offset=0).contacts
    (live,) = [c for c in listed if c["id"] == 1]
    remove(three_people, "Hopper")
    (gone,) = removed.list_removed_contacts(conn, limit=10, offset=0)

    assert gone == live  # every column, not only the API's: a new one must be added to both


def test_undelete_brings_back_removed_contacts_by_id_or_all(live_api, three_people):
    url = live_api(contactbook_admin_token=ADMIN_TOKEN)
    gone = remove(three_people, "Dijkstra", "Liskov")

    one = httpx.post(f"{url}/api/v1/contacts/undelete", json={"ids": [gone[0], 999]},
                     headers=admin_headers())  # fmt: skip
    neither = httpx.post(f"{url}/api/v1/contacts/undelete", json={}, headers=admin_headers())
    rest = httpx.post(f"{url}/api/v1/contacts/undelete", json={"all": True},
                      headers=admin_headers())  # fmt: skip

    assert one.status_code == 200 and one.json() == {"undeleted": [gone[0]]}
    assert neither.status_code == 422 and "ids" in neither.json()["detail"]
    assert rest.json() == {"undeleted": [gone[1]]}
    assert httpx.get(f"{url}/api/v1/contacts").headers["X-Total-Count"] == "3"


@pytest.fixture
def private_redis_url(tmp_path) -> str:
    """A Redis no worker consumes: what the API queues stays there to be read."""
    from contactbook.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "redis")
    try:
        yield server.start()
    finally:
        server.stop()


def test_the_sync_trigger_passes_dry_run_and_allow_removals_to_the_task(
    live_api, private_redis_url, db_url, tmp_path
):
    from contactbook.config import Settings

    url = live_api(redis_url=private_redis_url, contactbook_admin_token=ADMIN_TOKEN)
    response = httpx.post(
        f"{url}/api/v1/sync",
        params={"full": "true", "dry_run": "true", "allow_removals": "true"},
        headers=admin_headers(),
    )
    assert response.status_code == 202

    reader = worker.create_celery_app(
        Settings(_env_file=None, database_url=db_url, redis_url=private_redis_url)
    )
    queued = {}
    with reader.connection_for_read() as connection:
        queue = connection.SimpleQueue(jobs.QUEUE)
        while jobs.SYNC_TASK not in queued:  # the start-up import is queued too
            message = queue.get(timeout=10)
            queued[message.headers["task"]] = message.payload[1]  # (args, kwargs, embed)
            message.ack()
        queue.close()
    reader.close()
    assert queued[jobs.SYNC_TASK] == {"full": True, "dry_run": True, "allow_removals": True}


def test_the_sync_task_runs_a_dry_run_and_allows_removals(make_settings, conn, sim):
    from nimble_fixtures import API_KEY, people

    sim.reset(people(10))
    settings = make_settings(nimble_api_url=sim.url, nimble_api_key=API_KEY)
    nimble_tasks.run_sync_task(settings, full=True)
    for i in range(1, 10):
        sim.state.delete_contact(f"p{i:05d}")

    dry = nimble_tasks.run_sync_task(settings, full=True, dry_run=True, allow_removals=True)
    live = conn.execute("SELECT count(*) AS n FROM contacts WHERE deleted_at IS NULL").fetchone()
    real = nimble_tasks.run_sync_task(settings, full=True, allow_removals=True)

    assert (dry["status"], dry["dry_run"], dry["removed"]) == ("succeeded", True, 9)
    assert live["n"] == 10  # the dry run wrote nothing
    assert (real["dry_run"], real["removed"]) == (False, 9)
