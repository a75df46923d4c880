"""The Celery app and its tasks: configuration, beat schedule, import, sync, remembered ids."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from celery.schedules import crontab
from celery_support import CELERY_WARNINGS
from nimble_fixtures import API_KEY, people, simulator_server

from contactbook import jobs, worker
from contactbook.config import SAMPLE_CSV
from contactbook.contacts import tasks as contact_tasks
from contactbook.contacts import uploads
from contactbook.contacts.importer import UnusableCsvError
from contactbook.nimble.sync import SYNC_LOCK_KEY

#: The session's worker and its fixtures, defined once for every module that uses them.
pytest_plugins = ["celery_fixtures"]
pytestmark = CELERY_WARNINGS

TWO_PEOPLE = "First Name,Last Name,Email\nAda,Lovelace,ada@example.com\nAlan,Turing,alan@x.org\n"


def firing_times(schedule: crontab, start: datetime, minutes: int) -> list[datetime]:
    """Every minute in [start, start + minutes) at which the crontab fires."""
    times = []
    for step in range(minutes):
        moment = start + timedelta(minutes=step)
        if (
            moment.minute in schedule.minute
            and moment.hour in schedule.hour
            and moment.day in schedule.day_of_month
            and moment.month in schedule.month_of_year
            and (moment.isoweekday() % 7) in schedule.day_of_week
        ):
            times.append(moment)
    return times


# --------------------------------------------------------------------------- configuration


def test_default_schedule_is_once_a_day_at_midnight_utc(make_settings):
    app = worker.create_celery_app(make_settings(redis_url="redis://unused"))
    entry = app.conf.beat_schedule[worker.SYNC_SCHEDULE_ENTRY]

    assert entry["task"] == jobs.SYNC_TASK
    assert entry["schedule"] == crontab(minute=0, hour=0)
    assert app.conf.timezone == "UTC" and app.conf.enable_utc
    week = firing_times(entry["schedule"], datetime(2026, 3, 2, tzinfo=UTC), 7 * 24 * 60)
    assert week == [datetime(2026, 3, 2 + day, tzinfo=UTC) for day in range(7)]


def test_schedule_follows_sync_schedule(make_settings):
    app = worker.create_celery_app(
        make_settings(redis_url="redis://unused", sync_schedule="30 2 * * 1-5")
    )
    schedule = app.conf.beat_schedule[worker.SYNC_SCHEDULE_ENTRY]["schedule"]

    assert schedule == crontab(minute=30, hour=2, day_of_week="1-5")
    week = firing_times(schedule, datetime(2026, 3, 2, tzinfo=UTC), 7 * 24 * 60)  # a Monday
    assert week == [datetime(2026, 3, 2 + day, 2, 30, tzinfo=UTC) for day in range(5)]


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("0 0 * *", "has 4 field(s); it needs 5"),
        ("every day", "has 2 field(s)"),
        ("61 0 * * *", "not a valid cron expression"),
        ("0 25 * * *", "not a valid cron expression"),
        ("0 0 * 13 *", "not a valid cron expression"),
    ],
)
def test_an_invalid_sync_schedule_is_a_clear_error(make_settings, expression, fragment):
    with pytest.raises(worker.InvalidSchedule) as caught:
        worker.create_celery_app(make_settings(redis_url="redis://x", sync_schedule=expression))

    assert fragment in str(caught.value)
    assert "'0 0 * * *'" in str(caught.value)  # shows a valid one


@pytest.mark.parametrize("command", ["worker", "beat", "serve"])
def test_processes_refuse_to_start_with_an_invalid_sync_schedule(run_cli, command):
    result = run_cli(command, env={"SYNC_SCHEDULE": "0 0 * *"}, timeout=60)

    assert result.returncode == 2
    assert "SYNC_SCHEDULE '0 0 * *'" in result.stderr


def test_celery_is_json_only_acks_late_and_results_expire(make_settings):
    app = worker.create_celery_app(make_settings(redis_url="redis://r", search_result_expires=600))
    conf = app.conf

    assert (conf.task_serializer, conf.result_serializer) == ("json", "json")
    assert conf.accept_content == ["json"] and conf.result_accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.result_expires == 600
    assert conf.broker_url == "redis://r" and conf.result_backend == "redis://r"


def test_celery_broker_and_backend_can_be_set_apart_from_redis_url(make_settings):
    settings = make_settings(
        redis_url="redis://r",
        celery_broker_url="amqp://guest@rabbit//",
        celery_result_backend="redis://results",
    )

    conf = worker.create_celery_app(settings).conf

    assert (conf.broker_url, conf.result_backend) == ("amqp://guest@rabbit//", "redis://results")


# --------------------------------------------------------------------------- remembered ids


def test_issued_ids_are_remembered_as_long_as_results(celery_worker):
    task_id = jobs.submit(celery_worker, jobs.SEARCH_TASK, kind="search", text="tom")
    key = f"contactbook-issued-{task_id}"

    ttl = celery_worker.backend.client.ttl(key)

    assert jobs.lookup(celery_worker, task_id)[0] == "search"
    assert celery_worker.conf.result_expires - 5 <= ttl <= celery_worker.conf.result_expires
    assert jobs.lookup(celery_worker, "never-issued")[0] is None


# --------------------------------------------------------------------------- import


def test_import_task_imports_through_the_worker(celery_worker, db_url, write_csv):
    path = write_csv(TWO_PEOPLE)

    result = celery_worker.send_task(jobs.IMPORT_TASK, kwargs={"path": str(path)})
    summary = result.get(timeout=30)

    assert (summary["rows_read"], summary["inserted"], summary["performed"]) == (2, 2, True)
    assert path.exists()  # not an upload: left alone


def test_start_up_import_only_when_empty(worker_settings, db_url):
    first = contact_tasks.import_file(
        worker_settings, SAMPLE_CSV, source="start-up", only_if_empty=True, remove_after=False
    )
    second = contact_tasks.import_file(
        worker_settings, SAMPLE_CSV, source="start-up", only_if_empty=True, remove_after=False
    )

    assert first["performed"] and first["inserted"] == 200
    assert not second["performed"] and second["inserted"] == 0


def test_an_imported_upload_is_removed_and_a_second_delivery_is_a_no_op(worker_settings, db_url):
    upload = uploads.uploads_dir(worker_settings) / "test-upload.csv"
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_text(TWO_PEOPLE)

    first = contact_tasks.import_file(
        worker_settings, upload, source="upload", only_if_empty=False, remove_after=True
    )
    again = contact_tasks.import_file(
        worker_settings, upload, source="upload", only_if_empty=False, remove_after=True
    )

    assert first["inserted"] == 2 and not upload.exists()
    assert again == {"source": "upload", "performed": False, "reason": "already imported"}


def test_an_upload_missing_from_this_workers_disk_is_a_clear_failure(worker_settings, db_url):
    upload = uploads.uploads_dir(worker_settings) / "never-here.csv"

    with pytest.raises(contact_tasks.UploadMissing, match="must share CONTACTBOOK_HOME"):
        contact_tasks.import_file(
            worker_settings, upload, source="upload x", only_if_empty=False, remove_after=True
        )


def test_an_unusable_upload_fails_and_is_removed(worker_settings, db_url):
    upload = uploads.uploads_dir(worker_settings) / "garbage.csv"
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_bytes(b"\xff\xfe\x00garbage\x00\x00")

    with pytest.raises(UnusableCsvError):
        contact_tasks.import_file(
            worker_settings, upload, source="upload", only_if_empty=False, remove_after=True
        )

    assert not upload.exists()


def test_remove_after_never_deletes_a_file_outside_the_uploads_folder(
    worker_settings,
    db_url,
    write_csv,
):
    path = write_csv(TWO_PEOPLE)

    contact_tasks.import_file(
        worker_settings, path, source="x", only_if_empty=False, remove_after=True
    )

    assert path.exists()


# --------------------------------------------------------------------------- sync


def test_sync_without_a_key_is_skipped_with_one_clear_line(make_settings, caplog):
    app = worker.create_celery_app(make_settings(redis_url="redis://unused"))

    with caplog.at_level(logging.INFO, logger="contactbook"):
        outcome = app.tasks[jobs.SYNC_TASK].apply(kwargs={"full": True}).get()

    assert outcome == {"status": "skipped", "reason": "NIMBLE_API_KEY is not set"}
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("contactbook")]
    assert lines == ["sync skipped: NIMBLE_API_KEY is not set"]


def test_sync_task_runs_a_sync_and_reports_its_figures(make_settings, db_url):
    with simulator_server() as sim:
        sim.reset(people(7))
        settings = make_settings(
            redis_url="redis://unused", nimble_api_url=sim.url, nimble_api_key=API_KEY
        )
        app = worker.create_celery_app(settings)

        outcome = app.tasks[jobs.SYNC_TASK].apply(kwargs={"full": True}).get()

    assert outcome["status"] == "succeeded"
    assert (outcome["fetched"], outcome["inserted"], outcome["mode"]) == (7, 7, "full")


def test_sync_task_skips_while_another_sync_holds_the_lock(make_settings, db_url, caplog):
    settings = make_settings(
        redis_url="redis://unused", nimble_api_url="http://127.0.0.1:9", nimble_api_key="k"
    )
    app = worker.create_celery_app(settings)

    with psycopg.connect(db_url, autocommit=True) as holder:
        assert holder.execute("SELECT pg_try_advisory_lock(%s)", (SYNC_LOCK_KEY,)).fetchone()[0]
        with caplog.at_level(logging.WARNING, logger="contactbook"):
            outcome = app.tasks[jobs.SYNC_TASK].apply(kwargs={"full": False}).get()
        runs = holder.execute("SELECT count(*) FROM sync_runs").fetchone()[0]

    assert outcome == {"status": "skipped", "reason": "another sync is running"}
    assert runs == 0  # it never started, so it never overlapped
    assert any("another sync is running" in r.getMessage() for r in caplog.records)


def test_searches_have_a_queue_of_their_own_and_workers_consume_both(make_settings):
    from contactbook import cli

    app = worker.create_celery_app(make_settings(redis_url="redis://r"))

    assert app.amqp.router.route({}, jobs.SEARCH_TASK)["queue"].name == jobs.SEARCH_QUEUE
    assert app.amqp.router.route({}, jobs.IMPORT_TASK)["queue"].name == jobs.QUEUE
    assert app.amqp.router.route({}, jobs.SYNC_TASK)["queue"].name == jobs.QUEUE
    assert cli.WORKER_QUEUES == jobs.QUEUES
    assert app.conf.broker_pool_acquire_timeout is not None


def test_worker_refuses_an_unknown_queue(run_cli):
    result = run_cli("worker", "--queues", "contactbook,searches", timeout=60)

    assert result.returncode == 2
    assert "unknown queue searches" in result.stderr
    assert "Traceback" not in result.stderr
