"""The one search function: used by the v1 endpoint, the v2 Celery task and the CLI.

How a result is ranked (docs/search.md says the same for users): results come in
bands, and every result of a band ranks above every result of the next one.

1. **Every word, exactly, in the name or email** (`name_vector`: names weight A,
   email parts weight B). All words in the name itself rank above words split over
   name and email or found in the email alone; then `ts_rank_cd`, then id.
2. **Every word as a prefix** in the name or email (typeahead: "Hendr", "Dan Bro"), and
   not in band 1. Names above emails; rows where more words are whole words first.
3. **Every word somewhere, the bio included** (`search_vector`, the bio in the `english`
   configuration, so "negotiating" finds "negotiation"), and not in bands 1-2. Ranked
   with `ts_rank_cd` within the first `BIO_CANDIDATES` such rows in id order: a word
   in a third of the bios is never scored a third of the table at a time.
4. **Typos**, only when bands 1-3 find fewer than `FALLBACK_BELOW` contacts: each name
   word not in the vocabulary of name words is replaced by its nearest words by
   trigram similarity (`contact_name_words`, see migration 0002); ranked by similarity.
5. **Some of the words**, under the same condition, for queries of several words.

Within a band, candidates are the first `NAME_CANDIDATES` / `BIO_CANDIDATES` matching
rows in id order (all of them when there are fewer, which is the case for every name
but the most common ones), and only those are scored. The reported `rank` is the band
plus a score in [0, 1), so it decreases down the list.

`total` (the API's `X-Total-Count`) is exact up to `TOTAL_CAP` matches; above that it
is `TOTAL_CAP` (a lower bound), so a word in a third of a million bios is not counted.

The text always goes through `websearch_to_tsquery` (quoted phrases, `or`, `-word`) or,
for the prefix and some-words queries, through `to_tsquery` as single-quoted operands
built below, so no input can raise a syntax error or reach the SQL as SQL.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

import psycopg

MAX_TEXT_LENGTH = 200
MAX_LIMIT = 100
MAX_OFFSET = 10_000

NAME_CANDIDATES = 2_500
BIO_CANDIDATES = 1_000
FALLBACK_BELOW = 10
TOTAL_CAP = 1_000
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
# exact: names and emails (`simple`, folded); stem: the bio (`english`); prefix: every
# word as a prefix; some_*: any one word.
PREPARE_QUERIES = """
WITH words AS (
    SELECT (SELECT string_agg(contactbook_tsquery_operand(contactbook_fold(w)) || ':*', ' & ')
            FROM unnest(%(positive)s::text[]) AS w) AS prefixes,
           (SELECT string_agg('!' || contactbook_tsquery_operand(contactbook_fold(w)), ' & ')
            FROM unnest(%(excluded)s::text[]) AS w) AS exclusions,
           (SELECT string_agg(contactbook_tsquery_operand(contactbook_fold(w)), ' | ')
            FROM unnest(%(positive)s::text[]) AS w) AS some_folded,
           (SELECT string_agg(contactbook_tsquery_operand(w), ' | ')
            FROM unnest(%(positive)s::text[]) AS w) AS some_typed
), q AS (
    SELECT websearch_to_tsquery('simple', contactbook_fold(%(text)s)) AS exact,
           websearch_to_tsquery('english', %(text)s) AS stem,
           to_tsquery('simple', concat_ws(' & ', prefixes, exclusions)) AS prefix,
           to_tsquery('simple', some_folded) AS some_names,
           to_tsquery('simple', some_folded) || to_tsquery('english', some_typed) AS some_any
    FROM words
)
SELECT exact::text, prefix::text, (exact || prefix)::text AS names,
       (exact || prefix || stem)::text AS "any",
       some_names::text, some_any::text,
       (SELECT array_agg(lexeme)
        FROM unnest(to_tsvector('simple', contactbook_fold(array_to_string(%(positive)s::text[],
                                                                          ' ')))))
           AS lexemes
FROM q
"""

# Band 1: every word exactly in the name or email.
BAND_EXACT = """
WITH candidates AS (
    SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description,
           c.name_vector
    FROM contacts c
    WHERE c.name_vector @@ %(exact)s::tsquery AND c.deleted_at IS NULL
    ORDER BY c.id
    LIMIT %(candidates)s
), scored AS (
    SELECT candidates.*,
           (ts_filter(name_vector, '{a}') @@ %(exact)s::tsquery)::int * 0.5
           + 0.5 * ts_rank_cd(name_vector, %(exact)s::tsquery)
               / (1 + ts_rank_cd(name_vector, %(exact)s::tsquery)) AS score,
           count(*) OVER () AS band_size
    FROM candidates
)
SELECT id, nimble_id, first_name, last_name, email, description, score, band_size
FROM scored
ORDER BY score DESC, id
LIMIT %(take)s
"""

# Band 2: every word as a prefix in the name or email, not already in band 1.
BAND_PREFIX = """
WITH candidates AS (
    SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description,
           c.name_vector
    FROM contacts c
    WHERE c.name_vector @@ %(prefix)s::tsquery AND NOT c.name_vector @@ %(exact)s::tsquery
      AND c.deleted_at IS NULL
    ORDER BY c.id
    LIMIT %(candidates)s
), scored AS (
    SELECT candidates.*,
           (ts_filter(name_vector, '{a}') @@ %(prefix)s::tsquery)::int * 0.5
           + 0.5 * ts_rank_cd(name_vector, %(some_names)s::tsquery)
               / (1 + ts_rank_cd(name_vector, %(some_names)s::tsquery)) AS score,
           count(*) OVER () AS band_size
    FROM candidates
)
SELECT id, nimble_id, first_name, last_name, email, description, score, band_size
FROM scored
ORDER BY score DESC, id
LIMIT %(take)s
"""

# Band 3: every word somewhere (the bio included), not already in bands 1-2.
BAND_ANYWHERE = """
WITH candidates AS (
    SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description,
           c.search_vector
    FROM contacts c
    WHERE c.search_vector @@ %(any)s::tsquery AND NOT c.name_vector @@ %(names)s::tsquery
      AND c.deleted_at IS NULL
    ORDER BY c.id
    LIMIT %(candidates)s
), scored AS (
    SELECT candidates.*,
           ts_rank_cd(search_vector, %(any)s::tsquery)
               / (1 + ts_rank_cd(search_vector, %(any)s::tsquery)) AS score,
           count(*) OVER () AS band_size
    FROM candidates
)
SELECT id, nimble_id, first_name, last_name, email, description, score, band_size
FROM scored
ORDER BY score DESC, id
LIMIT %(take)s
"""

COUNT_MATCHES = """
SELECT count(*) AS total
FROM (
    SELECT 1
    FROM contacts c
    WHERE (c.name_vector @@ %(names)s::tsquery OR c.search_vector @@ %(any)s::tsquery)
      AND c.deleted_at IS NULL
    LIMIT %(cap)s
) matches
"""

# For each word of the text, the name words nearest to it (itself when it is one).
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

# Band 4: the typo-corrected words in the name or email, and no full-text match.
BAND_TYPO = """
WITH candidates AS (
    SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description
    FROM contacts c
    WHERE c.name_vector @@ %(typo)s::tsquery AND c.deleted_at IS NULL
      AND NOT c.name_vector @@ %(names)s::tsquery AND NOT c.search_vector @@ %(any)s::tsquery
    ORDER BY c.id
    LIMIT %(candidates)s
), scored AS (
    SELECT candidates.*,
           word_similarity(contactbook_fold(%(plain)s),
                           contactbook_name_terms(first_name, last_name)) * 0.999 AS score,
           count(*) OVER () AS band_size
    FROM candidates
)
SELECT id, nimble_id, first_name, last_name, email, description, score, band_size
FROM scored
ORDER BY score DESC, id
LIMIT %(take)s
"""

# Band 5: some of the words, anywhere, and in no earlier band.
BAND_SOME_WORDS = """
WITH candidates AS (
    SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description,
           c.name_vector, c.search_vector
    FROM contacts c
    WHERE (c.name_vector @@ %(some_names)s::tsquery OR c.search_vector @@ %(some_any)s::tsquery)
      AND c.deleted_at IS NULL
      AND NOT c.name_vector @@ %(names)s::tsquery AND NOT c.search_vector @@ %(any)s::tsquery
      AND NOT c.name_vector @@ %(typo)s::tsquery
    ORDER BY c.id
    LIMIT %(candidates)s
), scored AS (
    SELECT candidates.*,
           ts_rank_cd(name_vector, %(some_names)s::tsquery)
               + ts_rank_cd(search_vector, %(some_any)s::tsquery) AS raw,
           count(*) OVER () AS band_size
    FROM candidates
)
SELECT id, nimble_id, first_name, last_name, email, description, raw / (1 + raw) AS score,
       band_size
FROM scored
ORDER BY score DESC, id
LIMIT %(take)s
"""

# --------------------------------------------------------------------------- search


@dataclass(frozen=True)
class _Band:
    number: int
    sql: str
    candidates: int
    needs: tuple[str, ...]


# The band number is the integer part of `rank`: band 1 ranks highest.
_FULL_TEXT_BANDS = (
    _Band(1, BAND_EXACT, NAME_CANDIDATES, ("exact",)),
    _Band(2, BAND_PREFIX, NAME_CANDIDATES, ("prefix",)),
    _Band(3, BAND_ANYWHERE, BIO_CANDIDATES, ("any",)),
)
_TYPO_BAND = _Band(4, BAND_TYPO, NAME_CANDIDATES, ("typo",))
_SOME_WORDS_BAND = _Band(5, BAND_SOME_WORDS, NAME_CANDIDATES, ("some_any",))
_BANDS = 5


def search_contacts(
    conn: psycopg.Connection, text: str, *, limit: int = 20, offset: int = 0
) -> SearchPage:
    """Contacts matching `text`, best first, each with `rank` and `highlight`."""
    text = validate_search(text, limit, offset)
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
    }
    params.update(conn.execute(PREPARE_QUERIES, params).fetchone())
    params["typo"] = ""

    rows: list[dict] = []
    total = 0
    exhausted = True  # every full-text band was read to its end
    for band in _FULL_TEXT_BANDS:
        if len(rows) >= need:
            exhausted = False
            break
        found, size = _run_band(conn, band, params, need - len(rows))
        rows += found
        total += size
        exhausted = exhausted and size < max(band.candidates, need)
    if not exhausted:
        total = conn.execute(COUNT_MATCHES, {**params, "cap": TOTAL_CAP}).fetchone()["total"]
        total = max(total, min(len(rows), TOTAL_CAP))

    terms = _query_terms(text)
    if total < FALLBACK_BELOW and params["lexemes"]:
        params["typo"], corrections = _typo_query(conn, params["lexemes"])
        terms += corrections
        for band in (_TYPO_BAND, _SOME_WORDS_BAND):
            if band is _SOME_WORDS_BAND and len(words.positive) < 2:
                continue
            found, size = _run_band(conn, band, params, max(need - len(rows), 0))
            rows += found
            total += size

    contacts = []
    for row in rows[offset:need]:
        contact = {key: row[key] for key in row if key not in ("score", "band_size", "band")}
        contact["rank"] = round(_BANDS - row["band"] + min(float(row["score"]), 0.999999), 6)
        contact["highlight"] = highlight_contact(contact, terms)
        contacts.append(contact)
    return SearchPage(total=total, contacts=contacts)


def _run_band(
    conn: psycopg.Connection, band: _Band, params: dict, take: int
) -> tuple[list[dict], int]:
    """The band's best `take` rows and how many candidates it had (at most its cap)."""
    if any(not params[name] for name in band.needs):
        return [], 0
    band_params = {
        **params,
        "candidates": max(band.candidates, params["need"]),
        "take": max(take, 1),
    }
    found = conn.execute(band.sql, band_params).fetchall()
    size = found[0]["band_size"] if found else 0
    for row in found:
        row["band"] = band.number
    return found[:take], size


def _typo_query(conn: psycopg.Connection, lexemes: list[str]) -> tuple[str, list[str]]:
    """A tsquery (text) where each unknown word may be any of its nearest name words."""
    groups = []
    corrections = []
    for row in conn.execute(
        NEAR_NAME_WORDS, {"lexemes": lexemes, "alternatives": TYPO_ALTERNATIVES}
    ):
        if row["known"]:
            groups.append(_lexeme(row["word"]))
        elif row["near"]:
            groups.append("(" + " | ".join(_lexeme(word) for word in row["near"]) + ")")
            corrections += row["near"]
    if not corrections:
        return "", []
    return " & ".join(groups), corrections


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
