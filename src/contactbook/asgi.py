"""Around the ASGI app: what the access log and the metrics both need to know about a
request (its status and how long it took, even when the app raises before answering),
admission (a bounded number of requests inside the app, a bounded wait for the others)
and the HTTP protocol uvicorn serves it with (bounded request heads)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


async def call_observed(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, done: Callable[[int, float], None]
) -> None:
    """Run `app` for one HTTP request, then call `done(status, seconds)`.

    The status is 500 when the app raised before starting a response: that is what the
    client sees.
    """
    started = time.perf_counter()
    status = 500

    async def send_and_remember_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await app(scope, receive, send_and_remember_status)
    finally:
        done(status, time.perf_counter() - started)


# -- redirects ----------------------------------------------------------------------------


class HttpMiddleware:
    """An ASGI middleware for HTTP requests: `handle` sees those, every other scope
    (lifespan, websockets) goes straight to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RelativeRedirectMiddleware(HttpMiddleware):
    """Redirects name a path, never a host: Starlette's trailing-slash redirect builds
    an absolute URL from the request's Host header, so `Host: evil.example` got
    `location: http://evil.example/api/v1/search?…` (a cache or a careless proxy would
    send other clients there). The location keeps its path and query only; leading
    slashes are folded into one so the result cannot read as `//other.host/…`."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:

        async def send_relative(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                message = {
                    **message,
                    "headers": [
                        (name, relative_location(value) if name.lower() == b"location" else value)
                        for name, value in message.get("headers", [])
                    ],
                }
            await send(message)

        await self.app(scope, receive, send_relative)


def relative_location(location: bytes) -> bytes:
    """`http://any.host/a/b?q=1` -> `/a/b?q=1`."""
    parts = urlsplit(location.decode("latin-1"))
    path = "/" + parts.path.lstrip("/")
    return (path + (f"?{parts.query}" if parts.query else "")).encode("latin-1")


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

    def __init__(self, app: ASGIApp, *, limit: int = ADMITTED_REQUESTS, wait: float = 5.0) -> None:
        self.app = app
        self.limit = limit
        self.wait = wait
        self._places: asyncio.Semaphore | None = None  # made on the serving event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
#: Seconds a client has to send a request's line and headers, from the moment it
#: connects (or sends the first byte of its next request on a kept-alive connection).
DEFAULT_HEAD_TIMEOUT = 15.0
#: Open connections per process; a connection beyond them is answered 503 and closed.
DEFAULT_MAX_CONNECTIONS = 1000
#: File descriptors kept free of client connections: the database and broker pools,
#: upload files, logs.
RESERVED_DESCRIPTORS = 64
#: How long a refused connection keeps reading (and dropping) what the client sends.
LINGER_SECONDS = 2.0

_log = logging.getLogger("contactbook.http")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with bounds on what a client can hold.

    uvicorn (0.54) bounds neither the size of a request head nor the time to send it, nor
    the number of open connections (`limit_concurrency` answers requests with 503 but
    keeps every connection open): 3,000 connections that each sent half a request line
    stayed open until the process ran out of file descriptors. This adds:

    - **head size**: httptools buffers a header of any size (a 50 MB header grew the API
      by 150 MB and got a 200). The bytes received while a request's line and headers are
      still being read are counted and, past ``max_header_bytes``, the answer is ``431
      Request Header Fields Too Large``. The count is checked after each chunk is parsed,
      so a chunk that ends the headers and starts the body never counts against them; at
      most one chunk more than the limit is held.
    - **head time** (slowloris): a client has ``head_timeout`` seconds from connecting,
      or from the first byte of its next request on a kept-alive connection, to finish
      a request's line and headers; then it gets ``408 Request Timeout``. A connection
      that sends nothing at all is closed the same way. (uvicorn's keep-alive timeout
      covers only the idle time between requests.)
    - **connections**: beyond ``max_connections`` open connections in this process, a new
      one is answered ``503`` and closed at once, so a flood cannot use up the process's
      file descriptors (and with them its database connections).

    Refusals close with a linger: the answer goes out with a FIN and whatever the client
    still sends is read and dropped for up to :data:`LINGER_SECONDS`. Closing at once,
    with unread data, makes the kernel reset the connection, and the client would see a
    reset instead of the answer.
    """

    def __init__(
        self,
        *args: Any,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        head_timeout: float = DEFAULT_HEAD_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = max_header_bytes
        self.head_timeout = head_timeout
        self.max_connections = max_connections
        self._reading_head = True  # before the first byte, or inside a request's head
        self._head_bytes = 0  # received since the head began, by chunk
        self._parsed_head_bytes = 0  # the request line and headers parsed so far
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            _log.warning(
                "refused a connection: %d are open, at most %d per process "
                "(HTTP_MAX_CONNECTIONS) (503)",
                len(self.connections) - 1,
                self.max_connections,
            )
            self._refused = True
            self._write_refusal(
                b"503 Service Unavailable",
                "The server has too many open connections; retry in a second.",
                extra_headers=[b"retry-after: 1\r\n"],
            )
            self.transport.close()  # at once: the descriptor is what is scarce
            return
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and drop
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._start_head_timer()  # the next request on a kept-alive connection
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
        self._stop_head_timer()
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

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # The head of a pipelined request behind one still being answered: its time
            # starts again when that answer is out.
            self._start_head_timer()
            return
        _log.warning(
            "closed a connection that sent no complete request line and headers within "
            "%g s (HTTP_HEAD_TIMEOUT) (408)",
            self.head_timeout,
            extra={"client": f"{self.client[0]}:{self.client[1]}" if self.client else None},
        )
        self._refuse(
            b"408 Request Timeout",
            f"The request line and headers did not arrive within {self.head_timeout:g} s.",
        )

    def _refuse_large_head(self) -> None:
        if self._refused or self.transport.is_closing():  # refused already, or a 400
            return
        self.logger.warning(
            "refused a request whose line and headers exceed %d bytes (431)",
            self.max_header_bytes,
        )
        self._refuse(
            b"431 Request Header Fields Too Large",
            f"The request line and headers exceed {self.max_header_bytes} bytes; send "
            "smaller headers (cookies, tokens).",
        )

    def _refuse(self, status: bytes, detail: str) -> None:
        """Answer `status` with a JSON `detail`, then close with a linger."""
        self._refused = True
        self._stop_head_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request behind one still being answered: an answer now would
            # land inside that response, so close without one.
            self.transport.close()
            return
        self._write_refusal(status, detail)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _write_refusal(
        self, status: bytes, detail: str, extra_headers: list[bytes] | None = None
    ) -> None:
        body = json.dumps({"detail": detail}).encode()
        head = [b"HTTP/1.1 " + status + b"\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            *(extra_headers or []),
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)


def bounded_http(
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    *,
    head_timeout: float = DEFAULT_HEAD_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> type[asyncio.Protocol]:
    """The ``http=`` protocol for ``uvicorn.run``/``uvicorn.Config``; picklable, so
    ``--workers N`` can hand it to its worker processes."""
    protocol = functools.partial(
        BoundedHttpToolsProtocol,
        max_header_bytes=max_header_bytes,
        head_timeout=head_timeout,
        max_connections=max_connections,
    )
    # uvicorn types `http=` as a protocol class but only ever calls it to make each
    # connection's protocol; a partial does that and, unlike a class made here, pickles.
    return cast("type[asyncio.Protocol]", protocol)


def connection_cap(configured: int) -> int:
    """`configured` (HTTP_MAX_CONNECTIONS), lowered to what this process's file
    descriptor limit leaves after :data:`RESERVED_DESCRIPTORS`, with a warning: past the
    limit, new connections would be reset and the pools could not connect."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or configured + RESERVED_DESCRIPTORS <= soft:
        return configured
    cap = max(soft - RESERVED_DESCRIPTORS, 1)
    _log.warning(
        "HTTP_MAX_CONNECTIONS is %d but this process may open only %d files (ulimit -n): "
        "serving at most %d connections per process; raise the limit to serve more",
        configured,
        soft,
        cap,
    )
    return cap
