"""An empty-table import loads a table of its own, then that table becomes `contacts`.

Revision ID: 0010
Revises: 0009

Filling an empty `contacts` row by row maintains two GIN indexes and four btrees for
every row, on one core (412 s for a million contacts on PostgreSQL 15). The fast way is
several COPY streams, each on its own connection, into a table without indexes, then
the indexes built from the loaded rows; but several connections mean several
transactions, and readers must never see half a file. So the streams fill
`contacts_loading`, which nobody reads; once its indexes exist, one short transaction
puts it in the place of the (still empty) `contacts` (contacts/bulk_load.py).

The shape of `contacts_loading` is copied from `contacts` itself (`LIKE`: columns,
defaults, the generated vectors, the identity, the checks); its constraints, indexes
and triggers come from `contactbook_contacts_ddl`, the one place they are defined, and
take the names `contacts` gives them when the table is swapped in. Nothing may refer
to `contacts` by its identity (a foreign key, a view): the swap drops the old table.
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- A fresh, empty contacts_loading (dropping one a failed load left behind).
CREATE FUNCTION contactbook_create_loading_table() RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    DROP TABLE IF EXISTS contacts_loading;
    CREATE TABLE contacts_loading (LIKE contacts
        INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING IDENTITY INCLUDING CONSTRAINTS
        INCLUDING STORAGE INCLUDING COMPRESSION);
END
$$;

-- In the caller's transaction: contacts_loading, indexed, becomes contacts, which must
-- still have no row at all. Its constraints and indexes are renamed to contacts' names,
-- the triggers are attached, and ids continue after the last one either table gave out.
CREATE FUNCTION contactbook_swap_in_loading_table() RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    object record;
    last_id bigint;
BEGIN
    LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM contacts) THEN
        RAISE EXCEPTION 'contacts got rows while the import was loading; nothing was imported'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Import the file again: it will be merged into the contacts there are.';
    END IF;
    last_id := coalesce(pg_sequence_last_value(pg_get_serial_sequence('contacts', 'id')), 0);
    DROP TABLE contacts;
    ALTER TABLE contacts_loading RENAME TO contacts;
    EXECUTE format('ALTER SEQUENCE %s RENAME TO contacts_id_seq',
                   pg_get_serial_sequence('contacts', 'id'));
    FOR object IN SELECT * FROM contactbook_contacts_ddl('contacts_loading') LOOP
        IF object.kind = 'constraint' THEN
            EXECUTE format('ALTER TABLE contacts RENAME CONSTRAINT %I TO %I', object.name,
                           'contacts' || substr(object.name, length('contacts_loading') + 1));
        ELSIF object.kind = 'index' THEN
            EXECUTE format('ALTER INDEX %I RENAME TO %I', object.name,
                           'contacts' || substr(object.name, length('contacts_loading') + 1));
        END IF;
    END LOOP;
    FOR object IN SELECT * FROM contactbook_contacts_ddl('contacts') WHERE kind = 'trigger' LOOP
        EXECUTE object.statement;
    END LOOP;
    SELECT greatest(max(id), last_id) INTO last_id FROM contacts;  -- the primary key's end
    IF last_id > 0 THEN
        PERFORM setval('contacts_id_seq', last_id);
    END IF;
END
$$;
"""

DOWNGRADE = """
DROP FUNCTION IF EXISTS contactbook_swap_in_loading_table();
DROP FUNCTION IF EXISTS contactbook_create_loading_table();
DROP TABLE IF EXISTS contacts_loading;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
