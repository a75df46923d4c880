"""Mixed traffic against the real API: the highest rate with p99 under 100 ms, then 2 minutes.

    python bench/load.py                        # 100,000 contacts, API workers 1 and 2
    python bench/load.py --workers 1,2,3        # one more configuration
    python bench/load.py --rate 120 --workers 2 # no rate search: 2 minutes at 120 ops/s
    python bench/load.py --contacts 5000 --duration 10 --probe-seconds 5   # a smoke run

The traffic, per operation: 80% v1 searches (`GET /api/v1/search?text=…`), 10% v2
searches (`GET` or `POST /api/v2/search?text=…`, then `GET /api/v2/search/status/{id}`
every `--poll-interval` until SUCCESS), 10% contact reads (`GET /api/v1/contacts/{id}`
of a random live contact). Search texts are drawn from the loaded contacts: full names,
first or last names, typeahead prefixes ("Ada", "Hen", "Ada Mo"), whole emails, their
local part or domain, a surname with two letters swapped, bio words, a name with a bio
word (the weights are QUERY_KINDS).

How it measures:

* **Data**: bench/search.py's database (`search_<N>` on the embedded server in
  bench/data/search-postgres, shared_buffers 1GB, jit off, or DATABASE_URL), loaded once
  through the real import from bench/gen_contacts.py's CSV; an embedded Redis in
  bench/data/load-redis. Then `contactbook worker --pool threads --concurrency 4` (as
  `serve` runs it) and `contactbook api --workers N`, as subprocesses, logging to
  bench/data/load-home/logs.
* **Open loop**: operations start on a fixed schedule (`rate` per second, evenly spaced)
  whether or not earlier ones have finished, over keep-alive HTTP/1.1 connections (a
  small asyncio client on uvloop, in this process; a new connection when none is idle).
  Latency counts from the scheduled start, so a queue that builds up shows in the
  figures instead of slowing the sender down (no coordinated omission).
* **Rate search**: probes of `--probe-seconds` (15) at rising rates (x1.5 from
  `--start-rate`), then halving the gap between the last pass and the first failure
  twice. A probe passes with p99 < `--p99-ms` (100) for every HTTP request kind (v1
  search, v2 submit, v2 poll, contact read) and no error. Then `--duration` (120 s) at the
  highest passing rate; should that fail, once more at 85% of it.
* **Errors**: any status but the expected one (200, or 202 for a v2 submit), a transport
  error or a request over `--timeout`, a v2 task that fails or is not done within
  `--v2-timeout`, and any operation still running `--timeout` after the schedule ended.
* **Memory**: RSS of the API's process tree (uvicorn and its worker processes,
  /proc/<pid>/status VmRSS) after start-up, every 10 s of the run, and at its end.
* **CPU**: cores used during the run by this load generator (getrusage), the API tree,
  the Celery worker, PostgreSQL, Redis, and the rest of the machine (/proc/stat).

The rate search and the run are repeated for each `--workers` count (`contactbook api
--workers N`). Not a test: figures depend on the machine and on what else runs on it;
serialise with other benchmarks (`flock /tmp/bench.lock python bench/load.py`).

On the 2-core development machine, 100,000 contacts, the defaults (20 minutes): one API
worker sustained 129 ops/s (144 HTTP requests/s) for 2 minutes, p50/p99 in ms: v1
search 15/84, v2 submit 6/41, v2 poll 4/28, contact read 3/31, v2 end-to-end 37/135; no
error; API RSS 120 MiB at start and end. Two workers: 159 ops/s (177 HTTP/s), v1 search
12/69, 0 errors, 325-327 MiB over 4 processes. The generator used 0.05 cores. The first
version of this benchmark found the API stopped answering at 190 ops/s and never came
back (a connection taken on one thread and used on another: fixed, see
contactbook/api/deps.py) and held 93 ops/s, limited by one-word bio searches that
walked the id index (fixed in contacts/search.py). The slowest texts now are email local
parts matching one contact ("bruce.ramirez"): fewer than 10 results start the typo
fallback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import json
import math
import os
import random
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import uvloop
from search import database_url, ensure_contacts, swap_letters  # bench/search.py

from contactbook.embedded import EmbeddedRedis

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
HOME = DATA / "load-home"
CONTACTBOOK = str(Path(sys.executable).with_name("contactbook"))

#: Share of operations, by kind.
MIX = {"v1": 80, "v2": 10, "read": 10}
#: The HTTP requests whose p99 decides whether a rate is sustained.
ENDPOINTS = ("v1 search", "v2 submit", "v2 poll", "contact read")
#: Share of search texts, by kind (see `search_text`).
QUERY_KINDS = {
    "full name": 20,
    "first name": 10,
    "last name": 15,
    "prefix": 15,
    "name + prefix": 5,
    "email": 5,
    "email local part": 5,
    "email domain": 5,
    "typo": 5,
    "bio word": 10,
    "name + bio word": 5,
}
MEMORY_SAMPLE_SECONDS = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

SAMPLE_PEOPLE = """
SELECT first_name, last_name, email, description FROM contacts
WHERE deleted_at IS NULL ORDER BY random() LIMIT %(count)s
"""

LIVE_IDS = "SELECT id FROM contacts WHERE deleted_at IS NULL ORDER BY id"


# --------------------------------------------------------------------------- search texts


def search_text(kind: str, person: tuple, rng: random.Random) -> str | None:
    """A text of `kind` someone looking for `person` would type; None if it has no such."""
    first, last, email, description = (value or "" for value in person)
    bio_words = re.findall(r"[^\W\d_]{5,}", description)
    local, _, domain = email.lower().partition("@")
    if kind == "full name":
        return f"{first} {last}" if first and last else None
    if kind == "first name":
        return first or None
    if kind == "last name":
        return last or None
    if kind == "prefix":
        name = rng.choice([first, last])
        size = rng.choice((3, 4))
        return name[:size] if len(name) > size else None
    if kind == "name + prefix":
        return f"{first} {last[: rng.choice((2, 3))]}" if first and len(last) > 3 else None
    if kind == "email":
        return email or None
    if kind == "email local part":
        return local or None
    if kind == "email domain":
        return domain.split(".")[0] or None
    if kind == "typo":
        typo = swap_letters(last) if len(last) >= 5 else ""
        return typo if typo and typo != last else None
    if kind == "bio word":
        return rng.choice(bio_words) if bio_words else None
    if kind == "name + bio word":
        return f"{first} {rng.choice(bio_words)}" if first and bio_words else None
    raise ValueError(kind)


def search_texts(url: str, count: int, seed: int) -> list[tuple[str, str]]:
    """`count` (kind, text) pairs, kinds in QUERY_KINDS' proportions, from random contacts."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT setseed(%s)", (1 / (seed + 1),))
        people = conn.execute(SAMPLE_PEOPLE, {"count": count * 2}).fetchall()
    rng = random.Random(seed)
    kinds = rng.choices(list(QUERY_KINDS), weights=list(QUERY_KINDS.values()), k=count)
    texts = []
    for kind in kinds:
        for _ in range(20):
            text = search_text(kind, rng.choice(people), rng)
            if text:
                texts.append((kind, text.strip()[:200]))
                break
    return texts


def live_ids(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [row[0] for row in conn.execute(LIVE_IDS)]


# --------------------------------------------------------------------------- processes


def proc_table() -> dict[int, tuple[int, float]]:
    """Every process: pid -> (parent pid, CPU seconds of it and its reaped children)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        table[int(entry.name)] = (int(fields[1]), ticks / CLOCK_TICKS)
    return table


def process_tree(root: int, table: dict[int, tuple[int, float]]) -> list[int]:
    if root not in table:
        return []
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, ()))
    return tree


def tree_rss(root: int) -> tuple[int, int]:
    """(resident bytes, processes) of `root` and its descendants."""
    total, pids = 0, process_tree(root, proc_table())
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total, len(pids)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds used by named process trees, this process and the machine, between
    `start()` and `stop()`, as cores (seconds per second of wall time)."""

    def __init__(self, roots: Callable[[], dict[str, int | None]]) -> None:
        self.roots = roots

    def _read(self) -> dict[str, float]:
        table = proc_table()
        figures = {
            name: sum(table[pid][1] for pid in process_tree(root, table))
            for name, root in self.roots().items()
            if root is not None
        }
        figures["load generator"] = own_cpu_seconds()
        figures["machine"] = machine_busy_seconds()
        return figures

    def start(self) -> None:
        self.started, self.before = time.perf_counter(), self._read()

    def stop(self) -> dict[str, float]:
        after, wall = self._read(), time.perf_counter() - self.started
        cores = {name: (after[name] - self.before.get(name, 0.0)) / wall for name in after}
        ours = sum(value for name, value in cores.items() if name != "machine")
        cores["other"] = max(0.0, cores["machine"] - ours)
        return cores


def start_process(
    stack: contextlib.ExitStack, name: str, command: list[str], env: dict[str, str]
) -> subprocess.Popen:
    """Start `command` in its own session, logging to HOME/logs/<name>.log; stopped with
    the stack (SIGTERM, then SIGKILL to its whole process group)."""
    logs = HOME / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    stack.callback(stop_process, process)
    return process


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print(f"pid {process.pid} did not stop in 30 s: killing it", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # uvicorn workers left behind, if any
    process.wait()


def log_tail(name: str) -> str:
    with contextlib.suppress(OSError):
        return (HOME / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
    return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_pid(url: str) -> int | None:
    """The postmaster's pid when the server runs on this machine (for its CPU figures)."""
    with contextlib.suppress(psycopg.Error, OSError, ValueError, TypeError):
        with psycopg.connect(url, autocommit=True) as conn:
            directory = conn.execute("SHOW data_directory").fetchone()[0]
        return int((Path(directory) / "postmaster.pid").read_text().split("\n", 1)[0])
    return None


# --------------------------------------------------------------------------- HTTP client


class Connection:
    """One keep-alive HTTP/1.1 connection (requests without a body, as this load needs)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reusable = True
        self.last_used = 0.0

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, target: str) -> tuple[int, bytes]:
        length = "Content-Length: 0\r\n" if method == "POST" else ""
        self.writer.write(f"{method} {target} HTTP/1.1\r\nHost: api\r\n{length}\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        size, chunked = None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                size = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection" and b"close" in value.lower():
                self.reusable = False
        if chunked:
            body = await self._read_chunks()
        elif size is not None:
            body = await self.reader.readexactly(size)
        else:
            body, self.reusable = await self.reader.read(), False
        return status, body

    async def _read_chunks(self) -> bytes:
        parts = []
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        while await self.reader.readuntil(b"\r\n") != b"\r\n":
            pass  # trailers
        return b"".join(parts)

    def close(self) -> None:
        self.writer.close()


class Client:
    """Keep-alive connections to the API, at most `size` at once, reused newest first."""

    # uvicorn closes a connection idle for 5 s (timeout_keep_alive): never reuse one that
    # old, or the request could cross the server's close.
    MAX_IDLE = 3.0

    def __init__(self, port: int, size: int, timeout: float) -> None:
        self.port, self.timeout = port, timeout
        self.slots = asyncio.Semaphore(size)
        self.idle: list[Connection] = []
        self.opened = 0
        self.busy = self.peak = 0  # requests in flight, and their most since reset

    async def request(self, method: str, target: str) -> tuple[int, bytes]:
        async with self.slots:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
            connection = None
            while self.idle and connection is None:
                candidate = self.idle.pop()
                if time.perf_counter() - candidate.last_used < self.MAX_IDLE:
                    connection = candidate
                else:
                    candidate.close()
            try:
                async with asyncio.timeout(self.timeout):
                    if connection is None:
                        connection = await Connection.open(self.port)
                        self.opened += 1
                    answer = await connection.request(method, target)
            except BaseException:
                self.busy -= 1
                if connection is not None:
                    connection.close()
                raise
            self.busy -= 1
            if connection.reusable:
                connection.last_used = time.perf_counter()
                self.idle.append(connection)
            else:
                connection.close()
            return answer

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


# --------------------------------------------------------------------------- one run


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))]


@dataclass
class RunResult:
    rate: float
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)  # seconds
    by_query_kind: dict[str, list[float]] = field(default_factory=dict)  # v1 only
    slowest: dict[str, float] = field(default_factory=dict)  # v1 text -> its worst, seconds
    errors: Counter = field(default_factory=Counter)
    lags: list[float] = field(default_factory=list)  # scheduled start -> actually started
    operations: int = 0
    requests: int = 0
    memory: list[tuple[float, int, int]] = field(default_factory=list)  # (s, bytes, procs)
    cpu: dict[str, float] = field(default_factory=dict)
    connections: int = 0  # opened during the run
    peak_in_flight: int = 0  # most requests waiting for an answer at once
    passed: bool = False

    def p(self, name: str, share: float) -> float | None:
        values = self.latencies.get(name)
        return percentile(values, share) * 1000 if values else None

    def problems(self, p99_ms: float) -> list[str]:
        found = []
        for name in ENDPOINTS:
            p99 = self.p(name, 0.99)
            if p99 is None:
                found.append(f"no {name}")
            elif p99 >= p99_ms:
                found.append(f"{name} p99 {p99:.0f} ms")
        if self.errors:
            found.append(f"{sum(self.errors.values())} errors")
        return found

    def memory_trend(self) -> float:
        """Least-squares slope of the API's RSS over the run, bytes per minute."""
        if len(self.memory) < 3:
            return 0.0
        xs = [t for t, _, _ in self.memory]
        ys = [rss for _, rss, _ in self.memory]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        spread = sum((x - mean_x) ** 2 for x in xs)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
        return slope * 60


class LoadRun:
    """Operations at `rate` per second for `seconds`, on the fixed schedule they were due."""

    def __init__(
        self,
        client: Client,
        texts: list[tuple[str, str]],
        ids: list[int],
        args: argparse.Namespace,
        api_pid: int,
    ) -> None:
        self.client, self.texts, self.ids, self.args = client, texts, ids, args
        self.api_pid = api_pid
        self.result = RunResult(0, 0)

    def record(self, name: str, started: float) -> float:
        elapsed = time.perf_counter() - started
        self.result.latencies.setdefault(name, []).append(elapsed)
        self.result.requests += 1
        return elapsed

    def fail(self, what: str) -> None:
        self.result.errors[what] += 1

    async def run(self, rate: float, seconds: float, cpu: CpuMeter | None = None) -> RunResult:
        self.result = result = RunResult(rate, seconds)
        rng = random.Random(f"{self.args.seed}-{rate}")
        count = max(1, round(rate * seconds))
        kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=count)
        sampler = asyncio.create_task(self.sample_memory())
        opened_before, self.client.peak = self.client.opened, 0
        running: set[asyncio.Task] = set()
        if cpu:
            cpu.start()
        start = time.perf_counter() + 0.05
        for number, kind in enumerate(kinds):
            due = start + number / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if kind == "v1":
                query_kind, text = rng.choice(self.texts)
                operation = self.v1(due, text, query_kind)
            elif kind == "v2":
                operation = self.v2(due, rng.choice(self.texts)[1], number % 2 == 0)
            else:
                operation = self.read(due, rng.choice(self.ids))
            task = asyncio.create_task(operation)
            running.add(task)
            task.add_done_callback(running.discard)
        result.operations = count
        if running:
            _, unfinished = await asyncio.wait(running, timeout=self.args.timeout)
            for task in unfinished:
                task.cancel()
                self.fail("unfinished after the schedule ended")
        if cpu:
            result.cpu = cpu.stop()
        sampler.cancel()
        result.memory.append((time.perf_counter() - start, *tree_rss(self.api_pid)))
        result.connections = self.client.opened - opened_before
        result.peak_in_flight = self.client.peak
        return result

    async def sample_memory(self) -> None:
        started = time.perf_counter()
        while True:
            rss, processes = tree_rss(self.api_pid)
            self.result.memory.append((time.perf_counter() - started, rss, processes))
            await asyncio.sleep(MEMORY_SAMPLE_SECONDS)

    async def call(self, name: str, method: str, target: str, expected: int) -> bytes | None:
        """One request; its body when the status is `expected`, else None (an error)."""
        try:
            status, body = await self.client.request(method, target)
        except Exception as error:  # every failure is a figure, never a crash
            self.fail(f"{name}: {type(error).__name__}")
            return None
        if status != expected:
            self.fail(f"{name}: HTTP {status}")
            return None
        return body

    async def v1(self, due: float, text: str, query_kind: str) -> None:
        self.result.lags.append(time.perf_counter() - due)
        target = "/api/v1/search?text=" + urllib.parse.quote(text)
        body = await self.call("v1 search", "GET", target, 200)
        if body is not None:
            elapsed = self.record("v1 search", due)
            self.result.by_query_kind.setdefault(query_kind, []).append(elapsed)
            if elapsed > self.result.slowest.get(text, 0.0):
                self.result.slowest[text] = elapsed
            if not body.startswith(b"["):
                self.fail("v1 search: not a JSON list")

    async def read(self, due: float, contact_id: int) -> None:
        self.result.lags.append(time.perf_counter() - due)
        body = await self.call("contact read", "GET", f"/api/v1/contacts/{contact_id}", 200)
        if body is not None:
            self.record("contact read", due)
            if not body.startswith(b"{"):
                self.fail("contact read: not a JSON object")

    async def v2(self, due: float, text: str, post: bool) -> None:
        self.result.lags.append(time.perf_counter() - due)
        target = "/api/v2/search?text=" + urllib.parse.quote(text)
        body = await self.call("v2 submit", "POST" if post else "GET", target, 202)
        if body is None:
            return
        self.record("v2 submit", due)
        task_id = json.loads(body)["task_id"]
        deadline = due + self.args.v2_timeout
        while True:
            await asyncio.sleep(self.args.poll_interval)
            sent = time.perf_counter()
            body = await self.call("v2 poll", "GET", f"/api/v2/search/status/{task_id}", 200)
            if body is None:
                return
            self.record("v2 poll", sent)
            answer = json.loads(body)
            if answer["status"] == "SUCCESS":
                if not isinstance(answer["result"], list):
                    self.fail("v2: SUCCESS without a result list")
                self.result.latencies.setdefault("v2 end-to-end", []).append(
                    time.perf_counter() - due
                )
                return
            if answer["status"] == "FAILURE":
                self.fail(f"v2: task failed: {answer['error']}"[:120])
                return
            if time.perf_counter() > deadline:
                self.fail(f"v2: not done after {self.args.v2_timeout:g} s")
                return


# --------------------------------------------------------------------------- rate search


def describe(result: RunResult) -> str:
    parts = []
    for name in (*ENDPOINTS, "v2 end-to-end"):
        p50, p99 = result.p(name, 0.5), result.p(name, 0.99)
        if p50 is not None:
            parts.append(f"{name} {p50:.0f}/{p99:.0f}")
    errors = sum(result.errors.values())
    return f"{'  '.join(parts)} ms (p50/p99), {errors} errors"


async def find_rate(
    load: LoadRun, args: argparse.Namespace, start_rate: float
) -> tuple[float | None, list[tuple[float, RunResult]]]:
    """The highest rate whose probe passes, and every probe made."""
    probes: list[tuple[float, RunResult]] = []

    async def probe(rate: float) -> bool:
        rate = round(rate, 1)
        result = await load.run(rate, args.probe_seconds)
        probes.append((rate, result))
        problems = result.problems(args.p99_ms)
        verdict = "pass" if not problems else "FAIL: " + ", ".join(problems)
        print(f"  probe {rate:6.1f} ops/s: {describe(result)} -> {verdict}", file=sys.stderr)
        await asyncio.sleep(args.pause)  # let queues drain and the machine settle
        return not problems

    passed = failed = None
    rate = start_rate
    if await probe(rate):
        passed = rate
        while failed is None and rate * 1.5 <= args.max_rate:
            rate *= 1.5
            if await probe(rate):
                passed = rate
            else:
                failed = rate
    else:
        failed = rate
        while passed is None and rate / 1.5 >= 1:
            rate /= 1.5
            if await probe(rate):
                passed = rate
            else:
                failed = rate
    for _ in range(args.refine):
        if passed is None or failed is None or failed / passed < 1.1:
            break
        middle = (passed + failed) / 2
        if await probe(middle):
            passed = middle
        else:
            failed = middle
    return (round(passed, 1) if passed else None), probes


# --------------------------------------------------------------------------- per worker count


@dataclass
class WorkersOutcome:
    workers: int
    idle_rss: tuple[int, int]
    probes: list[tuple[float, RunResult]]
    runs: list[RunResult]

    @property
    def sustained(self) -> RunResult | None:
        return next((run for run in self.runs if run.passed), None)


async def measure(
    workers: int,
    port: int,
    api_pid: int,
    texts: list[tuple[str, str]],
    ids: list[int],
    args: argparse.Namespace,
    cpu: CpuMeter,
    start_rate: float,
) -> WorkersOutcome:
    client = Client(port, args.max_connections, args.timeout)
    load = LoadRun(client, texts, ids, args, api_pid)
    try:
        idle_rss = tree_rss(api_pid)
        warm = await load.run(min(20.0, start_rate), args.warm_up)
        if warm.errors:
            print(f"  warm-up errors: {dict(warm.errors)}", file=sys.stderr)
        await asyncio.sleep(args.pause)
        probes: list[tuple[float, RunResult]] = []
        rate = args.rate
        if rate is None:
            rate, probes = await find_rate(load, args, start_rate)
            if rate is None:
                print("  no rate passed: running at the lowest probed", file=sys.stderr)
                rate = min(r for r, _ in probes)
        runs = []
        for attempt in range(args.retries + 1):
            print(f"  run: {rate:.1f} ops/s for {args.duration:g} s", file=sys.stderr)
            run = await load.run(rate, args.duration, cpu)
            run.passed = not run.problems(args.p99_ms)
            runs.append(run)
            problems = run.problems(args.p99_ms)
            print(f"  run {rate:6.1f} ops/s: {describe(run)} -> "
                  f"{'pass' if not problems else 'FAIL: ' + ', '.join(problems)}",
                  file=sys.stderr)  # fmt: skip
            if run.passed or attempt == args.retries:
                break
            await asyncio.sleep(args.pause)
            rate = round(rate * 0.85, 1)
        return WorkersOutcome(workers, idle_rss, probes, runs)
    finally:
        client.close()


def start_api(
    stack: contextlib.ExitStack, env: dict[str, str], workers: int
) -> tuple[subprocess.Popen, int]:
    port = free_port()
    name = f"api-workers-{workers}"
    command = [CONTACTBOOK, "api", "--port", str(port), "--workers", str(workers)]
    process = start_process(stack, name, command, env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the API exited ({process.returncode}):\n{log_tail(name)}")
        with contextlib.suppress(OSError):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            answered = connection.getresponse().status == 200
            # Every uvicorn worker must be up, not only the first to answer.
            if answered and tree_rss(process.pid)[1] >= (workers + 1 if workers > 1 else 1):
                return process, port
        time.sleep(0.3)
    raise SystemExit(f"the API did not answer /healthz within 120 s:\n{log_tail(name)}")


def wait_for_worker(port: int, timeout: float) -> None:
    """Until a v2 search comes back SUCCESS (the worker is up and consuming)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("POST", "/api/v2/search?text=ada")
        task_id = json.loads(connection.getresponse().read())["task_id"]
        for _ in range(50):
            connection.request("GET", f"/api/v2/search/status/{task_id}")
            if json.loads(connection.getresponse().read())["status"] == "SUCCESS":
                return
            time.sleep(0.1)
    raise SystemExit(f"no v2 search finished within {timeout:.0f} s:\n{log_tail('worker')}")


# --------------------------------------------------------------------------- report


def mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


def report(args: argparse.Namespace, outcomes: list[WorkersOutcome], texts: list) -> None:
    print()
    print("command: " + shlex.join([sys.executable, *sys.argv]))
    print(
        f"{args.contacts:,} contacts, {os.cpu_count()} CPUs; mix per operation: 80% v1 search, "
        f"10% v2 search (submit, then a poll every {args.poll_interval * 1000:.0f} ms until "
        f"done), 10% contact read; criterion: p99 < {args.p99_ms:.0f} ms for every HTTP "
        f"request kind and no error"
    )
    samples = {}
    for kind, text in texts:
        samples.setdefault(kind, []).append(text)
    shown = (f"{kind} {', '.join(repr(t) for t in found[:2])}" for kind, found in samples.items())
    print("search texts: " + "; ".join(shown))
    for outcome in outcomes:
        print()
        print(f"== contactbook api --workers {outcome.workers}")
        if outcome.probes:
            passed = [f"{rate:g}" + ("" if not r.problems(args.p99_ms) else "x")
                      for rate, r in outcome.probes]  # fmt: skip
            print(f"probes of {args.probe_seconds:g} s (x: failed): {' '.join(passed)} ops/s")
        for run in outcome.runs:
            print_run(args, outcome, run)
    print()
    print("summary (the last run per worker count; latencies in ms, p50/p99)")
    header = (
        f"{'workers':>7} {'ops/s':>6} {'HTTP/s':>6} {'met':>4} "
        + " ".join(f"{name:>13}" for name in (*ENDPOINTS, "v2 end-to-end"))
        + f" {'errors':>6} {'API RSS start/end/max':>22} {'gen CPU':>7}"
    )
    print(header)
    print("-" * len(header))
    for outcome in outcomes:
        run = outcome.sustained or outcome.runs[-1]
        cells = []
        for name in (*ENDPOINTS, "v2 end-to-end"):
            p50, p99 = run.p(name, 0.5), run.p(name, 0.99)
            cells.append(f"{p50:.0f}/{p99:.0f}" if p50 is not None else "-")
        rss = [value for _, value, _ in run.memory]
        print(
            f"{outcome.workers:>7} {run.rate:>6.1f} {run.requests / run.seconds:>6.0f} "
            f"{'yes' if run.passed else 'NO':>4} "
            + " ".join(f"{cell:>13}" for cell in cells)
            + f" {sum(run.errors.values()):>6} "
            f"{f'{rss[0] / 2**20:.0f}/{rss[-1] / 2**20:.0f}/{max(rss) / 2**20:.0f} MiB':>22} "
            f"{run.cpu.get('load generator', 0):>6.2f}c"
        )


def print_run(args: argparse.Namespace, outcome: WorkersOutcome, run: RunResult) -> None:
    verdict = "met" if run.passed else "NOT met: " + ", ".join(run.problems(args.p99_ms))
    print(
        f"run: {run.rate:g} ops/s for {run.seconds:g} s = {run.requests / run.seconds:.0f} HTTP "
        f"requests/s, at most {run.peak_in_flight} in flight; criterion {verdict}"
    )
    print(f"  {'':<16} {'n':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name in (*ENDPOINTS, "v2 end-to-end"):
        values = run.latencies.get(name, [])
        if values:
            print(
                f"  {name:<16} {len(values):>7} {run.p(name, 0.5):>8.1f} "
                f"{run.p(name, 0.99):>8.1f} {max(values) * 1000:>8.1f}"
            )
    polls = len(run.latencies.get("v2 poll", []))
    done = len(run.latencies.get("v2 end-to-end", []))
    if done:
        print(f"  v2: {polls / done:.1f} polls per search")
    print("  v1 search by text kind (p50/p99 ms): " + ", ".join(
        f"{kind} {percentile(values, 0.5) * 1000:.0f}/{percentile(values, 0.99) * 1000:.0f}"
        for kind, values in sorted(run.by_query_kind.items())
    ))  # fmt: skip
    slowest = sorted(run.slowest.items(), key=lambda item: -item[1])[:6]
    print("  slowest v1 texts: " + ", ".join(f"{t!r} {s * 1000:.0f} ms" for t, s in slowest))
    lag99 = percentile(run.lags, 0.99) * 1000 if run.lags else 0
    print(f"  sender lag behind schedule: p99 {lag99:.1f} ms")
    errors = sum(run.errors.values())
    print(f"  errors: {errors}" + (f" {dict(run.errors.most_common())}" if errors else ""))
    rss = [value for _, value, _ in run.memory]
    processes = run.memory[-1][2]
    print(
        f"  API memory (RSS of {processes} process{'es' if processes > 1 else ''}): "
        f"after start-up {mib(outcome.idle_rss[0])}, run start {mib(rss[0])}, end "
        f"{mib(rss[-1])}, max {mib(max(rss))}, trend {run.memory_trend() / 2**20:+.1f} MiB/min"
    )
    order = ("load generator", "API", "worker", "PostgreSQL", "Redis", "other", "machine")
    print("  CPU, cores: " + ", ".join(
        f"{name} {run.cpu[name]:.2f}" for name in order if name in run.cpu
    ))  # fmt: skip


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=100_000, help="contacts to load")
    parser.add_argument("--duration", type=float, default=120, help="seconds of the run")
    parser.add_argument("--rate", type=float, help="operations/s: skip the rate search")
    parser.add_argument(
        "--workers", default="1,2", help="API worker counts to measure, comma-separated"
    )
    parser.add_argument("--probe-seconds", type=float, default=15)
    parser.add_argument("--start-rate", type=float, default=20, help="first probe, ops/s")
    parser.add_argument("--max-rate", type=float, default=2000)
    parser.add_argument("--refine", type=int, default=2, help="probes between pass and fail")
    parser.add_argument("--retries", type=int, default=1, help="runs at 85%% after a failure")
    parser.add_argument("--p99-ms", type=float, default=100)
    parser.add_argument("--poll-interval", type=float, default=0.025, help="v2 poll, seconds")
    parser.add_argument("--v2-timeout", type=float, default=10, help="seconds to a v2 result")
    parser.add_argument("--timeout", type=float, default=10, help="seconds per request")
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--worker-concurrency", type=int, default=4, help="Celery threads")
    parser.add_argument("--warm-up", type=float, default=5, help="seconds, not measured")
    parser.add_argument("--pause", type=float, default=2, help="seconds between runs")
    parser.add_argument("--texts", type=int, default=5000, help="distinct search texts")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    args.workers = [int(value) for value in args.workers.split(",") if value.strip()]
    return args


def main() -> None:
    args = parse_args()
    # SIGTERM stops like Ctrl-C: through the `finally`s that stop every child.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.ExitStack() as stack:
        url, replaceable = database_url(args.contacts)
        ensure_contacts(url, args.contacts, replaceable=replaceable)
        texts = search_texts(url, args.texts, args.seed)
        ids = live_ids(url)

        redis = EmbeddedRedis(DATA / "load-redis")
        if not redis.is_running():
            stack.callback(redis.stop)
        redis_url = redis.start()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "CONTACTBOOK_HOME": str(HOME),
            "LOG_LEVEL": "WARNING",
        }
        command = [CONTACTBOOK, "worker", "--pool", "threads",
                   "--concurrency", str(args.worker_concurrency)]  # fmt: skip
        worker = start_process(stack, "worker", command, env)
        pg_pid, api = postgres_pid(url), {}
        cpu = CpuMeter(
            lambda: {
                "API": api.get("pid"),
                "worker": worker.pid,
                "PostgreSQL": pg_pid,
                "Redis": redis._pid(),
            }
        )
        gc.freeze()  # the texts and ids live to the end: keep them out of collections
        outcomes: list[WorkersOutcome] = []
        start_rate = args.start_rate
        for workers in args.workers:
            print(f"contactbook api --workers {workers}", file=sys.stderr)
            with contextlib.ExitStack() as api_stack:
                process, port = start_api(api_stack, env, workers)
                api["pid"] = process.pid
                wait_for_worker(port, timeout=60)
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    outcome = runner.run(
                        measure(workers, port, process.pid, texts, ids, args, cpu, start_rate)
                    )
                outcomes.append(outcome)
                if outcome.sustained:  # the next configuration is probably in that range
                    start_rate = max(args.start_rate, round(outcome.sustained.rate * 0.6))
        report(args, outcomes, texts)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted: every process this script started is stopped", file=sys.stderr)
        sys.exit(130)
