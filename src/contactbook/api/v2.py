"""Version 2: the v1 search, run on a Celery worker.

Submit with `GET` or `POST /api/v2/search?text=` (202 and a task id), then poll
`GET /api/v2/search/status/{task_id}` until `SUCCESS`: its `result` is exactly the list
v1 answers for the same text, limit, offset, tags and company. Bad input is refused with
422 at once, never turned into a failed task. Ids are remembered for as long as results are kept
(SEARCH_RESULT_EXPIRES, ten minutes by default); after that, or for an id this service
never issued, the status is 404.
"""

from __future__ import annotations

from typing import Any, TypedDict

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from contactbook import jobs
from contactbook.api.common import Company, Limit, Offset, SearchText, Tags, TaskAccepted
from contactbook.api.deps import CeleryDep, Reader
from contactbook.contacts.schemas import SearchHit

router = APIRouter(prefix="/api/v2", dependencies=[Reader], tags=["v2"])


class SearchStatus(BaseModel):
    task_id: str
    status: str = Field(description="PENDING, STARTED, SUCCESS or FAILURE.")
    result: list[SearchHit] | None = Field(
        description="With SUCCESS: the same list GET /api/v1/search answers."
    )
    error: str | None = Field(description="With FAILURE: what went wrong.")


_SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"description": "Blank or too long text, or limit/offset out of range."},
    503: {
        "description": "The task queue is not reachable, or SEARCH_QUEUE_LIMIT searches are "
        "already waiting (Retry-After says when to try again)."
    },
}


class _SubmitRoute(TypedDict):
    status_code: int
    response_model: type[BaseModel]
    responses: dict[int | str, dict[str, Any]]


_SUBMIT: _SubmitRoute = {
    "status_code": status.HTTP_202_ACCEPTED,
    "response_model": TaskAccepted,
    "responses": _SUBMIT_RESPONSES,
}


@router.get("/search", operation_id="submit_search_get", **_SUBMIT)
@router.post("/search", operation_id="submit_search_post", **_SUBMIT)
def submit_search(
    celery: CeleryDep,
    text: SearchText = None,
    limit: Limit = 20,
    offset: Offset = 0,
    tags: Tags = None,
    company: Company = None,
) -> TaskAccepted:
    """Queue a search for `text` (filtered by `tag` and `company`, as in v1); the answer
    names the task to poll."""
    task_id = jobs.submit_search(
        celery, text, limit=limit, offset=offset, tags=tags, company=company
    )
    return TaskAccepted(task_id=task_id)


@router.get(
    "/search/status/{task_id}",
    response_model=SearchStatus,
    responses={
        404: {"description": "This service never issued this id, or its result expired."},
        503: {"description": "The result store is not reachable."},
    },
)
def search_status(task_id: str, celery: CeleryDep) -> JSONResponse:
    """Where a queued search is: PENDING, STARTED, SUCCESS (with `result`) or FAILURE."""
    answer = jobs.search_status(celery, task_id)
    if answer is None:
        raise HTTPException(404, f"no search task with id {task_id}")
    # The result is already v1's JSON (the worker serialised it through SearchHit):
    # sent as it is, since clients poll this often.
    return JSONResponse(answer)
