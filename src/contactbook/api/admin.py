"""Admin endpoints: trigger a sync, list sync runs, upload a CSV, follow a task, bring
back removed contacts.

Every route needs `Authorization: Bearer <CONTACTBOOK_ADMIN_TOKEN>` (401 without a
token, 403 with a wrong one; 403 for every request when no admin token is configured).

Uploads are streamed to `CONTACTBOOK_HOME/uploads/<random>.csv` as they arrive and
refused with 413 as soon as they pass `MAX_UPLOAD_BYTES` (the whole body counts; at once
when Content-Length already says so), so a large upload never sits in memory; a form is
parsed on a worker thread, at most 100 parts of it. A client that leaves mid-upload is
logged at INFO and counted as 499, not as a server error. An accepted upload is recorded
in `import_runs` as queued before its task is sent (contacts/uploads.py: sent again when
no worker takes it, its file removed once it ends). The worker imports the file and
removes it; the API and the workers must therefore share CONTACTBOOK_HOME's disk (they
do under `contactbook serve`; with containers, mount one volume in both).
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from contactbook import db, tasks
from contactbook.api.common import TaskAccepted
from contactbook.api.deps import Admin, CeleryDep, Pool, SettingsDep
from contactbook.contacts import removed, runs, sync_runs, uploads
from contactbook.errors import UnusableInput

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", dependencies=[Admin], tags=["admin"])

#: Room for multipart boundaries and part headers around the file itself.
MULTIPART_OVERHEAD = 64 * 1024

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
    task_id = tasks.submit(
        celery, tasks.SYNC_TASK, kind=tasks.KIND_SYNC,
        full=full, dry_run=dry_run, allow_removals=allow_removals,
    )  # fmt: skip
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
    if body.all == (body.ids is not None):
        raise UnusableInput('send {"ids": [...]} or {"all": true}, one of the two')
    with pool.connection() as conn, conn.transaction():
        db.without_statement_timeout(conn)  # it waits for a running import's lock
        return Undeleted(undeleted=removed.undelete_contacts(conn, None if body.all else body.ids))


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
    kind, answer = tasks.lookup(celery, task_id)
    if kind in (None, tasks.KIND_IMPORT) and answer["status"] == "PENDING":
        with pool.connection() as conn:
            recorded = runs.task_status(conn, task_id)
        if recorded is not None:
            kind, answer = tasks.KIND_IMPORT, recorded
    if kind is None:
        raise HTTPException(404, f"no task with id {task_id}")
    return {**answer, "kind": kind}


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
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise _too_large(limit)
    target = tasks.uploads_dir(settings) / f"{uuid.uuid4().hex}.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        original_name = await _receive_csv(request, target, limit)
        await run_in_threadpool(_check_usable, target, original_name)
        task_id = await run_in_threadpool(_queue_import, celery, pool, target, original_name)
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


def _queue_import(celery, pool, path: Path, original_name: str) -> str:
    with pool.connection() as conn:  # recorded as queued first: contacts/uploads.py
        return uploads.accept_upload(celery, conn, path, original_name)


def _check_usable(path: Path, original_name: str) -> None:
    """Refuse a file whose header or encoding makes it unusable, now rather than later."""
    from contactbook.contacts.csv_reader import ContactsCsv, UnusableCsvError

    try:
        with ContactsCsv.open(path, display_name=original_name):
            pass
    except UnusableCsvError as error:
        raise HTTPException(422, f"{error}; nothing was imported") from error


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"the file is larger than {limit} bytes (MAX_UPLOAD_BYTES); "
        "import it with `contactbook import PATH` instead",
    )


async def _receive_csv(request: Request, target: Path, limit: int) -> str:
    """Stream the request's CSV into `target`; return the name the client gave it.

    The whole body counts against the limit, not only the file (other form fields:
    `MULTIPART_OVERHEAD` above it), and parsing and writing run on a worker thread, one
    chunk at a time: a body of many tiny parts kept the event loop, and with it every
    other request, busy for seconds.
    """
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type == b"multipart/form-data":
        if b"boundary" not in params:
            raise HTTPException(422, "the multipart form has no boundary")
        upload = _MultipartCsv(params[b"boundary"], target, limit)
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit + MULTIPART_OVERHEAD:
                    raise _too_large(limit)
                await run_in_threadpool(upload.feed, chunk)
            return await run_in_threadpool(upload.finish)
        finally:
            upload.close()
    if content_type in (b"text/csv", b"application/csv", b"application/octet-stream"):
        written = 0
        with target.open("wb") as out:
            async for chunk in request.stream():
                written += len(chunk)
                if written > limit:
                    raise _too_large(limit)
                await run_in_threadpool(out.write, chunk)
        return "request body"
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        "send the CSV as a multipart form field (curl -F file=@contacts.csv) "
        "or as the body with Content-Type: text/csv",
    )


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


#: Parts of an upload form read at most: the file and a few fields, not a million parts.
MAX_FORM_PARTS = 100


class _MultipartCsv:
    """Writes the first file part of a multipart body to disk as it arrives."""

    def __init__(self, boundary: bytes, target: Path, limit: int) -> None:
        self.parts = 0
        self.target = target
        self.limit = limit
        self.written = 0
        self.filename: str | None = None
        self._out: BinaryIO | None = None
        self._in_file_part = False
        self._done_with_file = False
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        try:
            self._parser = MultipartParser(boundary, callbacks=self._callbacks())
        except FormParserError as error:  # a boundary over 256 bytes
            raise HTTPException(
                422, f"the multipart form could not be read: {error}; use a shorter boundary"
            ) from error

    def _callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except HTTPException:
            self.close()
            raise
        except Exception as error:  # python_multipart's parse errors
            self.close()
            raise HTTPException(422, f"the multipart form could not be read: {error}") from error

    def finish(self) -> str:
        self._parser.finalize()
        self.close()
        if self.filename is None:
            raise HTTPException(
                422, "the form has no file: send the CSV as a file field (-F file=@contacts.csv)"
            )
        return self.filename

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_FORM_PARTS:
            raise HTTPException(
                422, f"the form has more than {MAX_FORM_PARTS} parts: send the file alone"
            )
        self._headers = {}

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = b""
        self._header_value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition"))
        if b"filename" in params and not self._done_with_file:
            raw = params[b"filename"].decode("utf-8", "replace")
            name = _SAFE_NAME.sub("_", Path(raw.replace("\\", "/")).name).strip() or "upload.csv"
            self.filename = name[:200]
            self._in_file_part = True
            self._out = self.target.open("wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file_part:
            return
        self.written += end - start
        if self.written > self.limit:
            raise _too_large(self.limit)
        assert self._out is not None  # opened with the file part's headers
        self._out.write(data[start:end])

    def _part_end(self) -> None:
        if self._in_file_part:
            self._in_file_part = False
            self._done_with_file = True
            self.close()


__all__ = ["router"]
