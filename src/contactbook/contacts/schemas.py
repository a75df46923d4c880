"""What a contact looks like to the outside world (API, CLI, export)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Contact(BaseModel):
    id: int
    nimble_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    description: str | None = None
    phone: str | None = Field(None, description="The primary phone number (the first of phones).")
    phones: list[str] = Field(default_factory=list, description="Every number, primary first.")
    title: str | None = None
    company: str | None = None
    location: str | None = Field(None, description="City and country.")
    tags: list[str] = Field(default_factory=list)


class Highlight(BaseModel):
    """Matched parts wrapped in <mark>; the rest of the text is HTML-escaped."""

    name: str | None = None
    email: str | None = None
    description: str | None = None
    phone: str | None = Field(None, description="The matched number, when the search was one.")
    title: str | None = None
    company: str | None = None


class SearchHit(Contact):
    rank: float = Field(description="Relevance: higher is better.")
    highlight: Highlight


class Stats(BaseModel):
    contacts: int
    last_sync: str | None = Field(None, description="When the last sync succeeded (ISO 8601).")
