"""Logs: one JSON object per line, with request and task ids, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import httpx
import pytest
from celery import Celery
from fastapi import FastAPI
from support import start_server

from contactbook.logging import (
    AccessLogMiddleware,
    JsonLineFormatter,
    RequestIdMiddleware,
    install_celery_logging,
    redact_url,
    request_id_var,
    settings_secrets,
    uvicorn_log_config,
)

FIELDS = {"time", "level", "logger", "message", "process", "pid", "request_id", "task_id"}
NIMBLE_KEY = "nimble-key-0123456789"
ADMIN_TOKEN = "admin-token-abcdef"
READ_TOKENS = ["read-one-111", "read-two-222"]


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict]]]:
    """Capture what the root logger writes, formatted as in production, as parsed lines."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(
        JsonLineFormatter(process="test", secrets=[NIMBLE_KEY, ADMIN_TOKEN, *READ_TOKENS])
    )
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)

    def lines() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin", **env},
    )


# --- the format ---------------------------------------------------------------------------


def test_every_line_on_stderr_is_a_json_object_with_the_fields() -> None:
    result = run_python(
        """
        import logging
        from contactbook.logging import configure_logging
        configure_logging("info", process="worker")
        log = logging.getLogger("contactbook.demo")
        log.info("imported %d rows", 3, extra={"rows": 3, "file": "a.csv"})
        log.debug("not shown at INFO")
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("it broke\\non two lines")
        logging.getLogger("uvicorn.error").warning("from a library")
        print("stdout is not the log")
        """
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    for record in records:
        assert set(record) >= FIELDS
        assert record["process"] == "worker"
        assert record["time"].endswith("Z") and "T" in record["time"]
    info, error, library = records
    assert info["message"] == "imported 3 rows"
    assert (info["level"], info["logger"]) == ("INFO", "contactbook.demo")
    assert (info["rows"], info["file"]) == (3, "a.csv")
    assert error["level"] == "ERROR" and "ZeroDivisionError" in error["exc_info"]
    assert error["message"] == "it broke\non two lines"  # still one line of output
    assert library["logger"] == "uvicorn.error"
    assert result.stdout == "stdout is not the log\n"


def test_log_level_filters_and_is_case_insensitive() -> None:
    result = run_python(
        """
        import logging
        from contactbook.logging import configure_logging
        configure_logging("warning", process="beat")
        logging.getLogger("x").info("quiet")
        logging.getLogger("x").warning("loud")
        """
    )
    (line,) = result.stderr.splitlines()
    assert json.loads(line)["message"] == "loud"


def test_an_unknown_log_level_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="DEBUG, INFO"):
        uvicorn_log_config("LOUD")


# --- secrets ------------------------------------------------------------------------------


def test_secrets_are_masked_wherever_they_appear(log_lines) -> None:
    log = logging.getLogger("contactbook.secrets")
    log.info("calling Nimble with Bearer %s", NIMBLE_KEY)
    log.info("admin said %s", ADMIN_TOKEN, extra={"header": f"Bearer {READ_TOKENS[1]}"})
    try:
        raise RuntimeError(f"401 for token {READ_TOKENS[0]}")
    except RuntimeError:
        log.exception("request failed")
    output = json.dumps(log_lines())
    for secret in (NIMBLE_KEY, ADMIN_TOKEN, *READ_TOKENS):
        assert secret not in output
    first, second, third = log_lines()
    assert first["message"] == "calling Nimble with Bearer ***"
    assert second["header"] == "Bearer ***"
    assert "401 for token ***" in third["exc_info"]


def test_a_secret_with_json_special_characters_is_masked_too() -> None:
    formatter = JsonLineFormatter(process="api", secrets=['to"ken\\1', None, ""])
    record = logging.LogRecord("x", logging.INFO, __file__, 1, 'key=to"ken\\1', None, None)
    line = formatter.format(record)
    assert json.loads(line)["message"] == "key=***"


def test_secrets_come_from_the_settings(make_settings) -> None:
    settings = make_settings(
        nimble_api_key=NIMBLE_KEY,
        contactbook_admin_token=ADMIN_TOKEN,
        contactbook_api_tokens=",".join(READ_TOKENS),
        metrics_token="metrics-token-4242",
    )
    assert sorted(settings_secrets(settings)) == sorted(
        [NIMBLE_KEY, ADMIN_TOKEN, "metrics-token-4242", *READ_TOKENS]
    )


def test_urls_are_logged_without_their_password() -> None:
    assert redact_url("postgresql://app:s3cret@db:5432/contactbook") == (
        "postgresql://app:***@db:5432/contactbook"
    )
    assert redact_url("postgresql://db/contactbook?password=s3cret&sslmode=require") == (
        "postgresql://db/contactbook?password=***&sslmode=require"
    )
    assert redact_url("redis://redis:6379/0") == "redis://redis:6379/0"


# --- HTTP ---------------------------------------------------------------------------------


def make_app() -> FastAPI:
    app = FastAPI()
    log = logging.getLogger("contactbook.endpoint")

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        log.info("looking up item %s", item_id)
        return {"id": item_id, "request_id": request_id_var.get()}

    @app.get("/broken")
    def broken() -> dict:
        raise RuntimeError("boom")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """An HTTP client to `make_app()` served by uvicorn on loopback."""
    server = start_server(make_app())
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            yield http
    finally:
        server.stop()


def test_the_clients_request_id_is_used_echoed_and_logged(log_lines, client) -> None:
    response = client.get("/items/7?text=private+words", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "abc-123"
    assert response.json() == {"id": 7, "request_id": "abc-123"}
    endpoint, access = [line for line in log_lines() if line["logger"].startswith("contactbook")]
    assert endpoint["message"] == "looking up item 7"
    assert endpoint["request_id"] == access["request_id"] == "abc-123"
    assert access["logger"] == "contactbook.access"
    assert (access["method"], access["path"], access["status"]) == ("GET", "/items/7", 200)
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 0
    server_side = [line for line in log_lines() if line["logger"].startswith("contactbook")]
    assert "private" not in json.dumps(server_side)  # the query string stays out


def test_a_request_id_is_made_when_missing_or_unsafe(log_lines, client) -> None:
    made = client.get("/items/1").headers["X-Request-ID"]
    replaced = client.get(
        "/items/2", headers={"X-Request-ID": 'evil" \\n {"level": "ERROR"}'}
    ).headers["X-Request-ID"]
    too_long = client.get("/items/3", headers={"X-Request-ID": "a" * 129})
    assert len(made) == 32 and made != replaced
    assert '"' not in replaced and " " not in replaced
    assert too_long.headers["X-Request-ID"] != "a" * 129
    access = [line for line in log_lines() if line["logger"] == "contactbook.access"]
    assert [line["request_id"] for line in access][:2] == [made, replaced]
    assert request_id_var.get() is None  # nothing leaks out of the request


def test_a_failing_request_is_logged_as_500(log_lines, client) -> None:
    response = client.get("/broken", headers={"X-Request-ID": "r-500"})
    assert response.status_code == 500
    access = [line for line in log_lines() if line["logger"] == "contactbook.access"]
    assert access[-1]["status"] == 500 and access[-1]["request_id"] == "r-500"


def test_a_long_path_is_cut_in_the_access_line(log_lines, client) -> None:
    path = "/nowhere/" + "x" * 60_000
    assert client.get(path).status_code == 404
    (access,) = [line for line in log_lines() if line["logger"] == "contactbook.access"]
    assert access["path"] == path[:1024] + f"…(+{len(path) - 1024} characters)"
    assert len(json.dumps(access)) < 4_000  # not 120 KB: the path twice


def test_health_probes_are_access_logged_at_debug(log_lines, client) -> None:
    client.get("/healthz")
    (access,) = [line for line in log_lines() if line["logger"] == "contactbook.access"]
    assert access["level"] == "DEBUG"


def test_uvicorn_worker_processes_get_the_same_format() -> None:
    # uvicorn applies `log_config` with dictConfig in each worker it spawns.
    result = run_python(
        """
        import logging, logging.config
        from contactbook.logging import uvicorn_log_config
        logging.config.dictConfig(uvicorn_log_config("INFO", process="api", secrets=["tok"]))
        logging.getLogger("uvicorn.error").info("Started server process tok")
        logging.getLogger("uvicorn.access").info("uvicorn's own access line")
        """
    )
    (line,) = result.stderr.splitlines()
    record = json.loads(line)
    assert (record["process"], record["message"]) == ("api", "Started server process ***")


# --- Celery -------------------------------------------------------------------------------


def test_lines_logged_inside_a_task_carry_its_id(log_lines) -> None:
    app = Celery("logging-test", set_as_current=False)
    install_celery_logging(app)
    assert app.conf.worker_hijack_root_logger is False

    @app.task(name="demo.work")
    def work() -> str:
        logging.getLogger("contactbook.tasks.demo").info("working")
        return "done"

    result = work.apply(task_id="task-42")
    assert result.get() == "done"
    logging.getLogger("contactbook.after").info("outside the task")
    working = next(line for line in log_lines() if line["message"] == "working")
    after = next(line for line in log_lines() if line["message"] == "outside the task")
    assert working["task_id"] == "task-42"
    assert after["task_id"] is None


# --------------------------------------------------------------------------- LOG_FORMAT


def test_log_format_is_text_on_a_terminal_json_elsewhere_unless_set():
    import os
    import pty

    from contactbook.logging import choose_log_format

    primary, secondary = pty.openpty()
    try:
        with os.fdopen(secondary, "w", closefd=False) as terminal:
            assert choose_log_format(None, terminal) == "text"
            assert choose_log_format("json", terminal) == "json"
    finally:
        os.close(primary)
        os.close(secondary)
    assert choose_log_format(None, io.StringIO()) == "json"
    assert choose_log_format("text", io.StringIO()) == "text"


def test_text_lines_are_for_people_and_mask_secrets_too():
    from contactbook.logging import TextLineFormatter

    record = logging.LogRecord(
        "contactbook.cli", logging.INFO, __file__, 1, "key is %s", ("sk-live-123456",), None
    )

    line = TextLineFormatter(secrets=["sk-live-123456"]).format(record)
    plain = TextLineFormatter(secrets=["sk-live-123456"], timestamps=False).format(record)

    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO    key is \*\*\*", line), line
    assert plain == "info: key is ***"


def test_log_format_is_a_setting(monkeypatch):
    from contactbook.config import Settings

    monkeypatch.setenv("LOG_FORMAT", "JSON")
    assert Settings(_env_file=None).log_format == "json"
    monkeypatch.setenv("LOG_FORMAT", "")
    assert Settings(_env_file=None).log_format is None
