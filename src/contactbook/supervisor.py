"""The process supervisor of `contactbook serve`: runs the API, the worker and beat as
children, restarts one that dies, and stops them all when asked to.

A child that dies (a crash, an out-of-memory kill, `kill -9`) is started again after a
back-off that doubles from 1 s to 30 s, with one log line saying which child died, how,
and when it comes back. The back-off starts again at 1 s once the child has stayed up
for a minute. A child that keeps dying (5 deaths within a minute) is a fault a restart
will not cure (a broken configuration, a full disk): the supervisor then stops
everything and reports it, and `serve` exits 1.

The rest of the stack (the embedded PostgreSQL and Redis) belongs to `serve` itself and
stays up while a child restarts. Each child runs in a session of its own (so Ctrl-C on
the terminal reaches only `serve`, which relays it once as SIGTERM); when a child dies,
what it left behind in its session (uvicorn's worker processes, a prefork pool) is
killed before it starts again, or a stray API process would keep the port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: Seconds before the first restart of a dead child; doubled after each death.
FIRST_BACKOFF = 1.0
#: The longest wait before a restart.
MAX_BACKOFF = 30.0
#: This many deaths of one child within DEATH_WINDOW seconds stop the whole stack.
MAX_DEATHS = 5
DEATH_WINDOW = 60.0
#: A child up this long is healthy again: its next restart waits FIRST_BACKOFF.
STABLE_AFTER = 60.0
#: Seconds each child gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 20.0


@dataclass
class _Child:
    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    backoff: float = FIRST_BACKOFF
    restart_at: float | None = None
    deaths: deque[float] = field(default_factory=deque)


class Supervisor:
    """Runs `children` (name: command) until stopped; see the module docstring."""

    def __init__(
        self,
        children: dict[str, list[str]],
        logs: Path,
        *,
        first_backoff: float = FIRST_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        max_deaths: int = MAX_DEATHS,
        death_window: float = DEATH_WINDOW,
        stable_after: float = STABLE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._children = [
            _Child(name, command, logs / f"{name}.log", backoff=first_backoff)
            for name, command in children.items()
        ]
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._max_deaths = max_deaths
        self._death_window = death_window
        self._stable_after = stable_after
        self._clock = clock
        self._stopping = threading.Event()
        #: Why the supervisor gave up (None: it was asked to stop).
        self.failure: str | None = None

    def stop(self) -> None:
        """Ask `run` to stop every child and return (safe from a signal handler)."""
        self._stopping.set()

    def run(self, *, banner: str) -> int:
        """Start the children and keep them running until `stop()` (or SIGINT / SIGTERM)
        or until one keeps dying. Returns 0 when asked to stop, 1 when one kept dying."""

        def request_stop(signum, frame) -> None:
            self.stop()

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in self._children:
                self._start(child)
            log.info("Contact Book is running on %s (Ctrl-C to stop)", banner)
            while not self._stopping.is_set():
                self._check_children()
                self._stopping.wait(0.2)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            log.info("stopped")
        return 0 if self.failure is None else 1

    def pids(self) -> dict[str, int]:
        """The pid of each running child."""
        return {c.name: c.process.pid for c in self._children if c.process is not None}

    def _start(self, child: _Child) -> None:
        with child.log_path.open("ab") as log_file:
            child.process = subprocess.Popen(
                child.command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
                start_new_session=True,  # our Ctrl-C is relayed as SIGTERM, once
            )
        child.started_at = self._clock()
        child.restart_at = None
        log.info("started %s (pid %d), logging to %s", child.name, child.process.pid,
                 child.log_path)  # fmt: skip

    def _check_children(self) -> None:
        now = self._clock()
        for child in self._children:
            process = child.process
            if process is not None and process.poll() is not None:
                self._on_death(child, process, now)
                if self.failure is not None:
                    return
            if child.restart_at is not None and now >= child.restart_at:
                self._start(child)

    def _on_death(self, child: _Child, process: subprocess.Popen, now: float) -> None:
        child.process = None
        _kill_session(process.pid)  # what it left behind (uvicorn workers, a pool)
        how = _how_it_ended(process.returncode)
        if now - child.started_at >= self._stable_after:
            child.backoff = self._first_backoff
        child.deaths.append(now)
        while child.deaths and now - child.deaths[0] > self._death_window:
            child.deaths.popleft()
        if len(child.deaths) >= self._max_deaths:
            self.failure = (
                f"the {child.name} died {len(child.deaths)} times within "
                f"{self._death_window:.0f} s (last: {how}); Contact Book stopped. "
                f"See {child.log_path}"
            )
            log.error("%s", self.failure)
            self._stopping.set()
            return
        log.warning("%s (pid %d) %s; restarting it in %.0f s (see %s)", child.name,
                    process.pid, how, child.backoff, child.log_path)  # fmt: skip
        child.restart_at = now + child.backoff
        child.backoff = min(child.backoff * 2, self._max_backoff)

    def _stop_all(self) -> None:
        log.info("stopping")
        running = [(c, c.process) for c in self._children if c.process is not None]
        for _, process in running:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for child, process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", child.name)
                _kill_session(process.pid)
                process.wait()
            else:
                _kill_session(process.pid)


def _kill_session(leader: int) -> None:
    """SIGKILL what is left of a child's process group (the child is its leader)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing is left
        os.killpg(leader, signal.SIGKILL)


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


__all__ = ["Supervisor"]
