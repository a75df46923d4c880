"""Contacts as Nimble keeps them (phones, title, company, location, tags) over two vectors.

Revision ID: 0006
Revises: 0005

The new fields:

- `phones`: every number in Nimble's order (the first is the primary), `tags`: a set of
  strings (stored in the order first seen, compared as sets); `title`, `company`,
  `location` ("city, country").

Before this revision every contact carried three stored vectors (`search_vector` with
names, emails and the bio; `name_vector` with names and emails; `name_only_vector` with
the names) and a GIN index on each: an import computed and indexed the names three
times. Now there are two, each field in exactly one:

- `name_vector`: what people type to find a person, each part with its weight:
  names `A`, email parts `B`; and, as lexemes no typed word
  can produce (the parser never keeps these leading characters), the filters and the
  phones: `$tag` for each tag and `%company` for the whole company (folded), so that
  `tag=` and `company=` are conditions on the same GIN index as the text; `#` and the
  digits of each phone number in reverse, so that "ends with these digits" is a prefix
  match (`'#2410555':*` finds every number ending in 555-0142).
  "Every word in the name itself" is a weight restriction (`'tom':A`), which replaces
  `name_only_vector`.
- `bio_vector`: company and tag words `B`; the description and the title (`english`,
  so "negotiating" finds "negotiation") and the location (`simple`, folded), `C`.

Indexes: GIN on `name_vector` (small posting lists: name words are not drowned by bio
words), GIN on `contactbook_text_vector` (every word anywhere but the email, for the bio
band), and
GIN on `ts_filter(name_vector, '{a}')`, the names alone: a weight restriction is checked
on the row, not in the index, so without it "names starting with to" would merge the
posting lists of every address starting with "to" and the planner, with no statistics
of the names alone, would guess (72 ms instead of 2 ms for "To" at a million contacts).
It is an expression index, not a third stored vector: built in about a second per
million contacts.
`contactbook_contacts_ddl` is the one place where the constraints, the secondary indexes
and the name-words triggers are defined, for `contacts` and for the table an empty-table
import loads before it takes the place of `contacts` (contacts/bulk_load.py). Both
vectors are computed by PL/pgSQL functions that call unaccent directly (see the
comment above `contactbook_name_vector`: ten times faster than composing SQL wrappers).
The person key of a row without an email now holds an md5 of the names and bio instead
of the whole bio.
`contacts_live_idx` is gone: the primary key serves the same walks (removed contacts are
few).

Upgrading an existing database rewrites `contacts` once (one ALTER TABLE).
"""

from alembic import op

revision = "0006"
down_revision = "0004"  # 0005 (import runs) lands with the hostile-traffic work
branch_labels = None
depends_on = None

UPGRADE = r"""
DROP INDEX IF EXISTS contacts_person_key_idx;
DROP INDEX IF EXISTS contacts_live_idx;
DROP INDEX IF EXISTS contacts_email_lower_idx;
DROP TRIGGER IF EXISTS contacts_name_words_insert ON contacts;
DROP TRIGGER IF EXISTS contacts_name_words_update ON contacts;

-- Two rows are the same person when their emails match case-insensitively. Without an
-- email, only a row with the same names (any case) and the same bio is the same person.
-- The bio enters as a hash: the key's index no longer holds every bio a second time.
CREATE OR REPLACE FUNCTION contactbook_person_key(
    email text, first_name text, last_name text, description text
) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN email IS NOT NULL THEN 'e:' || lower(email)
        ELSE 'n:' || md5(coalesce(lower(first_name), '') || '|' || coalesce(lower(last_name), '')
            || '|' || coalesce(description, ''))
    END;

-- The two vectors, computed for every row an import or a sync writes. PL/pgSQL, calling
-- unaccent directly: contactbook_fold is an IMMUTABLE SQL wrapper around the STABLE
-- unaccent, which PostgreSQL never inlines, so each of its calls is a function call of
-- its own (~15 µs); a vector built from a dozen of them cost ~300 µs a row, ten times
-- the text search itself (30 µs here). The result is the same as those expressions'.
--
-- name_vector, what people type to find a person:
--   A  the name as typed (folded) and, where it has spaces, hyphens or apostrophes,
--      written as one word (contactbook_name_terms); plus `^t` and `^to`, the first one
--      and two letters of each name word: a one- or two-letter prefix typed into a
--      search box is then an exact lexeme with one posting list, where `'t':*` would
--      merge the lists of every word, addresses included, starting with t (35-60 ms
--      at a million contacts for "Tom B")
--   B  the email: whole, local part (with and without a +tag), domain, domain without
--      its suffix, the address without its +tag
--   and, without positions, lexemes that start with a character the text-search parser
--   never keeps (a typed word cannot produce them, so they match only the queries built
--   for them): `$tag` for each tag and `%company` (folded, for the tag= and company=
--   filters), `#` and the digits of each phone number in reverse (so "ends with these
--   digits" is a prefix match: `'#2410555':*` finds every number ending in 555-0142).
CREATE FUNCTION contactbook_name_vector(
    first_name text, last_name text, email text, company text, tags text[], phones text[]
) RETURNS tsvector
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    first_folded text := lower(public.unaccent('public.unaccent'::regdictionary, first_name));
    last_folded text := lower(public.unaccent('public.unaccent'::regdictionary, last_name));
    terms text;
    address text := lower(email);
    local_part text := split_part(lower(email), '@', 1);
    domain text := split_part(lower(email), '@', 2);
BEGIN
    terms := concat_ws(' ', first_folded, last_folded,
        nullif(regexp_replace(first_folded, '[\s''’‘`´.‐‑–-]+', '', 'g'), first_folded),
        nullif(regexp_replace(last_folded, '[\s''’‘`´.‐‑–-]+', '', 'g'), last_folded));
    RETURN setweight(to_tsvector('simple', terms), 'A')
        -- (a colon before a word would read as a bind parameter to Alembic: split there)
        || coalesce(nullif(regexp_replace(regexp_replace(terms, '[''\\]', '', 'g'),
               '(\S)(\S)?\S*', '''^\1\2'':' || '1A ''^\1'':' || '1A', 'g'), '')::tsvector, '')
        || setweight(to_tsvector('simple', concat_ws(' ', address, local_part, domain,
               regexp_replace(domain, '\.[^.]+$', ''),
               CASE WHEN local_part LIKE '%+%' THEN split_part(local_part, '+', 1) END,
               CASE WHEN local_part LIKE '%+%' THEN split_part(local_part, '+', 1) || '@' || domain
               END)), 'B')
        || array_to_tsvector(array_remove(string_to_array('$' || lower(public.unaccent(
               'public.unaccent'::regdictionary, array_to_string(tags, E'\x1f$'))), E'\x1f'),
               '$'))
        || CASE WHEN company IS NULL THEN ''::tsvector ELSE array_to_tsvector(ARRAY['%' || lower(
               public.unaccent('public.unaccent'::regdictionary, company))]) END
        || array_to_tsvector(array_remove(string_to_array('#' || replace(reverse(regexp_replace(
               array_to_string(phones, E'\x1f'), '[^0-9\x1f]', '', 'g')), E'\x1f', E'\x1f#'),
               E'\x1f'), '#'));
END
$$;

-- bio_vector, everything else that is searched:
--   B  company and tag words (`simple`, folded): their own band, below names and emails
--      and above the bio. They are not in name_vector: a word common in company names
--      ("lead", "data") would make every name band's estimate wrong, and a band that
--      walked the id index for "lead" in names read the whole table (1.3 s).
--   C  the title and the description (`english`: "negotiating" finds "negotiation"),
--      the location (`simple`, folded).
CREATE FUNCTION contactbook_bio_vector(
    description text, title text, location text, company text, tags text[]
) RETURNS tsvector
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN setweight(to_tsvector('simple', lower(public.unaccent('public.unaccent'::regdictionary,
               concat_ws(' ', company, array_to_string(tags, ' '))))), 'B')
        || setweight(to_tsvector('english', concat_ws(' ', title, description)), 'C')
        || setweight(to_tsvector('simple', coalesce(lower(public.unaccent(
               'public.unaccent'::regdictionary, location)), '')), 'C');
END
$$;

ALTER TABLE contacts
    DROP COLUMN search_vector,
    DROP COLUMN name_only_vector,
    DROP COLUMN name_vector,
    ADD COLUMN phones text[] NOT NULL DEFAULT '{}',
    ADD COLUMN title text,
    ADD COLUMN company text,
    ADD COLUMN location text,
    ADD COLUMN tags text[] NOT NULL DEFAULT '{}',
    ADD COLUMN name_vector tsvector GENERATED ALWAYS AS (
        contactbook_name_vector(first_name, last_name, email, company, tags, phones)
    ) STORED,
    ADD COLUMN bio_vector tsvector GENERATED ALWAYS AS (
        contactbook_bio_vector(description, title, location, company, tags)
    ) STORED;

-- Every word of a contact for the company band and the bio band ("every word
-- somewhere"): the names (A of name_vector) and bio_vector. The email parts stay out:
-- nearly every address and local part is a word of its own, and indexing a million of
-- them a second time made this index's build 15 s instead of 4.
CREATE FUNCTION contactbook_text_vector(name_vector tsvector, bio_vector tsvector)
    RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN ts_filter(name_vector, '{a}') || bio_vector;

-- The name words come from the stored vector's names (weight A, without the initials).
CREATE OR REPLACE FUNCTION contactbook_remember_name_words() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_name_words (word)
    SELECT DISTINCT words.lexeme
    FROM changed_rows, unnest(ts_filter(changed_rows.name_vector, '{a}')) AS words
    WHERE words.lexeme NOT LIKE '^%'
    ORDER BY 1
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

-- What a contacts table has besides its columns: `contacts`, or the table an empty-table
-- import fills before it takes the place of `contacts`. One statement a row, in the
-- order to build them: the longest builds first (two connections building them at
-- once then finish together), the triggers last. Object names are the table's name
-- and a fixed suffix (trigger names belong to their table and do not change).
CREATE FUNCTION contactbook_contacts_ddl(target text)
    RETURNS TABLE (kind text, name text, statement text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT d.kind, target || d.suffix, format(d.ddl, target, target || d.suffix)
    FROM (VALUES
        (6, 'constraint', '_pkey', 'ALTER TABLE %I ADD CONSTRAINT %I PRIMARY KEY (id)'),
        (7, 'constraint', '_nimble_id_key', 'ALTER TABLE %I ADD CONSTRAINT %I UNIQUE (nimble_id)'),
        (2, 'index', '_text_idx',
            'CREATE INDEX %2$I ON %1$I USING gin '
            '(contactbook_text_vector(name_vector, bio_vector))'),
        (1, 'index', '_name_vector_idx', 'CREATE INDEX %2$I ON %1$I USING gin (name_vector)'),
        -- The company and tag words alone, for the company band's plans (weight B of
        -- bio_vector; as for the names, a weight is checked on the row, not the index).
        (3, 'index', '_company_idx',
            'CREATE INDEX %2$I ON %1$I USING gin (ts_filter(bio_vector, ''{b}''))'),
        (3, 'index', '_names_idx',
            'CREATE INDEX %2$I ON %1$I USING gin (ts_filter(name_vector, ''{a}''))'),
        (4, 'index', '_person_key_idx',
            'CREATE INDEX %2$I ON %1$I '
            '(contactbook_person_key(email, first_name, last_name, description)) '
            'WHERE deleted_at IS NULL'),
        (5, 'index', '_email_lower_idx', 'CREATE INDEX %2$I ON %1$I (lower(email))'),
        -- The contacts a full sync removed, for listing them (?removed=true) and bringing
        -- them back: few (SYNC_MAX_REMOVALS_PERCENT), so the index is small.
        (5, 'index', '_removed_idx',
            'CREATE INDEX %2$I ON %1$I (id) WHERE deleted_at IS NOT NULL'),
        (8, 'trigger', '_name_words_insert',
            'CREATE TRIGGER contacts_name_words_insert AFTER INSERT ON %1$I '
            'REFERENCING NEW TABLE AS changed_rows '
            'FOR EACH STATEMENT EXECUTE FUNCTION contactbook_remember_name_words()'),
        (9, 'trigger', '_name_words_update',
            'CREATE TRIGGER contacts_name_words_update AFTER UPDATE ON %1$I '
            'REFERENCING NEW TABLE AS changed_rows '
            'FOR EACH STATEMENT EXECUTE FUNCTION contactbook_remember_name_words()')
    ) AS d(position, kind, suffix, ddl)
    ORDER BY d.position;
END;

DO $$
DECLARE
    ddl record;
BEGIN
    FOR ddl IN SELECT * FROM contactbook_contacts_ddl('contacts') WHERE kind <> 'constraint'
    LOOP
        EXECUTE ddl.statement;
    END LOOP;
END
$$;
"""

DOWNGRADE = r"""
DROP INDEX IF EXISTS contacts_text_idx;
DROP INDEX IF EXISTS contacts_name_vector_idx;
DROP INDEX IF EXISTS contacts_names_idx;
DROP INDEX IF EXISTS contacts_company_idx;
DROP INDEX IF EXISTS contacts_person_key_idx;
DROP INDEX IF EXISTS contacts_email_lower_idx;
DROP INDEX IF EXISTS contacts_removed_idx;
DROP TRIGGER IF EXISTS contacts_name_words_insert ON contacts;
DROP TRIGGER IF EXISTS contacts_name_words_update ON contacts;
DROP FUNCTION contactbook_contacts_ddl(text);
DROP FUNCTION contactbook_text_vector(tsvector, tsvector);

CREATE OR REPLACE FUNCTION contactbook_person_key(
    email text, first_name text, last_name text, description text
) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN email IS NOT NULL THEN 'e:' || lower(email)
        ELSE 'n:' || coalesce(lower(first_name), '') || '|' || coalesce(lower(last_name), '')
            || '|' || coalesce(description, '')
    END;

ALTER TABLE contacts
    DROP COLUMN name_vector,
    DROP COLUMN bio_vector,
    DROP COLUMN phones,
    DROP COLUMN title,
    DROP COLUMN company,
    DROP COLUMN location,
    DROP COLUMN tags,
    ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple',
            contactbook_fold(coalesce(first_name, '') || ' ' || coalesce(last_name, ''))), 'A')
        || setweight(to_tsvector('simple', coalesce(contactbook_email_terms(email), '')), 'B')
        || setweight(to_tsvector('english', coalesce(description, '')), 'C')
    ) STORED,
    ADD COLUMN name_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', contactbook_name_terms(first_name, last_name)), 'A')
        || setweight(to_tsvector('simple', coalesce(contactbook_email_words(email), '')), 'B')
    ) STORED,
    ADD COLUMN name_only_vector tsvector GENERATED ALWAYS AS (
        to_tsvector('simple', contactbook_name_terms(first_name, last_name))
    ) STORED;

DROP FUNCTION contactbook_bio_vector(text, text, text, text, text[]);
DROP FUNCTION contactbook_name_vector(text, text, text, text, text[], text[]);

CREATE INDEX contacts_search_vector_idx ON contacts USING gin (search_vector);
CREATE INDEX contacts_name_vector_idx ON contacts USING gin (name_vector);
CREATE INDEX contacts_name_only_vector_idx ON contacts USING gin (name_only_vector);
CREATE INDEX contacts_email_lower_idx ON contacts (lower(email));
CREATE INDEX contacts_person_key_idx
    ON contacts (contactbook_person_key(email, first_name, last_name, description))
    WHERE deleted_at IS NULL;
CREATE INDEX contacts_live_idx ON contacts (id) WHERE deleted_at IS NULL;

CREATE OR REPLACE FUNCTION contactbook_remember_name_words() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO contact_name_words (word)
    SELECT DISTINCT words.lexeme
    FROM changed_rows, unnest(changed_rows.name_only_vector) AS words
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
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
