"""Around the ASGI app: what the access log and the metrics both need to know about a
request (its status and how long it took, even when the app raises before answering),
admission (a bounded number of requests inside the app, a bounded wait for the others)
and the HTTP protocol uvicorn serves it with (bounded request heads)."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


async def call_observed(
    app: Any, scope: dict, receive: Any, send: Any, done: Callable[[int, float], None]
) -> None:
    """Run `app` for one HTTP request, then call `done(status, seconds)`.

    The status is 500 when the app raised before starting a response: that is what the
    client sees.
    """
    started = time.perf_counter()
    status = 500

    async def send_and_remember_status(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await app(scope, receive, send_and_remember_status)
    finally:
        done(status, time.perf_counter() - started)


# -- admission --------------------------------------------------------------------------

#: Requests inside the app at once, per process. FastAPI runs endpoints on 40 threads; a
#: request beyond those would queue for a thread with no bound at all, and under overload
#: the API would then spend its time on requests whose clients had long given up.
ADMITTED_REQUESTS = 32
#: Paths that bypass admission: liveness and metrics must answer when the API is busy.
ALWAYS_ADMITTED = frozenset({"/healthz", "/metrics"})


class AdmissionMiddleware:
    """At most ``limit`` requests in the app at once; the others wait for a place, in
    arrival order, at most ``wait`` seconds, and then get ``503`` with ``Retry-After``.

    So overload sheds the excess quickly with an answer that says when to come back,
    and the wait of any admitted request is bounded, so the API is itself again as soon
    as the load falls (without it, a minute at twice the sustainable rate left a queue
    that took minutes to drain).
    """

    def __init__(self, app: Any, *, limit: int = ADMITTED_REQUESTS, wait: float = 5.0) -> None:
        self.app = app
        self.limit = limit
        self.wait = wait
        self._places: asyncio.Semaphore | None = None  # made on the serving event loop

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in ALWAYS_ADMITTED:
            await self.app(scope, receive, send)
            return
        if self._places is None:
            self._places = asyncio.Semaphore(self.limit)
        try:
            async with asyncio.timeout(self.wait):
                await self._places.acquire()
        except TimeoutError:
            busy = JSONResponse(
                {
                    "detail": f"the server is busy: no place for this request within "
                    f"{self.wait:g} s. Retry in a second."
                },
                status_code=503,
                headers={"Retry-After": "1"},
            )
            await busy(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._places.release()


# -- the HTTP server --------------------------------------------------------------------

#: Bytes of a request line and headers the API reads before answering 431: a long
#: cookie or token fits, a header built to exhaust memory does not.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
#: How long a refused connection keeps reading (and dropping) what the client sends.
LINGER_SECONDS = 2.0


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing requests whose head is too large.

    httptools itself has no limit: it buffers a header of any size (a 50 MB header grew
    the API by 150 MB and got a 200). This counts the bytes received while a request's
    line and headers are still being read and, past ``max_header_bytes``, answers
    ``431 Request Header Fields Too Large`` and closes the connection. The count is
    checked after each chunk is parsed, so a chunk that ends the headers and starts the
    body never counts against them; at most one chunk more than the limit is held.

    The close lingers: the answer goes out with a FIN and whatever the client still
    sends is read and dropped for up to :data:`LINGER_SECONDS`. Closing at once, with
    unread data, makes the kernel reset the connection, and the client would see a
    reset instead of the 431.
    """

    def __init__(
        self, *args: Any, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = max_header_bytes
        self._reading_head = True  # before the first byte, or inside a request's head
        self._head_bytes = 0  # received since the head began, by chunk
        self._parsed_head_bytes = 0  # the request line and headers parsed so far
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and drop
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._reading_head and self._head_bytes > self.max_header_bytes:
            self._refuse_large_head()  # a head still growing

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._parsed_head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._parsed_head_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        if self._parsed_head_bytes > self.max_header_bytes:
            self._refuse_large_head()  # a head that arrived whole in one chunk
        if not self._refused:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._reading_head = True
        if not self._refused:
            super().on_message_complete()

    def _refuse_large_head(self) -> None:
        if self._refused or self.transport.is_closing():  # refused already, or a 400
            return
        self._refused = True
        self.logger.warning(
            "refused a request whose line and headers exceed %d bytes (431)",
            self.max_header_bytes,
        )
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request behind one still being answered: an answer now would
            # land inside that response, so close without one.
            self.transport.close()
            return
        body = json.dumps(
            {
                "detail": f"The request line and headers exceed {self.max_header_bytes} "
                "bytes; send smaller headers (cookies, tokens)."
            }
        ).encode()
        head = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def bounded_http(max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> Callable[..., Any]:
    """The ``http=`` protocol for ``uvicorn.run``/``uvicorn.Config``; picklable, so
    ``--workers N`` can hand it to its worker processes."""
    return functools.partial(BoundedHttpToolsProtocol, max_header_bytes=max_header_bytes)
