"""The supervisor of `contactbook serve`, on real child processes (small Python scripts).

`Supervisor.run` installs signal handlers, so it runs in the test's main thread while a
helper thread plays the part of the outside world (kill -9, Ctrl-C).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from celery_support import wait_until
from support import alive

from contactbook.supervisor import Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def run_with(
    supervisor: Supervisor, outside: Callable[[], None]
) -> tuple[int, list[BaseException]]:
    """Run the supervisor here while `outside` runs in a thread; `outside` must end by
    stopping it (or by making it give up). Returns run's exit code and outside's errors."""
    errors: list[BaseException] = []

    def play() -> None:
        try:
            outside()
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)
            supervisor.stop()

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    code = supervisor.run(banner="test")
    thread.join(timeout=60)
    return code, errors


def test_a_killed_child_is_restarted_with_one_log_line_and_the_others_keep_running(
    tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="contactbook.supervisor")
    supervisor = Supervisor({"worker": SLEEPER, "api": SLEEPER}, tmp_path, first_backoff=0.05)
    seen: dict[str, int] = {}

    def outside() -> None:
        first = wait_until(lambda: len(supervisor.pids()) == 2 and supervisor.pids(),
                           what="both children")  # fmt: skip
        seen.update(first_worker=first["worker"], api=first["api"])
        os.kill(first["worker"], signal.SIGKILL)
        again = wait_until(
            lambda: (pid := supervisor.pids().get("worker")) not in (None, first["worker"]) and pid,
            what="the worker to be started again",
        )
        seen["second_worker"] = again
        assert supervisor.pids()["api"] == first["api"]  # untouched
        supervisor.stop()

    code, errors = run_with(supervisor, outside)

    assert errors == [] and code == 0
    assert supervisor.failure is None
    deaths = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert deaths == [
        f"worker (pid {seen['first_worker']}) was killed by SIGKILL; restarting it in 0 s "
        f"(see {tmp_path / 'worker.log'})"
    ]
    assert any(f"started worker (pid {seen['second_worker']})" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    wait_until(lambda: not alive(seen["second_worker"]) and not alive(seen["api"]), what="stop")


def test_a_child_that_keeps_dying_stops_everything_with_a_clear_message(tmp_path, caplog):
    crashing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    supervisor = Supervisor(
        {"worker": crashing, "api": SLEEPER}, tmp_path, first_backoff=0.01, max_deaths=5
    )
    api: list[int] = []

    def outside() -> None:
        api.append(wait_until(lambda: supervisor.pids().get("api"), what="the api"))

    code, errors = run_with(supervisor, outside)

    assert errors == []
    assert code == 1
    assert supervisor.failure.startswith("the worker died 5 times within 60 s (last: exited "
                                         "with code 3); Contact Book stopped")  # fmt: skip
    assert str(tmp_path / "worker.log") in supervisor.failure
    assert supervisor.failure in [r.getMessage() for r in caplog.records if r.levelno == 40]
    wait_until(lambda: not alive(api[0]), what="the healthy child to be stopped too")


def test_the_backoff_doubles_to_its_cap(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="contactbook.supervisor")
    crashing = [sys.executable, "-c", "import sys; sys.exit(1)"]
    supervisor = Supervisor(
        {"beat": crashing}, tmp_path, first_backoff=0.01, max_backoff=0.04, max_deaths=6
    )

    code, errors = run_with(supervisor, lambda: None)

    assert (code, errors) == (1, [])
    waits = [r.args[3] for r in caplog.records if r.levelno == logging.WARNING]
    assert waits == [0.01, 0.02, 0.04, 0.04, 0.04]


def test_what_a_dead_child_left_in_its_session_is_killed_before_it_restarts(tmp_path):
    # A child that starts a grandchild (as uvicorn starts its workers), then dies.
    marker = tmp_path / "grandchild.pid"
    parent = [
        sys.executable,
        "-c",
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(600)",
    ]
    supervisor = Supervisor({"api": parent}, tmp_path, first_backoff=0.05)
    grandchildren: list[int] = []

    def outside() -> None:
        first = wait_until(lambda: marker.exists() and marker.read_text() and supervisor.pids(),
                           what="the grandchild")  # fmt: skip
        grandchildren.append(int(marker.read_text()))
        marker.unlink()
        os.kill(first["api"], signal.SIGKILL)
        wait_until(lambda: not alive(grandchildren[0]), what="the grandchild to be killed")
        wait_until(lambda: marker.exists() and marker.read_text(), what="the restart")
        grandchildren.append(int(marker.read_text()))
        supervisor.stop()

    code, errors = run_with(supervisor, outside)

    assert (code, errors) == (0, [])
    wait_until(lambda: not alive(grandchildren[1]), what="stop to kill the second grandchild")
