"""The Nimble client against the simulator, over real HTTP on loopback."""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from nimble_fixtures import API_KEY, FAST_RETRY, Simulator, people
from support import wait_until

from contactbook.nimble.client import (
    FIELDS,
    NimbleClient,
    RetryPolicy,
    parse_resource,
)
from contactbook.nimble.errors import (
    NimbleAuthError,
    NimbleProtocolError,
    NimbleQuotaExceeded,
    NimbleUnavailable,
)
from contactbook.nimble.simulator import FaultPlan, generate_contacts, person_resource


def read_all(client: NimbleClient, **kwargs) -> list:
    with client:
        return [c for page in client.iter_pages(**kwargs) for c in page.contacts]


def test_reads_every_person_once_across_pages(sim: Simulator) -> None:
    sim.reset(people(95))
    contacts = read_all(sim.client(per_page=10))
    assert sorted(c.nimble_id for c in contacts) == [f"p{i:05d}" for i in range(95)]
    assert len(sim.page_requests()) == 10


def test_asks_for_the_fields_it_keeps_persons_and_per_page(sim: Simulator) -> None:
    sim.reset(people(30))
    read_all(sim.client(per_page=7))
    requests = sim.page_requests()
    assert len(requests) == math.ceil(30 / 7)
    assert sorted(int(r.params["page"]) for r in requests) == [1, 2, 3, 4, 5]
    for request in requests:
        assert request.params["per_page"] == "7"
        assert request.params["record_type"] == "person"
        assert request.params["fields"] == (
            "first name,last name,email,description,phone,title,parent company,"
            "contact employment,address"
        )
        assert request.params["tags"] == "1"
        assert "query" not in request.params


def test_default_per_page_is_100(sim: Simulator) -> None:
    sim.reset(people(150))
    assert len(read_all(sim.client())) == 150
    assert [r.params["per_page"] for r in sim.page_requests()] == ["100", "100"]


def test_pages_are_fetched_concurrently_within_the_bound(sim: Simulator) -> None:
    sim.reset(people(90))
    # Page 1 alone, then pages 2-9 held until four are asked for at once: a client that
    # asked one at a time would see each page answered only after a timeout, and the
    # simulator would never have had four in flight.
    sim.state.set_faults(FaultPlan(together=4))
    contacts = read_all(sim.client(per_page=10, concurrency=4, timeout=30))
    assert len(contacts) == 90
    assert sim.state.max_in_flight == 4


def test_pages_are_handed_over_as_they_arrive_not_collected(sim: Simulator) -> None:
    sim.reset(people(400))
    sim.state.set_faults(FaultPlan(latency=0.05))
    with sim.client(per_page=10, concurrency=2, prefetch=4) as client:
        pages = client.iter_pages()
        first = next(pages)
        time.sleep(0.5)  # the caller is busy: the client must not run ahead of it
        assert first.number == 1 and first.total == 400 and first.pages == 40
        assert len(sim.page_requests()) <= 1 + 4
        pages.close()


def test_companies_are_not_read_as_people(sim: Simulator) -> None:
    company = person_resource(nimble_id="c1", record_type="company", emails=["info@acme.test"])
    company["fields"]["company name"] = [{"value": "Acme", "modifier": "", "label": "x"}]
    sim.reset([*people(3), company])
    contacts = read_all(sim.client())
    assert [c.nimble_id for c in contacts] == ["p00000", "p00001", "p00002"]
    with sim.client() as client:
        assert client.get_contact("c1") is None
        assert client.get_contact("p00001").first_name == "First1"
        assert client.get_contact("no-such-id") is None
    assert parse_resource(company) is None
    assert parse_resource({"id": "x", "fields": {}}) is not None  # no record_type: a person


def test_missing_fields_are_none(sim: Simulator) -> None:
    sim.reset(
        [
            person_resource(nimble_id="bare", first_name="Only"),
            {"id": "nofields", "record_type": "person", "updated": "garbage"},
            person_resource(nimble_id="blank", first_name="  ", emails=["  "], description=""),
        ]
    )
    by_id = {c.nimble_id: c for c in read_all(sim.client())}
    assert by_id["bare"].first_name == "Only"
    assert by_id["bare"].last_name is None and by_id["bare"].description is None
    assert by_id["bare"].email is None and by_id["bare"].emails == ()
    assert by_id["nofields"].first_name is None and by_id["nofields"].updated is None
    assert by_id["blank"].first_name is None and by_id["blank"].email is None
    assert by_id["blank"].description is None


def test_several_emails_first_is_primary(sim: Simulator) -> None:
    emails = ["Primary@Example.com", "second@example.org", "third@example.net"]
    sim.reset([person_resource(nimble_id="multi", emails=emails)])
    (contact,) = read_all(sim.client())
    assert contact.email == "Primary@Example.com"
    assert contact.emails == tuple(emails)


def test_unicode_and_very_long_values(sim: Simulator) -> None:
    long_description = "Ünïcödé ✓ 山田太郎 " * 20_000
    sim.reset(
        [
            person_resource(
                nimble_id="u1",
                first_name="Zoë",
                last_name="Ødegaard-山田",
                emails=["zoë@exämple.com"],
                description=long_description,
            ),
            person_resource(nimble_id="u2", first_name="Nul\x00Byte"),
        ]
    )
    by_id = {c.nimble_id: c for c in read_all(sim.client())}
    assert by_id["u1"].first_name == "Zoë" and by_id["u1"].last_name == "Ødegaard-山田"
    assert by_id["u1"].email == "zoë@exämple.com"
    assert by_id["u1"].description == long_description.strip()
    assert by_id["u2"].first_name == "NulByte"  # PostgreSQL text cannot hold NUL


def test_updated_is_parsed_as_an_aware_datetime(sim: Simulator) -> None:
    sim.reset(
        [
            {
                "id": "a",
                "record_type": "person",
                "updated": "2012-09-07T16:49:56+0300",
                "fields": {},
            },
            {"id": "b", "record_type": "person", "updated": "2024-01-01T00:00:00Z", "fields": {}},
            {
                "id": "c",
                "record_type": "person",
                "updated": "2013-03-26T16:45:05.131000",
                "fields": {},
            },
        ]
    )
    by_id = {c.nimble_id: c.updated for c in read_all(sim.client())}
    assert by_id["a"] == datetime(2012, 9, 7, 13, 49, 56, tzinfo=UTC)
    assert by_id["b"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert by_id["c"] == datetime(2013, 3, 26, 16, 45, 5, 131000, tzinfo=UTC)


def test_generated_contacts_are_read_in_full(sim: Simulator) -> None:
    records = generate_contacts(600, seed=7)
    sim.reset(records)
    expected = {r["id"] for r in records if r["record_type"] == "person"}
    contacts = read_all(sim.client(per_page=50, concurrency=3))
    assert {c.nimble_id for c in contacts} == expected
    assert len(contacts) == len(expected)
    assert any(len(c.emails) > 1 for c in contacts)
    assert any(len(c.phones) > 1 for c in contacts)
    employed = [c for c in contacts if c.title and c.company and c.description]
    assert len(employed) > len(contacts) / 2
    # the present employment, the one the description names
    assert all(c.description.startswith(f"{c.title} at {c.company}.") for c in employed)
    assert any(c.location for c in contacts) and any(len(c.tags) > 1 for c in contacts)


# The fields Nimble's reference documents (nimblecrm/api-docs, docs/contacts/fields.rst)


def test_several_phones_in_nimbles_order_first_is_primary(sim: Simulator) -> None:
    phones = [("+1 (415) 555-0142", "mobile"), ("020 7946 0958", "work"), ("555 0100", "fax")]
    sim.reset([person_resource(nimble_id="p", phones=phones)])
    (contact,) = read_all(sim.client())
    assert contact.phones == ("+1 (415) 555-0142", "020 7946 0958", "555 0100")
    assert contact.phone == "+1 (415) 555-0142"
    raw = sim.state.get("p")["fields"]["phone"]
    assert [entry["modifier"] for entry in raw] == ["mobile", "work", "fax"]


def test_the_same_number_twice_is_kept_once_in_its_first_spelling(sim: Simulator) -> None:
    phones = ["415-555-0142", " (415) 555 0142 ", "", "ask reception", "4155550199"]
    sim.reset([person_resource(nimble_id="p", phones=phones)])
    (contact,) = read_all(sim.client())
    assert contact.phones == ("415-555-0142", "ask reception", "4155550199")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # the new field alone
        (
            {"employments": [{"company_name": "Acme", "title": "CTO", "is_present": True}]},
            ("CTO", "Acme"),
        ),
        # the deprecated fields alone
        ({"title": "Buyer", "parent_company": "Globex"}, ("Buyer", "Globex")),
        # both: the new field wins, the deprecated ones fill what it lacks
        (
            {
                "title": "Old title",
                "parent_company": "Old Co",
                "employments": [{"company_name": "New Co", "start_date": "01/2024"}],
            },
            ("Old title", "New Co"),
        ),
        # the present employment wins over the ones before it, whatever the order
        (
            {
                "employments": [
                    {"company_name": "Initech", "title": "Dev", "end_date": "12/2019"},
                    {"company_name": "Hooli", "title": "Lead", "is_present": True},
                ]
            },
            ("Lead", "Hooli"),
        ),
        # only ended employments: the one that ended last
        (
            {
                "employments": [
                    {"company_name": "A", "title": "One", "end_date": "05/2018"},
                    {"company_name": "B", "title": "Two", "end_date": "11/2021"},
                    {"company_name": "C", "title": "Three", "end_date": "02/2020"},
                ]
            },
            ("Two", "B"),
        ),
        # the deprecated fields win over an employment that ended
        (
            {
                "parent_company": "Current Co",
                "employments": [{"company_name": "Past", "title": "X", "is_present": False}],
            },
            (None, "Current Co"),
        ),
        ({}, (None, None)),
    ],
    ids=["new", "deprecated", "both", "present", "ended", "deprecated-over-ended", "none"],
)
def test_title_and_company_from_employment_and_the_deprecated_fields(
    sim: Simulator, fields: dict, expected: tuple
) -> None:
    sim.reset([person_resource(nimble_id="p", first_name="Pat", **fields)])
    (contact,) = read_all(sim.client())
    assert (contact.title, contact.company) == expected


def test_location_is_city_and_country_of_the_first_address_that_has_them(
    sim: Simulator,
) -> None:
    addresses = [
        {"street": "Braambos 13", "zip": "6099 CT"},  # neither city nor country
        {"street": "1 Main St", "city": "Beegden", "state": "Limburg", "country": "Netherlands"},
        {"city": "Berlin", "country": "Germany"},
    ]
    sim.reset(
        [
            person_resource(nimble_id="both", addresses=addresses),
            person_resource(nimble_id="city", addresses=[{"city": "Kraków"}]),
            person_resource(nimble_id="country", addresses=[{"country": "Togo", "city": " "}]),
        ]
    )
    by_id = {c.nimble_id: c.location for c in read_all(sim.client())}
    assert by_id == {"both": "Beegden, Netherlands", "city": "Kraków", "country": "Togo"}
    raw = sim.state.get("both")["fields"]["address"][1]["value"]
    assert isinstance(raw, str) and json.loads(raw)["city"] == "Beegden"  # JSON text


def test_tags_are_read_from_every_resource(sim: Simulator) -> None:
    sim.reset([person_resource(nimble_id="p", tags=["customer", "EMEA", "customer", " "])])
    (contact,) = read_all(sim.client())
    assert contact.tags == ("customer", "EMEA")
    first = sim.state.get("p")["tags"][0]
    assert first["tag"] == "customer" and len(first["id"]) == 24  # [{"tag", "id"}]


def test_malformed_values_are_passed_over_and_the_rest_is_kept(sim: Simulator) -> None:
    odd = {
        "id": "odd",
        "record_type": "person",
        "fields": {
            "first name": [{"value": "Odd"}],
            "phone": [{"value": 5551234}, "not an entry", {"value": "555-0100"}, {}],
            "address": [
                {"value": '{"city": "Broken'},  # bad JSON
                {"value": "[1, 2]"},
                {"value": '{"city": 42, "country": ["x"]}'},
                {"value": "Somewhere, not JSON"},
                {"value": "{'city': 'Dushanbe', 'street': 'First str. 15'}"},  # responses.rst
            ],
            "contact employment": [
                {"value": "{not json"},
                {"value": '{"company_name": null, "title": null}'},
                {"value": '{"company_name": "Soylent", "is_present": "true"}'},
            ],
            "title": "not a list",
        },
        "tags": [{"tag": 7}, {"id": "x"}, "plain", {"tag": "kept"}, None],
    }
    not_a_list = {"id": "worse", "record_type": "person", "fields": {"phone": {"x": 1}}}
    not_a_list["tags"] = "vip"
    sim.reset([odd, not_a_list])
    by_id = {c.nimble_id: c for c in read_all(sim.client())}
    contact = by_id["odd"]
    assert contact.first_name == "Odd" and contact.phones == ("555-0100",)
    assert contact.location == "Dushanbe"
    assert (contact.title, contact.company) == (None, "Soylent")
    assert contact.tags == ("plain", "kept")
    assert by_id["worse"].phones == () and by_id["worse"].tags == ()


def test_transient_500_is_retried(sim: Simulator) -> None:
    sim.reset(people(50))
    sim.state.set_faults(FaultPlan().fail(2, times=2).fail(4, times=1, status=503))
    contacts = read_all(sim.client(per_page=10))
    assert len(contacts) == 50
    assert [r.status for r in sim.page_requests(2)] == [500, 500, 200]
    assert [r.status for r in sim.page_requests(4)] == [503, 200]


def test_persistent_500_fails_after_bounded_retries(sim: Simulator) -> None:
    sim.reset(people(50))
    sim.state.set_faults(FaultPlan().fail(3, times=None))
    with pytest.raises(NimbleUnavailable, match="page 3 failed after 4 attempt"):
        read_all(sim.client(per_page=10))
    assert len(sim.page_requests(3)) == FAST_RETRY.max_attempts


def test_retries_stop_when_the_time_budget_is_spent(sim: Simulator) -> None:
    sim.reset(people(5))
    sim.state.set_faults(FaultPlan().fail(1, times=None))
    slow_backoff = RetryPolicy(max_attempts=50, backoff_base=0.2, backoff_max=0.2, max_elapsed=0.5)
    with pytest.raises(NimbleUnavailable):
        read_all(sim.client(retry=slow_backoff))
    # At least 0.1 s between attempts in a 0.5 s budget: five at most, however slow the
    # machine (a slower one spends the budget in fewer), far from the 50 allowed.
    assert 1 <= len(sim.page_requests(1)) <= 5


def test_malformed_json_is_retried(sim: Simulator) -> None:
    sim.reset(people(30))
    sim.state.set_faults(FaultPlan().malformed(2, times=2))
    assert len(read_all(sim.client(per_page=10))) == 30
    assert len(sim.page_requests(2)) == 3


def test_persistently_malformed_page_is_a_protocol_error(sim: Simulator) -> None:
    sim.reset(people(30))
    sim.state.set_faults(FaultPlan().malformed(2, times=None))
    with pytest.raises(NimbleProtocolError, match="malformed"):
        read_all(sim.client(per_page=10))


def test_dropped_connection_is_retried(sim: Simulator) -> None:
    sim.reset(people(30))
    sim.state.set_faults(FaultPlan().drop(3, times=2))
    assert len(read_all(sim.client(per_page=10))) == 30
    assert len(sim.page_requests(3)) == 3


def test_persistently_dropped_page_fails(sim: Simulator) -> None:
    sim.reset(people(30))
    sim.state.set_faults(FaultPlan().drop(3, times=None))
    with pytest.raises(NimbleUnavailable, match="connection failed"):
        read_all(sim.client(per_page=10))


def test_timeouts_are_retried(sim: Simulator) -> None:
    sim.reset(people(20))
    sim.state.set_faults(FaultPlan().slow(2, 1.0, times=1))
    assert len(read_all(sim.client(per_page=10, timeout=0.3))) == 20
    assert len(sim.page_requests(2)) == 2


def test_wrong_key_fails_at_once_and_names_the_setting(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.reset(people(5))
    wrong_key = "wrong-key-7c1e5a9d3b"
    caplog.set_level(logging.DEBUG)
    client = sim.client(api_key=wrong_key)
    with pytest.raises(NimbleAuthError) as raised:
        read_all(client)
    message = str(raised.value)
    assert "NIMBLE_API_KEY" in message and "401" in message
    assert len(sim.page_requests()) == 1  # no retries
    for text in (message, repr(raised.value), repr(client), caplog.text):
        assert wrong_key not in text


def test_quota_exceeded_fails_at_once(sim: Simulator) -> None:
    sim.reset(people(5))
    sim.state.set_faults(FaultPlan().fail(1, times=None, status=402))
    with pytest.raises(NimbleQuotaExceeded, match="quota"):
        read_all(sim.client())
    assert len(sim.page_requests()) == 1


def test_the_key_never_reaches_logs_or_errors(
    sim: Simulator, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    sim.reset(people(30))
    sim.state.set_faults(FaultPlan().fail(1, times=1).malformed(2, times=1).drop(3, times=None))
    client = sim.client(per_page=10)
    with pytest.raises(NimbleUnavailable) as raised:
        read_all(client)
    captured = capsys.readouterr()
    texts = [caplog.text, captured.out, captured.err, str(raised.value), repr(raised.value)]
    texts += [repr(client), repr(client._http.auth), str(raised.value.__cause__)]
    assert caplog.text  # the retries were logged...
    for text in texts:
        assert API_KEY not in text  # ...without the key


def test_incremental_query_shape(sim: Simulator) -> None:
    sim.reset(people(40))
    since = datetime(2024, 1, 1, 0, 30, 15, 999, tzinfo=UTC)
    contacts = read_all(sim.client(per_page=4), updated_since=since)
    # people(40) are updated a minute apart from midnight: minutes 31..39 qualify
    assert sorted(c.nimble_id for c in contacts) == [f"p{i:05d}" for i in range(31, 40)]
    for request in sim.page_requests():
        assert "record_type" not in request.params and "keyword" not in request.params
        assert json.loads(request.params["query"]) == {
            "and": [
                {"record type": {"is": "person"}},
                {"updated": {"range": {"start_datetime": "2024-01-01T00:30:15Z"}}},
            ]
        }
        assert request.params["fields"] == ",".join(FIELDS)


def test_incremental_skips_companies_updated_in_the_window(sim: Simulator) -> None:
    recent = datetime(2025, 1, 1, tzinfo=UTC)
    sim.reset(
        [
            person_resource(nimble_id="old", first_name="Old", updated=recent - timedelta(days=9)),
            person_resource(nimble_id="new", first_name="New", updated=recent),
            person_resource(nimble_id="co", record_type="company", updated=recent),
        ]
    )
    contacts = read_all(sim.client(), updated_since=recent - timedelta(days=1))
    assert [c.nimble_id for c in contacts] == ["new"]


def test_naive_updated_since_is_refused(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="timezone"):
        read_all(sim.client(), updated_since=datetime(2024, 1, 1))


def test_simulator_refuses_query_with_record_type_or_keyword(sim: Simulator) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    query = json.dumps({"record type": {"is": "person"}})
    for extra in ({"record_type": "person"}, {"keyword": "smith"}):
        answer = httpx.get(
            f"{sim.url}/api/v1/contacts", params={"query": query, **extra}, headers=headers
        )
        assert answer.status_code == 409
        assert answer.json()["code"] == 245
    unauthorized = httpx.get(f"{sim.url}/api/v1/contacts", params={"query": query})
    assert unauthorized.status_code == 401


def test_simulator_ids_and_single_contact_endpoints(sim: Simulator) -> None:
    sim.reset(people(7))
    headers = {"Authorization": f"Bearer {API_KEY}"}
    ids = httpx.get(
        f"{sim.url}/api/v1/contacts/ids", params={"per_page": 5, "page": 2}, headers=headers
    ).json()
    assert ids["meta"]["total"] == 7 and ids["resources"] == ["p00005", "p00006"]
    one = httpx.get(f"{sim.url}/api/v1/contact/p00003", headers=headers)
    assert one.json()["resources"][0]["fields"]["first name"][0]["value"] == "First3"
    assert httpx.get(f"{sim.url}/api/v1/contact/nope", headers=headers).status_code == 404


def test_simulator_admin_endpoints_change_data_and_faults(sim: Simulator) -> None:
    sim.reset(people(2))
    added = httpx.post(
        f"{sim.url}/_contacts", json={"first_name": "Ada", "emails": ["ada@example.com"]}
    ).json()
    edited = httpx.put(f"{sim.url}/_contacts/p00000", json={"last_name": "Renamed"}).json()
    assert edited["fields"]["last name"][0]["value"] == "Renamed"
    assert datetime.fromisoformat(edited["updated"]) > datetime(2025, 1, 1, tzinfo=UTC)
    assert httpx.delete(f"{sim.url}/_contacts/p00001").status_code == 204
    plan = {"latency": 0, "total_offset": 2, "pages": {"1": [{"kind": "error", "times": 1}]}}
    assert httpx.post(f"{sim.url}/_faults", json=plan).status_code == 200

    with sim.client() as client:
        page = next(client.iter_pages())
    assert {c.nimble_id for c in page.contacts} == {"p00000", added["id"]}
    assert page.total == 2 + 2  # the wrong meta.total the plan asked for
    assert [r["status"] for r in httpx.get(f"{sim.url}/_requests").json()] == [500, 200]


def test_a_list_that_changes_while_paging_is_refused(sim: Simulator) -> None:
    sim.reset(people(100))
    with sim.client(per_page=10, concurrency=1) as client:
        pages = client.iter_pages()
        next(pages)
        wait_until(lambda: sim.page_requests(3), what="pages 2 and 3 answered")
        sim.state.delete_contact("p00099")  # the pages asked for from now on see 99
        with pytest.raises(NimbleProtocolError, match="changed while it was being read"):
            list(pages)


def test_simulator_runs_as_a_command_with_a_data_file(tmp_path, cli_env) -> None:
    import subprocess

    from conftest import CONTACTBOOK
    from support import free_port

    records = [*people(3), person_resource(nimble_id="co", record_type="company")]
    data = tmp_path / "nimble.json"
    data.write_text(json.dumps(records), encoding="utf-8")
    port = free_port()
    process = subprocess.Popen(
        [CONTACTBOOK, "fake-nimble", "--port", str(port), "--data", str(data)],
        env={**cli_env, "NIMBLE_API_KEY": "command-key"},
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        banner = process.stdout.readline()
        assert "3 people and 1 other records" in banner and "command-key" not in banner
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/_faults", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)
        with NimbleClient(url, "command-key", retry=FAST_RETRY) as client:
            contacts = [c for page in client.iter_pages() for c in page.contacts]
        assert sorted(c.nimble_id for c in contacts) == ["p00000", "p00001", "p00002"]
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


def test_an_unreachable_or_wrong_nimble_api_url_is_named_in_the_error(sim: Simulator) -> None:
    from support import free_port

    nowhere = f"http://127.0.0.1:{free_port()}"
    unreachable_client = NimbleClient(nowhere, API_KEY, retry=FAST_RETRY, timeout=5.0)
    with unreachable_client, pytest.raises(NimbleUnavailable) as unreachable:
        read_all(unreachable_client)
    wrong_client = NimbleClient(f"{sim.url}/not-the-api", API_KEY, retry=FAST_RETRY)
    with wrong_client, pytest.raises(NimbleProtocolError) as wrong:
        read_all(wrong_client)

    assert f"Check NIMBLE_API_URL ({nowhere})" in str(unreachable.value)
    assert "HTTP 404" in str(wrong.value) and "NIMBLE_API_URL" in str(wrong.value)


def test_the_default_host_is_where_nimble_sends_api_key_requests(monkeypatch) -> None:
    from pathlib import Path

    from contactbook.config import Settings

    monkeypatch.delenv("NIMBLE_API_URL", raising=False)
    assert Settings(_env_file=None).nimble_api_url == "https://app.nimble.com"
    root = Path(__file__).resolve().parent.parent
    for doc in (".env.example", "README.md"):
        text = (root / doc).read_text(encoding="utf-8")
        assert "https://app.nimble.com" in text and "api.nimble.com`" not in text, doc
