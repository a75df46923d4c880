"""Import runs remember which database session runs them, so abandoned ones can be closed.

Revision ID: 0004
Revises: 0003

An import whose process dies (a worker SIGKILLed mid-COPY) rolls back, but its
`import_runs` row stayed `running` forever. Several imports may be waiting for the
import lock at once, each with a `running` row, so "running while I hold the lock"
does not mean abandoned (it does for syncs, which record a run only once they hold
theirs). The row now names the session doing the import (its backend pid and start
time: a pid alone can be reused); a run whose session is gone is abandoned.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE import_runs ADD COLUMN backend_pid integer,"
        " ADD COLUMN backend_started timestamptz"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE import_runs DROP COLUMN backend_pid, DROP COLUMN backend_started")
