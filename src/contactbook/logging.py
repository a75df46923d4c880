"""Logs as one JSON object per line on stderr, from every process (API, worker, beat, serve);
plain text lines instead for a person at a terminal.

`LOG_FORMAT` chooses: `json` or `text`; unset, text when stderr is a terminal and JSON
otherwise (a file, a pipe, a container), so compose, log collectors and `serve`'s child
log files always get JSON (`choose_log_format`).

Every line carries `time` (ISO-8601, UTC), `level`, `logger`, `message`, `process` (the role:
api, worker, beat, serve, cli…), `pid`, `request_id` (HTTP requests) and `task_id` (Celery
tasks), plus whatever the caller passed in `extra=`. A log collector (Vector → Loki in
docker-compose) keeps the line as is; `| json` in LogQL turns the fields into columns.

Secrets never reach the output: the formatter replaces every occurrence of a configured
secret (Nimble API key, admin token, read tokens) with `***` in the *finished* line, so
the message, its arguments, extras and exception tracebacks are all covered, whoever logged
them. The secret values are passed in by the caller; this module never reads the environment.

Wiring (the CLI, the API factory and `worker.py` call these):

- `configure_logging(level, process=..., secrets=...)` once per process, early;
- `uvicorn_log_config(...)` as uvicorn's `log_config` (with `access_log=False`) so each
  uvicorn worker process formats the same way;
- `RequestIdMiddleware` and `AccessLogMiddleware` on the FastAPI app;
- `install_celery_logging(app)` in `worker.py`.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import logging.config
import re
import sys
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contactbook.asgi import HttpMiddleware, call_observed

__all__ = [
    "REQUEST_ID_HEADER",
    "AccessLogMiddleware",
    "JsonLineFormatter",
    "RequestIdMiddleware",
    "TextLineFormatter",
    "choose_log_format",
    "configure_logging",
    "install_celery_logging",
    "redact_url",
    "request_id_var",
    "task_id_var",
    "uvicorn_log_config",
]

REQUEST_ID_HEADER = "X-Request-ID"
REDACTED = "***"

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "contactbook_request_id", default=None
)
task_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "contactbook_task_id", default=None
)

# A client-supplied request id is echoed into logs and headers: accept only a short, plain
# token so nobody can forge log lines or inject header bytes through it.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# uvicorn adds a coloured copy of each message; it would only duplicate `message`.
_SKIPPED_ATTRS = [*RESERVED_ATTRS, "color_message"]
# Health probes and scrapes arrive every few seconds; they are access-logged at DEBUG.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_HANDLER_NAME = "contactbook-json"
_current: dict[str, Any] | None = None


class JsonLineFormatter(JsonFormatter):
    """One JSON object per record, with the fields above, secrets replaced by `***`."""

    def __init__(self, *, process: str = "cli", secrets: Iterable[str | None] = ()) -> None:
        super().__init__(reserved_attrs=_SKIPPED_ATTRS, json_ensure_ascii=False)
        self.process_role = process
        self._secrets = _secret_forms(secrets)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = _iso_utc(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        log_data["process"] = self.process_role
        log_data["pid"] = record.process
        log_data["request_id"] = request_id_var.get()
        log_data["task_id"] = task_id_var.get() or _current_celery_task_id()
        super().add_fields(log_data, record, message_dict)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for secret in self._secrets:
            line = line.replace(secret, REDACTED)
        return line


class TextLineFormatter(logging.Formatter):
    """`14:02:07 INFO    started api (pid 4242)`: a line for a person, secrets replaced by
    `***` like the JSON lines (tracebacks included)."""

    def __init__(
        self,
        *,
        process: str = "cli",
        secrets: Iterable[str | None] = (),
        timestamps: bool = True,
    ) -> None:
        # Without timestamps (a short CLI command): `warning: the message`.
        pattern = "%(asctime)s %(levelname)-7s %(message)s" if timestamps else "%(message)s"
        super().__init__(pattern, datefmt="%H:%M:%S")
        self.process_role = process
        self.timestamps = timestamps
        self._secrets = _secret_forms(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if not self.timestamps:
            line = f"{record.levelname.lower()}: {line}"
        for secret in self._secrets:
            line = line.replace(secret, REDACTED)
        return line


LOG_FORMATS = {"json": JsonLineFormatter, "text": TextLineFormatter}


def choose_log_format(configured: str | None, stream: Any = None) -> str:
    """`LOG_FORMAT` when set; otherwise text for a terminal and JSON for anything else."""
    if configured:
        return configured
    stream = stream if stream is not None else sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "json"


def configure_logging(
    level: str = "INFO",
    *,
    process: str,
    secrets: Iterable[str | None] = (),
    fmt: str = "json",
) -> None:
    """Send every logger's records to stderr, as JSON lines (or text lines with
    `fmt="text"`); replaces earlier handlers.

    `level` is `LOG_LEVEL` (a name such as INFO or DEBUG); `process` the role shown in each
    line; `secrets` the values to mask (None and blanks are ignored). Safe to call again:
    the last call wins, which is how a Celery child or a uvicorn worker re-applies it.
    """
    global _current
    secrets = tuple(secret for secret in secrets if secret)
    logging.config.dictConfig(uvicorn_log_config(level, process=process, secrets=secrets, fmt=fmt))
    logging.captureWarnings(True)
    _current = {"level": level, "process": process, "secrets": secrets, "fmt": fmt}


def uvicorn_log_config(
    level: str = "INFO",
    *,
    process: str = "api",
    secrets: Iterable[str | None] = (),
    fmt: str = "json",
) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping for the JSON (or text) lines.

    Pass it to `uvicorn.run(..., log_config=..., access_log=False)`: uvicorn applies it in
    every worker process it spawns, so `--workers N` logs exactly like one worker.
    """
    level = _level_name(level)
    if fmt not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be json or text, not {fmt!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "line": {
                "()": LOG_FORMATS[fmt],
                "process": process,
                "secrets": [secret for secret in secrets if secret],
            }
        },
        "handlers": {
            _HANDLER_NAME: {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": [_HANDLER_NAME]},
        "loggers": {
            # Our own access lines replace uvicorn's; its error logger goes through root.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            # These libraries log every request/connection at INFO; keep them for DEBUG.
            "httpx": {"level": max(_level_value(level), logging.WARNING)},
            "httpcore": {"level": max(_level_value(level), logging.WARNING)},
        },
    }


def redact_url(url: str) -> str:
    """`url` with its password replaced by `***`, for messages (`postgresql://u:***@h/db`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:{REDACTED}@{host}")
    if "password=" in parts.query:
        parts = parts._replace(query=re.sub(r"password=[^&]*", f"password={REDACTED}", parts.query))
    return urlunsplit(parts)


# --- HTTP ---------------------------------------------------------------------------------


class RequestIdMiddleware(HttpMiddleware):
    """Give every HTTP request an id: the client's `X-Request-ID` when it is a plain token
    (up to 128 characters), a new one otherwise. The id goes into `request_id_var` (and so
    into every log line of the request) and back to the client in `X-Request-ID`."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _request_id_from(scope) or uuid.uuid4().hex
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != header[0]
                ]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            request_id_var.reset(token)


class AccessLogMiddleware:
    """One JSON line per request on the `contactbook.access` logger: method, path (never
    the query string: search text stays out of the logs; cut after MAX_LOGGED_PATH
    characters), status, duration_ms, and the request id. Health probes and `/metrics`
    are logged at DEBUG. Place it inside `RequestIdMiddleware` so the line carries the
    request's id."""

    def __init__(self, app: ASGIApp, logger_name: str = "contactbook.access") -> None:
        self.app = app
        self.log = logging.getLogger(logger_name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await call_observed(self.app, scope, receive, send, functools.partial(self._write, scope))

    def _write(self, scope: Scope, status: int, seconds: float) -> None:
        path = shorten_path(scope.get("path", ""))
        method = scope.get("method", "")
        level = logging.DEBUG if path in _QUIET_PATHS and status < 400 else logging.INFO
        self.log.log(
            level,
            "%s %s %s",
            method,
            path,
            status,
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "client": _client_address(scope),
            },
        )


#: Characters of a request path an access line shows; a longer one is cut, with a marker
#: (a 60 KB path made a 120 KB line).
MAX_LOGGED_PATH = 1024


def shorten_path(path: str) -> str:
    """`path`, or its first MAX_LOGGED_PATH characters and `…(+N characters)`."""
    if len(path) <= MAX_LOGGED_PATH:
        return path
    return f"{path[:MAX_LOGGED_PATH]}…(+{len(path) - MAX_LOGGED_PATH} characters)"


# --- Celery -------------------------------------------------------------------------------


def install_celery_logging(app: Any) -> None:
    """Make Celery (worker and beat) log through our JSON formatter, with `task_id` set
    while a task runs. Call once in `worker.py`, after creating the app.

    Celery configures logging itself unless a `setup_logging` receiver exists; ours
    re-applies the last `configure_logging` call (the CLI made it with the right role and
    secrets). When Celery was started some other way (`celery -A contactbook.worker worker`)
    it configures from the settings, unless the process already has logging set up (a
    worker started inside a test run keeps the test runner's capture).
    """
    from celery import signals

    app.conf.worker_hijack_root_logger = False
    signals.setup_logging.connect(_celery_setup_logging, weak=False, dispatch_uid=_HANDLER_NAME)
    signals.task_prerun.connect(_celery_task_started, weak=False, dispatch_uid=_HANDLER_NAME)
    signals.task_postrun.connect(_celery_task_finished, weak=False, dispatch_uid=_HANDLER_NAME)
    signals.worker_shutting_down.connect(
        _celery_shutting_down, weak=False, dispatch_uid=_HANDLER_NAME
    )
    _silence_celery_shutdown_notice()


_task_tokens: dict[str, contextvars.Token] = {}


def _celery_setup_logging(**_: Any) -> None:
    if _current is not None:
        configure_logging(**_current)
        return
    if logging.getLogger().handlers:
        return  # whoever started Celery in this process set logging up (a test runner)
    from contactbook.config import get_settings

    settings = get_settings()
    configure_logging(
        settings.log_level,
        process="celery",
        secrets=settings_secrets(settings),
        fmt=choose_log_format(settings.log_format),
    )


def _silence_celery_shutdown_notice() -> None:
    # On SIGTERM the worker prints "worker: Warm shutdown (MainProcess)" straight to stdout,
    # the only line it writes outside logging; `_celery_shutting_down` logs it instead.
    from celery.apps import worker as celery_worker

    handler = celery_worker.install_worker_term_handler
    if isinstance(handler, functools.partial) and "verbose" not in handler.keywords:
        celery_worker.install_worker_term_handler = functools.partial(handler, verbose=False)


def _celery_shutting_down(sig: str | None = None, how: str | None = None, **_: Any) -> None:
    logging.getLogger("celery.worker").info(
        "%s shutdown on %s", (how or "warm").lower(), sig, extra={"signal": sig}
    )


def _celery_task_started(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _task_tokens[task_id] = task_id_var.set(task_id)


def _celery_task_finished(task_id: str | None = None, **_: Any) -> None:
    token = _task_tokens.pop(task_id, None) if task_id else None
    if token is not None:
        try:
            task_id_var.reset(token)
        except ValueError:  # set in another context (a thread pool): just clear it
            task_id_var.set(None)


def settings_secrets(settings: Any) -> list[str]:
    """The secret values in `Settings` that logs must never show."""
    secrets: list[str] = []
    for field in ("nimble_api_key", "contactbook_admin_token", "metrics_token"):
        value = getattr(settings, field, None)
        if value is not None:
            secrets.append(value.get_secret_value())
    secrets.extend(getattr(settings, "api_tokens", []))
    return [secret for secret in secrets if secret]


# --- helpers ------------------------------------------------------------------------------


def _secret_forms(secrets: Iterable[str | None]) -> list[str]:
    """Each secret as it may appear in a JSON line: raw, and JSON-escaped. Longest first,
    so a secret that contains another is masked whole."""
    forms: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        forms.add(secret)
        forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    return sorted(forms, key=len, reverse=True)


def _iso_utc(created: float) -> str:
    return (
        datetime.fromtimestamp(created, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _level_name(level: str | int) -> str:
    if isinstance(level, int):
        return logging.getLevelName(level)
    name = level.strip().upper()
    if not isinstance(logging.getLevelName(name), int):
        raise ValueError(
            f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {level!r}"
        )
    return name


def _level_value(level: str) -> int:
    return logging.getLevelName(_level_name(level))


def _request_id_from(scope: Scope) -> str | None:
    wanted = REQUEST_ID_HEADER.lower().encode()
    for name, value in scope.get("headers", []):
        if name.lower() == wanted:
            candidate = value.decode("latin-1").strip()
            return candidate if _VALID_REQUEST_ID.fullmatch(candidate) else None
    return None


def _client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


def _current_celery_task_id() -> str | None:
    # Celery's own context covers tasks run without the prerun signal (eager calls).
    celery_state = sys.modules.get("celery._state")
    if celery_state is None:
        return None
    task = celery_state.get_current_task()
    request = getattr(task, "request", None) if task is not None else None
    return getattr(request, "id", None)
