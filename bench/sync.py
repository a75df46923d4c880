"""Time a full Nimble sync against just downloading every page, then a no-change sync.

The simulator (its own process) serves 100,000 people with 50 ms added to every
request; the database holds 50,000 CSV contacts, half of whom share an address with a
remote person (some in upper case, some as the person's second address). Each
measured step runs in a fresh process so its peak RSS is its own:

1. download: the same client settings, reading every page and discarding it;
2. full sync: ``sync_contacts(full=True)`` into the database;
3. incremental sync with no remote change (and, for comparison, a no-change full sync).

Prints wall times, the full-sync / download ratio (target <= 1.5x), the full sync's
peak RSS (target < 300 MB) and the no-change sync time (target < 2 s). Not a test.

    python bench/sync.py                                   # embedded PostgreSQL
    python bench/sync.py --people 20000 --latency 0.05     # a quicker look
    python bench/sync.py --database-url postgresql://…     # a server of your own
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
API_KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- data -------------------------------------------------------------------------------


def remote_records(people: int, seed: int) -> Path:
    from contactbook.nimble.simulator import generate_contacts

    path = DATA / f"nimble-{people}-{seed}.json"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        records = generate_contacts(people, seed, csv_path=None, company_fraction=0.0)
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def local_csv(records_path: Path, rows: int, seed: int) -> Path:
    """``rows`` CSV contacts: half share an address with a remote person."""
    path = DATA / f"csv-{rows}-for-{records_path.stem}.csv"
    if path.exists():
        return path
    rng = random.Random(seed)
    records = json.loads(records_path.read_text(encoding="utf-8"))
    with_email = [r for r in records if r["fields"].get("email")]
    matching = rng.sample(with_email, rows // 2)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["First Name", "Last Name", "Email", "Description"])
        for i, record in enumerate(matching):
            emails = [e["value"] for e in record["fields"]["email"]]
            email = rng.choice(emails)
            if i % 4 == 0:
                email = email.upper()
            first = record["fields"].get("first name", [{"value": ""}])[0]["value"]
            writer.writerow([first, "FromCsv", email, "Imported from the old address book"])
        for i in range(rows - len(matching)):
            writer.writerow([f"Local{i}", "Only", f"local{i}@elsewhere.example", "CSV only"])
    return path


# -- measured steps, each in its own process --------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident memory. Not ``getrusage``: Linux carries the
    parent's peak across ``exec`` into ``ru_maxrss``, so a step started by a parent that
    had just generated the data reported the parent's 470 MB as its own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step(name: str, url: str, database_url: str, per_page: int, concurrency: int) -> dict:
    from contactbook import db
    from contactbook.nimble.client import NimbleClient
    from contactbook.nimble.sync import sync_contacts

    client = NimbleClient(url, API_KEY, per_page=per_page, concurrency=concurrency)
    result: dict = {"step": name}
    with client:
        started = time.perf_counter()
        if name == "download":
            result["people"] = sum(len(page.contacts) for page in client.iter_pages())
        else:
            with db.connect(database_url, autocommit=True) as conn:
                summary = sync_contacts(conn, client, full=name == "full")
            result["summary"] = summary.as_dict()
        result["seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_step(name: str, args: argparse.Namespace, url: str, database_url: str) -> dict:
    command = [sys.executable, __file__, "--step", name, "--url", url]
    command += ["--database-url", database_url, "--per-page", str(args.per_page)]
    command += ["--concurrency", str(args.concurrency)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


# -- orchestration ----------------------------------------------------------------------


def start_simulator(records: Path, latency: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    contactbook = Path(sys.executable).with_name("contactbook")
    process = subprocess.Popen(
        [str(contactbook), "fake-nimble", "--port", str(port), "--data", str(records)],
        env={**os.environ, "NIMBLE_API_KEY": API_KEY},
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            # The latency of every request is a fault plan, set through the admin endpoint.
            httpx.post(f"{url}/_faults", json={"latency": latency}, timeout=1).raise_for_status()
            return process, url
        except httpx.TransportError:
            if process.poll() is not None:
                raise RuntimeError("the simulator exited") from None
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the simulator did not start")


def prepare_database(database_url: str, csv_path: Path) -> None:
    from contactbook import db
    from contactbook.contacts.importer import import_csv

    db.upgrade(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE contacts, import_runs, sync_runs RESTART IDENTITY")
    summary = import_csv(database_url, csv_path)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE contacts")
        conn.execute("CHECKPOINT")
    print(f"database: {summary.inserted:,} CSV contacts imported")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--csv-rows", type=int, default=50_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--per-page", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url")
    parser.add_argument("--step", choices=["download", "full", "incremental"], help="internal")
    parser.add_argument("--url", help="internal")
    args = parser.parse_args()

    if args.step:
        result = step(args.step, args.url, args.database_url, args.per_page, args.concurrency)
        print(json.dumps(result))
        return

    records = remote_records(args.people, args.seed)
    csv_path = local_csv(records, args.csv_rows, args.seed)
    server = None
    database_url = args.database_url
    if database_url is None:
        from contactbook.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(DATA / "postgres-sync")
        database_url = server.start()
    simulator, url = start_simulator(records, args.latency)
    try:
        prepare_database(database_url, csv_path)
        download = run_step("download", args, url, database_url)
        print(f"download only: {download['people']:,} people in {download['seconds']:.2f}s")
        full = run_step("full", args, url, database_url)
        print(f"full sync:     {full['seconds']:.2f}s  {full['summary']}")
        incremental = run_step("incremental", args, url, database_url)
        print(f"no-change sync: {incremental['seconds']:.2f}s  {incremental['summary']}")
        again = run_step("full", args, url, database_url)
        print(f"no-change full sync: {again['seconds']:.2f}s  {again['summary']}")
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
        if server is not None:
            server.stop()

    print()
    print(
        f"{args.people:,} remote people, {args.csv_rows:,} CSV contacts (half matching), "
        f"{args.latency * 1000:.0f} ms per request, per_page {args.per_page}, "
        f"concurrency {args.concurrency}"
    )
    ratio = full["seconds"] / download["seconds"]
    print(f"download every page:  {download['seconds']:.2f}s")
    print(f"full sync:            {full['seconds']:.2f}s  ratio {ratio:.2f}x (target <= 1.5x)")
    print(f"full sync peak RSS:   {full['peak_rss_mb']:.0f} MB (target < 300 MB)")
    print(f"no-change sync:       {incremental['seconds']:.2f}s (target < 2 s)")
    print(f"no-change full sync:  {again['seconds']:.2f}s (every page read, nothing rewritten)")


if __name__ == "__main__":
    main()
