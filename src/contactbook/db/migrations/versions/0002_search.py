"""Search: a names-and-emails vector searched first, and a vocabulary of name words for typos.

Revision ID: 0002
Revises: 0001

`search_vector` (0001) holds names, email parts and the bio. Ranking puts matches in
names and emails above matches in the bio, and a word in a third of the bios would
otherwise mean scoring a third of the table, so names and email parts get a small
vector of their own (`name_vector`, GIN-indexed) that search asks first; the bio is
only read to fill the page (see contacts/search.py).

`name_only_vector` is the name alone (the band "every word in the name itself").

`name_vector` also indexes what people type for names with particles, hyphens and
apostrophes (`delacruz`, `annemarie`, `oneil`) and, for plus-addressed mail, the
address without its tag (`tom@northwind.io` for `tom+crm@northwind.io`).

`contact_name_words` is every distinct word of every name, trigram-indexed: a typo
("Hendircks") is corrected against a few thousand words instead of a million names.
Statement-level triggers keep it filled, so the import and sync need no change; words
of names that later disappear stay (a stale word only costs a wasted lookup).
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- A name as typed and, where it has spaces, hyphens or apostrophes, written as one word.
CREATE FUNCTION contactbook_name_terms(first_name text, last_name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN concat_ws(' ',
        contactbook_fold(first_name),
        contactbook_fold(last_name),
        nullif(regexp_replace(contactbook_fold(first_name), '[\s''’‘`´.‐‑–-]+', '', 'g'),
               contactbook_fold(first_name)),
        nullif(regexp_replace(contactbook_fold(last_name), '[\s''’‘`´.‐‑–-]+', '', 'g'),
               contactbook_fold(last_name))
    );

-- contactbook_email_terms, plus the address without its +tag.
CREATE FUNCTION contactbook_email_words(email text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN concat_ws(' ',
        contactbook_email_terms(email),
        CASE WHEN split_part(lower(email), '@', 1) LIKE '%+%' THEN
            split_part(split_part(lower(email), '@', 1), '+', 1)
            || '@' || split_part(lower(email), '@', 2)
        END
    );

-- One word as a quoted to_tsquery operand: whatever it holds is handed to the parser as
-- text, never read as query syntax.
CREATE FUNCTION contactbook_tsquery_operand(word text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN '''' || replace(replace(word, '\', '\\'), '''', '''''') || '''';

-- name_only_vector, the name alone: "all words in the name" is a band of its own, and the
-- planner needs this vector's statistics to see that a word common in emails ("at") is
-- rare in names. One ALTER TABLE, so an existing table is rewritten once, not twice.
ALTER TABLE contacts
    ADD COLUMN name_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', contactbook_name_terms(first_name, last_name)), 'A')
        || setweight(to_tsvector('simple', coalesce(contactbook_email_words(email), '')), 'B')
    ) STORED,
    ADD COLUMN name_only_vector tsvector GENERATED ALWAYS AS (
        to_tsvector('simple', contactbook_name_terms(first_name, last_name))
    ) STORED;

CREATE INDEX contacts_name_vector_idx ON contacts USING gin (name_vector);
CREATE INDEX contacts_name_only_vector_idx ON contacts USING gin (name_only_vector);

CREATE TABLE contact_name_words (word text PRIMARY KEY);
CREATE INDEX contact_name_words_trgm_idx ON contact_name_words USING gin (word gin_trgm_ops);

CREATE FUNCTION contactbook_remember_name_words() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_name_words (word)
    SELECT DISTINCT words.lexeme
    FROM changed_rows,
        unnest(to_tsvector('simple',
            contactbook_name_terms(changed_rows.first_name, changed_rows.last_name))) AS words
    ORDER BY 1
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_name_words_insert AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION contactbook_remember_name_words();
CREATE TRIGGER contacts_name_words_update AFTER UPDATE ON contacts
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION contactbook_remember_name_words();

INSERT INTO contact_name_words (word)
SELECT DISTINCT words.lexeme
FROM contacts, unnest(to_tsvector('simple', contactbook_name_terms(first_name, last_name))) AS words
ON CONFLICT DO NOTHING;
"""

DOWNGRADE = """
DROP TRIGGER IF EXISTS contacts_name_words_update ON contacts;
DROP TRIGGER IF EXISTS contacts_name_words_insert ON contacts;
DROP FUNCTION IF EXISTS contactbook_remember_name_words();
DROP TABLE IF EXISTS contact_name_words;
DROP INDEX IF EXISTS contacts_name_only_vector_idx;
ALTER TABLE contacts DROP COLUMN IF EXISTS name_only_vector;
DROP INDEX IF EXISTS contacts_name_vector_idx;
ALTER TABLE contacts DROP COLUMN IF EXISTS name_vector;
DROP FUNCTION IF EXISTS contactbook_tsquery_operand(text);
DROP FUNCTION IF EXISTS contactbook_email_words(text);
DROP FUNCTION IF EXISTS contactbook_name_terms(text, text);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
