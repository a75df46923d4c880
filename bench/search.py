"""Search speed at scale: the real API over HTTP against the same search through psycopg.

    python bench/search.py                      # 1,000,000 contacts, embedded PostgreSQL
    python bench/search.py --rows 100000        # a quicker run
    DATABASE_URL=postgresql://… python bench/search.py --rows 200000

Loads N contacts written by bench/gen_contacts.py through the real import (once: the
CSV and the embedded server's database `search_<N>` stay in bench/data/, which git
ignores, and are reused; a DATABASE_URL database must be empty or hold exactly those
rows), starts `contactbook api` as a subprocess, and for each query class measures:

* HTTP: `--clients` concurrent keep-alive clients (default 4), p50, p99, requests/s;
* psycopg: `search_contacts` (the same SQL and the same Python around it, without
  HTTP) on one connection, p50, p99, requests/s, in the same run;
* for the selective class, requests/s through psycopg on 2 connections in 2 threads.

Query classes, with terms picked from the loaded data: selective (a surname with under
20 people), medium (a first name with 200-2,000 people), common (a bio word in ~30% of
rows), two common words, prefix (3-4 letters), typo (a rare surname with two letters
swapped), and, without a target, the commonest first name. For the common classes the
top 20 are checked against an exhaustive ranking (every match scored) and the overlap
is printed. The embedded server runs with shared_buffers 1GB and jit off (see
EMBEDDED_SETTINGS); a DATABASE_URL server is used as it is. Not a test: figures depend
on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CONTACTBOOK = str(Path(sys.executable).with_name("contactbook"))

sys.path.insert(0, str(HERE.parent / "src"))

from contactbook.contacts.search import (  # noqa: E402
    PREPARE_QUERIES,
    parse_words,
    search_contacts,
)

# Settings for the embedded server this script starts (never applied to DATABASE_URL's).
EMBEDDED_SETTINGS = {
    "shared_buffers": "1GB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "4GB",
    "jit": "off",
}

LAST_IMPORT = """
SELECT rows_read FROM import_runs WHERE status = 'succeeded' AND inserted > 0
ORDER BY id DESC LIMIT 1
"""

SELECTIVE_SURNAMES = """
SELECT last_name AS term, count(*) AS people FROM contacts
WHERE deleted_at IS NULL AND last_name ~ '^[A-Za-z]+$'
GROUP BY last_name HAVING count(*) BETWEEN 3 AND 19
ORDER BY last_name LIMIT 20
"""

MEDIUM_FIRST_NAMES = """
SELECT first_name AS term, count(*) AS people FROM contacts
WHERE deleted_at IS NULL AND first_name ~ '^[A-Za-z]+$'
GROUP BY first_name HAVING count(*) BETWEEN 200 AND 2000
ORDER BY first_name LIMIT 20
"""

COMMONEST_FIRST_NAMES = """
SELECT first_name AS term, count(*) AS people FROM contacts
WHERE deleted_at IS NULL GROUP BY first_name ORDER BY count(*) DESC LIMIT 3
"""

COMMON_SURNAMES = """
SELECT last_name AS term, count(*) AS people FROM contacts
WHERE deleted_at IS NULL AND last_name ~ '^[A-Za-z]{5,}$'
GROUP BY last_name ORDER BY count(*) DESC LIMIT 20
"""

# The most frequent bio words, from a 2% sample.
COMMON_BIO_WORDS = """
SELECT word AS term, ndoc FROM ts_stat(
    'SELECT to_tsvector(''english'', description) FROM contacts TABLESAMPLE SYSTEM (2)')
WHERE length(word) > 3
ORDER BY ndoc DESC LIMIT 10
"""

WORD_SHARE = """
SELECT count(*)::float / (SELECT count(*) FROM contacts) AS share
FROM contacts WHERE search_vector @@ websearch_to_tsquery('english', %(text)s)
"""

# Bio-only matches (band 7), every one scored: what the bounded candidate set is
# compared against. `any` and `names` are the search's own queries (PREPARE_QUERIES).
EXHAUSTIVE_TOP = """
SELECT c.id FROM contacts c
WHERE c.search_vector @@ %(any)s::tsquery AND NOT c.name_vector @@ %(names)s::tsquery
  AND c.deleted_at IS NULL
ORDER BY ts_rank_cd(c.search_vector, %(any)s::tsquery) DESC, c.id
LIMIT 20
"""

# The most frequent words in the bios that contain "management", from a 5% sample.
COOCCURRING_WORDS = """
SELECT word AS term, ndoc FROM ts_stat(
    'SELECT to_tsvector(''simple'', description) FROM contacts TABLESAMPLE SYSTEM (5)
     WHERE description LIKE ''%%management%%''')
WHERE length(word) > 4 AND word <> 'management'
ORDER BY ndoc DESC LIMIT 5
"""


@dataclass
class QueryClass:
    name: str
    queries: list[str]
    target_p99_ms: float | None
    note: str = ""
    results: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- data


def database_url(rows: int) -> tuple[str, bool]:
    """DATABASE_URL, or database `search_<rows>` on an embedded server in bench/data.

    Returns the URL and whether the data may be replaced (only in our own database).
    """
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, False
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


def ensure_contacts(url: str, rows: int, *, replaceable: bool) -> None:
    from contactbook import db

    db.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM contacts").fetchone()[0]
        loaded = conn.execute(LAST_IMPORT).fetchone()
    if have and loaded and loaded[0] == rows:
        print(f"reusing the {have:,} contacts imported from {rows:,} generated rows")
        return
    if have and not replaceable:
        raise SystemExit(
            f"DATABASE_URL holds {have:,} contacts: use an empty database or one with "
            f"exactly --rows {rows} contacts (this script never deletes your data)"
        )
    path = DATA / f"search-contacts-{rows}.csv"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(HERE / "gen_contacts.py"), "--rows", str(rows), "--out",
             str(path)],
            check=True,
        )  # fmt: skip
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE contacts, contact_name_words RESTART IDENTITY")
    started = time.perf_counter()
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([CONTACTBOOK, "import", str(path)], env=env, check=True)
    print(f"imported {rows:,} contacts in {time.perf_counter() - started:.0f}s")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE contacts")
        conn.execute("VACUUM ANALYZE contact_name_words")


# --------------------------------------------------------------------------- queries


def swap_letters(word: str) -> str:
    middle = len(word) // 2
    return word[: middle - 1] + word[middle] + word[middle - 1] + word[middle + 1 :]


def query_classes(url: str) -> list[QueryClass]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        selective = [r["term"] for r in conn.execute(SELECTIVE_SURNAMES)]
        medium = [r["term"] for r in conn.execute(MEDIUM_FIRST_NAMES)]
        commonest = [r["term"] for r in conn.execute(COMMONEST_FIRST_NAMES)]
        surnames = [r["term"] for r in conn.execute(COMMON_SURNAMES)]
        bio_words = [r["term"] for r in conn.execute(COMMON_BIO_WORDS)]
        common = "management" if "manag" in bio_words else bio_words[0]
        cooccurring = [r["term"] for r in conn.execute(COOCCURRING_WORDS)]
        second = cooccurring[0] if common == "management" else bio_words[1]
        shares = {
            word: conn.execute(WORD_SHARE, {"text": word}).fetchone()["share"]
            for word in (common, second)
        }
    prefixes = sorted({n[:4] for n in medium[:10]} | {n[:3] for n in surnames[:10]})
    typos = [swap_letters(n) for n in selective if len(n) >= 5 and swap_letters(n) != n]
    return [
        QueryClass("selective", selective, 30, "surnames with 3-19 people"),
        QueryClass("medium", medium, 30, "first names with 200-2,000 people"),
        QueryClass("common", [common], 100, f"'{common}' in {shares[common]:.0%} of rows"),
        QueryClass(
            "two common words",
            [f"{common} {second}"],
            100,
            f"'{second}' in {shares[second]:.0%} of rows",
        ),
        QueryClass("prefix", prefixes, 30, "3-4 letters of common names"),
        QueryClass("typo", typos, 50, "rare surnames, two letters swapped"),
        QueryClass("commonest name", commonest, None, "the 3 commonest first names"),
    ]


# --------------------------------------------------------------------------- measuring


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summarise(latencies: list[float], seconds: float) -> dict:
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "rps": len(latencies) / seconds,
        "n": len(latencies),
    }


def run_http(port: int, queries: list[str], requests: int, clients: int) -> dict:
    latencies: list[float] = []
    totals: set[str] = set()
    lock = threading.Lock()
    per_client = requests // clients

    def client(number: int) -> None:
        rng = random.Random(number)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for _ in range(per_client):
            text = rng.choice(queries)
            path = "/api/v1/search?" + urllib.parse.urlencode({"text": text, "limit": 20})
            started = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"{text!r}: HTTP {response.status} {body[:200]!r}")
            totals.add(response.getheader("X-Total-Count"))
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summarise(latencies, time.perf_counter() - started)


def run_psycopg(url: str, queries: list[str], requests: int, connections: int) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()
    per_connection = requests // connections

    def worker(number: int) -> None:
        rng = random.Random(100 + number)
        mine = []
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            for _ in range(per_connection):
                text = rng.choice(queries)
                started = time.perf_counter()
                search_contacts(conn, text, limit=20)
                mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summarise(latencies, time.perf_counter() - started)


def check_ranking(url: str, port: int, text: str) -> dict:
    """The API's top 20 against the reference function's and an exhaustive ranking."""
    path = "/api/v1/search?" + urllib.parse.urlencode({"text": text, "limit": 20})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path)
    response = connection.getresponse()
    api = json.loads(response.read())
    total = response.getheader("X-Total-Count")
    words = parse_words(text)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        reference = [c["id"] for c in search_contacts(conn, text, limit=20).contacts]
        queries = conn.execute(
            PREPARE_QUERIES,
            {"text": text, "positive": words.positive, "excluded": words.excluded},
        ).fetchone()
        started = time.perf_counter()
        exhaustive = [r["id"] for r in conn.execute(EXHAUSTIVE_TOP, queries)]
        exhaustive_ms = (time.perf_counter() - started) * 1000
    ranks = [c["rank"] for c in api]
    bio = [c["id"] for c in api if 2 <= c["rank"] < 3]
    return {
        "same_as_psycopg": [c["id"] for c in api] == reference,
        "ranks_decreasing": ranks == sorted(ranks, reverse=True),
        "bio_rows": len(bio),
        "overlap_with_exhaustive": len(set(exhaustive) & set(bio)),
        "exhaustive_ms": exhaustive_ms,
        "total_header": total,
    }


# --------------------------------------------------------------------------- API


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_api(url: str, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
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
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200 and process.poll() is None:
                return process  # ours answered (not another server on the port)
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the API did not answer /healthz within 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="contacts to load")
    parser.add_argument("--requests", type=int, default=400, help="requests per class and path")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--workers", type=int, default=1, help="API worker processes")
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    args = parser.parse_args()

    url, replaceable = database_url(args.rows)
    ensure_contacts(url, args.rows, replaceable=replaceable)
    classes = query_classes(url)
    args.port = args.port or free_port()
    api = start_api(url, args.port, args.workers)
    try:
        for query_class in classes:
            queries = query_class.queries
            run_http(args.port, queries, 40, args.clients)  # warm up both paths
            run_psycopg(url, queries, 20, 1)
            query_class.results["http"] = run_http(args.port, queries, args.requests, args.clients)
            query_class.results["psycopg"] = run_psycopg(url, queries, args.requests, 1)
            if query_class.name == "selective":
                query_class.results["psycopg2"] = run_psycopg(url, queries, args.requests, 2)
            if query_class.name in ("common", "two common words"):
                query_class.results["check"] = check_ranking(url, args.port, queries[0])
            print(f"{query_class.name}: done", file=sys.stderr)
    finally:
        api.terminate()
        api.wait(timeout=30)
    report(args, classes)


def report(args, classes: list[QueryClass]) -> None:
    print()
    print(
        f"{args.rows:,} contacts, {args.clients} keep-alive HTTP clients, "
        f"API workers: {args.workers}, {args.requests} requests per class and path, "
        f"{os.cpu_count()} CPUs"
    )
    header = (
        f"{'class':<17} {'HTTP p50':>9} {'p99':>8} {'req/s':>7} | {'psycopg p50':>11} "
        f"{'p99':>8} {'req/s':>7} | {'target p99':>10}  met"
    )
    print(header)
    print("-" * len(header))
    for query_class in classes:
        h, p = query_class.results["http"], query_class.results["psycopg"]
        target = query_class.target_p99_ms
        met = "-" if target is None else ("yes" if h["p99_ms"] < target else "NO")
        print(
            f"{query_class.name:<17} {h['p50_ms']:>7.1f}ms {h['p99_ms']:>6.1f}ms "
            f"{h['rps']:>7.0f} | {p['p50_ms']:>9.1f}ms {p['p99_ms']:>6.1f}ms {p['rps']:>7.0f} | "
            f"{(f'{target:.0f}ms' if target else '-'):>10}  {met}"
        )
    print()
    for query_class in classes:
        shown = ", ".join(repr(q) for q in query_class.queries[:4])
        more = f" (+{len(query_class.queries) - 4})" if len(query_class.queries) > 4 else ""
        print(f"{query_class.name}: {query_class.note}; {shown}{more}")
        check = query_class.results.get("check")
        if check:
            print(
                f"    top 20: same as psycopg: {check['same_as_psycopg']}, ranks decreasing: "
                f"{check['ranks_decreasing']}; {check['bio_rows']} bio-only rows, of which "
                f"{check['overlap_with_exhaustive']} are in the top 20 of every bio match "
                f"scored (that query: {check['exhaustive_ms']:.0f} ms); "
                f"X-Total-Count {check['total_header']}"
            )
    selective = next(c for c in classes if c.name == "selective").results
    ratio = selective["http"]["rps"] / selective["psycopg2"]["rps"]
    print(
        f"\nselective: HTTP {selective['http']['rps']:.0f} req/s vs psycopg on 2 connections "
        f"{selective['psycopg2']['rps']:.0f} req/s = {ratio:.2f} (target >= 0.50: "
        f"{'yes' if ratio >= 0.5 else 'NO'})"
    )


if __name__ == "__main__":
    main()
