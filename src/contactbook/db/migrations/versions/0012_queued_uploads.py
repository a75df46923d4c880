"""An accepted upload is an import run from the moment it is accepted: `queued`.

Revision ID: 0012
Revises: 0011

The upload endpoint used to send the import task and leave the rest to the broker. A
worker that died between Redis's BRPOP and kombu recording the message as unacked lost
the task: PENDING, then 404, and the file stayed in `uploads/` forever. Now the upload
is recorded first, as a `queued` run naming its task and its file; the worker claims
that row (`running`), and a run no worker took in time is sent again
(contacts/uploads.py). `attempts` counts the claims (a redelivery after a worker died
claims the same row again). `upload_path` is cleared once the file is removed.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE import_runs DROP CONSTRAINT import_runs_status_check;
ALTER TABLE import_runs ADD CONSTRAINT import_runs_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed'));
ALTER TABLE import_runs
    ADD COLUMN task_id text,
    ADD COLUMN upload_path text,
    ADD COLUMN sent_at timestamptz,
    ADD COLUMN attempts integer NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX import_runs_task_id_idx ON import_runs (task_id) WHERE task_id IS NOT NULL;
-- What the upload sweep reads: runs whose file is still kept.
CREATE INDEX import_runs_upload_idx ON import_runs (id) WHERE upload_path IS NOT NULL;
"""

DOWNGRADE = """
UPDATE import_runs SET status = 'failed', finished_at = now(),
    error = 'queued when the database was downgraded; upload it again'
WHERE status = 'queued';
DROP INDEX IF EXISTS import_runs_upload_idx;
DROP INDEX IF EXISTS import_runs_task_id_idx;
ALTER TABLE import_runs
    DROP COLUMN attempts,
    DROP COLUMN sent_at,
    DROP COLUMN upload_path,
    DROP COLUMN task_id;
ALTER TABLE import_runs DROP CONSTRAINT import_runs_status_check;
ALTER TABLE import_runs ADD CONSTRAINT import_runs_status_check
    CHECK (status IN ('running', 'succeeded', 'failed'));
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
