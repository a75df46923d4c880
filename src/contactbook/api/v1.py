"""Version 1: synchronous search and contact reads.

The search endpoint is the hot path: it runs on the event loop (no thread hop), takes a
connection from the async read pool, makes the search's one call and sends the
contacts serialised with orjson. The contact list is validated when it is built
(`shape_page`), so no pydantic pass runs per request; `response_model` still describes
it in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Query, Response

from contactbook import metrics
from contactbook.api.common import Company, Limit, Offset, SearchText, Tags
from contactbook.api.deps import Reader, Reads
from contactbook.contacts import removed as removed_contacts
from contactbook.contacts import repository
from contactbook.contacts.schemas import Contact, SearchHit, Stats
from contactbook.contacts.search import (
    prepare_search,
    search_contacts_async,
)

router = APIRouter(prefix="/api/v1", dependencies=[Reader], tags=["v1"])


def json_response(payload: object, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json", headers=headers)


@router.get("/search", response_model=list[SearchHit])
async def search(
    reads: Reads,
    text: SearchText = None,
    limit: Limit = 20,
    offset: Offset = 0,
    tags: Tags = None,
    company: Company = None,
) -> Response:
    """Contacts matching `text`, best match first, filtered by `tag` and `company`.
    `X-Total-Count` gives all matches.

    A phone number typed any way (`+1 (415) 555-0142`, `4155550142`, its last 7 digits)
    finds its person first.
    """
    request = prepare_search(text, limit=limit, offset=offset, tags=tags, company=company)
    page = await reads.run_async(lambda conn: search_contacts_async(conn, request))
    metrics.record_search(len(page.contacts), source="v1")
    return json_response(page.contacts, headers={"X-Total-Count": str(page.total)})


Removed = Annotated[
    bool,
    Query(
        description="List the contacts a full sync removed (gone from Nimble) instead of the "
        "live ones. `POST /api/v1/contacts/undelete` (admin) brings them back."
    ),
]


@router.get("/contacts", response_model=list[Contact])
def list_contacts(
    reads: Reads,
    response: Response,
    limit: Limit = 20,
    offset: Offset = 0,
    tags: Tags = None,
    company: Company = None,
    removed: Removed = False,
) -> list[dict]:
    """Live contacts in id order, filtered by `tag` and `company` (or, with
    `removed=true`, the removed ones). `X-Total-Count` gives how many there are (above
    10,000 matches of a filter, PostgreSQL's estimate)."""
    tags, company = repository.clean_filters(tags, company)
    if removed:
        if tags or company:
            raise HTTPException(
                422, "removed=true lists every removed contact: leave out tag and company"
            )
        listed = reads.run(
            lambda conn: removed_contacts.removed_page(conn, limit=limit, offset=offset)
        )
    else:
        listed = reads.run(
            lambda conn: repository.list_contacts(
                conn, limit=limit, offset=offset, tags=tags, company=company
            )
        )
    response.headers["X-Total-Count"] = str(listed.total)
    return listed.contacts


@router.get(
    "/contacts/{contact_id}",
    response_model=Contact,
    responses={404: {"description": "No live contact has this id."}},
)
def get_contact(contact_id: int, reads: Reads) -> dict:
    """One contact by its id."""
    contact = reads.run(lambda conn: repository.get_contact(conn, contact_id))
    if contact is None:
        raise HTTPException(404, f"no contact with id {contact_id}")
    return contact


@router.get("/stats", response_model=Stats)
def stats(reads: Reads) -> Stats:
    """How many contacts there are and when the last sync succeeded."""
    return Stats(**reads.run(repository.contact_stats))
