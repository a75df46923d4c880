"""Every endpoint of the live API under generated requests (schemathesis over /openapi.json),
and clients that hold connections without finishing a request (slowloris).

One test, one live app: each operation of the published schema gets a fixed number of
generated cases, schema-valid ones and deliberately invalid ones, sent over loopback. No
answer may be a 5xx other than the documented 503 of the task-queue endpoints (this app
has no broker, so v2 and the admin triggers answer 503 "no task queue is configured"),
and every answer must have a declared status, content type and body shape.

Generation is derandomized, so CI sends the same requests on every run.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support import start_server

from contactbook.asgi import bounded_http
from contactbook.contacts.importer import import_csv

ADMIN_TOKEN = "hostile-admin-token-5d21"
CASES_PER_OPERATION = {GenerationMode.POSITIVE: 80, GenerationMode.NEGATIVE: 40}
MIN_REQUESTS = 1_000

PEOPLE = (
    "First Name,Last Name,Email,Description\n"
    "Tom,Brooks,tbrooks@northwind.io,Negotiates freight contracts\n"
    "Ada,Hendricks,ada@lumen.dev,Machine learning researcher\n"
    "François,Müller,francois@alpine.co,Runs logistics for a bakery chain\n"
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

#: Operations whose 503 is their documented answer without a broker.
NEEDS_THE_QUEUE = {
    "GET /api/v2/search",
    "POST /api/v2/search",
    "GET /api/v2/search/status/{task_id}",
    "POST /api/v1/sync",
    "GET /api/v1/tasks/{task_id}",
    "POST /api/v1/imports",
}


@pytest.fixture
def base_url(live_api, db_url, write_csv) -> str:
    import_csv(db_url, write_csv(PEOPLE))
    return live_api(contactbook_admin_token=ADMIN_TOKEN, redis_url=None)


def test_generated_requests_get_no_5xx_and_match_the_schema(base_url):
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    assert labels >= NEEDS_THE_QUEUE
    assert {"GET /api/v1/search", "GET /api/v1/contacts/{contact_id}"} <= labels

    sent: dict[str, int] = dict.fromkeys(labels, 0)
    unavailable: set[str] = set()
    started = time.monotonic()
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        for operation in operations:
            for mode, count in CASES_PER_OPERATION.items():
                if mode is GenerationMode.NEGATIVE and not takes_input(operation):
                    continue  # nothing to get wrong: /healthz, /metrics, /
                fuzz(operation, mode, count, base_url, session, sent, unavailable)
    elapsed = time.monotonic() - started

    print(f"schemathesis: {sum(sent.values())} requests in {elapsed:.1f} s: {sent}")
    assert sum(sent.values()) >= MIN_REQUESTS
    assert all(sent.values()), sent
    # Bodies and params that get past validation reach the queue check and answer 503.
    assert unavailable, "no request reached a task-queue endpoint's handler"


def test_the_published_422_is_the_body_sent(base_url):
    spec = requests.get(f"{base_url}/openapi.json", timeout=10).json()
    answer = requests.get(f"{base_url}/api/v1/search", params={"limit": "x"}, timeout=10)

    published = spec["components"]["schemas"]["HTTPValidationError"]
    assert published["properties"]["detail"]["type"] == "string"
    assert answer.status_code == 422
    assert isinstance(answer.json()["detail"], str)
    assert isinstance(answer.json()["errors"], list)


def takes_input(operation) -> bool:
    return bool(len(operation.query) or len(operation.path_parameters) or len(operation.body))


def fuzz(operation, mode, count, base_url, session, sent, unavailable) -> None:
    """Send `count` generated cases of one operation; fail on the first bad answer."""
    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case) -> None:
        response = case.call(base_url=base_url, session=session, timeout=10)
        sent[label] += 1
        checks = CHECKS
        if response.status_code == 503 and label in NEEDS_THE_QUEUE:
            # Their documented answer without a broker; every other check still applies.
            assert "no task queue is configured" in response.json()["detail"]
            unavailable.add(label)
            checks = [check for check in CHECKS if check is not not_a_server_error]
        case.validate_response(response, checks=checks)

    exercise()


# --------------------------------------------------------------------------- slowloris

EMPTY_CSV = Path(__file__).parent / "data" / "empty.csv"
HEAD_TIMEOUT = 0.5
MAX_CONNECTIONS = 4


@pytest.fixture
def bounded_api(make_settings):
    """The real API served with a short head timeout and a small connection cap."""
    from contactbook.api.app import create_app

    server = start_server(
        create_app(make_settings(contactbook_csv=EMPTY_CSV, redis_url=None)),
        http=bounded_http(head_timeout=HEAD_TIMEOUT, max_connections=MAX_CONNECTIONS),
    )
    yield urlsplit(server.url)
    server.stop()


def connect(address) -> socket.socket:
    # The socket timeout only keeps a broken server from hanging the test: the server
    # closes long before it.
    return socket.create_connection((address.hostname, address.port), timeout=20)


def read_until_closed(sock: socket.socket) -> bytes:
    answer = b""
    while data := sock.recv(65536):
        answer += data
    return answer


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /api/v1/sea", b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: aaa"],
    ids=["nothing", "half-a-request-line", "half-the-headers"],
)
def test_a_request_head_not_finished_in_time_is_answered_408_and_closed(bounded_api, sent):
    with connect(bounded_api) as sock:
        sock.sendall(sent)
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower()


def test_a_kept_alive_connection_has_the_same_time_for_its_next_head(bounded_api):
    with connect(bounded_api) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        first = sock.recv(65536)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        answer = read_until_closed(sock)

    assert first.startswith(b"HTTP/1.1 200 "), first
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_connections_beyond_the_cap_are_refused_at_once_and_served_again_after(bounded_api):
    url = f"http://{bounded_api.hostname}:{bounded_api.port}/healthz"
    held = [connect(bounded_api) for _ in range(MAX_CONNECTIONS)]
    try:
        # Each held connection is open on the server once it answers on it.
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        with connect(bounded_api) as extra:
            try:
                answer = read_until_closed(extra)
            except ConnectionResetError:
                answer = b"reset"
        assert answer.startswith(b"HTTP/1.1 503 ") or answer in (b"", b"reset"), answer
    finally:
        for sock in held:
            sock.close()
    # The places are free again once the held connections are gone.
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server never served again"
        time.sleep(0.05)


def test_the_connection_cap_leaves_room_under_the_file_limit(monkeypatch):
    import resource

    from contactbook.asgi import RESERVED_DESCRIPTORS, connection_cap

    # The process's own limit stands in for a container's small `ulimit -n`.
    monkeypatch.setattr(resource, "getrlimit", lambda which: (256, 4096))
    assert connection_cap(1000) == 256 - RESERVED_DESCRIPTORS
    assert connection_cap(100) == 100
