"""Admin endpoints: trigger a sync, list sync runs, upload a CSV, follow a task, bring
back removed contacts.

Every route needs `Authorization: Bearer <CONTACTBOOK_ADMIN_TOKEN>` (401 without a
token, 403 with a wrong one; 403 for every request when no admin token is configured).

Each endpoint checks its request and calls one service function (`nimble.tasks`,
`contacts.sync_runs`, `contacts.removed`, `jobs`, `contacts.uploads`).

Uploads are streamed to `CONTACTBOOK_HOME/uploads/<random>.csv` as they arrive and
refused with 413 as soon as they pass `MAX_UPLOAD_BYTES` (`api/upload_body.py`), so a
large upload never sits in memory. A client that leaves mid-upload is logged at INFO and
counted as 499, not as a server error. An accepted upload is recorded in `import_runs`
as queued before its task is sent (contacts/uploads.py: sent again when no worker takes
it, its file removed once it ends). The worker imports the file and
removes it; the API and the workers must therefore share CONTACTBOOK_HOME's disk (they
do under `contactbook serve`; with containers, mount one volume in both).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from contactbook import jobs
from contactbook.api.common import TaskAccepted
from contactbook.api.deps import Admin, CeleryDep, Pool, SettingsDep
from contactbook.api.upload_body import receive_csv
from contactbook.contacts import removed, sync_runs, uploads
from contactbook.errors import UnusableInput
from contactbook.nimble.tasks import queue_sync

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", dependencies=[Admin], tags=["admin"])

_ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No bearer token."},
    403: {"description": "Not the admin token, or no admin token configured."},
    503: {"description": "The task queue is not reachable."},
}


class SyncRun(BaseModel):
    id: int
    mode: str = Field(description="full or incremental.")
    status: str = Field(description="running, succeeded or failed.")
    started_at: datetime
    finished_at: datetime | None
    fetched: int
    inserted: int
    linked: int
    updated: int
    removed: int
    unchanged: int
    error: str | None


class TaskStatus(BaseModel):
    task_id: str
    kind: str = Field(description="search, import or sync.")
    status: str = Field(description="PENDING, STARTED, SUCCESS or FAILURE.")
    result: dict | list | None = Field(description="With SUCCESS: the task's summary.")
    error: str | None


@router.post(
    "/sync", status_code=status.HTTP_202_ACCEPTED, response_model=TaskAccepted,
    responses=_ADMIN_RESPONSES,
)  # fmt: skip
def trigger_sync(
    celery: CeleryDep,
    full: Annotated[
        bool, Query(description="Fetch every contact and remove those gone from Nimble.")
    ] = False,
    dry_run: Annotated[
        bool, Query(description="Work out what would change, write nothing (task result).")
    ] = False,
    allow_removals: Annotated[
        bool,
        Query(description="Let a full sync remove more than SYNC_MAX_REMOVALS_PERCENT."),
    ] = False,
) -> TaskAccepted:
    """Queue a sync from Nimble now (incremental unless `full=true`).

    A sync that finds another one running is skipped, never run alongside it. A full sync
    that would remove more than `SYNC_MAX_REMOVALS_PERCENT` of the Nimble-linked contacts
    fails unchanged (see `GET /api/v1/sync/runs`) unless `allow_removals=true`. Follow the
    task with `GET /api/v1/tasks/{task_id}`.
    """
    task_id = queue_sync(celery, full=full, dry_run=dry_run, allow_removals=allow_removals)
    return TaskAccepted(task_id=task_id)


@router.get("/sync/runs", response_model=list[SyncRun], responses=_ADMIN_RESPONSES)
def list_sync_runs(
    pool: Pool,
    limit: Annotated[int, Query(ge=1, le=100, description="How many runs, newest first.")] = 20,
) -> list[dict]:
    """Recent sync runs, newest first, with their figures and errors."""
    with pool.connection() as conn:
        return sync_runs.recent_sync_runs(conn, limit=limit)


class UndeleteRequest(BaseModel):
    ids: list[int] | None = Field(
        None, description="The removed contacts to bring back.", max_length=10_000
    )
    all: bool = Field(False, description="Bring back every removed contact.")

    def chosen_ids(self) -> list[int] | None:
        """The ids to bring back, None for every removed contact."""
        if self.all == (self.ids is not None):
            raise UnusableInput('send {"ids": [...]} or {"all": true}, one of the two')
        return None if self.all else self.ids


class Undeleted(BaseModel):
    undeleted: list[int] = Field(description="Ids brought back (removed contacts only).")


@router.post(
    "/contacts/undelete",
    response_model=Undeleted,
    responses={
        **_ADMIN_RESPONSES,
        400: {"description": "The body is not JSON."},
        422: {"description": "Neither `ids` nor `all` given (or both)."},
    },
)
def undelete_contacts(body: UndeleteRequest, pool: Pool) -> Undeleted:
    """Bring back contacts a full sync removed (list them with
    `GET /api/v1/contacts?removed=true`): `{"ids": [1, 2]}` or `{"all": true}`.

    Ids that are not removed contacts are ignored. A contact Nimble still lacks is removed
    again by the next full sync.
    """
    ids = body.chosen_ids()
    with pool.connection() as conn:
        return Undeleted(undeleted=removed.undelete_contacts(conn, ids))


@router.get(
    "/tasks/{task_id}",
    response_model=TaskStatus,
    responses={**_ADMIN_RESPONSES, 404: {"description": "This service never issued this id."}},
)
def task_status(task_id: str, celery: CeleryDep, pool: Pool) -> dict:
    """The state and outcome of any task this service queued (import, sync or search).

    An upload's import answers from its run in `import_runs` when Redis knows nothing
    more (its result expired, or Redis lost it): it never turns into a 404.
    """
    answer = jobs.task_status(celery, pool, task_id)
    if answer is None:
        raise HTTPException(404, f"no task with id {task_id}")
    return answer


@router.post(
    "/imports",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    responses={
        **_ADMIN_RESPONSES,
        413: {"description": "The file is larger than MAX_UPLOAD_BYTES."},
        415: {"description": "Neither a multipart form nor a CSV body."},
        422: {"description": "No file in the form, or a file that is not a usable CSV."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def upload_import(
    request: Request, settings: SettingsDep, celery: CeleryDep, pool: Pool
) -> TaskAccepted | Response:
    """Upload a contacts CSV (a multipart `file` field, or the raw CSV as the body with
    `Content-Type: text/csv`); a worker imports it. Follow it with `GET /api/v1/tasks/{id}`.

    Example: `curl -H "Authorization: Bearer $TOKEN" -F file=@contacts.csv
    http://127.0.0.1:8000/api/v1/imports`
    """
    target = uploads.uploads_dir(settings) / f"{uuid.uuid4().hex}.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        original_name = await receive_csv(request, target, settings.max_upload_bytes)
        task_id = await run_in_threadpool(
            uploads.accept_upload, celery, pool, target, original_name
        )
    except ClientDisconnect:
        target.unlink(missing_ok=True)
        return _client_left()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return TaskAccepted(task_id=task_id)


#: The status logged and counted for an upload whose client went away mid-body (nginx's
#: "client closed request"): nobody receives it, and it is no server error.
CLIENT_CLOSED_REQUEST = 499


def _client_left() -> Response:
    log.info("the client disconnected during an upload; nothing was imported")
    return Response(status_code=CLIENT_CLOSED_REQUEST)


__all__ = ["router"]
