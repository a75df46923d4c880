"""The real processes: `contactbook serve` end to end, and two APIs starting together."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from celery_support import CELERY_WARNINGS, wait_until
from conftest import CONTACTBOOK
from support import alive, free_port

from contactbook.embedded import EmbeddedPostgres, EmbeddedRedis
from contactbook.jobs import IMPORT_TASK, QUEUE

#: The session's worker and its fixtures, defined once for every module that uses them.
pytest_plugins = ["celery_fixtures"]
pytestmark = CELERY_WARNINGS

SAMPLE_ROWS = 200


def processes_in_sessions(sessions: set[int]) -> set[int]:
    """Every live process whose session id is one of `sessions` (children and theirs)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sessions and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def get_json(url: str) -> object | None:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def test_serve_runs_api_worker_and_beat_and_sigterm_stops_them_all(cli_env, tmp_path):
    home = tmp_path / "serve-home"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in cli_env.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["CONTACTBOOK_HOME"] = str(home)
    output = tmp_path / "serve.out"
    with output.open("wb") as out:
        serve = subprocess.Popen(
            [CONTACTBOOK, "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        ready = wait_until(
            lambda: (body := get_json(f"{base}/readyz")) and body["checks"]["worker"] and body,
            timeout=120,
            what="serve to be ready with a worker",
        )
        assert ready["checks"] == {"database": True, "broker": True, "worker": True}

        # The start-up import ran on the worker; v1 and v2 find the same person.
        v1 = wait_until(
            lambda: get_json(f"{base}/api/v1/search?text=Tom%20Brooks"),
            timeout=60,
            what="the start-up import",
        )
        task_id = httpx.post(f"{base}/api/v2/search", params={"text": "Tom Brooks"}).json()[
            "task_id"
        ]
        v2 = wait_until(
            lambda: (
                (body := get_json(f"{base}/api/v2/search/status/{task_id}"))
                and body["status"] == "SUCCESS"
                and body
            ),
            timeout=30,
            what="the v2 search",
        )
        assert v2["result"] == v1
        assert v1[0]["first_name"] == "Tom"

        text = output.read_text()
        children = {
            name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", text)
        }
        assert set(children) == {"api", "worker", "beat"}
        for name in children:
            assert (home / "logs" / f"{name}.log").exists()
        family = processes_in_sessions(set(children.values()))  # children and their pools
        assert set(children.values()) <= family
        postgres, redis = EmbeddedPostgres(home / "postgres"), EmbeddedRedis(home / "redis")
        assert postgres.is_running() and redis.is_running()

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()

    assert [pid for pid in family if alive(pid)] == []
    assert processes_in_sessions(set(children.values())) == set()
    assert not postgres.is_running() and not redis.is_running()
    assert "stopped" in output.read_text()


def test_start_up_import_runs_once_when_two_apis_start_together(
    celery_worker,
    worker_log,
    cli_env,
    redis_url,
    db_url,
    tmp_path,
):
    env = {**cli_env, "REDIS_URL": redis_url}
    logged_before = worker_log.read_text()
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"api-{port}.log" for port in ports]
    apis = []
    for port, log in zip(ports, logs, strict=True):
        with log.open("wb") as out:
            apis.append(
                subprocess.Popen(
                    [CONTACTBOOK, "api", "--port", str(port)],
                    env=env,
                    cwd=tmp_path,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        for port in ports:
            wait_until(
                lambda port=port: get_json(f"http://127.0.0.1:{port}/readyz"),
                timeout=90,
                what=f"the API on port {port}",
            )

        def settled() -> bool:
            with psycopg.connect(db_url) as conn:
                contacts = conn.execute("SELECT count(*) FROM contacts").fetchone()[0]
                unfinished = conn.execute(
                    "SELECT count(*) FROM import_runs WHERE finished_at IS NULL"
                ).fetchone()[0]
            queued = celery_worker.backend.client.llen(QUEUE)
            return contacts == SAMPLE_ROWS and unfinished == 0 and queued == 0

        wait_until(settled, timeout=60, what="the start-up import")
        time.sleep(1)  # a second task, if one was queued late, would show by now
        assert settled()
    finally:
        for api in apis:
            api.terminate()
        for api in apis:
            api.wait(timeout=30)

    with psycopg.connect(db_url) as conn:
        performed = conn.execute("SELECT count(*) FROM import_runs WHERE rows_read > 0").fetchone()[
            0
        ]
        contacts = conn.execute("SELECT count(*) FROM contacts").fetchone()[0]
    assert performed == 1
    assert contacts == SAMPLE_ROWS
    # The import ran on the worker, not in an API process.
    assert f"{IMPORT_TASK}[" in worker_log.read_text().removeprefix(logged_before)


@pytest.mark.parametrize(
    ("command", "example"),
    [("worker", "contactbook worker --concurrency 4"), ("beat", "SYNC_SCHEDULE=")],
)
def test_worker_and_beat_have_help_with_examples(cli, command, example):
    result = cli(command, "--help", env={"COLUMNS": "200"})

    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert example in result.stdout


def test_worker_concurrency_defaults_to_two(cli):
    help_text = cli("worker", "--help", env={"COLUMNS": "200"}).stdout

    assert re.search(r"--concurrency.*?\[default: (\d+)\]", help_text, re.S).group(1) == "2"


# --------------------------------------------------------------------------- issue 16


def serve_env(cli_env: dict[str, str], home: Path, **extra: str) -> dict[str, str]:
    """`serve` on its own embedded servers under `home` (no DATABASE_URL / REDIS_URL)."""
    env = {k: v for k, v in cli_env.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {**env, "CONTACTBOOK_HOME": str(home), **extra}


def run_contactbook(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CONTACTBOOK, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=90
    )


@pytest.mark.parametrize("command", ["serve", "api"])
def test_a_taken_port_is_an_error_naming_it_before_anything_starts(cli_env, tmp_path, command):
    import socket

    home = tmp_path / "home"
    env = (
        serve_env(cli_env, home)
        if command == "serve"
        else {**cli_env, "CONTACTBOOK_HOME": str(home)}
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_contactbook([command, "--port", str(port)], env, tmp_path)

    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"`contactbook {command} --port {port + 1}`" in result.stderr
    assert "running on" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (home / "postgres").exists()  # nothing was started


def test_a_second_serve_on_the_same_data_folder_refuses(cli_env, tmp_path):
    import os

    from contactbook.preflight import serve_lock

    home = tmp_path / "home"
    with serve_lock(home):  # what a running `serve` holds
        result = run_contactbook(["serve", "--port", str(free_port())], serve_env(cli_env, home),
                                 tmp_path)  # fmt: skip

    assert result.returncode == 1
    assert f"another `contactbook serve` (pid {os.getpid()}) is already running" in result.stderr
    assert str(home) in result.stderr and "CONTACTBOOK_HOME" in result.stderr
    assert not (home / "postgres").exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("DATABASE_URL", "postgresql://app:pw-never-shown@127.0.0.1:{port}/crm"),
     ("REDIS_URL", "redis://:pw-never-shown@127.0.0.1:{port}/0")],
)  # fmt: skip
def test_serve_with_an_unreachable_server_says_which_setting_to_check(
    cli_env, tmp_path, variable, value
):
    env = serve_env(cli_env, tmp_path / "home", **{variable: value.format(port=free_port())})

    result = run_contactbook(["serve", "--port", str(free_port())], env, tmp_path)

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"Check {variable}" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert "pw-never-shown" not in result.stdout + result.stderr


def test_make_run_takes_the_port():
    from conftest import REPO

    result = subprocess.run(
        ["make", "-n", "run", "PORT=8001"], cwd=REPO, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert "contactbook serve --port 8001" in result.stdout


def test_serve_on_a_terminal_prints_a_summary_then_readable_lines(cli_env, tmp_path):
    import os
    import pty
    import threading

    from conftest import REPO

    home = tmp_path / "home"
    port = free_port()
    env = serve_env(cli_env, home, CONTACTBOOK_CSV=str(REPO / "tests" / "data" / "empty.csv"))
    primary, secondary = pty.openpty()
    serve = subprocess.Popen(
        [CONTACTBOOK, "serve", "--port", str(port)],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary,
    )  # fmt: skip
    os.close(secondary)
    screen = bytearray()

    def read_screen() -> None:
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the other end closed: serve exited
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=read_screen, daemon=True)
    reader.start()

    def text() -> str:
        plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode("utf-8", "replace"))
        return plain.replace("\r\n", "\n")

    try:
        wait_until(lambda: "is running on" in text(), timeout=120, what="serve to start")
        # A second serve on the same data folder refuses, and names the first.
        second = run_contactbook(["serve", "--port", str(free_port())], env, tmp_path)
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        reader.join(timeout=10)
        os.close(primary)

    shown = text()
    summary = shown.index("Contact Book is starting")
    first_log_line = re.search(r"^\d\d:\d\d:\d\d (INFO|WARNING) ", shown, re.MULTILINE)
    assert first_log_line and summary < first_log_line.start(), shown
    head = shown[summary : first_log_line.start()]
    assert f"http://127.0.0.1:{port}" in head and f"{home}" in head
    assert f"{home / 'logs'}" in head and "Ctrl-C" in head
    assert re.search(r"^\d\d:\d\d:\d\d INFO +started api \(pid \d+\)", shown, re.MULTILINE)
    assert not [line for line in shown.splitlines() if line.lstrip().startswith("{")], shown
    assert second.returncode == 1
    assert f"(pid {serve.pid}) is already running" in second.stderr


# --------------------------------------------------------------------------- issue 12


def test_serve_restarts_a_killed_worker_and_v2_searches_work_again(cli_env, tmp_path):
    home = tmp_path / "home"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    output = tmp_path / "serve.out"
    with output.open("wb") as out:
        serve = subprocess.Popen(
            [CONTACTBOOK, "serve", "--port", str(port)],
            env=serve_env(cli_env, home), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def started(name: str) -> list[int]:
        found = re.findall(rf"started {name} \(pid (\d+)\)", output.read_text())
        return [int(pid) for pid in found]

    def v2_search() -> object:
        task_id = httpx.post(f"{base}/api/v2/search", params={"text": "Tom Brooks"}).json()[
            "task_id"
        ]
        return wait_until(
            lambda: (
                (body := get_json(f"{base}/api/v2/search/status/{task_id}"))
                and body["status"] == "SUCCESS"
                and body["result"]
            ),
            timeout=60,
            what="the v2 search",
        )

    try:
        wait_until(lambda: get_json(f"{base}/api/v1/search?text=Tom%20Brooks"), timeout=120,
                   what="serve and its start-up import")  # fmt: skip
        before = v2_search()
        (worker,) = started("worker")
        api, beat = started("api"), started("beat")

        os.kill(worker, signal.SIGKILL)

        wait_until(lambda: len(started("worker")) == 2, timeout=60, what="a new worker")
        assert v2_search() == before
        ready = wait_until(
            lambda: (body := get_json(f"{base}/readyz")) and body["checks"]["worker"] and body,
            timeout=60,
            what="/readyz to see the new worker",
        )
        assert ready["status"] == "ready"
        assert (started("api"), started("beat")) == (api, beat)  # nothing else restarted
        assert serve.poll() is None
        logged = output.read_text()
        assert f"worker (pid {worker}) was killed by SIGKILL; restarting it in 1 s" in logged
        assert "Traceback" not in logged

        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert not alive(started("worker")[-1])
