#!/bin/sh
# The compose `replica` service: a hot standby of the `database` service, streaming its
# WAL, for the API's reads (DATABASE_READ_URL).
#
# First start (empty volume): copy the primary with `pg_basebackup -R`, which also writes
# primary_conninfo (with the password from PGPASSWORD) and standby.signal; a copy that
# fails half-way is removed by pg_basebackup itself, so the next start tries again.
# Later starts resume streaming where the standby stopped. A standby that was away longer
# than the primary keeps WAL for (`wal_keep_size`) cannot catch up: remove its volume
# (`docker compose rm -sf replica && docker volume rm contactbook_replica_data`) and
# start it again.
set -eu
: "${PGDATA:?the postgres image sets PGDATA}"
: "${PRIMARY_HOST:?set PRIMARY_HOST to the primary's host name}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "standby: copying the primary ($PRIMARY_HOST) into $PGDATA"
    pg_basebackup --host="$PRIMARY_HOST" --port="${PRIMARY_PORT:-5432}" \
        --username="$POSTGRES_USER" --pgdata="$PGDATA" \
        --write-recovery-conf --wal-method=stream --checkpoint=fast --no-password
fi
exec postgres -D "$PGDATA"
