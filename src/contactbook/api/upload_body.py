"""The body of a CSV upload, streamed to disk as it arrives: a multipart form's first
file part, or a raw CSV body.

It never sits in memory: chunks are parsed (python-multipart's streaming
`MultipartParser`) and written on a worker thread, one at a time, and the upload is
refused with 413 as soon as it passes `MAX_UPLOAD_BYTES` (the whole body counts; at
once when Content-Length already says so). At most `MAX_FORM_PARTS` parts are read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from fastapi import HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

#: Room for multipart boundaries and part headers around the file itself.
MULTIPART_OVERHEAD = 64 * 1024


def too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"the file is larger than {limit} bytes (MAX_UPLOAD_BYTES); "
        "import it with `contactbook import PATH` instead",
    )


async def receive_csv(request: Request, target: Path, limit: int) -> str:
    """Stream the request's CSV into `target`; return the name the client gave it.

    The whole body counts against the limit, not only the file (other form fields:
    `MULTIPART_OVERHEAD` above it), and parsing and writing run on a worker thread, one
    chunk at a time: a body of many tiny parts kept the event loop, and with it every
    other request, busy for seconds.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise too_large(limit)  # at once, before a byte of it is read
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
                    raise too_large(limit)
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
                    raise too_large(limit)
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
            raise too_large(self.limit)
        assert self._out is not None  # opened with the file part's headers
        self._out.write(data[start:end])

    def _part_end(self) -> None:
        if self._in_file_part:
            self._in_file_part = False
            self._done_with_file = True
            self.close()


__all__ = ["MAX_FORM_PARTS", "receive_csv", "too_large"]
