"""Prometheus metrics: route templates not paths, plain-number helpers, Celery tasks, and
one view over several processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from celery import Celery
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from support import start_server

from contactbook import metrics


def samples() -> dict[tuple[str, frozenset], float]:
    body, content_type = metrics.metrics_response()
    assert content_type.startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(name: str, **labels: str) -> float:
    return samples().get((name, frozenset(labels.items())), 0.0)


# --- HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    app = FastAPI()

    @app.get("/metrics-test/items/{item_id}")
    def item(item_id: int) -> dict:
        return {"id": item_id}

    app.add_middleware(metrics.MetricsMiddleware)
    server = start_server(app)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            yield http
    finally:
        server.stop()


def test_requests_are_counted_by_route_template_and_status(client) -> None:
    route = "/metrics-test/items/{item_id}"
    ok_before = value("contactbook_http_requests_total", method="GET", route=route, status="200")
    for item_id in (1, 2, 3):
        assert client.get(f"/metrics-test/items/{item_id}?text=secret+words").status_code == 200
    assert client.get("/metrics-test/items/not-a-number").status_code == 422
    assert client.get("/random/scan/path").status_code == 404
    after = samples()
    labels = {"method": "GET", "route": route}
    ok = after[("contactbook_http_requests_total", frozenset({**labels, "status": "200"}.items()))]
    assert ok - ok_before == 3
    assert value("contactbook_http_requests_total", **labels, status="422") >= 1
    assert (
        value("contactbook_http_requests_total", method="GET", route="<unmatched>", status="404")
        >= 1
    )
    count = value("contactbook_http_request_duration_seconds_count", **labels, status="200")
    assert count >= 3
    text = metrics.metrics_response()[0].decode()
    assert "/metrics-test/items/1" not in text and "/random/scan" not in text
    assert "secret" not in text


def test_methods_other_than_the_usual_ones_share_one_label(client) -> None:
    unusual = ["PROPFIND", "MKCALENDAR", "PURGE", "LINK", "SEARCH"]
    for method in unusual:
        assert client.request(method, "/metrics-test/items/1").status_code == 405
    text = metrics.metrics_response()[0].decode()
    assert value(
        "contactbook_http_requests_total", method="other", route="/metrics-test/items/{item_id}",
        status="405",
    ) >= len(unusual)  # fmt: skip
    assert not any(f'method="{method}"' in text for method in unusual)


# --- the helpers ---------------------------------------------------------------------------


def test_a_successful_sync_sets_the_last_run_figures() -> None:
    runs_before = value("contactbook_sync_runs_total", status="success")
    inserted_before = value("contactbook_sync_contacts_total", figure="inserted")
    metrics.record_sync_run(
        status="success", fetched=120, inserted=7, linked=2, updated=5, removed=1, unchanged=105,
        finished_at=1_800_000_000.0,
    )  # fmt: skip
    assert value("contactbook_sync_runs_total", status="success") == runs_before + 1
    assert value("contactbook_sync_last_success_timestamp_seconds") == 1_800_000_000.0
    for figure, expected in {"fetched": 120, "inserted": 7, "updated": 5, "removed": 1}.items():
        assert value("contactbook_sync_last_run_contacts", figure=figure) == expected
    assert value("contactbook_sync_contacts_total", figure="inserted") == inserted_before + 7


def test_a_failed_sync_is_counted_and_keeps_the_last_good_figures() -> None:
    metrics.record_sync_run(status="success", fetched=10, inserted=3)
    failed_before = value("contactbook_sync_runs_total", status="failed")
    metrics.record_sync_run(status="failed", fetched=4, finished_at=1_900_000_000.0)
    assert value("contactbook_sync_runs_total", status="failed") == failed_before + 1
    assert value("contactbook_sync_last_failure_timestamp_seconds") == 1_900_000_000.0
    assert value("contactbook_sync_last_run_contacts", figure="fetched") == 10


def test_imports_add_up_their_rows() -> None:
    before = {o: value("contactbook_import_rows_total", outcome=o) for o in metrics.IMPORT_OUTCOMES}
    imports_before = value("contactbook_imports_total", status="success")
    metrics.record_import(read=10, inserted=5, updated=2, unchanged=1, skipped=2)
    metrics.record_import(read=1, inserted=1)
    assert value("contactbook_imports_total", status="success") == imports_before + 2
    expected = {"read": 11, "inserted": 6, "updated": 2, "unchanged": 1, "skipped": 2}
    for outcome, added in expected.items():
        assert value("contactbook_import_rows_total", outcome=outcome) == before[outcome] + added


def test_search_result_counts_are_a_histogram() -> None:
    before = value("contactbook_search_results_count", source="cli")
    zero_before = value("contactbook_search_results_bucket", source="cli", le="0.0")
    metrics.record_search(0, source="cli")
    metrics.record_search(20, source="cli")
    assert value("contactbook_search_results_count", source="cli") == before + 2
    assert value("contactbook_search_results_bucket", source="cli", le="0.0") == zero_before + 1


# --- Celery --------------------------------------------------------------------------------


def test_celery_tasks_are_counted_and_timed_by_name_and_state() -> None:
    app = Celery("metrics-test", set_as_current=False)
    metrics.install_celery_metrics(app)

    @app.task(name="metrics-test.ok")
    def ok() -> int:
        return 1

    @app.task(name="metrics-test.broken")
    def broken() -> None:
        raise LookupError("no such thing")

    ok.apply()
    ok.apply()
    assert broken.apply().failed()
    assert value("contactbook_celery_tasks_total", task="metrics-test.ok", state="SUCCESS") == 2
    assert value("contactbook_celery_tasks_total", task="metrics-test.broken", state="FAILURE") == 1
    assert (
        value(
            "contactbook_celery_task_failures_total",
            task="metrics-test.broken",
            exception="LookupError",
        )
        == 1
    )
    duration = value(
        "contactbook_celery_task_duration_seconds_count", task="metrics-test.ok", state="SUCCESS"
    )
    assert duration == 2


# --- several processes ---------------------------------------------------------------------


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_metrics_of_several_processes_add_up_in_one_view(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    writer = f"""
        from pathlib import Path
        from contactbook import metrics
        metrics.enable_multiprocess(Path({str(directory)!r}))
        metrics.record_import(read=10, inserted=4)
        metrics.record_sync_run(status="success", fetched=5, finished_at=100.0)
    """
    run_python(writer)  # the API's import, say
    run_python(writer.replace("100.0", "200.0"))  # a worker's
    # A process started by an enabled one (a uvicorn worker, a Celery child) inherits the
    # mode through the environment, without calling enable_multiprocess itself.
    run_python(
        f"""
        import subprocess, sys
        from pathlib import Path
        from contactbook import metrics
        metrics.enable_multiprocess(Path({str(directory)!r}))
        child = "from contactbook import metrics; metrics.record_import(read=1)"
        subprocess.run([sys.executable, "-c", child], check=True)
        """
    )
    exposition = run_python(
        f"""
        from pathlib import Path
        from contactbook import metrics
        metrics.enable_multiprocess(Path({str(directory)!r}))
        print(metrics.metrics_response()[0].decode())
        """
    )
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    assert found[("contactbook_import_rows_total", frozenset({("outcome", "read")}))] == 21
    assert found[("contactbook_imports_total", frozenset({("status", "success")}))] == 3
    assert found[("contactbook_sync_runs_total", frozenset({("status", "success")}))] == 2
    assert found[("contactbook_sync_last_success_timestamp_seconds", frozenset())] == 200.0
    last_fetched = ("contactbook_sync_last_run_contacts", frozenset({("figure", "fetched")}))
    assert found[last_fetched] == 5
    # File names carry host and pid: containers sharing the volume number pids from 1.
    files = sorted(path.name for path in directory.glob("*.db"))
    assert files and all(path.count("_") in (1, 2) and "-" in path for path in files)


def test_clearing_the_directory_starts_from_zero(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_old-host-1.db").write_bytes(b"stale")
    run_python(
        f"""
        from pathlib import Path
        from contactbook import metrics
        metrics.enable_multiprocess(Path({str(directory)!r}), clear=True)
        metrics.record_search(3)
        """
    )
    assert not (directory / "counter_old-host-1.db").exists()
    assert list(directory.glob("histogram_*.db"))
