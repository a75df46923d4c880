"""A small, careful client for the Nimble contacts API.

It reads every person (or every person updated since a moment) page by page:
the first page says how many pages there are, the rest are fetched by a bounded
pool of threads and handed to the caller as they arrive, so memory stays at a few
pages whatever the size of the account. Each request retries 5xx answers,
timeouts, dropped connections and malformed bodies with exponential backoff and
jitter, bounded both in attempts and in total time. A refused key fails at once.

The API key is sent by an ``httpx.Auth`` object and is never put into a log
line, an exception message or a repr; any text that came from the server is
scrubbed of it as well, in case a server echoes it back.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard, TypeVar

import httpx

from contactbook import __version__
from contactbook.nimble import fields as nimble_fields
from contactbook.nimble.errors import (
    NimbleAuthError,
    NimbleError,
    NimbleProtocolError,
    NimbleQuotaExceeded,
    NimbleUnavailable,
)

logger = logging.getLogger(__name__)

CONTACTS_PATH = "/api/v1/contacts"
CONTACT_PATH = "/api/v1/contact/{nimble_id}"
#: The Nimble fields we ask for (``tags`` come with every resource, outside ``fields``).
FIELDS = nimble_fields.FIELDS
DEFAULT_PER_PAGE = 100
DEFAULT_CONCURRENCY = 4

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RemoteContact:
    """One Nimble person, reduced to the fields Contact Book keeps."""

    nimble_id: str
    first_name: str | None
    last_name: str | None
    #: The primary address: the first one Nimble lists.
    email: str | None
    #: Every address, in Nimble's order (the primary first).
    emails: tuple[str, ...]
    description: str | None
    updated: datetime | None
    #: Every number, in Nimble's order (the primary first).
    phones: tuple[str, ...] = ()
    title: str | None = None
    company: str | None = None
    #: "City, Country" of the first address that has either.
    location: str | None = None
    #: The text of each tag, in Nimble's order.
    tags: tuple[str, ...] = ()

    @property
    def phone(self) -> str | None:
        """The primary number."""
        return self.phones[0] if self.phones else None


@dataclass(frozen=True, slots=True)
class ContactPage:
    """One page of the contact list as it arrived."""

    number: int
    pages: int
    per_page: int
    #: ``meta.total``: how many records the whole listing holds.
    total: int
    #: The people on this page (companies and other record types are left out).
    contacts: list[RemoteContact]
    #: Every record id on the page, people or not, for counting against ``total``.
    resource_ids: list[str]

    @property
    def skipped(self) -> int:
        """Records on this page that are not people."""
        return len(self.resource_ids) - len(self.contacts)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one request tries before giving up.

    The delay before retry *n* is drawn between half and all of
    ``min(backoff_max, backoff_base * 2 ** (n - 1))`` ("equal jitter"), so a crowd of
    clients does not retry in lockstep yet each one still backs off.
    """

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    #: Give up once this many seconds have passed since the first attempt.
    max_elapsed: float = 120.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class _BearerAuth(httpx.Auth):
    """Adds the key to each request; its repr never shows it."""

    def __init__(self, api_key: str) -> None:
        self._header = f"Bearer {api_key}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "<BearerAuth ***>"


class _MalformedAnswer(ValueError):
    """The body parsed (or not) into something that is not the documented shape."""


class NimbleClient:
    """Reads contacts from ``{base_url}/api/v1/contacts``.

    ``per_page`` records per request, at most ``concurrency`` requests in flight and
    at most ``prefetch`` pages (default ``4 * concurrency``) fetched ahead of the caller.
    Use it as a context manager (or call :meth:`close`) to release connections.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        per_page: int = DEFAULT_PER_PAGE,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout: float | httpx.Timeout = 30.0,
        retry: RetryPolicy | None = None,
        prefetch: int | None = None,
    ) -> None:
        if not api_key:
            raise NimbleAuthError("No Nimble API key given. Set NIMBLE_API_KEY.")
        if per_page < 1:
            raise ValueError("per_page must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.per_page = per_page
        self.concurrency = concurrency
        # Pages asked for ahead of the caller: enough to keep every worker busy while
        # the caller writes a batch to the database, few enough to bound memory.
        self.prefetch = max(prefetch or 4 * concurrency, concurrency)
        self.retry = retry or RetryPolicy()
        self._secret = api_key
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=_BearerAuth(api_key),
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers={"Accept": "application/json", "User-Agent": f"contactbook/{__version__}"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return (
            f"NimbleClient(base_url={self.base_url!r}, per_page={self.per_page}, "
            f"concurrency={self.concurrency})"
        )

    def __enter__(self) -> NimbleClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- reading the list ------------------------------------------------------------

    def iter_pages(
        self, *, updated_since: datetime | None = None
    ) -> Generator[ContactPage, None, None]:
        """Yield every page of people, in the order they arrive (not page order).

        With ``updated_since``, only people Nimble says were updated at or after that
        moment (an advanced-search ``query``; Nimble refuses ``record_type`` next to a
        query, so the person filter goes inside it). Raises a :class:`NimbleError` when a
        page cannot be had or when ``meta.total`` changes between pages (the list moved
        under us, so the pages no longer add up).
        """
        params = self.list_params(updated_since)
        cancel = threading.Event()
        first = self._fetch_page(1, params, cancel)
        if first.pages <= 1:
            yield first
            return
        window = self.prefetch
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="nimble-page")
        pending: set[Future[ContactPage]] = set()
        next_number = 2
        try:

            def top_up() -> None:
                nonlocal next_number
                while next_number <= first.pages and len(pending) < window:
                    pending.add(pool.submit(self._fetch_page, next_number, params, cancel))
                    next_number += 1

            top_up()
            yield first
            while pending:
                done, still_running = wait(pending, return_when=FIRST_COMPLETED)
                pending.clear()
                pending.update(still_running)
                for future in done:
                    page = future.result()
                    if page.total != first.total:
                        raise NimbleProtocolError(
                            f"The Nimble contact list changed while it was being read "
                            f"(meta.total was {first.total} on page 1 and {page.total} on "
                            f"page {page.number}). Run the sync again."
                        )
                    top_up()
                    yield page
        finally:
            cancel.set()
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def fetch_page(self, number: int, *, updated_since: datetime | None = None) -> ContactPage:
        """One page of the listing :meth:`iter_pages` walks through."""
        return self._fetch_page(number, self.list_params(updated_since), threading.Event())

    def get_contact(self, nimble_id: str) -> RemoteContact | None:
        """One record by id, or ``None`` if there is none or it is not a person."""

        def parse(body: Any) -> RemoteContact | None:
            resources = body.get("resources") if isinstance(body, dict) else None
            if not isinstance(resources, list) or len(resources) != 1:
                raise _MalformedAnswer("expected one resource")
            return parse_resource(resources[0])

        path = CONTACT_PATH.format(nimble_id=nimble_id)
        return self._get(
            path, {"fields": ",".join(FIELDS), "tags": 1}, parse, threading.Event(), missing_ok=True
        )

    def list_params(self, updated_since: datetime | None = None) -> dict[str, str | int]:
        """The query parameters of the listing (without ``page``)."""
        params: dict[str, str | int] = {
            "fields": ",".join(FIELDS),
            "tags": 1,
            "per_page": self.per_page,
        }
        if updated_since is None:
            params["record_type"] = "person"
        else:
            params["query"] = updated_since_query(updated_since)
        return params

    # -- one request -----------------------------------------------------------------

    def _fetch_page(
        self, number: int, params: dict[str, str | int], cancel: threading.Event
    ) -> ContactPage:
        page = self._get(
            CONTACTS_PATH,
            {**params, "page": number},
            lambda body: parse_contact_page(body, number=number, per_page=self.per_page),
            cancel,
        )
        assert page is not None  # only a missing_ok request answers None
        return page

    def _get(
        self,
        path: str,
        params: dict[str, str | int],
        parse: Callable[[Any], T],
        cancel: threading.Event,
        *,
        missing_ok: bool = False,
    ) -> T | None:
        """GET and parse one answer, retrying what a retry can fix; ``None`` for a 404
        when ``missing_ok``."""
        what = f"GET {path}" + (f" page {params['page']}" if "page" in params else "")
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            failure: type[NimbleError] = NimbleUnavailable
            hint = ""
            try:
                response = self._http.get(path, params=params)
            except httpx.TimeoutException as exc:
                problem = f"timed out ({type(exc).__name__})"
                hint = f" Check NIMBLE_API_URL ({self.base_url}) and the network."
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__}: {exc})"
                hint = f" Check NIMBLE_API_URL ({self.base_url}) and the network."
            else:
                status = response.status_code
                if status in (401, 403):
                    raise NimbleAuthError(
                        f"Nimble refused the API key (HTTP {status}"
                        f"{self._detail(response)}). Check NIMBLE_API_KEY."
                    )
                if status == 402:
                    raise NimbleQuotaExceeded(
                        f"Nimble says the API quota is used up (HTTP 402"
                        f"{self._detail(response)}). Try again later or raise the quota."
                    )
                if status == 404 and missing_ok:
                    return None
                if status == 429 or status >= 500:
                    problem = f"HTTP {status}{self._detail(response)}"
                    retry_after = _retry_after(response)
                elif status != 200:
                    raise NimbleProtocolError(
                        f"Nimble answered HTTP {status} to {what}{self._detail(response)}. "
                        f"Check that NIMBLE_API_URL ({self.base_url}) is Nimble's API."
                    )
                else:
                    try:
                        return parse(json.loads(response.content))
                    except ValueError as exc:  # JSONDecodeError and _MalformedAnswer
                        failure = NimbleProtocolError
                        problem = f"malformed answer ({self._redact(str(exc))[:200]})"

            elapsed = time.monotonic() - started
            delay = self.retry.delay(attempt)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.retry.backoff_max))
            if (
                attempt >= self.retry.max_attempts
                or elapsed + delay > self.retry.max_elapsed
                or cancel.is_set()
            ):
                raise failure(
                    f"Nimble {what} failed after {attempt} attempt(s) in {elapsed:.1f}s: "
                    f"{problem}.{hint}"
                )
            logger.warning(
                "Nimble %s: %s; retry %d of %d in %.2fs",
                what,
                problem,
                attempt,
                self.retry.max_attempts - 1,
                delay,
            )
            if cancel.wait(delay):
                raise failure(f"Nimble {what} abandoned: another page failed ({problem}).")

    def _detail(self, response: httpx.Response) -> str:
        """The server's own words about an error, short and without the key."""
        try:
            body = json.loads(response.content)
        except ValueError:
            return ""
        message = body.get("message") if isinstance(body, dict) else None
        code = body.get("code") if isinstance(body, dict) else None
        parts = [str(part) for part in (code and f"code {code}", message) if part]
        return (": " + self._redact(", ".join(parts))[:200]) if parts else ""

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if len(self._secret) >= 4 else text


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def updated_since_query(moment: datetime) -> str:
    """The ``query`` parameter for "people updated at or after ``moment``"."""
    if moment.tzinfo is None:
        raise ValueError("updated_since must be timezone-aware")
    start = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = {
        "and": [
            {"record type": {"is": "person"}},
            {"updated": {"range": {"start_datetime": start}}},
        ]
    }
    return json.dumps(query, separators=(",", ":"))


# -- parsing ----------------------------------------------------------------------------


def parse_contact_page(body: Any, *, number: int, per_page: int) -> ContactPage:
    """Turn one decoded listing answer into a :class:`ContactPage`."""
    if not isinstance(body, dict):
        raise _MalformedAnswer("expected a JSON object")
    meta, resources = body.get("meta"), body.get("resources")
    if not isinstance(meta, dict) or not isinstance(resources, list):
        raise _MalformedAnswer("expected 'meta' and 'resources'")
    total = meta.get("total")
    if not _is_count(total):
        raise _MalformedAnswer("meta.total is not a count")
    given_pages = meta.get("pages")
    pages = given_pages if _is_count(given_pages) else math.ceil(total / per_page)
    contacts: list[RemoteContact] = []
    ids: list[str] = []
    for resource in resources:
        contact = parse_resource(resource)
        ids.append(resource["id"])
        if contact is not None:
            contacts.append(contact)
    return ContactPage(
        number=number,
        pages=pages,
        per_page=per_page,
        total=total,
        contacts=contacts,
        resource_ids=ids,
    )


def parse_resource(resource: Any) -> RemoteContact | None:
    """A person as a :class:`RemoteContact`; ``None`` for companies and other records.

    A record without ``record_type`` counts as a person: we asked for people, and
    dropping it would later look like a deletion.
    """
    if not isinstance(resource, dict):
        raise _MalformedAnswer("a resource is not an object")
    nimble_id = resource.get("id")
    if not isinstance(nimble_id, str) or not nimble_id:
        raise _MalformedAnswer("a resource has no id")
    if resource.get("record_type", "person") != "person":
        return None
    fields = resource.get("fields")
    if not isinstance(fields, dict):
        fields = {}
    emails = tuple(dict.fromkeys(nimble_fields.texts(fields, "email")))
    title, company = nimble_fields.title_and_company(fields)
    return RemoteContact(
        nimble_id=nimble_id,
        first_name=nimble_fields.first_text(fields, "first name"),
        last_name=nimble_fields.first_text(fields, "last name"),
        email=emails[0] if emails else None,
        emails=emails,
        description=nimble_fields.first_text(fields, "description"),
        updated=_parse_time(resource.get("updated")),
        phones=nimble_fields.phones(fields),
        title=title,
        company=company,
        location=nimble_fields.location(fields),
        tags=nimble_fields.tags(resource),
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
