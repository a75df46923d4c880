"""Foundation: contacts with a weighted full-text vector, import and sync runs.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# unaccent() is only STABLE (it reads a dictionary that could change), so a generated
# column cannot call it directly. Naming the dictionary explicitly makes the result
# depend on nothing but the input, which is what IMMUTABLE promises.
UPGRADE = r"""
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE FUNCTION contactbook_fold(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN lower(public.unaccent('public.unaccent'::regdictionary, value));

-- The words of an address that people type: the whole address, its local part
-- (without a +tag and with the tag), the domain and the domain without its suffix.
CREATE FUNCTION contactbook_email_terms(email text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN concat_ws(' ',
        lower(email),
        split_part(lower(email), '@', 1),
        split_part(split_part(lower(email), '@', 1), '+', 1),
        split_part(lower(email), '@', 2),
        regexp_replace(split_part(lower(email), '@', 2), '\.[^.]+$', '')
    );

-- Two rows are the same person when their emails match case-insensitively. Without an
-- email, only a row with the same names (any case) and the same bio is the same person:
-- two different people may share a name, and an import must never merge them.
-- Plain equality on this key lets PostgreSQL hash-join large imports.
CREATE FUNCTION contactbook_person_key(
    email text, first_name text, last_name text, description text
) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN email IS NOT NULL THEN 'e:' || lower(email)
        ELSE 'n:' || coalesce(lower(first_name), '') || '|' || coalesce(lower(last_name), '')
            || '|' || coalesce(description, '')
    END;

CREATE TABLE contacts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nimble_id text UNIQUE,
    first_name text,
    last_name text,
    email text,
    description text,
    source text NOT NULL CHECK (source IN ('csv', 'nimble')),
    nimble_updated_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple',
            contactbook_fold(coalesce(first_name, '') || ' ' || coalesce(last_name, ''))), 'A')
        || setweight(to_tsvector('simple', coalesce(contactbook_email_terms(email), '')), 'B')
        || setweight(to_tsvector('english', coalesce(description, '')), 'C')
    ) STORED
);

CREATE INDEX contacts_search_vector_idx ON contacts USING gin (search_vector);
CREATE INDEX contacts_email_lower_idx ON contacts (lower(email));
CREATE INDEX contacts_person_key_idx
    ON contacts (contactbook_person_key(email, first_name, last_name, description))
    WHERE deleted_at IS NULL;
CREATE INDEX contacts_live_idx ON contacts (id) WHERE deleted_at IS NULL;

CREATE TABLE import_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status text NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'succeeded', 'failed')),
    rows_read integer NOT NULL DEFAULT 0,
    inserted integer NOT NULL DEFAULT 0,
    updated integer NOT NULL DEFAULT 0,
    skipped integer NOT NULL DEFAULT 0,
    error text
);

CREATE TABLE sync_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mode text NOT NULL CHECK (mode IN ('full', 'incremental')),
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status text NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'succeeded', 'failed')),
    fetched integer NOT NULL DEFAULT 0,
    inserted integer NOT NULL DEFAULT 0,
    linked integer NOT NULL DEFAULT 0,
    updated integer NOT NULL DEFAULT 0,
    removed integer NOT NULL DEFAULT 0,
    unchanged integer NOT NULL DEFAULT 0,
    error text
);
CREATE INDEX sync_runs_started_idx ON sync_runs (started_at DESC);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS sync_runs;
DROP TABLE IF EXISTS import_runs;
DROP TABLE IF EXISTS contacts;
DROP FUNCTION IF EXISTS contactbook_email_terms(text);
DROP FUNCTION IF EXISTS contactbook_person_key(text, text, text, text);
DROP FUNCTION IF EXISTS contactbook_fold(text);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
