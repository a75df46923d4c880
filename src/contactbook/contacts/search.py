"""The one search function: used by the v1 endpoint, the v2 Celery task and the CLI.

Full text over the stored, weighted `search_vector` (names A, email parts B, bio C),
queried with `websearch_to_tsquery`, which accepts any text without raising, in the
same text-search configuration as each part of the vector: names and emails `simple`
over accent-folded, lower-cased text; the bio `english`, so stems match.
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


SEARCH = """
WITH query AS (
    SELECT websearch_to_tsquery('simple', contactbook_fold(%(text)s))
        || websearch_to_tsquery('english', %(text)s) AS q
), matches AS (
    SELECT c.id, c.nimble_id, c.first_name, c.last_name, c.email, c.description,
           ts_rank_cd(c.search_vector, query.q) AS rank
    FROM contacts c, query
    WHERE c.search_vector @@ query.q AND c.deleted_at IS NULL
)
SELECT *, count(*) OVER () AS total
FROM matches
ORDER BY rank DESC, id
LIMIT %(limit)s OFFSET %(offset)s
"""

COUNT_MATCHES = """
SELECT count(*) AS total
FROM contacts c
WHERE c.deleted_at IS NULL AND c.search_vector @@ (
    websearch_to_tsquery('simple', contactbook_fold(%(text)s))
    || websearch_to_tsquery('english', %(text)s))
"""


def search_contacts(
    conn: psycopg.Connection, text: str, *, limit: int = 20, offset: int = 0
) -> SearchPage:
    """Contacts matching `text`, best first, each with `rank` and `highlight`."""
    text = validate_search(text, limit, offset)
    params = {"text": text, "limit": limit, "offset": offset}
    rows = conn.execute(SEARCH, params).fetchall()
    if rows:
        total = rows[0]["total"]
    elif offset:
        total = conn.execute(COUNT_MATCHES, params).fetchone()["total"]
    else:
        total = 0
    terms = _query_terms(text)
    contacts = []
    for row in rows:
        contact = {key: row[key] for key in row if key != "total"}
        contact["rank"] = round(float(contact["rank"]), 6)
        contact["highlight"] = highlight_contact(contact, terms)
        contacts.append(contact)
    return SearchPage(total=total, contacts=contacts)


def fold(value: str) -> str:
    """Lower-case and strip accents, the way the index folds names."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


_WORD = re.compile(r"\w+", re.UNICODE)


def _query_terms(text: str) -> list[str]:
    return [fold(word) for word in _WORD.findall(text) if word.lower() not in {"or", "and"}]


def highlight_text(value: str | None, terms: list[str]) -> str | None:
    """HTML-escape `value` and wrap every word that starts with a query term in <mark>."""
    if value is None:
        return None
    parts: list[str] = []
    position = 0
    for match in _WORD.finditer(value):
        word = fold(match.group())
        # A prefix of the word was typed, or the word shares a stem-like start with a term
        # ("negotiating" marks "negotiation").
        if any(
            word.startswith(term) or (len(word) >= 5 and term.startswith(word[:5]))
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
