"""The one search: used by the v1 endpoint (async), the v2 Celery task and the CLI (sync).

The search itself is one SQL function, `contactbook_search` (migration 0009): every
band, the total and the typo fallback run inside PostgreSQL, in one statement, so a
search costs one round trip and sees one snapshot. This module only checks the input,
splits it into words, makes that call and shapes the answer (rank and highlights).
docs/search.md says what each band means; the migration says how each is made cheap.

Bands, best first (rank = BANDS - band + a score in [0, 1), so it decreases down the
list): 0 a phone number; 1-6 every word in the name or the email, exact before prefix,
the name itself before the email; 7 some words only in the company or the tags; 8 every
word somewhere, the bio and title included; 9 typos of names; 10 some of the words.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from contactbook.contacts.repository import clean_filters
from contactbook.errors import UnusableInput

if TYPE_CHECKING:
    from contactbook.db import AsyncDictConnection, DictConnection

MAX_TEXT_LENGTH = 200
MAX_TAGS = 20
MAX_LIMIT = 100
MAX_OFFSET = 10_000
#: Distinct words of a text that are searched for; the rest are ignored. Every word
#: costs a posting list: "ma" typed 66 times cost 7.7 s of database time before.
MAX_WORDS = 10
#: Digits from which a text that looks like a phone number is also searched as one.
PHONE_DIGITS = 7
#: The typo fallback (band 9) runs when the full text finds fewer contacts than this.
FALLBACK_BELOW = 10
BANDS = 10


class InvalidSearch(UnusableInput, ValueError):
    """The search text or paging is unusable; the message says what to change."""


@dataclass(frozen=True)
class SearchPage:
    total: int
    contacts: list[dict]
    #: Name words that stood in for a typo (band 9), highlighted like typed words.
    corrections: list[str] = field(default_factory=list)


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


# --------------------------------------------------------------------------- the call

SEARCH = """
SELECT * FROM contactbook_search(%(text)s, %(words)s, %(excluded)s, %(limit)s, %(offset)s,
                                 %(tags)s, %(company)s, %(phone)s)
"""


@dataclass(frozen=True)
class SearchRequest:
    """A validated search, ready for `contactbook_search`."""

    #: The text as given, checked and stripped (what a v2 search task is sent).
    query: str
    #: The text for websearch_to_tsquery (see `Words.text`).
    text: str
    words: list[str]
    excluded: list[str]
    limit: int
    offset: int
    tags: list[str]
    company: str | None
    phone: str | None

    @property
    def params(self) -> dict:
        return {
            "text": self.text,
            "words": self.words,
            "excluded": self.excluded,
            "limit": self.limit,
            "offset": self.offset,
            "tags": self.tags,
            "company": self.company,
            "phone": self.phone,
        }


def prepare_search(
    text: str | None,
    *,
    limit: int = 20,
    offset: int = 0,
    tags: list[str] | None = None,
    company: str | None = None,
) -> SearchRequest:
    """Check the input (InvalidSearch says what to change) and split it into words."""
    text = validate_search(text, limit, offset)
    words = parse_words(text)
    tags, company = clean_filters(tags, company)
    if len(tags) > MAX_TAGS:
        raise InvalidSearch(f"give at most {MAX_TAGS} tags, not {len(tags)}")
    return SearchRequest(
        query=text,
        text=words.text,
        words=words.positive,
        excluded=words.excluded,
        limit=limit,
        offset=offset,
        tags=tags,
        company=company,
        phone=phone_digits(text),
    )


def search_contacts(
    conn: DictConnection,
    text: str | None,
    *,
    limit: int = 20,
    offset: int = 0,
    tags: list[str] | None = None,
    company: str | None = None,
) -> SearchPage:
    """Contacts matching `text`, best first, each with `rank` and `highlight`.

    `tags` (every one must be present) and `company` (the whole name, any case) filter.
    """
    request = prepare_search(text, limit=limit, offset=offset, tags=tags, company=company)
    if not request.words:
        return SearchPage(total=0, contacts=[])
    rows = conn.execute(SEARCH, request.params, prepare=False).fetchall()
    return shape_page(request, rows)


async def search_contacts_async(conn: AsyncDictConnection, request: SearchRequest) -> SearchPage:
    """`search_contacts` for the async request path, from a prepared request."""
    if not request.words:
        return SearchPage(total=0, contacts=[])
    cursor = await conn.execute(SEARCH, request.params, prepare=False)
    return shape_page(request, await cursor.fetchall())


def shape_page(request: SearchRequest, rows: list[dict]) -> SearchPage:
    """The API's contacts from the function's rows: every field, `rank`, `highlight`."""
    if not rows:
        return SearchPage(total=0, contacts=[])
    corrections = list(rows[0]["corrections"] or [])
    terms = query_terms(request.words) + corrections
    digits = request.phone if any(row["band"] == 0 for row in rows) else None
    contacts = []
    for row in rows:
        if row["id"] is None:  # an empty page: the row only carries the total
            continue
        contact = {
            "id": row["id"],
            "nimble_id": row["nimble_id"],
            "first_name": row["first_name"],
            "last_name": row["last_name"],
            "email": row["email"],
            "description": row["description"],
            "phone": row["phone"],
            "phones": row["phones"],
            "title": row["title"],
            "company": row["company"],
            "location": row["location"],
            "tags": row["tags"],
            "rank": round(BANDS - row["band"] + min(row["score"], 0.999999), 6),
        }
        contact["highlight"] = highlight_contact(contact, terms, digits)
        contacts.append(contact)
    return SearchPage(total=rows[0]["total"], contacts=contacts, corrections=corrections)


# --------------------------------------------------------------------------- words


@dataclass(frozen=True)
class Words:
    #: The text for websearch_to_tsquery, rebuilt from the kept tokens.
    text: str
    positive: list[str]
    excluded: list[str]


_TOKENS = re.compile(r"""["“”„«»]([^"“”„«»]*)["“”„«»]?|(\S+)""")
_WORD = re.compile(r"\w+", re.UNICODE)


def parse_words(text: str) -> Words:
    """The words of a websearch-style text: `-word` is excluded, `or` is an operator,
    quoted phrases stay phrases. A token is kept once (its folded form) and at most
    MAX_WORDS words are kept; a token without a letter or digit is no word at all (a
    text of only `- or & |` finds nothing)."""
    kept: list[str] = []
    positive: list[str] = []
    excluded: list[str] = []
    seen: set[str] = set()
    for match in _TOKENS.finditer(text):
        phrase, token = match.group(1), match.group(2)
        if phrase is not None:
            phrase_words = [w for w in phrase.split() if _WORD.search(w)]
            key = "\x00".join(fold(w) for w in phrase_words)
            if not phrase_words or key in seen or len(positive) + len(phrase_words) > MAX_WORDS:
                continue
            seen.add(key)
            kept.append('"' + " ".join(phrase_words) + '"')
            positive += [w for w in phrase_words if fold(w) not in {fold(p) for p in positive}]
            continue
        if token.lower() == "or":
            if kept and kept[-1] != "or":
                kept.append("or")
            continue
        negated = token.startswith("-")
        word = token.lstrip("-") if negated else token
        if not _WORD.search(word) or fold(token) in seen:
            continue
        if negated:
            if len(excluded) < MAX_WORDS:
                seen.add(fold(token))
                kept.append(token)
                excluded.append(word)
        elif len(positive) < MAX_WORDS:
            seen.add(fold(token))
            kept.append(token)
            positive.append(word)
    while kept and kept[-1] == "or":
        kept.pop()
    return Words(text=" ".join(kept), positive=positive, excluded=excluded)


_PHONE = re.compile(r"^\+?[\d\s().\-/]+$")


def phone_digits(text: str) -> str | None:
    """The digits of a text that is a phone number, typed any way; None otherwise."""
    if not _PHONE.match(text):
        return None
    digits = re.sub(r"\D", "", text)
    return digits if len(digits) >= PHONE_DIGITS else None


@functools.lru_cache(maxsize=65_536)  # highlighting folds the same bio words again and again
def fold(value: str) -> str:
    """Lower-case and strip accents, the way the index folds names."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def query_terms(words: list[str]) -> list[str]:
    return [fold(word) for word in _WORD.findall(" ".join(words))]


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


def highlight_phone(phone: str | None, digits: str | None) -> str | None:
    """The phone, HTML-escaped, all marked when the search was for its number."""
    if phone is None:
        return None
    own = re.sub(r"\D", "", phone)
    if digits and own and (own.endswith(digits) or digits.endswith(own)):
        return f"<mark>{html.escape(phone)}</mark>"
    return html.escape(phone)


def highlight_contact(contact: dict, terms: list[str], digits: str | None = None) -> dict:
    name = " ".join(part for part in (contact["first_name"], contact["last_name"]) if part)
    phone = contact["phone"]
    if digits:  # the number that matched, which need not be the primary
        phone = next(
            (p for p in contact["phones"] if "<mark>" in (highlight_phone(p, digits) or "")),
            phone,
        )
    return {
        "name": highlight_text(name or None, terms),
        "email": highlight_text(contact["email"], terms),
        "description": highlight_text(contact["description"], terms),
        "phone": highlight_phone(phone, digits),
        "title": highlight_text(contact["title"], terms),
        "company": highlight_text(contact["company"], terms),
    }
