"""Where a contact's values came from, and the rows an import could not fully use.

Revision ID: 0007
Revises: 0006

**What Nimble gave.** A sync clears a local phone, title, company, location or tag
that Nimble no longer has only when Nimble gave it: a phone a CSV import gave a
contact that was later linked stays when Nimble has none. So each contact remembers
what the last sync took from Nimble (`nimble_phones`, `nimble_title`,
`nimble_company`, `nimble_location`, `nimble_tags`; empty for a contact Nimble never
gave anything). A value "came from Nimble" when it is what Nimble gave: a CSV import
that changes it makes it the import's, without the import having to know about
Nimble at all. Remembering values rather than a flag per field is what lets lists be
shared: a contact's tags can hold some that came from Nimble and some from a CSV.

The merge rules are SQL functions, so the sync's two statements that apply remote
values (update a linked contact, link a CSV row) and the import's merge say the same:

- `contactbook_sync_text(remote, local, given)`: Nimble's value; without one, the
  local value unless it is what Nimble gave;
- `contactbook_sync_phones(remote, local, given)`: Nimble's numbers in Nimble's order
  (its primary stays the primary), then the local numbers Nimble never gave;
- `contactbook_sync_tags(remote, local, given)`: the local tags less those Nimble gave
  and no longer has, then Nimble's new ones (first-seen order);
- `contactbook_add_phones(phones, more)`, `contactbook_add_tags(tags, more)`: a list,
  then what `more` adds to it (an import's lists only ever grow).

Two numbers are the same when their digits are (`contactbook_phone_key`, the same key as
the client's and the CSV reader's): "+1 (415) 555-0142" and "1 415 555 0142" are one
number, kept in the spelling seen first. Tags are compared exactly, as sets.

**Filters.** `contactbook_filters(tags, company)` is the `tag=` / `company=` filter of
the contact listing as a tsquery on `name_vector`'s marker lexemes (migration 0006:
`$tag` for each tag, every one required, and `%company`, folded); NULL without any.
It is IMMUTABLE, so with constant arguments PostgreSQL evaluates it while planning and
its statistics see how rare the tag is (the query a sub-select would build is hidden
from them until run time).

**Import problems.** Rows with more cells than the header and email cells that are
not addresses are recorded with their line numbers in `import_runs.problems` (the
first MAX_RECORDED_PROBLEMS of them, `problem_count` counts all).

Adding columns without a volatile default rewrites nothing: this is instant on a
table of any size.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE contacts
    ADD COLUMN nimble_phones text[] NOT NULL DEFAULT '{}',
    ADD COLUMN nimble_title text,
    ADD COLUMN nimble_company text,
    ADD COLUMN nimble_location text,
    ADD COLUMN nimble_tags text[] NOT NULL DEFAULT '{}';

ALTER TABLE import_runs
    ADD COLUMN problems jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN problem_count integer NOT NULL DEFAULT 0;

CREATE FUNCTION contactbook_phone_key(phone text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    RETURN coalesce(nullif(regexp_replace(phone, '[^0-9]', '', 'g'), ''), phone);

CREATE FUNCTION contactbook_add_phones(phones text[], more text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ARRAY(
        SELECT phone FROM (
            SELECT DISTINCT ON (contactbook_phone_key(phone)) phone, position
            FROM unnest(coalesce(phones, '{}') || coalesce(more, '{}'))
                WITH ORDINALITY AS p(phone, position)
            ORDER BY contactbook_phone_key(phone), position
        ) AS firsts
        ORDER BY position
    );

CREATE FUNCTION contactbook_add_tags(tags text[], more text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ARRAY(
        SELECT tag FROM (
            SELECT DISTINCT ON (tag) tag, position
            FROM unnest(coalesce(tags, '{}') || coalesce(more, '{}'))
                WITH ORDINALITY AS t(tag, position)
            ORDER BY tag, position
        ) AS firsts
        ORDER BY position
    );

CREATE FUNCTION contactbook_sync_text(remote text, local text, given text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN coalesce(remote, CASE WHEN local IS DISTINCT FROM given THEN local END);

CREATE FUNCTION contactbook_sync_phones(remote text[], local text[], given text[])
    RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN contactbook_add_phones(remote, ARRAY(
        SELECT phone FROM unnest(local) WITH ORDINALITY AS l(phone, position)
        WHERE NOT EXISTS (
            SELECT 1 FROM unnest(given) AS g(phone)
            WHERE contactbook_phone_key(g.phone) = contactbook_phone_key(l.phone)
        )
        ORDER BY position
    ));

CREATE FUNCTION contactbook_sync_tags(remote text[], local text[], given text[])
    RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN contactbook_add_tags(ARRAY(
        SELECT tag FROM unnest(local) WITH ORDINALITY AS l(tag, position)
        WHERE tag = ANY (remote) OR NOT tag = ANY (coalesce(given, '{}'))
        ORDER BY position
    ), remote);

CREATE FUNCTION contactbook_filters(tags text[], company text) RETURNS tsquery
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (
        SELECT string_agg(contactbook_tsquery_operand(lexeme), ' & ')::tsquery
        FROM (
            SELECT '$' || contactbook_fold(btrim(tag)) FROM unnest(tags) AS tag
            WHERE btrim(tag) <> ''
            UNION ALL
            SELECT '%' || contactbook_fold(btrim(company)) WHERE btrim(company) <> ''
        ) AS wanted(lexeme)
    );
"""

DOWNGRADE = r"""
DROP FUNCTION contactbook_filters(text[], text);
DROP FUNCTION contactbook_sync_tags(text[], text[], text[]);
DROP FUNCTION contactbook_sync_phones(text[], text[], text[]);
DROP FUNCTION contactbook_sync_text(text, text, text);
DROP FUNCTION contactbook_add_tags(text[], text[]);
DROP FUNCTION contactbook_add_phones(text[], text[]);
DROP FUNCTION contactbook_phone_key(text);

ALTER TABLE import_runs DROP COLUMN problems, DROP COLUMN problem_count;

ALTER TABLE contacts
    DROP COLUMN nimble_phones,
    DROP COLUMN nimble_title,
    DROP COLUMN nimble_company,
    DROP COLUMN nimble_location,
    DROP COLUMN nimble_tags;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
