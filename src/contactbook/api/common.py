"""What several routers share: the search's query parameters and the 202 answer a
queued task gets. Routers import these from here, never from one another."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, Field

from contactbook.contacts.search import MAX_LIMIT, MAX_OFFSET

SearchText = Annotated[
    str | None,
    Query(description="What to find: names, email or its parts, bio words. 1-200 characters."),
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Results per page (1-100).")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Results to skip.")]
Tags = Annotated[
    list[str] | None,
    Query(
        alias="tag",
        description="Only contacts with this tag (any case); repeat it for several, "
        "every one must be present.",
    ),
]
Company = Annotated[
    str | None,
    Query(description="Only contacts of this company: the whole name, any case or accents."),
]


class TaskAccepted(BaseModel):
    task_id: str = Field(description="Poll /api/v2/search/status/{task_id} for the outcome.")
