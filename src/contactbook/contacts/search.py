"""The one search function: used by the v1 endpoint, the v2 Celery task and the CLI.

How results are ranked (docs/search.md says the same for users): in bands, every
result of a band above every result of the next.

1. every word, exactly, in the name itself;
2. every word, exactly, in the name and email (or the email alone);
3. every word as a prefix, at least one of them whole, all in the name ("Dan Bro");
4. the same, not all in the name;
5. every word only as a prefix, in the name ("Dan" ranks Daniel Brooks here, below Dan
   Brooks in band 1);
6. the same, not all in the name (an email);
7. every word somewhere, the bio included (the bio in the `english` configuration, so
   "negotiating" finds "negotiation"), ranked by `ts_rank_cd` among the first
   BIO_CANDIDATES such rows in id order;
8. typos, only when bands 1-7 hold fewer than FALLBACK_BELOW contacts: each word that is
   no name word is replaced by its nearest name words (trigram similarity over
   `contact_name_words`, migration 0002), ranked by similarity to the name;
9. some of the words, same condition, queries of several words.

Bands 1-6 come in id order (older contacts first), which is what makes them cheap at a
million rows: names and emails have their own small vector (`name_vector`), a band is
an id-index walk that stops after the page, and a name shared by 60,000 people costs
what a rare one costs. A word in a third of the bios is never scored a third of the
table at a time (band 7 scores at most BIO_CANDIDATES rows). The reported `rank` is
9 - band + a score in [0, 1), so it decreases down the list.

`total` (the API's `X-Total-Count`) is exact when the result was read to its end (every
small result) or when the planner expects at most EXACT_COUNT_BELOW matches (counted);
otherwise it is PostgreSQL's estimate (EXPLAIN, from the text-search statistics): a
word in 300,000 bios is not counted.

The text always goes through `websearch_to_tsquery` (quoted phrases, `or`, `-word`) or,
for prefixes and "some words", through `to_tsquery` as quoted operands
(`contactbook_tsquery_operand`), so no input raises a syntax error or reaches the SQL
as SQL. Statements are never prepared: a generic plan cannot see how rare a word is.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from dataclasses import dataclass

import psycopg
from psycopg.pq import TransactionStatus

MAX_TEXT_LENGTH = 200
MAX_LIMIT = 100
MAX_OFFSET = 10_000

TYPO_CANDIDATES = 500
BIO_CANDIDATES = 1_000
SOME_WORDS_CANDIDATES = 100
PREFIX_WALK = 200
WALK_ABOVE = 5_000
EXACT_COUNT_BELOW = 1_000
COUNT_LIMIT = 10_000
NAME_MATCHES = 5_000
WALK_TIMEOUT = "150ms"
FALLBACK_BELOW = 10
TYPO_ALTERNATIVES = 5


class InvalidSearch(ValueError):
    """The search text or paging is unusable; the message says what to change."""


@dataclass(frozen=True)
class SearchPage:
    total: int
    contacts: list[dict]


def validate_search(text: str | None, limit: int, offset: int) -> str:
    """Return the text to search for, or raise InvalidSearch with a readable message."""
    if text is not None:
        text = text.replace("\x00", " ")  # PostgreSQL text cannot hold NUL
    if text is None or not text.strip():
        raise InvalidSearch("text must not be blank: give a name, an email or a word to find")
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidSearch(f"text is {len(text)} characters long; use at most {MAX_TEXT_LENGTH}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidSearch(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidSearch(f"offset must be between 0 and {MAX_OFFSET}, not {offset}")
    return text.strip()


# --------------------------------------------------------------------------- SQL

# The queries every band uses, built once per search and passed back as tsquery text.
# exact: names and emails (`simple`, folded, websearch syntax); stem: the bio (`english`);
# prefix: every word of two letters or more as a prefix (a one-letter prefix would merge
# the posting lists of a tenth of all name words); some_names: any one word; names:
# exact or prefix, for name_vector; any: exact or stem, for search_vector (no prefixes:
# prefix scans of the big bio index are what a typeahead query must not pay for).
# Words reach to_tsquery only as
# quoted operands (contactbook_tsquery_operand), so they are never read as query syntax.
PREPARE_QUERIES = """
WITH words AS (
    SELECT (SELECT string_agg(contactbook_tsquery_operand(contactbook_fold(w))
                              || CASE WHEN length(w) > 1 THEN ':*' ELSE '' END, ' & ')
            FROM unnest(%(positive)s::text[]) AS w) AS prefixes,
           (SELECT string_agg('!' || contactbook_tsquery_operand(contactbook_fold(w)), ' & ')
            FROM unnest(%(excluded)s::text[]) AS w) AS exclusions,
           (SELECT string_agg(contactbook_tsquery_operand(contactbook_fold(w)), ' | ')
            FROM unnest(%(positive)s::text[]) AS w) AS some_folded
), q AS (
    SELECT websearch_to_tsquery('simple', contactbook_fold(%(text)s)) AS exact,
           websearch_to_tsquery('english', %(text)s) AS stem,
           to_tsquery('simple', concat_ws(' & ', prefixes, exclusions)) AS prefix,
           to_tsquery('simple', some_folded) AS some_names
    FROM words
)
SELECT exact::text, prefix::text, (exact || prefix)::text AS names,
       (exact || stem)::text AS "any", some_names::text,
       (SELECT array_agg(lexeme)
        FROM unnest(to_tsvector('simple',
                                contactbook_fold(array_to_string(%(positive)s::text[], ' ')))))
           AS lexemes,
       (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'contacts'::regclass)
           AS table_rows
FROM q
"""

# Bands 1-6: every word in the name or email, in this order:
#   1 every word exactly, all in the name itself      2 ... split over name and email
#   3 every word as a prefix, at least one whole word, all in the name   4 ... not all in it
#   5 every word only as a prefix, all in the name    6 ... not all in it
# ("Dan" ranks Dan Brooks in band 1, Daniel Brooks in band 5; "Dan Bro" finds Dan Brooks
# in band 3, before Daniel Brown in band 5.) Within a band, id order. The outer LIMIT
# stops at the first branches that fill the page, and a branch reads at most `walk` rows
# in id order, so a name shared by 60,000 people costs no more than a rare one.
# `name_only_vector` is the name alone (an excluded word must stay excluded from the
# email too, hence `excluding`). Bands 3-4 are empty for one word (its whole-word match
# is band 1), so one word has its own statement.
NAME_BANDS_ONE_WORD = """
(SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description,
    c.phones[1] AS phone, c.phones, c.title, c.company, c.location, c.tags, 1 AS band
 FROM contacts c
 WHERE ts_filter(c.name_vector, '{a}') @@ %(exact)s::tsquery
   AND (NOT %(excluding)s OR c.name_vector @@ %(exact)s::tsquery) AND c.deleted_at IS NULL
   AND (%(filters)s::tsquery IS NULL OR c.name_vector @@ %(filters)s::tsquery)
 ORDER BY c.id LIMIT %(walk)s)
UNION ALL
(SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description,
    c.phones[1] AS phone, c.phones, c.title, c.company, c.location, c.tags, 2 AS band
 FROM contacts c
 WHERE c.name_vector @@ %(exact)s::tsquery
   AND NOT ts_filter(c.name_vector, '{a}') @@ %(exact)s::tsquery
   AND c.deleted_at IS NULL
   AND (%(filters)s::tsquery IS NULL OR c.name_vector @@ %(filters)s::tsquery)
 ORDER BY c.id LIMIT %(walk)s)
UNION ALL
(SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description,
    c.phones[1] AS phone, c.phones, c.title, c.company, c.location, c.tags, 5 AS band
 FROM contacts c
 WHERE ts_filter(c.name_vector, '{a}') @@ %(prefix)s::tsquery
   AND NOT c.name_vector @@ %(exact)s::tsquery
   AND (NOT %(excluding)s OR c.name_vector @@ %(prefix)s::tsquery) AND c.deleted_at IS NULL
   AND (%(filters)s::tsquery IS NULL OR c.name_vector @@ %(filters)s::tsquery)
 ORDER BY c.id LIMIT %(walk)s)
UNION ALL
(SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description,
    c.phones[1] AS phone, c.phones, c.title, c.company, c.location, c.tags, 6 AS band
 FROM contacts c
 WHERE c.name_vector @@ %(prefix)s::tsquery
   AND NOT ts_filter(c.name_vector, '{a}') @@ %(prefix)s::tsquery
   AND NOT c.name_vector @@ %(exact)s::tsquery AND c.deleted_at IS NULL
   AND (%(filters)s::tsquery IS NULL OR c.name_vector @@ %(filters)s::tsquery)
 ORDER BY c.id LIMIT %(walk)s)
LIMIT %(take)s
"""

# Several words: the same bands, from one bitmap scan of every row that has all the
# words (as words or prefixes), classified afterwards. All the words together are rare
# ("tom brooks": a few dozen rows) even when each is common, but to the planner two
# words that never meet in one name ("james justin") look like thousands of matches, and
# an id-index walk for them would read every row. At most NAME_MATCHES rows are read.
NAME_BANDS_SEVERAL_WORDS = """
WITH matches AS MATERIALIZED (
    SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description,
    c.phones[1] AS phone, c.phones, c.title, c.company, c.location, c.tags,
           c.name_vector, ts_filter(c.name_vector, '{a}') AS name_only_vector
    FROM contacts c
    WHERE c.name_vector @@ %(names)s::tsquery AND c.deleted_at IS NULL
   AND (%(filters)s::tsquery IS NULL OR c.name_vector @@ %(filters)s::tsquery)
    LIMIT %(candidates)s
), banded AS (
    SELECT matches.*, CASE
        WHEN name_only_vector @@ %(exact)s::tsquery THEN 1
        WHEN name_vector @@ %(exact)s::tsquery THEN 2
        WHEN name_only_vector @@ %(prefix)s::tsquery
             AND name_vector @@ %(some_names)s::tsquery THEN 3
        WHEN name_vector @@ %(some_names)s::tsquery THEN 4
        WHEN name_only_vector @@ %(prefix)s::tsquery THEN 5
        ELSE 6
    END AS band
    FROM matches
)
SELECT id, nimble_id, first_name, last_name, email, description,
       phone, phones, title, company, location, tags, band,
       count(*) OVER () AS band_size
FROM banded
ORDER BY band, id
LIMIT %(take)s
"""

# Band 7: every word somewhere, the bio included, and not in the name or email alone.
# Scored (ts_rank_cd) within the first BIO_CANDIDATES such rows in id order.
BAND_ANYWHERE = """
WITH candidates AS (
    SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description,
    c.phones[1] AS phone, c.phones, c.title, c.company, c.location, c.tags,
           c.name_vector || c.bio_vector AS search_vector
    FROM contacts c
    WHERE (c.name_vector || c.bio_vector) @@ %(any)s::tsquery
      AND NOT c.name_vector @@ %(names)s::tsquery
      AND c.deleted_at IS NULL
   AND (%(filters)s::tsquery IS NULL OR c.name_vector @@ %(filters)s::tsquery)
    ORDER BY c.id
    LIMIT %(candidates)s
)
SELECT id, nimble_id, first_name, last_name, email, description,
       phone, phones, title, company, location, tags,
       cover / (1 + cover) AS score, count(*) OVER () AS band_size
FROM candidates, ts_rank_cd(search_vector, %(any)s::tsquery) AS cover
ORDER BY score DESC, id
LIMIT %(take)s
"""

# How many rows each part of the result has (names and emails; the bio), for `total`
# when a part was not read to its end: the planner's estimate (EXPLAIN, from the
# text-search statistics) and, when that is small, an exact count (stopping at
# COUNT_LIMIT, in case the estimate was wrong).
ESTIMATE_NAME_MATCHES = """
EXPLAIN (FORMAT JSON)
SELECT 1 FROM contacts c
WHERE c.name_vector @@ %(names)s::tsquery AND c.deleted_at IS NULL
   AND (%(filters)s::tsquery IS NULL OR c.name_vector @@ %(filters)s::tsquery)
"""

COUNT_NAME_MATCHES = """
SELECT count(*) AS n FROM (
    SELECT 1 FROM contacts c
    WHERE c.name_vector @@ %(names)s::tsquery AND c.deleted_at IS NULL
   AND (%(filters)s::tsquery IS NULL OR c.name_vector @@ %(filters)s::tsquery)
    LIMIT %(cap)s
) part
"""

# Every match: search_vector holds the names too, so its estimate stands for the union
# (an estimate of the bio-only part would count every name match a second time).
ESTIMATE_ALL_MATCHES = """
EXPLAIN (FORMAT JSON)
SELECT 1 FROM contacts c
WHERE (c.name_vector || c.bio_vector) @@ %(any)s::tsquery AND c.deleted_at IS NULL
   AND (%(filters)s::tsquery IS NULL OR c.name_vector @@ %(filters)s::tsquery)
"""

COUNT_ALL_MATCHES = """
SELECT count(*) AS n FROM (
    SELECT 1 FROM contacts c
    WHERE (c.name_vector @@ %(names)s::tsquery
           OR (c.name_vector || c.bio_vector) @@ %(any)s::tsquery)
      AND c.deleted_at IS NULL
   AND (%(filters)s::tsquery IS NULL OR c.name_vector @@ %(filters)s::tsquery)
    LIMIT %(cap)s
) part
"""

# For each word of the text, whether it is a name word, and the name words nearest to it.
NEAR_NAME_WORDS = """
SELECT typed.word,
       EXISTS (SELECT 1 FROM contact_name_words w WHERE w.word = typed.word) AS known,
       ARRAY(
           SELECT w.word FROM contact_name_words w
           WHERE w.word %% typed.word
           ORDER BY similarity(w.word, typed.word) DESC, w.word
           LIMIT %(alternatives)s
       ) AS near
FROM unnest(%(lexemes)s::text[]) AS typed(word)
"""

# Band 8: the typo-corrected words in the name or email. It runs only when the full text
# found fewer than FALLBACK_BELOW contacts, which `seen` holds (when the page has room).
BAND_TYPO = """
WITH candidates AS (
    SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description,
    c.phones[1] AS phone, c.phones, c.title, c.company, c.location, c.tags,
           contactbook_name_terms(c.first_name, c.last_name) AS name_terms
    FROM contacts c
    WHERE c.name_vector @@ %(typo)s::tsquery AND c.deleted_at IS NULL
   AND (%(filters)s::tsquery IS NULL OR c.name_vector @@ %(filters)s::tsquery)
      AND c.id <> ALL (%(seen)s::bigint[])
    ORDER BY c.id
    LIMIT %(candidates)s
)
SELECT id, nimble_id, first_name, last_name, email, description,
       phone, phones, title, company, location, tags,
       similarity * 0.999 AS score, count(*) OVER () AS band_size
FROM candidates, word_similarity(contactbook_fold(%(plain)s), name_terms) AS similarity
ORDER BY score DESC, id
LIMIT %(take)s
"""

# Band 9: some of the words in the name or email, and in no earlier band. More words
# (ts_rank_cd of "any word") first.
BAND_SOME_WORDS = """
WITH candidates AS (
    SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description,
    c.phones[1] AS phone, c.phones, c.title, c.company, c.location, c.tags,
           c.name_vector
    FROM contacts c
    WHERE c.name_vector @@ %(some_names)s::tsquery AND c.deleted_at IS NULL
   AND (%(filters)s::tsquery IS NULL OR c.name_vector @@ %(filters)s::tsquery)
      AND c.id <> ALL (%(seen)s::bigint[])
    ORDER BY c.id
    LIMIT %(candidates)s
)
SELECT id, nimble_id, first_name, last_name, email, description,
       phone, phones, title, company, location, tags,
       cover / (1 + cover) AS score, count(*) OVER () AS band_size
FROM candidates, ts_rank_cd(name_vector, %(some_names)s::tsquery) AS cover
ORDER BY score DESC, id
LIMIT %(take)s
"""

# --------------------------------------------------------------------------- search


def _without_walk(statement: str) -> str:
    """The same statement with `ORDER BY c.id + 0`: the id index cannot give the order."""
    return statement.replace("ORDER BY c.id\n", "ORDER BY c.id + 0\n").replace(
        "ORDER BY c.id LIMIT", "ORDER BY c.id + 0 LIMIT"
    )


@dataclass(frozen=True)
class _Band:
    number: int
    sql: str
    candidates: int  # how many rows the band scores (or walks, when not scored)
    needs: str  # the query this band cannot run without
    scored: bool = True
    # Guarded: the planner's estimate can be far off (two common words that never meet
    # in one bio or name), and an id-index walk for a set it thinks large but is empty
    # reads every row. So walk under WALK_TIMEOUT and, past it, run
    # the bitmap plan (`ORDER BY c.id + 0`), which ANDs the posting lists instead.
    guarded: bool = False


# (bands 1-6, bands 7) for one word and for several words
_ONE_WORD_BANDS = (
    # One word: the statistics of name_vector and name_only_vector see it as it is.
    _Band(1, NAME_BANDS_ONE_WORD, PREFIX_WALK, "prefix", scored=False),
    _Band(7, BAND_ANYWHERE, BIO_CANDIDATES, "any"),
)
_ONE_WORD_NAMES_BITMAP = _Band(
    1, _without_walk(NAME_BANDS_ONE_WORD), PREFIX_WALK, "prefix", scored=False
)
_ONE_WORD_BIO_BITMAP = _Band(7, _without_walk(BAND_ANYWHERE), BIO_CANDIDATES, "any")
_SEVERAL_WORDS_BANDS = (
    _Band(1, NAME_BANDS_SEVERAL_WORDS, NAME_MATCHES, "names"),
    _Band(7, BAND_ANYWHERE, BIO_CANDIDATES, "any", guarded=True),
)
_TYPO_BAND = _Band(8, BAND_TYPO, TYPO_CANDIDATES, "typo")
_SOME_WORDS_BAND = _Band(9, BAND_SOME_WORDS, SOME_WORDS_CANDIDATES, "some_names", guarded=True)
_BANDS = 9  # rank = _BANDS - band + score, so band 1 ranks highest


def search_contacts(
    conn: psycopg.Connection,
    text: str,
    *,
    limit: int = 20,
    offset: int = 0,
    tags: list[str] | None = None,
    company: str | None = None,
) -> SearchPage:
    """Contacts matching `text`, best first, each with `rank` and `highlight`.

    `tags` (every one must be present) and `company` (the whole name, any case) filter.
    """
    text = validate_search(text, limit, offset)
    filters = _filters_query(conn, tags or [], company)
    # A search is several statements (one per band, counts, typos). They must all see the
    # same data: in READ COMMITTED an import committing between two of them put all of
    # its rows into the last band ("Tom Brooks" ranked below "Tom Okafor").
    own_transaction = conn.info.transaction_status == TransactionStatus.IDLE
    with conn.transaction():
        if own_transaction:
            _execute(conn, ONE_SNAPSHOT, {})
        return _search(conn, text, limit, offset, filters)


# The filters as lexemes of name_vector (migration 0006): `$tag` and `%company`, folded.
FILTERS_QUERY = """
SELECT string_agg(contactbook_tsquery_operand(lexeme), ' & ')::tsquery AS filters
FROM (SELECT '$' || contactbook_fold(tag) AS lexeme FROM unnest(%(tags)s::text[]) AS tag
      WHERE btrim(tag) <> ''
      UNION ALL
      SELECT '%%' || contactbook_fold(%(company)s) WHERE btrim(%(company)s) <> '') AS wanted
"""


def _filters_query(conn: psycopg.Connection, tags: list[str], company: str | None) -> str | None:
    if not tags and not company:
        return None
    row = _execute(conn, FILTERS_QUERY, {"tags": tags, "company": company}).fetchone()
    return row["filters"] if row["filters"] is not None else None


ONE_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


def _search(
    conn: psycopg.Connection, text: str, limit: int, offset: int, filters: str | None
) -> SearchPage:
    words = parse_words(text)
    if not words.positive:  # only excluded words: nothing to look for
        return SearchPage(total=0, contacts=[])
    need = offset + limit
    params: dict = {
        "text": text,
        "positive": words.positive,
        "excluded": words.excluded,
        "plain": " ".join(words.positive),
        "need": need,
        "typo": "",
        "filters": filters,
    }
    params.update(_execute(conn, PREPARE_QUERIES, params).fetchone())
    params["excluding"] = bool(words.excluded)
    several_words = len(words.positive) > 1

    name_band, bio_band = _SEVERAL_WORDS_BANDS if several_words else _ONE_WORD_BANDS
    expected_names = None
    if not several_words:
        # The planner walks the id index for a name it expects 1,500 times (12,000 rows
        # read, 6 ms) where the bitmap reads 1,500 (2 ms); the walk pays off only for
        # names shared by more than WALK_ABOVE people. Its estimate serves `total` too.
        expected_names = _expected(conn, ESTIMATE_NAME_MATCHES, params)
        if expected_names <= WALK_ABOVE:
            name_band = _ONE_WORD_NAMES_BITMAP
    rows, size = _run_band(conn, name_band, params, need)
    if size is None:  # not read to its end
        size = _part_size(conn, ESTIMATE_NAME_MATCHES, COUNT_NAME_MATCHES, params, expected_names)
        size = max(size, len(rows))
    total = size
    found, size = [], None
    expected_all = None
    if len(rows) < need:
        if not several_words:
            expected_all = _expected(conn, ESTIMATE_ALL_MATCHES, params)
            if _bitmap_reads_less(expected_all, max(bio_band.candidates, need), params):
                bio_band = _ONE_WORD_BIO_BITMAP
        found, size = _run_band(conn, bio_band, params, need - len(rows))
        rows += found
    if size is not None:
        total += size
    else:
        estimate = _part_size(conn, ESTIMATE_ALL_MATCHES, COUNT_ALL_MATCHES, params, expected_all)
        total = max(total + len(found), estimate)

    terms = _query_terms(text)
    if total < FALLBACK_BELOW and params["lexemes"]:
        params["typo"], corrections = _typo_query(conn, params["lexemes"])
        terms += corrections
        params["seen"] = [row["id"] for row in rows]
        for band in (_TYPO_BAND, _SOME_WORDS_BAND) if several_words else (_TYPO_BAND,):
            found, size = _run_band(conn, band, params, max(need - len(rows), 0))
            rows += found
            params["seen"] += [row["id"] for row in found]
            total += size if size is not None else max(band.candidates, len(found))

    contacts = []
    for row in rows[offset:need]:
        contact = {key: row[key] for key in row if key not in ("score", "band_size", "band")}
        score = min(float(row.get("score") or 0), 0.999999)
        contact["rank"] = round(_BANDS - row["band"] + score, 6)
        contact["highlight"] = highlight_contact(contact, terms)
        contacts.append(contact)
    return SearchPage(total=total, contacts=contacts)


def _bitmap_reads_less(expected: int, candidates: int, params: dict) -> bool:
    """Whether the bitmap plan reads fewer rows than the id-index walk for one word.

    The walk reads about ``candidates * table_rows / expected`` rows before it has its
    candidates, the bitmap reads the ``expected`` matches. The planner prices the walk as
    if matches were spread evenly and picks it for a word in 2% of bios ("platform",
    45 ms at 100,000 contacts: 80,000 rows read for 1,000 candidates); the bitmap reads
    2,400 (5 ms). A word in a third of the bios still walks (3,000 rows read, not 30,000).
    """
    table_rows = params["table_rows"] or 0
    return expected > 0 and expected * expected < candidates * table_rows


def _run_band(
    conn: psycopg.Connection, band: _Band, params: dict, take: int
) -> tuple[list[dict], int | None]:
    """The band's best `take` rows, and its size when known (None: at least `take`)."""
    if not params[band.needs]:
        return [], 0
    take = max(take, 1)
    candidates = max(band.candidates, params["need"])
    # One row more than the page needs tells whether an unscored band ended.
    limit = take if band.scored else take + 1
    band_params = {**params, "candidates": candidates, "walk": candidates, "take": limit}
    found = _fetch_guarded(conn, band.sql, band_params) if band.guarded else None
    if found is None:
        statement = _without_walk(band.sql) if band.guarded else band.sql
        found = _execute(conn, statement, band_params).fetchall()
    if not band.scored:
        size = len(found) if len(found) <= take else None
    else:
        for row in found:
            row.setdefault("band", band.number)
        size = found[0]["band_size"] if found else 0
        if size >= candidates:
            size = None  # capped: there may be more
    return found[:take], size


SET_WALK_TIMEOUT = "SELECT set_config('statement_timeout', %(timeout)s, true)"
RESET_TIMEOUT = "SET LOCAL statement_timeout = DEFAULT"


def _fetch_guarded(conn: psycopg.Connection, statement: str, params: dict) -> list[dict] | None:
    """The rows, or None when the planner's id-index walk took longer than WALK_TIMEOUT."""
    try:
        with conn.transaction():
            _execute(conn, SET_WALK_TIMEOUT, {"timeout": WALK_TIMEOUT})
            found = _execute(conn, statement, params).fetchall()
            _execute(conn, RESET_TIMEOUT, {})  # in a caller's transaction it would outlive us
            return found
    except psycopg.errors.QueryCanceled:
        return None


def _execute(conn: psycopg.Connection, statement: str, params: dict) -> psycopg.Cursor:
    # Never prepared: a prepared statement may switch to a generic plan, which cannot see
    # how rare a word is and walks the whole id index for a surname of eight people.
    return conn.execute(statement, params, prepare=False)


def _expected(conn: psycopg.Connection, estimate: str, params: dict) -> int:
    """The planner's estimate of how many rows the EXPLAINed statement returns."""
    if not params["names"] or not params["any"]:
        return 0
    plan = _execute(conn, estimate, params).fetchone()["QUERY PLAN"]
    return int(plan[0]["Plan"]["Plan Rows"])


def _part_size(
    conn: psycopg.Connection,
    estimate: str,
    count: str,
    params: dict,
    expected: int | None = None,
) -> int:
    """Exact when the planner expects at most EXACT_COUNT_BELOW rows, else its estimate."""
    if expected is None:
        expected = _expected(conn, estimate, params)
    if expected > EXACT_COUNT_BELOW:
        return expected
    return _execute(conn, count, {**params, "cap": COUNT_LIMIT}).fetchone()["n"]


def _typo_query(conn: psycopg.Connection, lexemes: list[str]) -> tuple[str, list[str]]:
    """A tsquery (text) where each unknown word may be any of its nearest name words."""
    groups = []
    corrections = []
    words = _name_parts(lexemes)
    for row in _execute(
        conn, NEAR_NAME_WORDS, {"lexemes": words, "alternatives": TYPO_ALTERNATIVES}
    ):
        if row["known"]:
            groups.append(_lexeme(row["word"]))
        elif row["near"]:
            groups.append("(" + " | ".join(_lexeme(word) for word in row["near"]) + ")")
            corrections += row["near"]
        else:
            return "", []  # a word that is no name, nor near one: no person has them all
    if not corrections:
        return "", []
    return " & ".join(groups), corrections


_ADDRESS_SEPARATORS = re.compile(r"[.@_+\-]+")


def _name_parts(lexemes: list[str]) -> list[str]:
    """The words to correct: an address-like word is its parts ("bruce.ramirez" is
    "bruce" and "ramirez"), since only names are in the vocabulary. Whole, it was
    "near" every Bruce and every Ramirez: the fallback for an address that matched one
    contact then scored 500 people (35 ms, the slowest searches under load)."""
    parts = [part for lexeme in lexemes for part in _ADDRESS_SEPARATORS.split(lexeme) if part]
    return list(dict.fromkeys(parts))


# --------------------------------------------------------------------------- words


@dataclass(frozen=True)
class Words:
    positive: list[str]
    excluded: list[str]


_QUOTES = re.compile(r"[\"“”„«»]")


def parse_words(text: str) -> Words:
    """The words of a websearch-style text: `-word` is excluded, `or` is an operator.

    Quoted phrases count as their words here; the exact band keeps the phrase.
    """
    positive: list[str] = []
    excluded: list[str] = []
    for token in _QUOTES.sub(" ", text).split():
        if token.lower() == "or":
            continue
        if token.startswith("-") and token.strip("-"):
            excluded.append(token.lstrip("-"))
        elif token.strip("-"):
            positive.append(token)
    return Words(positive=positive, excluded=excluded)


def _lexeme(word: str) -> str:
    """A quoted lexeme for a tsquery literal: quotes doubled, backslashes escaped."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


@functools.lru_cache(maxsize=65_536)  # highlighting folds the same bio words again and again
def fold(value: str) -> str:
    """Lower-case and strip accents, the way the index folds names."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


_WORD = re.compile(r"\w+", re.UNICODE)


def _query_terms(text: str) -> list[str]:
    words = parse_words(text)
    return [fold(word) for word in _WORD.findall(" ".join(words.positive))]


# --------------------------------------------------------------------------- highlight


def highlight_text(value: str | None, terms: list[str]) -> str | None:
    """HTML-escape `value` and wrap every word that starts with a query term in <mark>."""
    if value is None:
        return None
    parts: list[str] = []
    position = 0
    for match in _WORD.finditer(value):
        word = fold(match.group())
        # The word or a prefix of it was typed (a single letter marks only a one-letter
        # word), or the word shares a stem-like start with a term ("negotiating" marks
        # "negotiation").
        if any(
            word == term
            or (len(term) > 1 and word.startswith(term))
            or (len(word) >= 5 and term.startswith(word[:5]))
            for term in terms
        ):
            parts.append(html.escape(value[position : match.start()]))
            parts.append(f"<mark>{html.escape(match.group())}</mark>")
            position = match.end()
    parts.append(html.escape(value[position:]))
    return "".join(parts)


def highlight_contact(contact: dict, terms: list[str]) -> dict:
    name = " ".join(part for part in (contact["first_name"], contact["last_name"]) if part)
    return {
        "name": highlight_text(name or None, terms),
        "email": highlight_text(contact["email"], terms),
        "description": highlight_text(contact["description"], terms),
    }
