"""The sync from Nimble: the simulator over real HTTP, real PostgreSQL."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from nimble_fixtures import API_KEY, Simulator, people

from contactbook.errors import ConfigurationError
from contactbook.nimble import sync
from contactbook.nimble.simulator import FaultPlan, person_resource
from contactbook.nimble.sync import (
    RunOptions,
    SyncAlreadyRunning,
    SyncError,
    SyncSkipped,
    run_sync,
    sync_contacts,
)


def run(conn: psycopg.Connection, sim: Simulator, *, full: bool = False, **kwargs):
    client_options = {k: kwargs.pop(k) for k in ("api_key", "per_page", "timeout") if k in kwargs}
    client_options.setdefault("per_page", 10)
    with sim.client(**client_options) as client:
        return sync_contacts(conn, client, full=full, **kwargs)


def dump(conn: psycopg.Connection) -> list:
    """Every column of every contact (deleted ones too), for exact before/after checks."""
    rows = conn.execute(
        "SELECT to_jsonb(c) - 'name_vector' - 'bio_vector' AS row FROM contacts c ORDER BY id"
    )
    return [r["row"] for r in rows]


def contacts_by_nimble_id(conn: psycopg.Connection) -> dict[str, dict]:
    rows = conn.execute("SELECT * FROM contacts WHERE nimble_id IS NOT NULL").fetchall()
    return {r["nimble_id"]: r for r in rows}


def runs(conn: psycopg.Connection) -> list[dict]:
    return conn.execute("SELECT * FROM sync_runs ORDER BY id").fetchall()


def add_csv_contact(
    conn: psycopg.Connection, email: str | None, first: str = "Csv", last: str = "Row"
) -> int:
    return conn.execute(
        "INSERT INTO contacts (first_name, last_name, email, description, source)"
        " VALUES (%s, %s, %s, 'from the CSV', 'csv') RETURNING id",
        (first, last, email),
    ).fetchone()["id"]


def test_first_sync_inserts_every_person(conn, sim: Simulator) -> None:
    company = person_resource(nimble_id="co1", record_type="company", emails=["info@acme.test"])
    sim.reset([*people(25), company])
    summary = run(conn, sim)
    assert (summary.mode, summary.fetched, summary.inserted) == ("full", 25, 25)
    assert (summary.linked, summary.updated, summary.removed, summary.unchanged) == (0, 0, 0, 0)
    stored = contacts_by_nimble_id(conn)
    assert set(stored) == {f"p{i:05d}" for i in range(25)}
    seven = stored["p00007"]
    assert (seven["first_name"], seven["last_name"], seven["email"]) == (
        "First7",
        "Last7",
        "person7@example.com",
    )
    assert seven["description"] == "Person number 7" and seven["source"] == "nimble"
    assert seven["nimble_updated_at"] == datetime(2024, 1, 1, 0, 7, tzinfo=UTC)
    (record,) = runs(conn)
    assert record["id"] == summary.run_id
    assert (record["status"], record["mode"], record["error"]) == ("succeeded", "full", None)
    assert (record["fetched"], record["inserted"]) == (25, 25)
    assert record["finished_at"] >= record["started_at"]


def test_second_sync_changes_nothing(conn, sim: Simulator) -> None:
    sim.reset(people(25))
    add_csv_contact(conn, "PERSON3@example.com")
    run(conn, sim)
    before = dump(conn)
    for full in (True, False):
        summary = run(conn, sim, full=full)
        assert summary.unchanged == summary.fetched
        assert summary.inserted == summary.linked == summary.updated == summary.removed == 0
    assert dump(conn) == before  # not even updated_at moved


def test_remote_edits_propagate(conn, sim: Simulator) -> None:
    sim.reset(people(5))
    run(conn, sim)
    sim.state.update_contact(
        "p00001",
        {"first_name": "Renamed", "emails": ["new@example.com", "person1@example.com"]},
    )
    sim.state.update_contact("p00002", {"description": None, "last_name": "Ünïcödé"})
    summary = run(conn, sim)
    assert (summary.mode, summary.fetched, summary.updated) == ("incremental", 2, 2)
    stored = contacts_by_nimble_id(conn)
    assert stored["p00001"]["first_name"] == "Renamed"
    assert stored["p00001"]["email"] == "new@example.com"  # the new primary
    assert stored["p00002"]["description"] is None
    assert stored["p00002"]["last_name"] == "Ünïcödé"
    assert stored["p00003"]["first_name"] == "First3"
    assert len(stored) == 5


def test_csv_rows_link_by_any_email_ignoring_case(conn, sim: Simulator) -> None:
    sim.reset(
        [
            person_resource(nimble_id="ada", first_name="Ada", emails=["ada@example.com"]),
            person_resource(
                nimble_id="bob",
                first_name="Bob",
                emails=["bob@work.example", "Bob.Home@Example.org"],
            ),
            person_resource(nimble_id="cy", first_name="Cy", emails=["cy@example.com"]),
        ]
    )
    ada = add_csv_contact(conn, "ADA@Example.COM")
    bob = add_csv_contact(conn, "bob.home@example.org")  # the remote's second address
    stranger = add_csv_contact(conn, "nobody@example.com")
    summary = run(conn, sim)
    assert (summary.fetched, summary.linked, summary.inserted) == (3, 2, 1)
    rows = {r["id"]: r for r in conn.execute("SELECT * FROM contacts").fetchall()}
    assert len(rows) == 4  # two linked, one inserted, the stranger untouched
    assert (rows[ada]["nimble_id"], rows[ada]["first_name"]) == ("ada", "Ada")
    assert rows[ada]["email"] == "ada@example.com" and rows[ada]["source"] == "csv"
    assert rows[bob]["nimble_id"] == "bob" and rows[bob]["email"] == "bob@work.example"
    assert rows[stranger]["nimble_id"] is None and rows[stranger]["first_name"] == "Csv"
    again = run(conn, sim, full=True)
    assert (again.linked, again.inserted, again.unchanged) == (0, 0, 3)


def test_linking_never_duplicates(conn, sim: Simulator) -> None:
    sim.reset(
        [
            # one remote person whose two addresses each match a CSV row
            person_resource(nimble_id="pat", first_name="Pat", emails=["a@x.test", "b@x.test"]),
            # two remote people sharing one address that one CSV row has
            person_resource(nimble_id="sam1", first_name="Sam", emails=["sam@x.test"]),
            person_resource(nimble_id="sam2", first_name="Sam", emails=["SAM@x.test"]),
        ]
    )
    row_a = add_csv_contact(conn, "a@x.test")
    row_b = add_csv_contact(conn, "b@x.test")
    row_sam = add_csv_contact(conn, "sam@x.test")
    summary = run(conn, sim)
    assert (summary.linked, summary.inserted) == (2, 1)
    rows = conn.execute("SELECT id, nimble_id FROM contacts").fetchall()
    linked = {r["id"]: r["nimble_id"] for r in rows}
    assert linked[row_a] == "pat" and linked[row_b] is None  # primary address wins
    assert linked[row_sam] == "sam1"
    assert sorted(v for v in linked.values() if v) == ["pat", "sam1", "sam2"]
    assert conn.execute("SELECT count(*) AS n FROM contacts").fetchone()["n"] == 4


def test_companies_are_ignored(conn, sim: Simulator) -> None:
    company = person_resource(nimble_id="co", record_type="company", emails=["hello@acme.test"])
    sim.reset([company, *people(2)])
    csv_row = add_csv_contact(conn, "hello@acme.test")
    summary = run(conn, sim)
    assert (summary.fetched, summary.inserted, summary.linked) == (2, 2, 0)
    assert set(contacts_by_nimble_id(conn)) == {"p00000", "p00001"}
    row = conn.execute("SELECT nimble_id FROM contacts WHERE id = %s", (csv_row,)).fetchone()
    assert row["nimble_id"] is None


def test_deletions_are_applied_on_full_runs_only(conn, sim: Simulator) -> None:
    sim.reset(people(4))
    run(conn, sim)
    sim.state.delete_contact("p00002")
    incremental = run(conn, sim)
    assert incremental.mode == "incremental" and incremental.removed == 0
    assert contacts_by_nimble_id(conn)["p00002"]["deleted_at"] is None

    # One person of four is more than SYNC_MAX_REMOVALS_PERCENT: the removal is confirmed.
    allowed = RunOptions(allow_removals=True)
    full = run(conn, sim, full=True, options=allowed)
    assert (full.removed, full.unchanged) == (1, 3)
    gone = contacts_by_nimble_id(conn)["p00002"]
    assert gone["deleted_at"] is not None and gone["first_name"] == "First2"
    assert run(conn, sim, full=True).removed == 0  # already removed

    sim.state.add_contact({"id": "p00002", "first_name": "Back", "emails": ["back@x.test"]})
    revived = run(conn, sim)
    assert (revived.updated, revived.inserted) == (1, 0)
    back = contacts_by_nimble_id(conn)["p00002"]
    assert back["deleted_at"] is None and back["first_name"] == "Back"


def test_incremental_runs_fetch_only_what_changed(conn, sim: Simulator) -> None:
    sim.reset(people(30))
    first = run(conn, sim)
    first_start = runs(conn)[0]["started_at"]
    sim.state.update_contact("p00004", {"first_name": "Four"})
    sim.state.update_contact("p00017", {"first_name": "Seventeen"})
    sim.state.add_contact({"id": "new1", "first_name": "New", "emails": ["n@x.test"]})
    sim.state.clear_requests()
    # Nimble's times have whole seconds: the next run (whose start is the third run's
    # window) starts in a second after the edits' one.
    edited = datetime.now(UTC).replace(microsecond=0)
    while datetime.now(UTC).replace(microsecond=0) <= edited:
        time.sleep(0.01)

    second = run(conn, sim, overlap=timedelta(0))
    assert (first.fetched, second.mode, second.fetched) == (30, "incremental", 3)
    assert (second.updated, second.inserted, second.unchanged) == (2, 1, 0)
    (request,) = sim.page_requests()
    assert "record_type" not in request.params
    query = json.loads(request.params["query"])
    start = query["and"][1]["updated"]["range"]["start_datetime"]
    assert query["and"][0] == {"record type": {"is": "person"}}
    assert start == first_start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    sim.state.clear_requests()
    third = run(conn, sim, overlap=timedelta(0))
    assert (third.fetched, third.updated, third.inserted) == (0, 0, 0)
    assert len(sim.page_requests()) == 1


def test_incremental_window_overlaps_the_previous_run(conn, sim: Simulator) -> None:
    sim.reset(people(3))
    run(conn, sim)
    sim.state.clear_requests()
    run(conn, sim)  # default overlap
    (request,) = sim.page_requests()
    start = json.loads(request.params["query"])["and"][1]["updated"]["range"]["start_datetime"]
    first_start = runs(conn)[0]["started_at"]
    assert datetime.fromisoformat(start) <= first_start - sync.DEFAULT_OVERLAP


def test_first_run_is_full_even_when_incremental_is_asked(conn, sim: Simulator) -> None:
    sim.reset(people(3))
    assert run(conn, sim, full=False).mode == "full"
    assert run(conn, sim, full=False).mode == "incremental"
    assert run(conn, sim, full=False, full_after=timedelta(0)).mode == "full"


def test_transient_5xx_answers_are_recovered(conn, sim: Simulator) -> None:
    sim.reset(people(40))
    sim.state.set_faults(FaultPlan().fail(2, times=2).fail(3, times=1, status=503).drop(4))
    summary = run(conn, sim)
    assert (summary.fetched, summary.inserted) == (40, 40)
    assert runs(conn)[-1]["status"] == "succeeded"


@pytest.fixture
def pending_changes(conn, sim: Simulator) -> list:
    """A synced database and remote changes of every kind waiting; returns the dump."""
    sim.reset(people(40))
    add_csv_contact(conn, "Person7@EXAMPLE.com")
    add_csv_contact(conn, "csv.only@example.com")
    run(conn, sim)
    for i in range(1, 26):  # enough for an incremental run to span three pages
        sim.state.update_contact(f"p{i:05d}", {"first_name": f"Edited{i}"})
    sim.state.delete_contact("p00002")
    sim.state.add_contact({"id": "new", "first_name": "New", "emails": ["csv.only@example.com"]})
    return dump(conn)


FAILURES = {
    "persistent 500": (FaultPlan().fail(3, times=None), {}, "HTTP 500"),
    "malformed page": (FaultPlan().malformed(2, times=None), {}, "malformed"),
    "dropped page": (FaultPlan().drop(3, times=None), {}, "connection failed"),
    "wrong meta.total": (FaultPlan(total_offset=1), {}, "meta.total"),
    "wrong key": (FaultPlan(), {"api_key": "not-the-key"}, "NIMBLE_API_KEY"),
}


@pytest.mark.parametrize("full", [True, False], ids=["full", "incremental"])
@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_sync_changes_nothing_and_is_recorded(
    conn, sim: Simulator, pending_changes: list, failure: str, full: bool
) -> None:
    plan, options, message = FAILURES[failure]
    sim.state.set_faults(plan)
    with pytest.raises(SyncError, match=message):
        run(conn, sim, full=full, **options)
    assert dump(conn) == pending_changes
    record = runs(conn)[-1]
    assert record["status"] == "failed" and message in record["error"]
    assert record["finished_at"] is not None
    assert record["inserted"] == record["updated"] == record["linked"] == record["removed"] == 0

    sim.state.set_faults(None)
    recovered = run(conn, sim, full=True)  # and the next run applies everything
    assert (recovered.updated, recovered.removed, recovered.linked) == (24, 1, 1)


def test_a_failure_inside_the_merge_rolls_everything_back(
    conn, sim: Simulator, pending_changes: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The last statement of the merge fails after the updates, links and inserts ran.
    monkeypatch.setattr(sync, "REMOVE_VANISHED", "SELECT 1 / 0")
    with pytest.raises(SyncError, match="database error"):
        run(conn, sim, full=True)
    assert dump(conn) == pending_changes
    assert runs(conn)[-1]["status"] == "failed"


def test_the_key_never_appears_in_any_output(
    conn, sim: Simulator, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    sim.reset(people(30))
    run(conn, sim)
    sim.state.set_faults(FaultPlan().fail(1, times=1).malformed(2, times=1).drop(3, times=None))
    with pytest.raises(SyncError) as raised:
        run(conn, sim, full=True)
    captured = capsys.readouterr()
    errors = [r["error"] or "" for r in runs(conn)]
    texts = [caplog.text, captured.out, captured.err, str(raised.value), *errors]
    texts.append(str(raised.value.__cause__))
    assert "connection failed" in caplog.text
    for text in texts:
        assert API_KEY not in text


def test_a_concurrent_sync_is_refused(conn, db_url: str, sim: Simulator) -> None:
    sim.reset(people(30))
    sim.state.set_faults(FaultPlan().hold(2))  # the first sync waits there, holding the lock
    outcome: dict = {}

    def first_sync() -> None:
        with psycopg.connect(db_url, autocommit=True) as other:
            outcome["summary"] = run(other, sim, timeout=60)  # however long the hold

    thread = threading.Thread(target=first_sync)
    thread.start()
    assert sim.state.holding.wait(timeout=30), "the first sync never asked for page 2"
    try:
        with pytest.raises(SyncAlreadyRunning):
            run(conn, sim)
    finally:
        sim.state.release()
    thread.join()
    assert outcome["summary"].inserted == 30
    assert [r["status"] for r in runs(conn)] == ["succeeded"]  # the refused one left no run
    assert run(conn, sim).mode == "incremental"  # the lock was released


def test_an_abandoned_run_is_closed_by_the_next(conn, sim: Simulator) -> None:
    conn.execute("INSERT INTO sync_runs (mode) VALUES ('full')")
    sim.reset(people(2))
    run(conn, sim)
    abandoned, latest = runs(conn)
    assert abandoned["status"] == "failed" and "interrupted" in abandoned["error"]
    assert latest["status"] == "succeeded"


def test_works_on_a_connection_that_is_not_autocommit(db_url: str, sim: Simulator) -> None:
    sim.reset(people(12))
    with psycopg.connect(db_url) as manual:
        summary = run(manual, sim)
        assert summary.inserted == 12
        assert manual.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with psycopg.connect(db_url, autocommit=True) as check:
        assert check.execute("SELECT count(*) FROM contacts").fetchone()[0] == 12
        lock = check.execute("SELECT pg_try_advisory_lock(%s)", (sync.SYNC_LOCK_KEY,))
        assert lock.fetchone()[0] is True  # the sync released it
        check.execute("SELECT pg_advisory_unlock(%s)", (sync.SYNC_LOCK_KEY,))


def test_unicode_and_long_values_are_stored(conn, sim: Simulator) -> None:
    description = "Notes — naïve café, 山田さんと会議. " * 5000
    sim.reset(
        [
            person_resource(
                nimble_id="u",
                first_name="Zoë",
                last_name="Ødegaard",
                emails=["zoë@exämple.com"],
                description=description,
            )
        ]
    )
    run(conn, sim)
    stored = contacts_by_nimble_id(conn)["u"]
    assert stored["description"] == description.strip() and stored["first_name"] == "Zoë"


def test_run_sync_reads_its_settings(conn, make_settings, sim: Simulator) -> None:
    sim.reset(people(12))
    settings = make_settings(nimble_api_url=sim.url, nimble_api_key=API_KEY, nimble_per_page=5)
    summary = run_sync(settings, full=True)
    assert (summary.mode, summary.inserted) == ("full", 12)
    assert {r.params["per_page"] for r in sim.page_requests()} == {"5"}
    assert len(sim.page_requests()) == 3


def test_run_sync_without_a_key_is_skipped(conn, make_settings) -> None:
    with pytest.raises(SyncSkipped, match="NIMBLE_API_KEY is not set"):
        run_sync(make_settings(nimble_api_key=None), full=True)
    assert runs(conn) == []


def test_run_sync_starts_no_database_of_its_own(conn, make_settings) -> None:
    # The entry points (the CLI, the worker) start the embedded database and export its
    # URL; the sync, domain code, is handed a database and starts none.
    settings = make_settings(database_url=None, nimble_api_key=API_KEY)
    with pytest.raises(ConfigurationError, match="DATABASE_URL is not set"):
        run_sync(settings, full=True)
    assert not (settings.contactbook_home / "postgres").exists()
    assert runs(conn) == []


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Merge every few people, so a run of a few pages spans many batches."""
    monkeypatch.setattr(sync, "BATCH_ROWS", 7)


def test_many_batches_give_the_same_result(conn, sim: Simulator, small_batches) -> None:
    sim.reset(people(45))
    csv_rows = [add_csv_contact(conn, f"PERSON{i}@example.com") for i in (3, 21, 44)]
    summary = run(conn, sim)
    assert (summary.fetched, summary.linked, summary.inserted) == (45, 3, 42)
    linked = conn.execute(
        "SELECT nimble_id FROM contacts WHERE id = ANY(%s) ORDER BY id", (csv_rows,)
    ).fetchall()
    assert [r["nimble_id"] for r in linked] == ["p00003", "p00021", "p00044"]
    assert conn.execute("SELECT count(*) AS n FROM contacts").fetchone()["n"] == 45
    before = dump(conn)
    assert run(conn, sim, full=True).unchanged == 45
    assert dump(conn) == before


def test_a_failure_after_merged_batches_rolls_them_back(
    conn, sim: Simulator, pending_changes: list, small_batches
) -> None:
    # Pages 1-3 arrive and are merged (several batches) before page 4 fails for good.
    sim.state.set_faults(FaultPlan().fail(4, times=None))
    with pytest.raises(SyncError, match="page 4"):
        run(conn, sim, full=True, per_page=10)
    assert dump(conn) == pending_changes
    assert runs(conn)[-1]["status"] == "failed"


def test_a_batch_failing_on_the_merger_thread_fails_the_run(
    conn, sim: Simulator, pending_changes: list, small_batches, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches merge on a thread of their own while the next pages download; the first
    # batch's failure must stop the run, roll back, and leave no thread behind.
    monkeypatch.setattr(sync, "INSERT_NEW", "SELECT 1 / 0")
    with pytest.raises(SyncError, match="database error: DivisionByZero"):
        run(conn, sim, full=True, per_page=10)
    assert dump(conn) == pending_changes
    assert runs(conn)[-1]["status"] == "failed"
    assert not [t for t in threading.enumerate() if t.name.startswith("sync-merge")]


def test_synced_names_feed_the_typo_vocabulary(conn, sim: Simulator) -> None:
    # The typo band corrects words against contact_name_words, which a trigger fills
    # from every written row's name vector: inserted and updated rows alike.
    sim.reset(people(3))
    sim.state.update_contact("p00001", {"first_name": "Zoë", "last_name": "de la Cruz"})
    run(conn, sim)
    sim.state.update_contact("p00002", {"last_name": "Hendricks"})
    run(conn, sim)
    words = {r["word"] for r in conn.execute("SELECT word FROM contact_name_words")}
    assert {"zoe", "de", "la", "cruz", "delacruz", "hendricks", "first0", "last0"} <= words
    names = conn.execute(
        "SELECT DISTINCT w.lexeme AS word FROM contacts, unnest(ts_filter(name_vector, '{a}')) AS w"
        " WHERE w.lexeme NOT LIKE '^%'"  # the initials (migration 0006) are no words
    ).fetchall()
    assert {r["word"] for r in names} <= words


def test_a_record_seen_twice_fails_the_run(conn, sim: Simulator, pending_changes: list) -> None:
    # A record that moves between pages while they are read arrives twice.
    # Pages come one at a time; while page 3 is held, p00000 (read on page 1) moves to
    # the end of the list, which page 4, asked for after page 3, ends with.
    sim.state.set_faults(FaultPlan().hold(3))
    with sim.client(per_page=10, concurrency=1, timeout=60) as client:

        def move_a_record() -> None:
            sim.state.holding.wait(timeout=30)
            sim.state.delete_contact("p00000")
            sim.state.add_contact({"id": "p00000", "first_name": "Moved"})
            sim.state.release()

        mover = threading.Thread(target=move_a_record)
        mover.start()
        with pytest.raises(SyncError, match="arrived twice"):
            sync_contacts(conn, client, full=True)
        mover.join()
    assert dump(conn) == pending_changes


def test_run_sync_without_a_database_fails_with_a_message(make_settings, sim: Simulator) -> None:
    settings = make_settings(
        database_url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2",
        nimble_api_url=sim.url,
        nimble_api_key=API_KEY,
    )
    with pytest.raises(SyncError, match="cannot connect to the database"):
        run_sync(settings, full=True)
    assert sim.page_requests() == []  # nothing was read either


# -- removals are guarded; dry runs write nothing (issue 16, point 4) --------------------


def shrink_remote(sim: Simulator, keep: int, of: int) -> None:
    for i in range(keep, of):
        sim.state.delete_contact(f"p{i:05d}")


def test_a_full_sync_removing_most_contacts_fails_unchanged_and_is_recorded(
    conn, sim: Simulator
) -> None:
    sim.reset(people(20))
    add_csv_contact(conn, "csv.only@example.com")
    run(conn, sim)
    before = dump(conn)
    shrink_remote(sim, keep=2, of=20)  # the remote suddenly lists a tenth of its people

    with pytest.raises(sync.TooManyRemovals) as refused:
        run(conn, sim, full=True)

    assert dump(conn) == before
    message = str(refused.value)
    assert "remove 18 of the 20 contacts linked to Nimble (90%)" in message
    assert "SYNC_MAX_REMOVALS_PERCENT (10%)" in message
    assert "contactbook sync --full --allow-removals" in message
    record = runs(conn)[-1]
    assert (record["status"], record["mode"]) == ("failed", "full")
    assert (record["fetched"], record["removed"], record["unchanged"]) == (2, 18, 2)
    assert "--allow-removals" in record["error"]


def test_allow_removals_lets_a_large_removal_through(conn, sim: Simulator) -> None:
    sim.reset(people(20))
    run(conn, sim)
    shrink_remote(sim, keep=2, of=20)

    summary = run(conn, sim, full=True, options=sync.RunOptions(allow_removals=True))

    assert (summary.removed, summary.unchanged) == (18, 2)
    live = conn.execute("SELECT count(*) AS n FROM contacts WHERE deleted_at IS NULL").fetchone()
    assert live["n"] == 2


def test_removals_within_the_limit_need_no_confirmation(conn, sim: Simulator) -> None:
    sim.reset(people(20))
    run(conn, sim)
    shrink_remote(sim, keep=18, of=20)  # 10%: not more than the limit

    assert run(conn, sim, full=True).removed == 2


def test_the_limit_is_sync_max_removals_percent(conn, make_settings, sim: Simulator) -> None:
    sim.reset(people(10))
    settings = make_settings(nimble_api_url=sim.url, nimble_api_key=API_KEY)
    run_sync(settings, full=True)
    shrink_remote(sim, keep=6, of=10)  # 40%

    with pytest.raises(sync.TooManyRemovals, match=r"\(25%\)"):
        run_sync(make_settings(nimble_api_url=sim.url, nimble_api_key=API_KEY,
                               sync_max_removals_percent=25), full=True)  # fmt: skip
    summary = run_sync(
        make_settings(nimble_api_url=sim.url, nimble_api_key=API_KEY, sync_max_removals_percent=50),
        full=True,
    )
    assert summary.removed == 4


def test_a_dry_run_reports_what_the_run_would_do_and_writes_nothing(
    conn, sim: Simulator, pending_changes: list
) -> None:
    recorded = runs(conn)

    dry = run(conn, sim, full=True, options=sync.RunOptions(dry_run=True))

    assert dump(conn) == pending_changes
    assert runs(conn) == recorded  # not even a sync_runs row
    assert dry.dry_run and dry.run_id is None
    real = run(conn, sim, full=True)
    figures = ("fetched", "inserted", "linked", "updated", "removed", "unchanged")
    assert [getattr(dry, f) for f in figures] == [getattr(real, f) for f in figures]
    assert (real.updated, real.removed, real.linked) == (24, 1, 1)


def test_a_dry_run_refuses_what_the_run_would_refuse(conn, sim: Simulator) -> None:
    sim.reset(people(10))
    run(conn, sim)
    recorded = runs(conn)
    shrink_remote(sim, keep=1, of=10)

    with pytest.raises(sync.TooManyRemovals):
        run(conn, sim, full=True, options=sync.RunOptions(dry_run=True))
    allowed = run(conn, sim, full=True, options=sync.RunOptions(dry_run=True, allow_removals=True))

    assert allowed.removed == 9
    assert runs(conn) == recorded
    live = conn.execute("SELECT count(*) AS n FROM contacts WHERE deleted_at IS NULL").fetchone()
    assert live["n"] == 10


def test_progress_counts_the_pages_read_out_of_the_total(conn, sim: Simulator) -> None:
    sim.reset(people(25))
    seen: list[tuple[int, int]] = []

    run(conn, sim, per_page=10, options=sync.RunOptions(progress=lambda *p: seen.append(p)))

    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_the_sync_command_dry_run_prints_the_figures_and_writes_nothing(
    cli, conn, sim: Simulator
) -> None:
    sim.reset(people(5))
    env = {"NIMBLE_API_URL": sim.url, "NIMBLE_API_KEY": API_KEY}

    result = cli("sync", "--full", "--dry-run", env=env)

    assert result.exit_code == 0, result.output
    assert "dry run: nothing was written" in result.stdout
    assert "inserted" in result.stdout and "5" in result.stdout
    assert dump(conn) == [] and runs(conn) == []


def test_the_sync_command_refuses_a_mass_removal_once_and_says_how_to_go_on(
    cli, conn, sim: Simulator
) -> None:
    sim.reset(people(20))
    env = {"NIMBLE_API_URL": sim.url, "NIMBLE_API_KEY": API_KEY}
    assert cli("sync", "--full", env=env).exit_code == 0
    shrink_remote(sim, keep=2, of=20)

    refused = cli("sync", "--full", env=env)
    allowed = cli("sync", "--full", "--allow-removals", env=env)

    assert refused.exit_code == 1
    assert refused.stderr.count("contactbook sync --full --allow-removals") == 1
    assert allowed.exit_code == 0, allowed.output
    assert [r["status"] for r in runs(conn)] == ["succeeded", "failed", "succeeded"]
    assert runs(conn)[-1]["removed"] == 18


def test_the_sync_command_shows_pages_on_a_terminal_and_nothing_on_a_pipe(
    cli, sim: Simulator, monkeypatch
) -> None:
    import io

    from rich.console import Console

    from contactbook import cli as cli_module

    sim.reset(people(25))
    env = {"NIMBLE_API_URL": sim.url, "NIMBLE_API_KEY": API_KEY, "NIMBLE_PER_PAGE": "10"}
    piped = cli("sync", "--full", env=env)
    screen = io.StringIO()
    monkeypatch.setattr(cli_module, "err", Console(file=screen, force_terminal=True, width=100))
    on_terminal = cli("sync", "--full", env=env)

    assert piped.exit_code == on_terminal.exit_code == 0
    assert piped.stderr.splitlines()[1:] == []  # the database line, and nothing else
    assert "3/3" in screen.getvalue() and "pages" in screen.getvalue()
