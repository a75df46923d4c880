"""The company band chooses its plan from how common the word is; a hyphenated word is one prefix.

Revision ID: 0011
Revises: 0010

`contactbook_search` (migration 0009) found one word's company and tag matches by
walking the id index until the page was full. That is cheap for a word in many companies
or a tag ("lead": a few rows read), and reads the whole table for a word in none: every
surname and every bio word reaches this band, and a company word missing from the
index's statistics is estimated at about 25,000 rows, so the planner walked. Measured at
1,000,000 contacts on PostgreSQL 15: "Abernathy" 765 ms, "manag" 717 ms, against 2.7 ms
and 10 ms with this version. Now the band walks only when the estimate says the word is
in more than `company_walk_above` rows (statistics are exact for such words: they are
the index's most common elements); otherwise it reads the bitmap of the matches, at most
`name_matches` of them, as the several-words case already did.

A hyphenated word ("Adams-Cook", double-barrelled surnames) was made a prefix by
`to_tsquery`, which turns it into a phrase of the whole word and each part, every one a
prefix: 'cook':* merges the posting lists of every word starting with "cook" (21 ms).
The whole word's own lexeme as a prefix finds the same people (2.6 ms).

With several words, the company band now first looks whether any word is in any
company or tags at all (one look per word at the company index): two bio words ("manag
engin") paid 400 ms for a bitmap of the text vector that could find no company.

Filters (`tag=`, `company=`) were intersected in the index wherever the planner chose,
and it chose to intersect a third of the table's posting list ("customer") with a first
name's 1,500 rows (37 ms instead of 7). A filter is now checked on each row the text
finds when the text is rare or the filter common, and intersected in the index only
when a rare filter meets a common text.

The function is replaced whole (CREATE OR REPLACE keeps its signature and grants);
downgrading puts back 0009's functions.
"""

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE OR REPLACE FUNCTION contactbook_search(
    p_text text,
    p_words text[],
    p_excluded text[],
    p_limit integer,
    p_offset integer,
    p_tags text[] DEFAULT '{}',
    p_company text DEFAULT NULL,
    p_phone text DEFAULT NULL
) RETURNS TABLE (
    total bigint, id bigint, nimble_id text, first_name text, last_name text, email text,
    description text, phone text, phones text[], title text, company text, location text,
    tags text[], band integer, score double precision, corrections text[]
)
    LANGUAGE plpgsql STABLE
    SET plan_cache_mode = force_custom_plan
    SET jit = off
    SET enable_indexscan = on
    SET enable_bitmapscan = on
    SET enable_seqscan = on
    SET synchronize_seqscans = off
AS $$
#variable_conflict use_column
DECLARE
    -- Bounds (docs/search.md explains each).
    prefix_walk constant integer := 200;
    walk_above constant bigint := 5000;
    company_walk_above constant bigint := 30000;
    company_matches constant integer := 1000;
    filter_in_index_above constant bigint := 20000;
    compound constant text := '^\w+(-\w+)+$';
    name_matches constant integer := 5000;
    bio_candidates constant integer := 1000;
    typo_candidates constant integer := 500;
    some_words_candidates constant integer := 100;
    exact_count_below constant bigint := 1000;
    count_limit constant integer := 10000;
    fallback_below constant bigint := 10;
    typo_alternatives constant integer := 5;

    need integer := p_offset + p_limit;
    several boolean := cardinality(p_words) > 1;
    q_exact tsquery;    -- every word exactly (websearch syntax), names and emails: `simple`
    q_stem tsquery;     -- the same for the bio: `english`
    q_prefix tsquery;   -- every word as a prefix
    q_short tsquery;    -- the words of one or two letters, as initials
    q_compound tsquery; -- the hyphenated words, each as one prefix
    in_company boolean; -- some word is in some company or tags (band 7, several words)
    word_queries tsquery[]; -- each word as a prefix (band 7, several words)
    q_names tsquery;    -- exact or prefix: name_vector
    q_any tsquery;      -- exact or stem: contactbook_text_vector
    q_some tsquery;     -- any one word
    q_filters tsquery;  -- tag= and company=
    q_filters_index tsquery;  -- q_filters, to intersect in the index (a rare filter)
    q_filters_row tsquery;    -- q_filters, to check on each row (a common filter)
    q_phone tsquery;
    q_typo tsquery;
    lexemes text[];
    table_rows bigint;
    found_ids bigint[] := '{}';
    found_bands integer[] := '{}';
    found_scores double precision[] := '{}';
    part_ids bigint[];
    part_bands integer[];
    part_scores double precision[];
    part_size bigint;
    expected bigint;
    take integer;
    found_total bigint := 0;
    fixes text[] := '{}';
BEGIN
    IF cardinality(p_words) = 0 THEN
        RETURN;
    END IF;
    SELECT websearch_to_tsquery('simple', contactbook_fold(p_text)),
           websearch_to_tsquery('english', p_text),
           to_tsquery('simple', nullif(concat_ws(' & ',
               (SELECT string_agg(contactbook_tsquery_operand(contactbook_fold(w)) || ':*', ' & ')
                FROM unnest(p_words) AS w
                WHERE contactbook_fold(w) !~ '^\w{1,2}$' AND contactbook_fold(w) !~ compound),
               (SELECT string_agg('!' || contactbook_tsquery_operand(contactbook_fold(w)), ' & ')
                FROM unnest(p_excluded) AS w)), '')),
           to_tsquery('simple',
               (SELECT string_agg(contactbook_tsquery_operand(contactbook_fold(w)), ' | ')
                FROM unnest(p_words) AS w)),
           (SELECT array_agg(lexeme) FROM unnest(to_tsvector('simple',
               contactbook_fold(array_to_string(p_words, ' '))))),
           (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'contacts'::regclass)
      INTO q_exact, q_stem, q_prefix, q_some, lexemes, table_rows;
    -- A hyphenated word ("Adams-Cook") is a lexeme of its own beside its parts; as a
    -- prefix, that lexeme alone says it all, where to_tsquery would also make each part a
    -- prefix ('cook':*, a merge of every word starting with "cook": 20 ms).
    SELECT string_agg(contactbook_tsquery_operand(contactbook_fold(w)) || ':*', ' & ')::tsquery
      INTO q_compound
      FROM unnest(p_words) AS w WHERE contactbook_fold(w) ~ compound;
    IF q_compound IS NOT NULL THEN
        q_prefix := CASE WHEN q_prefix IS NULL THEN q_compound ELSE q_prefix && q_compound END;
    END IF;
    -- A word of one or two letters is a prefix of a name word only, through the initials
    -- (`^t`, `^to`: migration 0006): one posting list instead of a merge of thousands.
    SELECT string_agg('''^' || contactbook_fold(w) || '''', ' & ')::tsquery
      INTO q_short
      FROM unnest(p_words) AS w WHERE contactbook_fold(w) ~ '^\w{1,2}$';
    q_prefix := CASE WHEN q_short IS NULL THEN q_prefix
                     WHEN q_prefix IS NULL THEN q_short
                     ELSE q_prefix && q_short END;
    q_names := q_exact || q_prefix;
    q_any := q_exact || q_stem;
    -- Filters are lexemes of name_vector (migration 0006): `$tag` and `%company`.
    q_filters := contactbook_filters(p_tags, p_company);
    -- A filter is checked on each row the text finds when the text is rare or the filter
    -- common ("customer": a third of the rows): intersecting its posting list (300,000
    -- entries, 27 ms) would cost more than the search. A rare filter on a common text is
    -- intersected in the index. With custom plans, the unused one of the two conditions
    -- in the statements below folds away.
    IF q_filters IS NOT NULL AND (
            contactbook_estimate(
                'SELECT 1 FROM contacts c'
                ' WHERE contactbook_text_vector(c.name_vector, c.bio_vector) @@ $1'
                ' OR c.name_vector @@ $2', q_any, q_names) < filter_in_index_above
            OR contactbook_estimate(
                'SELECT 1 FROM contacts c WHERE c.name_vector @@ $1 AND $2 IS NULL',
                q_filters, NULL) > table_rows / 10) THEN
        q_filters_row := q_filters;
    ELSE
        q_filters_index := q_filters;
    END IF;

    -- Band 0: a phone number. The stored number ends with the typed digits ('#' and the
    -- digits reversed, as a prefix), or the typed digits end with the stored number (a
    -- number typed with a country code the stored one lacks).
    IF length(p_phone) >= 7 THEN
        SELECT string_agg(operand, ' | ')::tsquery INTO q_phone
          FROM (SELECT contactbook_tsquery_operand('#' || reverse(p_phone)) || ':*'
                UNION ALL
                SELECT contactbook_tsquery_operand('#' || left(reverse(p_phone), k))
                FROM generate_series(7, length(p_phone) - 1) AS k) AS phone(operand);
        SELECT coalesce(array_agg(m.id ORDER BY m.id), '{}') INTO part_ids
          FROM (SELECT c.id FROM contacts c
                WHERE c.name_vector @@ q_phone AND c.deleted_at IS NULL
                  AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                  AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                ORDER BY c.id LIMIT name_matches) AS m;
        found_ids := part_ids;
        found_bands := array_fill(0, ARRAY[cardinality(part_ids)]);
        found_scores := array_fill(0::double precision, ARRAY[cardinality(part_ids)]);
        found_total := cardinality(part_ids);
    END IF;

    -- Bands 1-6: every word in the name or the email (name_vector).
    --   1 every word exactly, all in the name (weight A)   2 ... in the name and email (A, B)
    --   3 every word as a prefix, at least one whole, all in the name   4 ... name and email
    --   5 every word only as a prefix, in the name   6 ... name and email
    -- Within a band, id order.
    IF NOT several THEN
        -- One word: one walk per band, in id order, each stopping after the page, so a
        -- name shared by 60,000 people costs what a rare one costs. The walk pays off
        -- only for a word in more than walk_above rows (12,000 rows read, 6 ms, for a
        -- name the bitmap reads 1,500 times in 2 ms); below, the bitmap.
        expected := contactbook_estimate(
            'SELECT 1 FROM contacts c WHERE c.name_vector @@ $1 AND c.deleted_at IS NULL'
            ' AND ($2 IS NULL OR c.name_vector @@ $2)', q_names, q_filters);
        IF expected <= walk_above THEN
            PERFORM set_config('enable_indexscan', 'off', true);
        END IF;
        SELECT coalesce(array_agg(b.id ORDER BY b.band, b.id), '{}'),
               coalesce(array_agg(b.band ORDER BY b.band, b.id), '{}')
          INTO part_ids, part_bands
          FROM ((SELECT c.id, 1 AS band FROM contacts c
                 WHERE ts_filter(c.name_vector, '{a}') @@ q_exact
                   AND (cardinality(p_excluded) = 0 OR c.name_vector @@ q_exact)
                   AND c.deleted_at IS NULL
                   AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                   AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                 ORDER BY c.id LIMIT greatest(prefix_walk, need) + 1)
                UNION ALL
                (SELECT c.id, 2 FROM contacts c
                 WHERE c.name_vector @@ q_exact AND ts_filter(c.name_vector, '{a,b}') @@ q_exact
                   AND NOT ts_filter(c.name_vector, '{a}') @@ q_exact
                   AND c.deleted_at IS NULL
                   AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                   AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                 ORDER BY c.id LIMIT greatest(prefix_walk, need) + 1)
                UNION ALL
                (SELECT c.id, 5 FROM contacts c
                 WHERE ts_filter(c.name_vector, '{a}') @@ q_prefix
                   AND NOT ts_filter(c.name_vector, '{a,b}') @@ q_exact
                   AND (cardinality(p_excluded) = 0 OR c.name_vector @@ q_prefix)
                   AND c.deleted_at IS NULL
                   AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                   AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                 ORDER BY c.id LIMIT greatest(prefix_walk, need) + 1)
                UNION ALL
                (SELECT c.id, 6 FROM contacts c
                 WHERE c.name_vector @@ q_prefix
                   AND ts_filter(c.name_vector, '{a,b}') @@ q_prefix
                   AND NOT ts_filter(c.name_vector, '{a}') @@ q_prefix
                   AND NOT ts_filter(c.name_vector, '{a,b}') @@ q_exact
                   AND c.deleted_at IS NULL
                   AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                   AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                 ORDER BY c.id LIMIT greatest(prefix_walk, need) + 1)
                LIMIT need + 1) AS b;
        PERFORM set_config('enable_indexscan', 'on', true);
        -- One row more than the page needs says whether the bands ended.
        IF cardinality(part_ids) <= need THEN
            part_size := cardinality(part_ids);
        ELSE
            part_size := NULL;
            part_ids := part_ids[1:need];
            part_bands := part_bands[1:need];
        END IF;
    ELSE
        -- Several words: one bitmap scan of every row that has all the words (as words or
        -- prefixes), sorted into bands afterwards. All the words together are rare ("tom
        -- brooks": a few dozen rows) even when each is common, but to the planner two words
        -- that never meet in one name ("james justin") look like thousands of matches, and
        -- a walk for them would read every row. At most name_matches rows are read.
        PERFORM set_config('enable_indexscan', 'off', true);
        PERFORM set_config('enable_seqscan', 'off', true);
        SELECT coalesce(array_agg(b.id ORDER BY b.band, b.id), '{}'),
               coalesce(array_agg(b.band ORDER BY b.band, b.id), '{}'),
               count(*)
          INTO part_ids, part_bands, part_size
          FROM (SELECT m.id, CASE
                    WHEN ts_filter(m.name_vector, '{a}') @@ q_exact THEN 1
                    WHEN ts_filter(m.name_vector, '{a,b}') @@ q_exact THEN 2
                    WHEN ts_filter(m.name_vector, '{a}') @@ q_prefix
                         AND ts_filter(m.name_vector, '{a,b}') @@ q_some THEN 3
                    WHEN ts_filter(m.name_vector, '{a,b}') @@ q_some THEN 4
                    WHEN ts_filter(m.name_vector, '{a}') @@ q_prefix THEN 5
                    ELSE 6
                END AS band
                FROM (SELECT c.id, c.name_vector FROM contacts c
                      WHERE c.name_vector @@ q_names AND c.deleted_at IS NULL
                        AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                  AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                      LIMIT name_matches) AS m) AS b;
        PERFORM set_config('enable_indexscan', 'on', true);
        PERFORM set_config('enable_seqscan', 'on', true);
        IF part_size >= name_matches THEN
            part_size := NULL;  -- capped: there may be more
        END IF;
        part_ids := part_ids[1:need];
        part_bands := part_bands[1:need];
    END IF;
    found_ids := found_ids || part_ids;
    found_bands := found_bands || part_bands;
    found_scores := found_scores || array_fill(0::double precision, ARRAY[cardinality(part_ids)]);
    IF part_size IS NULL THEN  -- not read to its end: estimated, or counted when small
        expected := contactbook_estimate(
            'SELECT 1 FROM contacts c WHERE c.name_vector @@ $1 AND c.deleted_at IS NULL'
            ' AND ($2 IS NULL OR c.name_vector @@ $2)', q_names, q_filters);
        IF expected > exact_count_below THEN
            part_size := expected;
        ELSE
            SELECT count(*) INTO part_size
              FROM (SELECT 1 FROM contacts c
                    WHERE c.name_vector @@ q_names AND c.deleted_at IS NULL
                      AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                  AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                    LIMIT count_limit) AS counted;
        END IF;
        part_size := greatest(part_size, cardinality(part_ids));
    END IF;
    found_total := found_total + part_size;

    -- Band 7: every word in the names, the company or the tags, some only in the company
    -- or the tags, in id order. Company and tag words are weight B of bio_vector, with an
    -- index of their own (`ts_filter(bio_vector, '{b}')`), whose statistics see how common
    -- a company word is.
    --   One word in more than company_walk_above rows (a tag, a word of many company
    -- names: the index's most common elements, estimated well) walks the id index; any
    -- other, its bitmap, at most name_matches rows, sorted (the walk would read the whole
    -- table for a word in no company).
    --   Several words: per word, the union of the bitmaps of the names' and the
    -- companies' indexes, those intersected, at most company_matches rows, sorted (the
    -- text vector's bitmap would merge every bio word that starts like one of them: "data
    -- lead", 220 ms; "manag engin", 400 ms for no company at all). Only word positions
    -- are written into that statement, never a word: the words' queries are its first
    -- parameter. q_names then checks the text as typed (phrases, excluded words).
    --   Several words with `or`: the text vector's bitmap, at most name_matches rows,
    -- sorted, and only if some word is in some company or tags at all.
    IF cardinality(found_ids) < need THEN
        take := need - cardinality(found_ids);
        part_ids := '{}';
        PERFORM set_config('enable_indexscan', 'off', true);
        PERFORM set_config('enable_seqscan', 'off', true);
        IF several AND p_text !~* '(^|\s)or(\s|$)' THEN
            SELECT array_agg(to_tsquery('simple',
                       contactbook_tsquery_operand(contactbook_fold(w)) || ':*') ORDER BY n)
              INTO word_queries
              FROM unnest(p_words) WITH ORDINALITY AS u(w, n);
            EXECUTE format(
                'SELECT coalesce(array_agg(m.id ORDER BY m.id), ''{}'')'
                ' FROM (SELECT k.id FROM (SELECT c.id FROM contacts c'
                '       WHERE %s AND NOT c.name_vector @@ $2'
                '         AND ts_filter(contactbook_text_vector(c.name_vector, c.bio_vector),'
                '                       ''{a,b}'') @@ $2'
                '         AND c.deleted_at IS NULL AND ($3 IS NULL OR c.name_vector @@ $3)'
                '         AND ($6 IS NULL OR (c.name_vector @@ $6) IS TRUE)'
                '       LIMIT $4) AS k'
                '       ORDER BY k.id LIMIT $5) AS m',
                (SELECT string_agg(format(
                            '(ts_filter(c.name_vector, ''{a}'') @@ $1[%1$s]'
                            ' OR ts_filter(c.bio_vector, ''{b}'') @@ $1[%1$s])', n), ' AND ')
                 FROM generate_series(1, cardinality(word_queries)) AS n))
              INTO part_ids
              USING word_queries, q_names, q_filters_index, company_matches, take + 1,
                    q_filters_row;
        ELSIF several THEN
            SELECT bool_or(EXISTS (
                       SELECT 1 FROM contacts c
                       WHERE ts_filter(c.bio_vector, '{b}') @@ to_tsquery('simple',
                           contactbook_tsquery_operand(contactbook_fold(w)) || ':*')))
              INTO in_company
              FROM unnest(p_words) AS w;
            IF in_company THEN
                SELECT coalesce(array_agg(m.id ORDER BY m.id), '{}') INTO part_ids
                  FROM (SELECT k.id FROM
                            (SELECT c.id,
                                    contactbook_text_vector(c.name_vector, c.bio_vector) AS v
                             FROM contacts c
                             WHERE contactbook_text_vector(c.name_vector, c.bio_vector) @@ q_names
                               AND NOT c.name_vector @@ q_names AND c.deleted_at IS NULL
                               AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                  AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                             LIMIT name_matches) AS k
                        WHERE ts_filter(k.v, '{a,b}') @@ q_names
                        ORDER BY k.id LIMIT take + 1) AS m;
            END IF;
        ELSIF contactbook_estimate(
                'SELECT 1 FROM contacts c WHERE ts_filter(c.bio_vector, ''{b}'') @@ $1'
                ' AND ($2 IS NULL OR c.name_vector @@ $2)', q_names, q_filters)
              <= company_walk_above THEN
            SELECT coalesce(array_agg(m.id ORDER BY m.id), '{}') INTO part_ids
              FROM (SELECT k.id FROM
                        (SELECT c.id FROM contacts c
                         WHERE ts_filter(c.bio_vector, '{b}') @@ q_names
                           AND NOT c.name_vector @@ q_names AND c.deleted_at IS NULL
                           AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                  AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                         LIMIT name_matches) AS k
                    ORDER BY k.id LIMIT take + 1) AS m;
        ELSE
            PERFORM set_config('enable_indexscan', 'on', true);
            SELECT coalesce(array_agg(m.id ORDER BY m.id), '{}') INTO part_ids
              FROM (SELECT c.id FROM contacts c
                    WHERE ts_filter(c.bio_vector, '{b}') @@ q_names
                      AND NOT c.name_vector @@ q_names AND c.deleted_at IS NULL
                      AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                  AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                    ORDER BY c.id LIMIT take + 1) AS m;
        END IF;
        PERFORM set_config('enable_indexscan', 'on', true);
        PERFORM set_config('enable_seqscan', 'on', true);
        IF cardinality(part_ids) <= take THEN
            found_total := found_total + cardinality(part_ids);
        ELSE
            part_ids := part_ids[1:take];
            found_total := found_total + greatest(take, contactbook_estimate(
                'SELECT 1 FROM contacts c WHERE ts_filter(c.bio_vector, ''{b}'') @@ $1'
                ' AND c.deleted_at IS NULL AND ($2 IS NULL OR c.name_vector @@ $2)',
                q_names, q_filters));
        END IF;
        found_ids := found_ids || part_ids;
        found_bands := found_bands || array_fill(7, ARRAY[cardinality(part_ids)]);
        found_scores := found_scores
            || array_fill(0::double precision, ARRAY[cardinality(part_ids)]);
    END IF;

    -- Band 8: every word somewhere, the bio included (`english`, so "negotiating" finds
    -- "negotiation"), and not in name_vector alone. Scored with ts_rank_cd among the
    -- first bio_candidates such rows in the table's order (a word in a third of the bios
    -- is never scored a third of the table at a time). One word: the planner's estimate
    -- is good, and it reads those rows from the start of the table (a common word: a few
    -- thousand rows) or through the bitmap of its matches (a rare one). Several words:
    -- always the bitmap, which ANDs their posting lists.
    part_size := NULL;
    part_ids := '{}';
    IF cardinality(found_ids) < need THEN
        IF several THEN
            PERFORM set_config('enable_seqscan', 'off', true);
            PERFORM set_config('enable_indexscan', 'off', true);
        END IF;
        SELECT coalesce(array_agg(s.id ORDER BY s.score DESC, s.id), '{}'),
               coalesce(array_agg(s.score ORDER BY s.score DESC, s.id), '{}'),
               max(s.band_size)
          INTO part_ids, part_scores, part_size
          FROM (SELECT m.id, cover / (1 + cover) AS score, count(*) OVER () AS band_size
                FROM (SELECT c.id,
                             contactbook_text_vector(c.name_vector, c.bio_vector) AS text_vector
                      FROM contacts c
                      WHERE contactbook_text_vector(c.name_vector, c.bio_vector) @@ q_any
                        AND NOT c.name_vector @@ q_names
                        AND NOT ts_filter(contactbook_text_vector(c.name_vector, c.bio_vector),
                                          '{a,b}') @@ q_names
                        AND c.deleted_at IS NULL
                        AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                  AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                      LIMIT greatest(bio_candidates, need)) AS m,
                     ts_rank_cd(m.text_vector, q_any) AS cover) AS s;
        PERFORM set_config('enable_indexscan', 'on', true);
        PERFORM set_config('enable_seqscan', 'on', true);
        part_ids := part_ids[1:need - cardinality(found_ids)];
        part_scores := part_scores[1:need - cardinality(found_ids)];
        found_ids := found_ids || part_ids;
        found_bands := found_bands || array_fill(8, ARRAY[cardinality(part_ids)]);
        found_scores := found_scores || part_scores;
        part_size := coalesce(part_size, 0);
        IF part_size >= greatest(bio_candidates, need) THEN
            part_size := NULL;  -- capped: there may be more
        END IF;
    END IF;
    IF part_size IS NOT NULL THEN
        found_total := found_total + part_size;
    ELSE
        -- Not read to its end (or not read: the names filled the page). The text vector
        -- holds the names too, so its estimate stands for every match, names included;
        -- when it is small, the bio-only matches are counted and added to the names'.
        expected := contactbook_estimate(
            'SELECT 1 FROM contacts c'
            ' WHERE contactbook_text_vector(c.name_vector, c.bio_vector) @@ $1'
            ' AND c.deleted_at IS NULL AND ($2 IS NULL OR c.name_vector @@ $2)', q_any, q_filters);
        IF expected <= exact_count_below THEN
            SELECT count(*) INTO part_size
              FROM (SELECT 1 FROM contacts c
                    WHERE contactbook_text_vector(c.name_vector, c.bio_vector) @@ q_any
                      AND NOT c.name_vector @@ q_names
                      AND NOT ts_filter(contactbook_text_vector(c.name_vector, c.bio_vector),
                                        '{a,b}') @@ q_names
                      AND c.deleted_at IS NULL
                      AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                  AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                    LIMIT count_limit) AS counted;
            found_total := found_total + part_size;
        ELSE
            found_total := greatest(found_total + cardinality(part_ids), expected);
        END IF;
    END IF;

    -- Bands 9 and 10, only when the full text found fewer than fallback_below contacts.
    -- 9, typos: each word that is no name word is replaced by its nearest name words,
    -- ranked by similarity to the name. 10, some of the words (several words), more
    -- words first, in name_vector.
    IF found_total < fallback_below AND cardinality(lexemes) > 0 THEN
        SELECT t.query, t.corrections INTO q_typo, fixes
          FROM contactbook_typo_query(lexemes, typo_alternatives) AS t;
        IF q_typo IS NOT NULL THEN
            SELECT coalesce(array_agg(s.id ORDER BY s.score DESC, s.id), '{}'),
                   coalesce(array_agg(s.score ORDER BY s.score DESC, s.id), '{}'),
                   max(s.band_size)
              INTO part_ids, part_scores, part_size
              FROM (SELECT m.id, similarity * 0.999 AS score, count(*) OVER () AS band_size
                    FROM (SELECT c.id, contactbook_name_terms(c.first_name, c.last_name) AS terms
                          FROM contacts c
                          WHERE c.name_vector @@ q_typo AND c.deleted_at IS NULL
                            AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                  AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                            AND c.id <> ALL (found_ids)
                          ORDER BY c.id LIMIT greatest(typo_candidates, need)) AS m,
                         word_similarity(contactbook_fold(array_to_string(p_words, ' ')),
                                         m.terms) AS similarity) AS s;
            part_ids := part_ids[1:greatest(need - cardinality(found_ids), 0)];
            part_scores := part_scores[1:greatest(need - cardinality(found_ids), 0)];
            found_ids := found_ids || part_ids;
            found_bands := found_bands || array_fill(9, ARRAY[cardinality(part_ids)]);
            found_scores := found_scores || part_scores;
            found_total := found_total + CASE
                WHEN coalesce(part_size, 0) >= greatest(typo_candidates, need)
                THEN greatest(typo_candidates, need) ELSE coalesce(part_size, 0) END;
        END IF;
        IF several THEN
            PERFORM set_config('enable_indexscan', 'off', true);
            PERFORM set_config('enable_seqscan', 'off', true);
            SELECT coalesce(array_agg(s.id ORDER BY s.score DESC, s.id), '{}'),
                   coalesce(array_agg(s.score ORDER BY s.score DESC, s.id), '{}'),
                   max(s.band_size)
              INTO part_ids, part_scores, part_size
              FROM (SELECT m.id, cover / (1 + cover) AS score, count(*) OVER () AS band_size
                    FROM (SELECT c.id, c.name_vector FROM contacts c
                          WHERE c.name_vector @@ q_some AND c.deleted_at IS NULL
                            AND (q_filters_index IS NULL OR c.name_vector @@ q_filters_index)
                  AND (q_filters_row IS NULL OR (c.name_vector @@ q_filters_row) IS TRUE)
                            AND c.id <> ALL (found_ids)
                          LIMIT greatest(some_words_candidates, need)) AS m,
                         ts_rank_cd(m.name_vector, q_some) AS cover) AS s;
            PERFORM set_config('enable_indexscan', 'on', true);
            PERFORM set_config('enable_seqscan', 'on', true);
            part_ids := part_ids[1:greatest(need - cardinality(found_ids), 0)];
            part_scores := part_scores[1:greatest(need - cardinality(found_ids), 0)];
            found_ids := found_ids || part_ids;
            found_bands := found_bands || array_fill(10, ARRAY[cardinality(part_ids)]);
            found_scores := found_scores || part_scores;
            found_total := found_total + CASE
                WHEN coalesce(part_size, 0) >= greatest(some_words_candidates, need)
                THEN greatest(some_words_candidates, need) ELSE coalesce(part_size, 0) END;
        END IF;
    END IF;

    -- A phone match may be a name match too: it stays where it ranks first.
    IF q_phone IS NOT NULL AND cardinality(found_ids) > 0 THEN
        SELECT array_agg(d.id ORDER BY d.position), array_agg(d.band ORDER BY d.position),
               array_agg(d.score ORDER BY d.position)
          INTO found_ids, found_bands, found_scores
          FROM (SELECT DISTINCT ON (u.id) u.id, u.band, u.score, u.position
                FROM unnest(found_ids, found_bands, found_scores)
                     WITH ORDINALITY AS u(id, band, score, position)
                ORDER BY u.id, u.position) AS d;
    END IF;

    RETURN QUERY
    SELECT found_total, c.id, c.nimble_id, c.first_name, c.last_name, c.email,
           c.description, c.phones[1], c.phones, c.title, c.company, c.location, c.tags,
           f.band, f.score, fixes
    FROM unnest(found_ids[p_offset + 1:need], found_bands[p_offset + 1:need],
                found_scores[p_offset + 1:need]) WITH ORDINALITY AS f(id, band, score, position)
    JOIN contacts c ON c.id = f.id
    ORDER BY f.position;
    IF NOT FOUND THEN  -- an empty page still says how many there are
        RETURN QUERY SELECT found_total, NULL::bigint, NULL, NULL, NULL, NULL, NULL, NULL,
                            NULL::text[], NULL, NULL, NULL, NULL::text[], NULL::integer,
                            NULL::double precision, fixes;
    END IF;
END
$$;
"""


def _migration_0009() -> ModuleType:
    """0009's module, for the downgrade (its name starts with a digit, so it is loaded
    from its file)."""
    path = Path(__file__).with_name("0009_search_function.py")
    spec = importlib.util.spec_from_file_location("search_function_0009", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    # 0009's own downgrade and upgrade: its three functions as it created them.
    previous = _migration_0009()
    op.execute(previous.DOWNGRADE)
    op.execute(previous.UPGRADE)
