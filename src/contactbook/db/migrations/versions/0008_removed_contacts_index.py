"""An index of the removed contacts, for listing them and bringing them back.

Revision ID: 0008
Revises: 0004

`GET /api/v1/contacts?removed=true` and `contactbook export --removed` read the contacts a
full sync soft-deleted, in id order. They are few (a full sync may remove at most
SYNC_MAX_REMOVALS_PERCENT of the linked contacts without --allow-removals), so a
partial index on them is small, and a page of them no longer reads the whole table.
"""

from alembic import op

revision = "0008"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX contacts_removed_idx ON contacts (id) WHERE deleted_at IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS contacts_removed_idx")
