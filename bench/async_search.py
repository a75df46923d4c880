"""v2 (Celery) search round trip against v1 (synchronous) search, over real HTTP.

    python bench/async_search.py                    # 100,000 contacts, 8 clients
    python bench/async_search.py --rows 20000 --requests 200

Starts the real `contactbook serve` (API, its worker of 4 threads, beat, embedded
PostgreSQL and Redis) with CONTACTBOOK_HOME=bench/data/async-<rows>, whose
start-up import loads a CSV written by bench/gen_contacts.py (both are kept, git
ignores bench/data, and reused next time). Then, with `--clients` concurrent keep-alive
clients, for selective queries (full names of people whose surname has at most 20
holders, so each query has a handful of matches):

* v1: `GET /api/v1/search?text=…` until the body has arrived;
* v2: `POST /api/v2/search?text=…`, then `GET /api/v2/search/status/{id}` every 10 ms
  until it says SUCCESS (the moment a polling client would see the result).

Prints p50 / p99 / requests per second for each, and the difference of the p50s. Every
v2 result is compared with v1's answer for the same text. Not a test: the figures
depend on the machine and on what else runs on it. `--port` measures an API already
running instead (for example with a worker started with other `--pool`/`--concurrency`).

On the 2-core development machine, 100,000 contacts, 8 clients (other work running):
v1 p50 26-35 ms, v2 p50 56-64 ms, difference +29 ms; one client: +12 ms. A prefork
worker of 2 processes instead: difference +60-90 ms.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CONTACTBOOK = str(Path(sys.executable).with_name("contactbook"))
POLL_INTERVAL = 0.010


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def contacts_csv(rows: int) -> Path:
    """The generated CSV for `rows` contacts (written once by gen_contacts.py)."""
    path = DATA / f"contacts-{rows}.csv"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(HERE / "gen_contacts.py"), "--rows", str(rows),
             "--out", str(path)],
            check=True,
        )  # fmt: skip
    return path


def selective_queries(path: Path, count: int, seed: int) -> list[str]:
    """Surnames held by 1-20 people in the file (as in bench/search.py's selective class),
    with and without the first name of one holder; repeated to `count` if need be."""
    holders: dict[str, list[str]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            first, last = row["First Name"].strip(), row["Last Name"].strip()
            if first and last and "-" not in last and " " not in last:
                holders.setdefault(last, []).append(first)
    rare = sorted(last for last, firsts in holders.items() if len(firsts) <= 20)
    rng = random.Random(seed)
    queries = [*rare, *(f"{rng.choice(holders[last])} {last}" for last in rare)]
    rng.shuffle(queries)
    if not queries:
        raise SystemExit("no selective queries in the file: generate more rows")
    return (queries * (count // len(queries) + 1))[:count]


class Client:
    """One keep-alive HTTP connection to the API."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method: str, path: str) -> tuple[int, bytes]:
        try:
            self.conn.request(method, path)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # uvicorn closes a keep-alive connection idle for 5 s: open a new one.
            self.conn.close()
            self.conn.request(method, path)
            response = self.conn.getresponse()
        return response.status, response.read()

    def v1(self, text: str) -> list:
        status, body = self.request("GET", "/api/v1/search?" + urllib.parse.urlencode(
            {"text": text}))  # fmt: skip
        assert status == 200, body
        return json.loads(body)

    def v2(self, text: str) -> list:
        status, body = self.request("POST", "/api/v2/search?" + urllib.parse.urlencode(
            {"text": text}))  # fmt: skip
        assert status == 202, body
        task_id = json.loads(body)["task_id"]
        while True:
            status, body = self.request("GET", f"/api/v2/search/status/{task_id}")
            assert status == 200, body
            answer = json.loads(body)
            if answer["status"] == "SUCCESS":
                return answer["result"]
            if answer["status"] == "FAILURE":
                raise RuntimeError(answer["error"])
            time.sleep(POLL_INTERVAL)


def run_clients(port: int, mode: str, queries: list[str], clients: int) -> tuple[list, float]:
    """Send every query once, spread over `clients` threads; return latencies and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    work = iter(queries)

    def client_loop() -> None:
        client = Client(port)
        call = client.v1 if mode == "v1" else client.v2
        mine = []
        while True:
            with lock:
                text = next(work, None)
            if text is None:
                break
            started = time.perf_counter()
            call(text)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def wait_for(port: int, rows: int, timeout: float) -> None:
    """Until readyz says a worker answers and every contact is imported."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client = Client(port)
            status, body = client.request("GET", "/readyz")
            if status == 200 and json.loads(body)["checks"].get("worker"):
                status, body = client.request("GET", "/api/v1/stats")
                if status == 200 and json.loads(body)["contacts"] >= rows * 0.99:
                    return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.5)
    raise SystemExit(f"serve was not ready with {rows} contacts after {timeout:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=800, help="per mode")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--port",
        type=int,
        help="measure an API already running on this loopback port (with the same CSV "
        "imported and a worker) instead of starting `contactbook serve`",
    )
    args = parser.parse_args()

    path = contacts_csv(args.rows)
    queries = selective_queries(path, args.requests, args.seed)
    home = DATA / f"async-{args.rows}"
    serve = log = None
    port = args.port
    if port is None:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(CONTACTBOOK_HOME=str(home), CONTACTBOOK_CSV=str(path), LOG_LEVEL="WARNING")
        home.mkdir(parents=True, exist_ok=True)
        log = (home / "serve.out").open("wb")
        serve = subprocess.Popen(
            [CONTACTBOOK, "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        started = time.monotonic()
        wait_for(port, args.rows, timeout=900)
        print(f"serve ready with {args.rows} contacts in {time.monotonic() - started:.1f}s")

        warm = queries[: 8 * args.clients]
        run_clients(port, "v1", warm, args.clients)
        run_clients(port, "v2", warm, args.clients)
        client = Client(port)
        for text in queries[:20]:
            assert client.v2(text) == client.v1(text), f"v2 differs from v1 for {text!r}"

        figures = {}
        for mode in ("v1", "v2"):
            latencies, wall = run_clients(port, mode, queries, args.clients)
            figures[mode] = (
                statistics.median(latencies) * 1000,
                percentile(latencies, 0.99) * 1000,
                len(latencies) / wall,
            )
        hits = statistics.mean(len(client.v1(text)) for text in queries[:50])
    finally:
        if serve is not None:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)
            log.close()

    print(
        f"{args.requests} selective queries per mode (mean {hits:.1f} hits), "
        f"{args.clients} concurrent clients, v2 polled every {POLL_INTERVAL * 1000:.0f} ms"
    )
    print(f"{'':4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for mode, (p50, p99, rate) in figures.items():
        print(f"{mode:4} {p50:8.1f} {p99:8.1f} {rate:8.1f}")
    difference = figures["v2"][0] - figures["v1"][0]
    verdict = "within" if difference <= 30 else "NOT within"
    print(f"v2 p50 - v1 p50 = {difference:+.1f} ms ({verdict} the 30 ms target)")


if __name__ == "__main__":
    main()
