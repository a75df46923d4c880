"""Nimble's field values, read into what Contact Book keeps.

What Nimble documents (``nimblecrm/api-docs``: ``docs/contacts/fields.rst``,
``fields_structure.rst`` and ``responses.rst``), and what we make of it:

* Every field is a list of ``{"value", "modifier", "label"}`` entries, in Nimble's
  order. ``phone`` has several, each with a modifier (work, home, mobile, main,
  home fax, work fax, other): we keep every number in that order (the first is the
  primary), each number once (two spellings with the same digits are one number, the
  first spelling is kept). The modifier is not kept: the contact has no place for it.
* ``title`` and ``parent company`` are deprecated "in favour of ``contact
  employment``", whose values are JSON-encoded ``{company_name, title, start_date,
  end_date, is_present}`` (dates ``mm/yyyy``), several per person. So the current
  employment wins (``is_present`` true, else the first one without an ``end_date``);
  a part it lacks comes from the deprecated field; without a current employment the
  deprecated fields give both; without those, the employment that ended last.
  The docs do not say which employment is the primary one, nor whether ``title`` and
  ``parent company`` still follow it: this is our reading.
* ``address`` values are dictionaries ``{street, city, state, zip, country}``:
  ``fields.rst`` says JSON-encoded, ``fields_structure.rst`` shows a bare object and
  ``responses.rst`` a Python-style string with single quotes. All three are read. The
  location is "City, Country" from the first address that has a city or a country.
* ``tags`` sit on every resource, outside ``fields``: ``[{"tag", "id"}]``. We keep the
  text of each tag once, in Nimble's order.

Nothing here raises on an odd value: a value that cannot be read (bad JSON, a number
where a string belongs, an entry that is not an object) is passed over, and the rest
of the person is kept. PostgreSQL text cannot hold NUL, so NUL characters are dropped.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from typing import Any

#: The Nimble fields Contact Book asks for, in the spelling the API uses.
FIELDS = (
    "first name",
    "last name",
    "email",
    "description",
    "phone",
    "title",
    "parent company",
    "contact employment",
    "address",
)

#: A structured value longer than this is not an address or an employment; it is not
#: parsed (a Python-literal parse of megabytes would cost seconds).
MAX_STRUCTURED_LENGTH = 10_000

_NOT_DIGITS = re.compile(r"[^0-9]")
_MONTH_YEAR = re.compile(r"^\s*(\d{1,2})\s*/\s*(\d{4})\s*$")


def clean(value: Any) -> str | None:
    """A string value without NUL characters and surrounding space; ``None`` if empty."""
    if not isinstance(value, str):
        return None
    return value.replace("\x00", "").strip() or None


def texts(fields: dict[str, Any], name: str) -> Iterator[str]:
    """The non-empty string values of one field, in Nimble's order."""
    for entry in _entries(fields, name):
        value = clean(entry.get("value"))
        if value is not None:
            yield value


def first_text(fields: dict[str, Any], name: str) -> str | None:
    return next(texts(fields, name), None)


def phone_key(phone: str) -> str:
    """What makes two numbers the same: their digits (a value without digits: its text).
    The same key as the SQL contactbook_phone_key (migration 0007)."""
    return _NOT_DIGITS.sub("", phone) or phone


def phones(fields: dict[str, Any]) -> tuple[str, ...]:
    """Every number, in Nimble's order, each once."""
    seen: dict[str, str] = {}
    for phone in texts(fields, "phone"):
        seen.setdefault(phone_key(phone), phone)
    return tuple(seen.values())


def title_and_company(fields: dict[str, Any]) -> tuple[str | None, str | None]:
    """(title, company) from ``contact employment`` and the deprecated fields."""
    jobs = [job for job in map(_job, _entries(fields, "contact employment")) if job]
    old_title, old_company = first_text(fields, "title"), first_text(fields, "parent company")
    current = next((job for job in jobs if job["present"]), None)
    if current is None:
        current = next((job for job in jobs if job["present"] is None and not job["ended"]), None)
    if current is not None:
        return current["title"] or old_title, current["company"] or old_company
    if old_title or old_company:
        return old_title, old_company
    if jobs:
        latest = max(jobs, key=lambda job: job["ended"] or (0, 0))
        return latest["title"], latest["company"]
    return None, None


def location(fields: dict[str, Any]) -> str | None:
    """ "City, Country" (or the one of them there is) of the first address with either."""
    for entry in _entries(fields, "address"):
        address = structured(entry.get("value"))
        if address is None:
            continue
        parts = [clean(address.get("city")), clean(address.get("country"))]
        text = ", ".join(part for part in parts if part)
        if text:
            return text
    return None


def tags(resource: dict[str, Any]) -> tuple[str, ...]:
    """The text of each tag on a resource, once each, in Nimble's order."""
    entries = resource.get("tags")
    if not isinstance(entries, list):
        return ()
    found: dict[str, None] = {}
    for entry in entries:
        tag = clean(entry.get("tag") if isinstance(entry, dict) else entry)
        if tag is not None:
            found.setdefault(tag)
    return tuple(found)


def structured(value: Any) -> dict[str, Any] | None:
    """A dictionary value: as JSON text, as Python-literal text, or as an object."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str) or len(value) > MAX_STRUCTURED_LENGTH:
        return None
    text = value.strip()
    if not text.startswith("{"):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        try:
            # Literals only: ast.literal_eval runs no code.
            parsed = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
    return parsed if isinstance(parsed, dict) else None


def _entries(fields: dict[str, Any], name: str) -> Iterator[dict[str, Any]]:
    entries = fields.get(name)
    if isinstance(entries, list):
        yield from (entry for entry in entries if isinstance(entry, dict))


def _job(entry: dict[str, Any]) -> dict[str, Any] | None:
    """One employment: title, company, whether it is present (None: not said) and the
    (year, month) it ended, if it did."""
    job = structured(entry.get("value"))
    if job is None:
        return None
    title, company = clean(job.get("title")), clean(job.get("company_name"))
    if title is None and company is None:
        return None
    present = job.get("is_present")
    if isinstance(present, str):
        present = {"true": True, "false": False}.get(present.strip().lower())
    end = clean(job.get("end_date"))
    month_year = _MONTH_YEAR.match(end) if end else None
    if month_year:
        ended: tuple[int, int] | None = (int(month_year[2]), int(month_year[1]))
    else:
        ended = (0, 0) if end else None  # an end date we cannot read still ends it
    return {
        "title": title,
        "company": company,
        "present": present if isinstance(present, bool) else None,
        "ended": ended,
    }
