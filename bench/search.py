"""Search speed over HTTP, driven by wrk, against pgbench on a plain table in the same run.

    python bench/search.py                          # 1,000,000 contacts, embedded PostgreSQL
    python bench/search.py --rows 100000            # a quicker run
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench python bench/search.py

Needs `wrk` and `pgbench` on PATH (Debian: `apt install wrk postgresql-client`).

1. Loads N contacts written by `bench/gen_contacts.py --nimble-fields` through the real
   `contactbook import` (once: the CSV and the embedded server's database `search_<N>`
   stay in bench/data/, which git ignores; a DATABASE_URL database must be empty or hold
   exactly those rows).
2. Builds the reference beside them, in the same database: `bench_reference`, a plain
   table of the same people with one weighted tsvector (names `simple` A, email `simple`
   B, bio `english` C) and its GIN index.
3. Starts `contactbook api --workers W` and, for each query class, runs wrk (C, so the
   client does not take the cores the server needs) with a Lua script that rotates
   through the class's queries (drawn by the thousand from the loaded data), at 4
   connections (and 32 for the selective class), after a warm-up. No result cache is in
   the measured path.
4. Measures the reference with pgbench: a ranked top 20 (`ts_rank_cd`) for a rare
   surname on `bench_reference`, jit off, at 4 and 32 clients.
5. Prints p50, p99 and req/s per class, the CPU seconds of the API processes and of
   PostgreSQL during each run, and the issue's targets as ratios to the reference.
6. With `--read-url URL` (a streaming replica of the benchmark's database): selective
   searches at 32 connections through a fresh API reading the primary, then through one
   with DATABASE_READ_URL=URL, back to back, after checking the replica holds the same
   contacts; the API's `contactbook_read_fallbacks_total` says no read went elsewhere.
   A local standby of the machine's PostgreSQL 15, for instance:

       sudo -u postgres pg_basebackup -h 127.0.0.1 -D /tmp/standby -R -X stream -c fast
       sudo -u postgres /usr/lib/postgresql/15/bin/pg_ctl -D /tmp/standby -l /tmp/standby.log \\
           -o "-p 5433 -c hot_standby=on" start
       DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench python bench/search.py \\
           --read-url postgresql://postgres@127.0.0.1:5433/bench

   On one machine the two servers share its cores: the figure says what the replica's
   path costs, not what a second machine adds (that is the capacity model's
   "per PostgreSQL core" times its cores).

The embedded server runs with shared_buffers 1GB and jit off (EMBEDDED_SETTINGS); a
DATABASE_URL server is used as it is (the search turns jit off for itself). Not a test:
figures depend on the machine and on what else runs on it; run it twice.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CONTACTBOOK = str(Path(sys.executable).with_name("contactbook"))

# Settings for the embedded server this script starts (never applied to DATABASE_URL's).
EMBEDDED_SETTINGS = {
    "shared_buffers": "1GB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "4GB",
    "jit": "off",
}

QUERIES_PER_CLASS = 1000

LAST_IMPORT = """
SELECT rows_read FROM import_runs WHERE status = 'succeeded' AND inserted > 0
ORDER BY id DESC LIMIT 1
"""

# The reference: the same people, one weighted vector, one GIN index.
REFERENCE_ROWS = "SELECT count(*) FROM bench_reference"
CREATE_REFERENCE = [
    "DROP TABLE IF EXISTS bench_reference",
    """
CREATE TABLE bench_reference AS
SELECT id, first_name, last_name, email, description,
       setweight(to_tsvector('simple', lower(coalesce(first_name, '') || ' '
                                             || coalesce(last_name, ''))), 'A')
       || setweight(to_tsvector('simple', lower(coalesce(email, ''))), 'B')
       || setweight(to_tsvector('english', coalesce(description, '')), 'C') AS v
FROM contacts WHERE deleted_at IS NULL
""",
    "CREATE INDEX bench_reference_v_idx ON bench_reference USING gin (v)",
    "VACUUM ANALYZE bench_reference",
]
REFERENCE_QUERY = """
SELECT id, first_name, last_name, email, description, ts_rank_cd(v, q) AS rank
FROM bench_reference, to_tsquery('simple', {term}) AS q
WHERE v @@ q
ORDER BY rank DESC, id
LIMIT 20;
"""
REFERENCE_TERMS = 100

# Rare surnames: the generator's rare ones (one word, 2-20 people) first, then its
# double-barrelled ones (Moreau-Okafor: 1-20 people) to make up the thousand.
SURNAMES = """
SELECT last_name AS term, last_name !~ '-' AS one_word FROM contacts
WHERE deleted_at IS NULL AND last_name ~ '^[A-Z][a-z]{3,}(-[A-Z][a-z]{3,})?$'
GROUP BY last_name
HAVING count(*) BETWEEN 2 AND 20 OR (last_name ~ '-' AND count(*) <= 20)
ORDER BY last_name !~ '-' DESC, md5(last_name) LIMIT %(n)s
"""
FIRST_NAMES = """
SELECT first_name AS term FROM contacts
WHERE deleted_at IS NULL AND first_name ~ '^[A-Z][a-z]+$'
GROUP BY first_name HAVING count(*) BETWEEN 200 AND 2000
ORDER BY md5(first_name)
"""
# The most frequent bio words, from a 2% sample.
BIO_WORDS = """
SELECT word AS term FROM ts_stat(
    'SELECT to_tsvector(''english'', description) FROM contacts TABLESAMPLE SYSTEM (2)')
WHERE length(word) > 3 AND word ~ '^[a-z]+$'
ORDER BY ndoc DESC LIMIT 12
"""
# People with a first name and a surname, for "Tom B"-style typeahead and tag filters.
TAGS_OF_PEOPLE = """
SELECT tag AS term, count(*) AS people FROM contacts, unnest(tags) AS tag
WHERE deleted_at IS NULL GROUP BY tag ORDER BY count(*) DESC
"""


@dataclass
class QueryClass:
    name: str
    paths: list[str]
    note: str
    results: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- data


def database_url(rows: int) -> tuple[str, bool]:
    """DATABASE_URL, or database `search_<rows>` on an embedded server in bench/data.

    Returns the URL and whether the data may be replaced (only in our own database).
    """
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, False
    sys.path.insert(0, str(HERE.parent / "src"))
    from contactbook.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(DATA / "search-postgres")
    if not server.is_running():
        atexit.register(server.stop)  # leave a server running only if it already was
    admin_url = server.start()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        changed = False
        for name, value in EMBEDDED_SETTINGS.items():
            shown = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[0]
            if shown != value:
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(name), sql.Literal(value)
                    )
                )
                changed = True
        name = f"search_{rows}"
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    if changed:  # shared_buffers needs a restart
        server.stop()
        admin_url = server.start()
    parts = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}")), True


def generated_csv(rows: int) -> Path:
    path = DATA / f"search-contacts-{rows}-nimble.csv"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(HERE / "gen_contacts.py"), "--rows", str(rows), "--out",
             str(path), "--nimble-fields"],
            check=True,
        )  # fmt: skip
    return path


def ensure_contacts(url: str, rows: int, *, replaceable: bool) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([CONTACTBOOK, "db", "upgrade"], env=env, check=True, capture_output=True)
    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM contacts").fetchone()[0]
        loaded = conn.execute(LAST_IMPORT).fetchone()
    if have and loaded and loaded[0] == rows:
        print(f"reusing the {have:,} contacts imported from {rows:,} generated rows")
    else:
        if have and not replaceable:
            raise SystemExit(
                f"DATABASE_URL holds {have:,} contacts: use an empty database or one with "
                f"exactly --rows {rows} contacts (this script never deletes your data)"
            )
        path = generated_csv(rows)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE contacts, contact_name_words RESTART IDENTITY")
        started = time.perf_counter()
        subprocess.run([CONTACTBOOK, "import", str(path)], env=env, check=True)
        print(f"imported {rows:,} contacts in {time.perf_counter() - started:.0f}s")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE contacts")
            conn.execute("VACUUM ANALYZE contact_name_words")
    with psycopg.connect(url, autocommit=True) as conn:
        live = conn.execute("SELECT count(*) FROM contacts WHERE deleted_at IS NULL").fetchone()
        try:
            reference = conn.execute(REFERENCE_ROWS).fetchone()
        except psycopg.errors.UndefinedTable:
            reference = None
        if reference != live:
            started = time.perf_counter()
            for statement in CREATE_REFERENCE:
                conn.execute(statement)
            print(f"built bench_reference in {time.perf_counter() - started:.0f}s")


# --------------------------------------------------------------------------- queries


def swap_letters(word: str) -> str:
    middle = len(word) // 2
    return word[: middle - 1] + word[middle] + word[middle - 1] + word[middle + 1 :]


def search_path(text: str, **filters: str | list[str]) -> str:
    query = [("text", text), ("limit", "20")]
    for name, value in filters.items():
        query += [(name, item) for item in ([value] if isinstance(value, str) else value)]
    return "/api/v1/search?" + urllib.parse.urlencode(query)


def query_classes(url: str, *, with_filters: bool) -> tuple[list[QueryClass], list[str]]:
    """The classes to measure, and the rare surnames for the reference."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        rare = conn.execute(SURNAMES, {"n": QUERIES_PER_CLASS}).fetchall()
        surnames = [r["term"] for r in rare]
        one_word = [r["term"] for r in rare if r["one_word"]]
        first_names = [r["term"] for r in conn.execute(FIRST_NAMES)]
        bio_words = [r["term"] for r in conn.execute(BIO_WORDS)]
        tags = [r["term"] for r in conn.execute(TAGS_OF_PEOPLE)] if with_filters else []
    rng = random.Random(7)
    typos = [t for t in (swap_letters(s) for s in surnames) if t not in surnames]
    prefixes = [s[: max(3, len(s) // 2 + 1)] for s in surnames]
    pairs = [(a, b) for a in bio_words for b in bio_words if a < b]
    medium = [rng.choice(first_names) for _ in range(QUERIES_PER_CLASS)]
    classes = [
        QueryClass("selective", [search_path(s) for s in surnames],
                   f"{len(surnames)} rare surnames ({len(one_word)} one-word ones with 2-20 "
                   "people, the rest double-barrelled with 1-20)"),
        QueryClass("medium", [search_path(n) for n in medium],
                   f"{len(first_names)} first names with 200-2,000 people"),
        QueryClass("prefix", [search_path(p) for p in prefixes],
                   "the first half of those surnames (3+ letters)"),
        QueryClass("typo", [search_path(t) for t in typos],
                   "those surnames, two middle letters swapped"),
        QueryClass("common", [search_path(w) for w in bio_words],
                   f"the {len(bio_words)} commonest bio words: {', '.join(bio_words[:4])}…"),
        QueryClass("two common words", [search_path(f"{a} {b}") for a, b in pairs],
                   f"{len(pairs)} pairs of those"),
    ]  # fmt: skip
    for typed in ("T", "To", "Tom", "Tom B", "Tom Br"):
        classes.append(QueryClass(f"keystroke {typed!r}", [search_path(typed)], "typeahead"))
    if tags:
        common_tag, rare_tag = tags[0], tags[-1]
        classes += [
            QueryClass(f"medium + tag {common_tag}",
                       [search_path(n, tag=common_tag) for n in medium],
                       "a first name, filtered by the commonest tag"),
            QueryClass(f"selective + tag {rare_tag}",
                       [search_path(s, tag=rare_tag) for s in surnames],
                       "a rare surname, filtered by the rarest tag"),
            QueryClass("common + 2 tags",
                       [search_path(w, tag=[common_tag, tags[1]]) for w in bio_words],
                       f"a common bio word, tags {common_tag} and {tags[1]}"),
        ]  # fmt: skip
    return classes, one_word[:REFERENCE_TERMS]


# --------------------------------------------------------------------------- CPU


def _own_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class CpuMeter:
    """CPU seconds of the API processes and of PostgreSQL's while a block runs.

    PostgreSQL starts and ends a backend per client connection: a backend that ended
    during the run is counted through the postmaster's children times (its whole life;
    the part before the run is subtracted), one that started is counted from zero.
    """

    def __init__(self, api: subprocess.Popen | None) -> None:
        self.api = api

    def _postgres(self) -> tuple[dict[int, float], float]:
        backends: dict[int, float] = {}
        children = 0.0
        for process in psutil.process_iter(["name", "ppid"]):
            if process.info["name"] != "postgres":
                continue
            try:
                backends[process.pid] = _own_seconds(process)
                if process.info["ppid"] == 1 or psutil.Process(process.info["ppid"]).name() != (
                    "postgres"
                ):
                    times = process.cpu_times()  # the postmaster: its reaped backends
                    children += times.children_user + times.children_system
            except psutil.NoSuchProcess:
                continue
        return backends, children

    def _api_seconds(self) -> float:
        if self.api is None:
            return 0.0
        parent = psutil.Process(self.api.pid)
        total = 0.0
        for process in [parent, *parent.children(recursive=True)]:
            try:
                total += _own_seconds(process)
            except psutil.NoSuchProcess:
                continue
        return total

    def __enter__(self) -> CpuMeter:
        self._start = (self._api_seconds(), *self._postgres(), time.monotonic())
        return self

    def __exit__(self, *exc_info) -> None:
        api, backends, children, started = self._start
        now_backends, now_children = self._postgres()
        self.api_cpu = self._api_seconds() - api
        self.postgres_cpu = (
            sum(seconds - backends.get(pid, 0.0) for pid, seconds in now_backends.items())
            + now_children
            - children
            - sum(seconds for pid, seconds in backends.items() if pid not in now_backends)
        )
        self.seconds = time.monotonic() - started


# --------------------------------------------------------------------------- wrk

WRK_SCRIPT = r"""
-- Rotate through the request paths in a file, each thread starting elsewhere; print
-- the figures as one JSON line.
local threads = {}
local counter = 0
function setup(thread)
  thread:set("number", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  paths = {}
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  position = (number * 7919) % #paths
end
function request()
  position = position % #paths + 1
  return wrk.format("GET", paths[position])
end
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, '
    .. '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
end
"""


def run_wrk(port: int, paths: list[str], *, connections: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "rotate.lua"
        script.write_text(WRK_SCRIPT)
        listing = Path(folder) / "paths.txt"
        listing.write_text("\n".join(paths) + "\n")
        threads = min(2, connections)
        result = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
             "-s", str(script), f"http://127.0.0.1:{port}", "--", str(listing)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    figures["rps"] = figures["requests"] / figures["seconds"]
    return figures


# --------------------------------------------------------------------------- pgbench


def run_pgbench(url: str, terms: list[str], *, clients: int, seconds: float) -> dict:
    """Ranked top 20 for rare surnames on bench_reference: TPS, p50 and p99 (ms)."""
    parts = urllib.parse.urlsplit(url)
    with tempfile.TemporaryDirectory() as folder:
        scripts = []
        for number, term in enumerate(terms):
            script = Path(folder) / f"q{number}.sql"
            literal = "'" + term.lower().replace("'", "''") + "'"
            script.write_text(" ".join(REFERENCE_QUERY.format(term=literal).split()) + "\n")
            scripts += ["-f", f"{script}@1"]
        env = {**os.environ, "PGOPTIONS": "-c jit=off"}
        command = ["pgbench", "-n", "-c", str(clients), "-j", str(min(2, clients)),
                   "-T", str(int(seconds)), "-M", "simple", "--log",
                   f"--log-prefix={Path(folder) / 'log'}", *scripts,
                   urllib.parse.urlunsplit(parts)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder)
        if result.returncode != 0:
            raise RuntimeError(f"pgbench failed: {result.stderr[-2000:]}")
        latencies = []
        for log in Path(folder).glob("log*"):
            for line in log.read_text().splitlines():
                latencies.append(int(line.split()[2]) / 1000)  # microseconds -> ms
    latencies.sort()
    tps = next(
        float(line.split("=")[1].split()[0])
        for line in result.stdout.splitlines()
        if line.startswith("tps")
    )
    return {
        "rps": tps,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "requests": len(latencies),
    }


# --------------------------------------------------------------------------- API


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_api(url: str, port: int, workers: int, read_url: str | None) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    if read_url:
        env["DATABASE_READ_URL"] = read_url
    process = subprocess.Popen(
        [CONTACTBOOK, "api", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited: {process.stderr.read()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/v1/search?text=warm")
            if connection.getresponse().status == 200 and process.poll() is None:
                return process  # ours answered (not another server on the port)
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the API did not answer within 120 s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="contacts to load")
    parser.add_argument("--seconds", type=float, default=15, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes")
    parser.add_argument(
        "--read-url",
        help="DATABASE_READ_URL (a replica of the benchmark's database): selective "
        "throughput at 32 connections with reads there, against reads on the primary, "
        "measured back to back",
    )
    parser.add_argument("--only", help="measure only the classes whose name contains this")
    parser.add_argument(
        "--no-filters", action="store_true", help="leave out the tag-filtered classes"
    )
    args = parser.parse_args()
    for tool in ("wrk", "pgbench"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH: apt install wrk postgresql-client")

    url, replaceable = database_url(args.rows)
    ensure_contacts(url, args.rows, replaceable=replaceable)
    classes, reference_terms = query_classes(url, with_filters=not args.no_filters)
    if args.only:
        classes = [c for c in classes if args.only in c.name]
    load = os.getloadavg()
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    reference = {}
    for clients in (4, 32):
        run_pgbench(url, reference_terms, clients=clients, seconds=3)  # warm up
        with CpuMeter(None) as meter:
            reference[clients] = run_pgbench(
                url, reference_terms, clients=clients, seconds=args.seconds
            )
        reference[clients]["postgres_cpu"] = meter.postgres_cpu / meter.seconds
        print(f"reference, {clients} clients: {reference[clients]}", file=sys.stderr)

    port = free_port()
    api = start_api(url, port, args.workers, None)
    try:
        for query_class in classes:
            run_wrk(port, query_class.paths, connections=4, seconds=3)  # warm up
            for connections in (4, 32) if query_class.name == "selective" else (4,):
                with CpuMeter(api) as meter:
                    figures = run_wrk(
                        port, query_class.paths, connections=connections, seconds=args.seconds
                    )
                figures["api_cpu"] = meter.api_cpu / meter.seconds
                figures["postgres_cpu"] = meter.postgres_cpu / meter.seconds
                query_class.results[connections] = figures
            print(f"{query_class.name}: {query_class.results}", file=sys.stderr)
    finally:
        stop(api)

    reads = compare_reads(args, url, port, classes) if args.read_url else None
    report(args, classes, reference, reads)


def compare_reads(args, url: str, port: int, classes: list[QueryClass]) -> dict[str, dict]:
    """Selective searches at 32 connections with reads on the primary, then with reads on
    `--read-url`, back to back in the same conditions (a fresh API each, warmed up)."""
    selective = next((c for c in classes if c.name == "selective"), None)
    if selective is None:
        raise SystemExit("--read-url compares the selective class: keep it in --only")
    check_replica(url, args.read_url)
    figures: dict[str, dict] = {}
    for where, read_url in (("primary", None), ("replica", args.read_url)):
        api = start_api(url, port, args.workers, read_url)
        try:
            run_wrk(port, selective.paths, connections=4, seconds=3)  # warm up
            fallbacks = read_fallbacks(port)
            with CpuMeter(api) as meter:
                run = run_wrk(port, selective.paths, connections=32, seconds=args.seconds)
            run["api_cpu"] = meter.api_cpu / meter.seconds
            run["postgres_cpu"] = meter.postgres_cpu / meter.seconds
            run["fallbacks"] = read_fallbacks(port) - fallbacks
        finally:
            stop(api)
        figures[where] = run
        print(f"selective @32, reads on the {where}: {run}", file=sys.stderr)
    if figures["replica"]["fallbacks"]:
        print(
            f"WARNING: {figures['replica']['fallbacks']:.0f} reads fell back to the primary "
            "during the replica run: its figure is not the replica's alone",
            file=sys.stderr,
        )
    return figures


def check_replica(url: str, read_url: str) -> None:
    """Refuse a read URL that does not hold the same contacts (an empty or lagging
    replica answers its searches faster, with nothing)."""
    count = "SELECT count(*) FROM contacts"
    with psycopg.connect(url) as primary, psycopg.connect(read_url) as replica:
        rows, replica_rows = (conn.execute(count).fetchone()[0] for conn in (primary, replica))
        standby = replica.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    if rows != replica_rows:
        raise SystemExit(
            f"--read-url has {replica_rows:,} contacts and the primary {rows:,}: wait for the "
            "replica to catch up (or point --read-url at a copy of this database)"
        )
    if not standby:
        print("note: --read-url is not a standby (pg_is_in_recovery() is false)", file=sys.stderr)


def read_fallbacks(port: int) -> float:
    """contactbook_read_fallbacks_total of the running API (0 before the first)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    for line in connection.getresponse().read().decode().splitlines():
        if line.startswith("contactbook_read_fallbacks_total "):
            return float(line.split()[1])
    return 0.0


def report(args, classes: list[QueryClass], reference: dict, reads: dict[str, dict] | None) -> None:
    ref4, ref32 = reference[4], reference[32]
    load = os.getloadavg()
    print()
    print(
        f"{args.rows:,} contacts, `contactbook api --workers {args.workers}`, wrk at 4 "
        f"connections ({args.seconds:g} s per class), {os.cpu_count()} CPUs; load average "
        f"after: {load[0]:.2f}"
    )
    print(
        f"reference (pgbench, ranked top 20 for a rare surname on bench_reference, jit off): "
        f"4 clients {ref4['rps']:,.0f} TPS, p50 {ref4['p50_ms']:.2f} ms, p99 "
        f"{ref4['p99_ms']:.2f} ms; 32 clients {ref32['rps']:,.0f} TPS"
    )
    header = (
        f"{'class':<24} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7} {'non-2xx':>7} "
        f"{'API cpu':>7} {'PG cpu':>7}"
    )
    print(header)
    print("-" * len(header))
    for query_class in classes:
        for connections, r in query_class.results.items():
            name = query_class.name + (f" @{connections}" if connections != 4 else "")
            print(
                f"{name:<24} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['rps']:>7.0f} "
                f"{r['non_2xx'] + r['socket_errors']:>7} {r['api_cpu']:>7.2f} "
                f"{r['postgres_cpu']:>7.2f}"
            )
    print("(API cpu, PG cpu: cores busy on average during the run)")
    print()
    by_name = {c.name: c.results for c in classes}
    if "selective" in by_name:
        selective = by_name["selective"]
        p50_ratio = selective[4]["p50_ms"] / ref4["p50_ms"]
        rate_ratio = selective[32]["rps"] / ref32["rps"]
        print(f"selective p50: {p50_ratio:.1f}x the reference's (target <= 10x)")
        print(f"selective req/s at 32: {rate_ratio:.2f}x the reference's (target >= 0.4x)")
    for name in ("selective", "medium", "prefix", "typo", "common", "two common words"):
        if name in by_name:
            ratio = by_name[name][4]["p99_ms"] / ref4["p99_ms"]
            print(f"{name} p99: {ratio:.1f}x the reference's (target <= 3x)")
    if reads is not None:
        where = args.read_url.split("@")[-1]  # never the password
        print(f"selective @32, reads on the primary and on {where} (back to back):")
        for name, r in reads.items():
            print(
                f"  {name:<8} {r['rps']:>7.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 "
                f"{r['p99_ms']:.2f} ms, non-2xx {r['non_2xx'] + r['socket_errors']}, API cpu "
                f"{r['api_cpu']:.2f}, PG cpu {r['postgres_cpu']:.2f}, fallbacks "
                f"{r['fallbacks']:.0f}"
            )
        ratio = reads["replica"]["rps"] / reads["primary"]["rps"]
        print(f"  reads on the replica: {ratio:.2f}x the primary's req/s")
    print()
    for query_class in classes:
        print(f"{query_class.name}: {query_class.note}")


if __name__ == "__main__":
    main()
