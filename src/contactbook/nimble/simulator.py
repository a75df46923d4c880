"""A local stand-in for the Nimble contacts API, for demos, tests and benchmarks.

It speaks the same HTTP as Nimble for what Contact Book uses: the paged listing
``GET /api/v1/contacts`` (``fields``, ``record_type``, ``page``, ``per_page``,
``keyword`` and the advanced-search ``query``), ``GET /api/v1/contacts/ids``,
``GET /api/v1/contact/{id}``, Bearer authentication and Nimble-like error bodies
(``{"message", "code"}``; 401, 409 with code 245, 500 with code 107).

Records carry their values the way Nimble's fields reference documents them (see
``contactbook.nimble.fields``): several ``phone`` values with modifiers, ``address`` and
``contact employment`` values as JSON text, the deprecated ``title`` and ``parent
company``, and ``tags`` (``[{"tag", "id"}]``, left out with ``tags=0``).

Tests steer it through admin endpoints (no authentication, so never expose a
simulator to a network you do not trust) or the same calls in process on
``app.state.simulator``:

* ``POST /_faults`` sets a :class:`FaultPlan` (failing, slow, malformed or dropped
  pages, latency on every request, a wrong ``meta.total``, pages held until several are
  asked for at once or until the test lets them go); ``DELETE /_faults`` clears it.
* ``POST /_contacts``, ``PUT /_contacts/{id}``, ``DELETE /_contacts/{id}`` change the
  data as a Nimble user would; each change moves the record's ``updated`` to now.
* ``GET /_requests`` lists the API requests received (``DELETE`` clears the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import hmac
import json
import logging
import math
import random
import re
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

logger = logging.getLogger(__name__)

DEFAULT_API_KEY = "fake-key"
SAMPLE_CSV = Path(__file__).resolve().parent.parent / "contacts" / "sample_contacts.csv"
MAX_PER_PAGE = 1000
_NIMBLE_TIME = "%Y-%m-%dT%H:%M:%S+0000"

FaultKind = Literal["error", "malformed", "drop", "slow", "hold"]
#: How long a page held by ``FaultPlan.together`` waits for the others before it is
#: answered anyway (a client that asks one page at a time gets there, slowly).
TOGETHER_TIMEOUT = 5.0
#: How long a ``hold`` page waits for :meth:`SimulatorState.release` when its fault does
#: not say (``delay``).
HOLD_TIMEOUT = 60.0


# -- faults -----------------------------------------------------------------------------


@dataclass
class PageFault:
    """What goes wrong when a listing page is requested.

    ``error`` answers ``status`` with a Nimble error body, ``malformed`` answers 200 with
    broken JSON, ``drop`` closes the connection half-way through the body, ``slow``
    waits ``delay`` seconds and then answers normally, ``hold`` answers (with the data
    of the moment it was asked) once the test calls :meth:`SimulatorState.release` (at
    most ``delay`` seconds, :data:`HOLD_TIMEOUT` if 0): a test then does something
    while the page is outstanding, without guessing how long that takes.
    ``times`` is how many requests the fault hits before it is used up; ``None`` means
    every request.
    """

    kind: FaultKind
    times: int | None = 1
    status: int = 500
    delay: float = 0.0


@dataclass
class FaultPlan:
    """Faults for the listing endpoint, keyed by page number, plus global ones.

    Build one fluently: ``FaultPlan(latency=0.05).fail(2, times=2).drop(3)``.
    """

    pages: dict[int, list[PageFault]] = field(default_factory=dict)
    #: Seconds added to every API request (admin endpoints excepted).
    latency: float = 0.0
    #: Added to ``meta.total`` in every listing answer.
    total_offset: int = 0
    #: Listing pages after the first are held until this many are asked for at once (or
    #: :data:`TOGETHER_TIMEOUT` passes): proves a client's concurrency without timing it.
    together: int = 0

    def add(self, page: int, fault: PageFault) -> FaultPlan:
        self.pages.setdefault(page, []).append(fault)
        return self

    def fail(self, page: int, *, times: int | None = 1, status: int = 500) -> FaultPlan:
        return self.add(page, PageFault("error", times=times, status=status))

    def malformed(self, page: int, *, times: int | None = 1) -> FaultPlan:
        return self.add(page, PageFault("malformed", times=times))

    def drop(self, page: int, *, times: int | None = 1) -> FaultPlan:
        return self.add(page, PageFault("drop", times=times))

    def slow(self, page: int, delay: float, *, times: int | None = None) -> FaultPlan:
        return self.add(page, PageFault("slow", times=times, delay=delay))

    def hold(self, page: int, *, times: int | None = 1) -> FaultPlan:
        return self.add(page, PageFault("hold", times=times))

    def take(self, page: int) -> PageFault | None:
        """The fault this request of ``page`` suffers, using one of its ``times``."""
        for fault in self.pages.get(page, []):
            if fault.times is None:
                return fault
            if fault.times > 0:
                fault.times -= 1
                return fault
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "pages": {str(p): [asdict(f) for f in faults] for p, faults in self.pages.items()},
            "latency": self.latency,
            "total_offset": self.total_offset,
            "together": self.together,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultPlan:
        """Read ``{"latency": 0.05, "total_offset": 1, "pages": {"2": [{"kind": "error",
        "times": 2, "status": 500}]}}``."""
        plan = cls(
            latency=float(data.get("latency", 0.0)),
            total_offset=int(data.get("total_offset", 0)),
            together=int(data.get("together", 0)),
        )
        for page, faults in (data.get("pages") or {}).items():
            for fault in faults:
                kind = fault.get("kind")
                if kind not in ("error", "malformed", "drop", "slow", "hold"):
                    raise ValueError(f"unknown fault kind {kind!r}")
                plan.add(
                    int(page),
                    PageFault(
                        kind=kind,
                        times=fault.get("times", 1),
                        status=int(fault.get("status", 500)),
                        delay=float(fault.get("delay", 0.0)),
                    ),
                )
        return plan


# -- building records -------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_NIMBLE_TIME)


def _field(name: str, value: str, modifier: str = "") -> dict[str, str]:
    return {"value": value, "modifier": modifier, "label": name}


#: The modifiers Nimble documents for ``phone``, in the order generated numbers take them.
PHONE_MODIFIERS = ("work", "mobile", "home", "main", "other", "work fax", "home fax")
ADDRESS_MODIFIERS = ("work", "home", "other")

Phone = str | tuple[str, str]
"""A number, or (number, modifier) (a two-item list in JSON)."""


def _bson_id(text: str) -> str:
    """A stable 24-hex-digit id for a tag or a company named ``text``, as Nimble gives."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()[:24]


def _encoded(value: dict[str, Any] | str) -> str:
    """A structured value as Nimble sends it: JSON text (a string is sent as it is)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def person_fields(
    *,
    first_name: str | None = None,
    last_name: str | None = None,
    emails: Sequence[str] = (),
    description: str | None = None,
    phones: Sequence[Phone] = (),
    title: str | None = None,
    parent_company: str | None = None,
    employments: Sequence[dict[str, Any] | str] = (),
    addresses: Sequence[dict[str, Any] | str] = (),
) -> dict[str, list[dict[str, str]]]:
    """The ``fields`` of a record, in Nimble's shape. Absent values are absent fields.

    ``employments`` are ``contact employment`` values (``{company_name, title,
    start_date, end_date, is_present}``) and ``addresses`` are ``{street, city, state,
    zip, country}``: both are sent JSON-encoded, as Nimble does; a string is sent as it
    is (to imitate a malformed value). ``title`` and ``parent_company`` are the
    deprecated fields.
    """
    fields: dict[str, list[dict[str, str]]] = {}
    if first_name is not None:
        fields["first name"] = [_field("first name", first_name)]
    if last_name is not None:
        fields["last name"] = [_field("last name", last_name)]
    if emails:
        modifiers = ("work", "personal", "other")
        fields["email"] = [
            _field("email", email, modifiers[min(i, 2)]) for i, email in enumerate(emails)
        ]
    if description is not None:
        fields["description"] = [_field("description", description, "other")]
    if phones:
        fields["phone"] = [
            _field("phone", *phone)
            if isinstance(phone, tuple | list)
            else _field("phone", phone, PHONE_MODIFIERS[i % len(PHONE_MODIFIERS)])
            for i, phone in enumerate(phones)
        ]
    if title is not None:
        fields["title"] = [_field("title", title)]
    if parent_company is not None:
        entry = _field("parent company", parent_company)
        fields["parent company"] = [{**entry, "extra_value": _bson_id(parent_company)}]
    if employments:
        fields["contact employment"] = [
            _field("contact employment", _encoded(job)) for job in employments
        ]
    if addresses:
        fields["address"] = [
            _field("address", _encoded(address), ADDRESS_MODIFIERS[min(i, 2)])
            for i, address in enumerate(addresses)
        ]
    return fields


def tag_list(tags: Sequence[str]) -> list[dict[str, str]]:
    """A resource's ``tags``: ``[{"tag", "id"}]``."""
    return [{"tag": tag, "id": _bson_id(tag)} for tag in tags]


def person_resource(
    *,
    nimble_id: str | None = None,
    record_type: str = "person",
    created: datetime | None = None,
    updated: datetime | None = None,
    tags: Sequence[str] = (),
    **fields: Any,
) -> dict[str, Any]:
    """A record in Nimble's shape; ``fields`` are those of :func:`person_fields`."""
    moment = updated or _now()
    return {
        "id": nimble_id or _new_id(random),
        "record_type": record_type,
        "created": _stamp(created or moment),
        "updated": _stamp(moment),
        "fields": person_fields(**fields),
        "tags": tag_list(tags),
    }


def _new_id(rng: random.Random | Any) -> str:
    # Nimble ids look like MongoDB ObjectIds: 24 hexadecimal digits.
    return f"{rng.getrandbits(96):024x}"


_FIRST_NAME_TEXT = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy "
    "Anthony Betty Mark Sandra Steven Ashley Andrew Emily Joshua Michelle Kevin Amanda "
    "José María Zoë Søren Björn François Chloé Łukasz Małgorzata Jürgen Müge Çağla Nuño "
    "Ayşe İlkay Dmitri Ólafur Siobhán Aoife Renée Anaïs Hiroshi Yuki Wei Priya Arjun Oluwaseun"
)
_LAST_NAME_TEXT = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott "
    "Müller Schröder Ødegaard Łukaszewicz Dvořák Nguyễn O'Brien D'Angelo García-Márquez "
    "Van-Dijk Østergaard Kowalski Öztürk Şahin Yamamoto Tanaka Chen Patel Okafor 山田 Иванов"
)
_FIRST_NAMES = tuple(_FIRST_NAME_TEXT.split())
_LAST_NAMES = tuple(_LAST_NAME_TEXT.split())
_TITLES = (
    "VP of Sales",
    "Head of Marketing",
    "Chief Technology Officer",
    "Account Executive",
    "Customer Success Manager",
    "Founder and CEO",
    "Procurement Lead",
    "Senior Software Engineer",
    "Operations Director",
    "Product Manager",
)
_COMPANIES = (
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella Analytics",
    "Stark Industries",
    "Wayne Enterprises",
    "Hooli",
    "Pied Piper",
    "Soylent Foods",
    "Tyrell Systems",
    "Müller & Söhne GmbH",
    "Société Générale de Café",
)
_NOTES = (
    "Met at SaaStr; interested in the enterprise plan.",
    "Prefers email over phone. Renewal due in Q3.",
    "Introduced by a mutual friend; follow up after the demo.",
    "Evaluating competitors — send the comparison sheet.",
    "Key decision maker for the EMEA rollout.",
    "Spoke at the Berlin meetup about data pipelines.",
    "",
)
_DOMAINS = ("example.com", "example.org", "mail.example.net", "corp.example.io")


def _csv_people(path: Path) -> list[tuple[str | None, str | None, str]]:
    """(first name, last name, email) of the rows of a contacts CSV that have an email."""
    if not path.is_file():
        return []

    def norm(header: str) -> str:
        return re.sub(r"[^a-z]", "", header.lower())

    people = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = [norm(h) for h in next(reader, [])]
        email_at = next((i for i, h in enumerate(header) if h.startswith("email")), None)
        first_at = next((i for i, h in enumerate(header) if h == "firstname"), None)
        last_at = next((i for i, h in enumerate(header) if h == "lastname"), None)
        if email_at is None:
            return []
        for row in reader:
            email = row[email_at].strip() if email_at < len(row) else ""
            if not email:
                continue

            def cell(at: int | None, row: list[str] = row) -> str | None:
                return row[at].strip() or None if at is not None and at < len(row) else None

            people.append((cell(first_at), cell(last_at), email))
    return people


def generate_contacts(
    n: int,
    seed: int = 0,
    *,
    csv_path: Path | None = SAMPLE_CSV,
    shared_fraction: float = 0.3,
    company_fraction: float = 0.05,
) -> list[dict[str, Any]]:
    """``n`` realistic Nimble records, the same for the same ``seed``.

    About ``company_fraction`` of them are companies. Up to ``shared_fraction`` of the
    people take their name and email from the contacts CSV at ``csv_path`` (the shipped
    sample by default): half with the same address, a quarter with it in upper case, a
    quarter with it as their *second* address. Others have several addresses, a few
    lack an email, a last name or a description, and names come in many scripts. Most
    have phones (several, with modifiers), an employment (the ``contact employment``
    field, the deprecated ``title`` and ``parent company``, or both), a JSON address and
    some tags.
    """
    rng = random.Random(seed)
    extra = random.Random(f"{seed} fields")
    csv_people = _csv_people(csv_path) if csv_path else []
    rng.shuffle(csv_people)
    shared = csv_people[: int(n * shared_fraction)]
    base = datetime(2023, 1, 1, tzinfo=UTC)
    records = []
    for i in range(n):
        created = base + timedelta(seconds=rng.randrange(0, 365 * 86400))
        updated = created + timedelta(seconds=rng.randrange(0, 180 * 86400))
        if rng.random() < company_fraction:
            company = f"{rng.choice(_COMPANIES)} {rng.choice(('Ltd', 'Inc', 'LLC', 'Group'))}"
            resource = person_resource(
                nimble_id=_new_id(rng),
                record_type="company",
                emails=[f"info{i}@{rng.choice(_DOMAINS)}"],
                description=f"{company}: customer since {created.year}.",
                created=created,
                updated=updated,
            )
            resource["fields"]["company name"] = [_field("company name", company)]
            records.append(resource)
            continue
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        local = re.sub(r"[^a-z0-9]+", ".", f"{first}.{last}".lower()).strip(".") or "contact"
        emails = [f"{local}{i}@{rng.choice(_DOMAINS)}"]
        if rng.random() < 0.15:
            emails.append(f"{local[:1]}{i}@{rng.choice(_DOMAINS)}")
            if rng.random() < 0.3:
                emails.append(f"{local}.home{i}@{rng.choice(_DOMAINS)}")
        if shared:
            csv_first, csv_last, csv_email = shared.pop()
            first, last = csv_first or first, csv_last or last
            mode = rng.random()
            if mode < 0.5:
                emails = [csv_email]
            elif mode < 0.75:
                emails = [csv_email.upper()]
            else:
                emails = [emails[0], csv_email]
        elif rng.random() < 0.03:
            emails = []
        note = rng.choice(_NOTES)
        title, employer = rng.choice(_TITLES), rng.choice(_COMPANIES)
        description: str | None = f"{title} at {employer}. {note}"
        if rng.random() < 0.05:
            description = None
        records.append(
            person_resource(
                nimble_id=_new_id(rng),
                first_name=first,
                last_name=None if rng.random() < 0.02 else last,
                emails=emails,
                description=description.strip() if description else None,
                created=created,
                updated=updated,
                # A generator of its own, so that the fields above stay what they were
                # for a seed before these fields existed.
                **_more_fields(extra, title, employer),
            )
        )
    return records


_CITIES = (
    ("San Francisco", "United States"),
    ("New York", "United States"),
    ("London", "United Kingdom"),
    ("Berlin", "Germany"),
    ("München", "Germany"),
    ("Paris", "France"),
    ("São Paulo", "Brazil"),
    ("Kraków", "Poland"),
    ("Tokyo", "Japan"),
    ("Lagos", "Nigeria"),
    ("Bengaluru", "India"),
    ("Reykjavík", "Iceland"),
)
_TAGS = (
    "customer",
    "prospect",
    "partner",
    "investor",
    "vip",
    "newsletter",
    "conference 2024",
    "EMEA",
    "renewal Q3",
    "Früh-Bucher",
)


def _phone_number(rng: random.Random) -> str:
    area, line = rng.randrange(200, 999), rng.randrange(0, 10_000)
    style = rng.randrange(4)
    if style == 0:
        return f"+1 ({area}) 555-{line:04d}"
    if style == 1:
        return f"{area}-555-{line:04d}"
    if style == 2:
        return f"+44 20 7946 {line:04d}"
    return f"+49 30 {rng.randrange(1000, 9999)} {line:04d}"


def _job(company: str, title: str, *, start: str) -> dict[str, Any]:
    """A ``contact employment`` value that is the person's present job."""
    return {"company_name": company, "title": title, "start_date": start, "is_present": True}


def _more_fields(rng: random.Random, title: str, employer: str) -> dict[str, Any]:
    """Phones, employment (the new field, the deprecated ones or both), addresses and
    tags for one generated person, as Nimble's people have them."""
    fields: dict[str, Any] = {}
    if rng.random() < 0.85:
        count = rng.choice((1, 1, 2, 2, 3))
        modifiers = rng.sample(PHONE_MODIFIERS[:5], count)
        fields["phones"] = [(_phone_number(rng), m) for m in modifiers]
    style = rng.random()
    if style < 0.6:
        jobs = [_job(employer, title, start="03/2021")]
        if rng.random() < 0.3:
            earlier = _job(rng.choice(_COMPANIES), rng.choice(_TITLES), start="01/2015")
            jobs.append({**earlier, "end_date": "02/2021", "is_present": False})
        fields["employments"] = jobs
        if rng.random() < 0.5:  # Nimble keeps the deprecated fields too, for older clients
            fields["title"], fields["parent_company"] = title, employer
    elif style < 0.85:
        fields["title"], fields["parent_company"] = title, employer
    if rng.random() < 0.7:
        city, country = rng.choice(_CITIES)
        street = f"{rng.randrange(1, 200)} {rng.choice(('Main', 'High', 'Market'))} Street"
        zip_code = str(rng.randrange(10**4, 10**5))
        address = {"street": street, "city": city, "state": "", "zip": zip_code}
        fields["addresses"] = [{**address, "country": country}]
    if rng.random() < 0.6:
        fields["tags"] = rng.sample(_TAGS, rng.choice((1, 1, 2, 3)))
    return fields


# -- state ------------------------------------------------------------------------------


class SimulatorError(Exception):
    """An answer the simulator gives instead of data (status, Nimble code, message)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _validation(message: str) -> SimulatorError:
    return SimulatorError(409, 245, message)


@dataclass
class RequestRecord:
    method: str
    path: str
    params: dict[str, str]
    status: int


class _Gathering:
    """Requests that wait until ``n`` of them are waiting, then all go on together.

    Used from the server's event loop only (the asyncio events are made and awaited there).
    """

    def __init__(self) -> None:
        self.waiting = 0
        self.released: asyncio.Event | None = None

    async def wait(self, n: int, timeout: float) -> None:
        if self.released is None:
            self.released = asyncio.Event()
        released = self.released
        self.waiting += 1
        if self.waiting >= n:
            released.set()
            self.waiting, self.released = 0, None
            return
        try:
            await asyncio.wait_for(released.wait(), timeout)
        except TimeoutError:
            if self.released is released:
                self.waiting -= 1


class SimulatorState:
    """The records, the fault plan and the request log of one simulator."""

    def __init__(self, contacts: Iterable[dict[str, Any]], api_key: str, faults: FaultPlan | None):
        self.api_key = api_key
        self.faults = faults or FaultPlan()
        self.requests: list[RequestRecord] = []
        #: API requests being answered now, and the most there ever were at once.
        self.in_flight = 0
        self.max_in_flight = 0
        self._gathering = _Gathering()
        #: Set when a ``hold`` page is being held; :meth:`release` lets it go.
        self.holding = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}
        self._version = 0
        self._listings: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for resource in contacts:
            self._records[resource["id"]] = resource

    # Reading ---------------------------------------------------------------------------

    def listing(
        self, key: tuple[Any, ...], predicate: Callable[[dict[str, Any]], bool]
    ) -> list[dict[str, Any]]:
        """The records matching ``predicate``, cached under ``key`` until the data changes."""
        with self._lock:
            cache_key = (self._version, *key)
            hit = self._listings.get(cache_key)
            if hit is None:
                hit = [r for r in self._records.values() if predicate(r)]
                if len(self._listings) > 16:
                    self._listings.clear()
                self._listings[cache_key] = hit
            return hit

    def get(self, nimble_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._records.get(nimble_id)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records.values())

    # Changing, as a Nimble user would -----------------------------------------------------

    def add_contact(self, data: dict[str, Any]) -> dict[str, Any]:
        """Add a record given in Nimble's shape or as simple keys (see :meth:`update_contact`)."""
        resource = data if "fields" in data else person_resource(**_simple_kwargs(data))
        resource = {**resource, "id": resource.get("id") or _new_id(random)}
        resource.setdefault("record_type", "person")
        resource["updated"] = _stamp(_now())
        resource.setdefault("created", resource["updated"])
        with self._lock:
            self._records[resource["id"]] = resource
            self._version += 1
        return resource

    def update_contact(
        self, nimble_id: str, changes: dict[str, Any], *, updated: datetime | None = None
    ) -> dict[str, Any] | None:
        """Change some values, given as :func:`person_fields` keys (``first_name``,
        ``emails``, ``phones``, ``employments``, ``addresses``…), ``tags`` or
        ``record_type``; ``None`` (or an empty list) removes a field. ``fields``
        replaces the Nimble fields wholesale. Moves ``updated`` to now, or to `updated`
        (Nimble's stamps are whole seconds: a test that needs the same stamp gives it)."""
        unknown = set(changes) - _FIELD_NAMES.keys() - {"fields", "tags", "record_type"}
        if unknown:
            raise ValueError(f"unknown keys: {sorted(unknown)}")
        with self._lock:
            current = self._records.get(nimble_id)
            if current is None:
                return None
            resource = json.loads(json.dumps(current))
            fields = resource["fields"] if "fields" not in changes else dict(changes["fields"])
            for key, name in _FIELD_NAMES.items():
                if key in changes:
                    fields.pop(name, None)
                    if changes[key]:
                        fields.update(person_fields(**{key: changes[key]}))
            resource["fields"] = fields
            if "tags" in changes:
                resource["tags"] = tag_list(changes["tags"] or ())
            if "record_type" in changes:
                resource["record_type"] = changes["record_type"]
            resource["updated"] = _stamp(updated or _now())
            self._records[nimble_id] = resource
            self._version += 1
            return resource

    def delete_contact(self, nimble_id: str) -> bool:
        with self._lock:
            found = self._records.pop(nimble_id, None) is not None
            self._version += found
            return found

    async def gather(self) -> None:
        """Hold a listing page until ``faults.together`` of them are held (see FaultPlan)."""
        if self.faults.together > 1:
            await self._gathering.wait(self.faults.together, TOGETHER_TIMEOUT)

    async def hold(self, timeout: float) -> None:
        self.holding.set()
        await asyncio.to_thread(self._released.wait, timeout)

    def release(self) -> None:
        """Answer the held pages, and let every later ``hold`` page through at once."""
        self._released.set()

    def set_faults(self, plan: FaultPlan | None) -> None:
        with self._lock:
            self.faults = plan or FaultPlan()

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def log(self, request: Request, status: int) -> None:
        with self._lock:
            self.requests.append(
                RequestRecord(request.method, request.url.path, dict(request.query_params), status)
            )


#: The keys of :func:`person_fields` and the Nimble field each one fills.
_FIELD_NAMES = {
    "first_name": "first name",
    "last_name": "last name",
    "emails": "email",
    "description": "description",
    "phones": "phone",
    "title": "title",
    "parent_company": "parent company",
    "employments": "contact employment",
    "addresses": "address",
}


def _simple_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    allowed = {*_FIELD_NAMES, "tags", "record_type", "nimble_id"}
    unknown = set(data) - allowed - {"id"}
    if unknown:
        raise ValueError(f"unknown keys: {sorted(unknown)}")
    kwargs = {k: v for k, v in data.items() if k in allowed}
    if "id" in data:
        kwargs["nimble_id"] = data["id"]
    return kwargs


# -- the query language (the part of Nimble's advanced search the client uses) ---------


def _parse_time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise _validation("datetime expected")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _validation(f"invalid datetime {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _record_time(resource: dict[str, Any], name: str) -> datetime:
    return datetime.fromisoformat(resource[name])


def compile_query(query: Any) -> Callable[[dict[str, Any]], bool]:
    """A predicate for a Nimble advanced-search ``query``; 409 (code 245) for what we do
    not understand. Supports ``and``/``or``, ``record type`` ``is``, ``updated`` and
    ``created`` ranges and ``is``/``contain`` on the text fields."""
    if not isinstance(query, dict) or len(query) != 1:
        raise _validation("query must be an object with exactly one condition")
    ((name, condition),) = query.items()
    if name in ("and", "or"):
        if not isinstance(condition, list) or not condition:
            raise _validation(f"'{name}' takes a non-empty list")
        parts = [compile_query(part) for part in condition]
        combine = all if name == "and" else any
        return lambda r: combine(part(r) for part in parts)
    if not isinstance(condition, dict) or len(condition) != 1:
        raise _validation(f"condition on {name!r} must have exactly one operator")
    ((operator, operand),) = condition.items()
    if name == "record type":
        if operator != "is" or operand not in ("person", "company"):
            raise _validation("record type supports only 'is' person|company")
        return lambda r: r.get("record_type") == operand
    if name in ("updated", "created"):
        if operator != "range" or not isinstance(operand, dict):
            raise _validation(f"{name} supports only 'range'")
        unknown = set(operand) - {"start_datetime", "end_datetime"}
        if unknown or not operand:
            raise _validation(f"{name} range takes start_datetime and/or end_datetime")
        start = _parse_time(operand["start_datetime"]) if "start_datetime" in operand else None
        end = _parse_time(operand["end_datetime"]) if "end_datetime" in operand else None

        def in_range(r: dict[str, Any]) -> bool:
            moment = _record_time(r, name)
            return (start is None or moment >= start) and (end is None or moment <= end)

        return in_range
    if name in ("first name", "last name", "email", "description"):
        if operator not in ("is", "contain") or not isinstance(operand, str):
            raise _validation(f"{name} supports 'is' and 'contain' with a string")
        needle = operand.lower()

        def matches(r: dict[str, Any]) -> bool:
            values = [e.get("value", "").lower() for e in r.get("fields", {}).get(name, [])]
            if operator == "is":
                return needle in values
            return any(needle in v for v in values)

        return matches
    raise _validation(f"unknown query field {name!r}")


# -- the app ----------------------------------------------------------------------------


class _DroppedResponse(Response):
    """Starts a 200 answer, sends part of the body and stops: the server then closes
    the connection, as a proxy or a crashing backend would."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"meta": {"pa', "more_body": True})


#: Nimble's own code and message for the statuses a fault can answer.
_FAULT_ERRORS = {
    402: (108, "Quota exceeded"),
    409: (245, "Validation error"),
    500: (107, "Internal server error"),
    502: (107, "Bad gateway"),
    503: (107, "Service unavailable"),
}


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "code": code, "errors": {}}, status_code=status)


def _json(body: Any) -> Response:
    # json.dumps straight to bytes: FastAPI's encoder would cost more than the whole page.
    return Response(json.dumps(body, ensure_ascii=False).encode(), media_type="application/json")


def _select_fields(resource: dict[str, Any], request: Request) -> dict[str, Any]:
    """The record as the request asks for it: only the ``fields`` named, and its ``tags``
    unless ``tags=0`` (Nimble's default is 1)."""
    raw_fields = request.query_params.get("fields")
    if raw_fields:
        names = {n.strip() for n in raw_fields.split(",")}
        fields = {k: v for k, v in resource.get("fields", {}).items() if k in names}
        resource = {**resource, "fields": fields}
    if request.query_params.get("tags") == "0":
        resource = {k: v for k, v in resource.items() if k != "tags"}
    return resource


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _validation(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise _validation(f"{name} must be between {low} and {high}")
    return value


def _listing_predicate(request: Request) -> tuple[tuple[Any, ...], Callable[[dict], bool]]:
    params = request.query_params
    query_text, keyword = params.get("query"), params.get("keyword")
    record_type = params.get("record_type")
    if query_text is not None and (record_type is not None or keyword is not None):
        raise _validation("query cannot be combined with record_type or keyword")
    if query_text is not None:
        try:
            query = json.loads(query_text)
        except ValueError:
            raise _validation("query is not valid JSON") from None
        return ("query", query_text), compile_query(query)
    record_type = record_type or "all"
    if record_type not in ("person", "company", "all"):
        raise _validation("record_type must be person, company or all")
    needle = (keyword or "").lower()

    def predicate(r: dict[str, Any]) -> bool:
        if record_type != "all" and r.get("record_type") != record_type:
            return False
        if not needle:
            return True
        values = (e.get("value", "") for es in r.get("fields", {}).values() for e in es)
        return any(needle in str(v).lower() for v in values)

    return ("plain", record_type, needle), predicate


def create_app(
    contacts: list[dict[str, Any]], api_key: str, faults: FaultPlan | None = None
) -> FastAPI:
    """The simulator as an ASGI app; its state is ``app.state.simulator``."""
    state = SimulatorState(contacts, api_key, faults)
    app = FastAPI(title="Nimble API simulator", docs_url="/_docs", openapi_url="/_openapi.json")
    app.state.simulator = state

    def authorized(request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), state.api_key.encode()
        )

    async def api_call(
        request: Request, answer: Callable[[], Response], *, held: bool = False
    ) -> Response:
        """Latency, authentication, Nimble-style errors and the request log; ``held``
        pages wait for the others ``FaultPlan.together`` asks for."""
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            if state.faults.latency:
                await asyncio.sleep(state.faults.latency)
            if held:
                await state.gather()
        finally:
            state.in_flight -= 1
        if not authorized(request):
            response: Response = _error(401, 401, "Unauthorized: invalid or missing access token")
        else:
            try:
                response = answer()
            except SimulatorError as exc:
                response = _error(exc.status, exc.code, exc.message)
        state.log(request, response.status_code)
        return response

    @app.get("/api/v1/contacts")
    async def list_contacts(request: Request) -> Response:
        """The paged listing, with the fault plan applied per page."""
        fault: PageFault | None = None

        def answer() -> Response:
            nonlocal fault
            page = _int_param(request, "page", 1, 1, 10**9)
            per_page = _int_param(request, "per_page", 30, 1, MAX_PER_PAGE)
            key, predicate = _listing_predicate(request)
            fault = state.faults.take(page)
            if fault and fault.kind == "error":
                code, message = _FAULT_ERRORS.get(fault.status, (fault.status, "Error"))
                return _error(fault.status, code, message)
            if fault and fault.kind == "malformed":
                return Response(b'{"meta": {"page": 1, "pages": ', media_type="application/json")
            if fault and fault.kind == "drop":
                return _DroppedResponse()
            records = state.listing(key, predicate)
            chunk = records[(page - 1) * per_page : page * per_page]
            total = len(records) + state.faults.total_offset
            return _json(
                {
                    "meta": {
                        "page": page,
                        "pages": math.ceil(len(records) / per_page),
                        "per_page": per_page,
                        "total": total,
                    },
                    "resources": [_select_fields(r, request) for r in chunk],
                }
            )

        held = request.query_params.get("page", "1") != "1"
        response = await api_call(request, answer, held=held)
        if fault and fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        if fault and fault.kind == "hold":
            await state.hold(fault.delay or HOLD_TIMEOUT)
        return response

    @app.get("/api/v1/contacts/ids")
    async def list_ids(request: Request) -> Response:
        """The ids of the listing, paged like it."""

        def answer() -> Response:
            page = _int_param(request, "page", 1, 1, 10**9)
            per_page = _int_param(request, "per_page", 30, 1, MAX_PER_PAGE)
            key, predicate = _listing_predicate(request)
            records = state.listing(key, predicate)
            chunk = records[(page - 1) * per_page : page * per_page]
            meta = {
                "page": page,
                "pages": math.ceil(len(records) / per_page),
                "per_page": per_page,
                "total": len(records),
            }
            return _json({"meta": meta, "resources": [r["id"] for r in chunk]})

        return await api_call(request, answer)

    @app.get("/api/v1/contact/{nimble_id}")
    async def get_contact(nimble_id: str, request: Request) -> Response:
        """One record."""

        def answer() -> Response:
            record = state.get(nimble_id)
            if record is None:
                raise SimulatorError(404, 404, f"Contact {nimble_id} not found")
            return _json({"meta": {"total": 1}, "resources": [_select_fields(record, request)]})

        return await api_call(request, answer)

    # Admin: steer the simulator from tests. ---------------------------------------------

    @app.get("/_faults")
    async def get_faults() -> dict[str, Any]:
        return state.faults.to_json()

    @app.post("/_faults")
    async def set_faults(request: Request) -> Response:
        try:
            state.set_faults(FaultPlan.from_json(await request.json()))
        except (ValueError, TypeError, AttributeError) as exc:
            return _error(409, 245, f"bad fault plan: {exc}")
        return _json(state.faults.to_json())

    @app.delete("/_faults")
    async def clear_faults() -> Response:
        state.set_faults(None)
        return Response(status_code=204)

    @app.get("/_requests")
    async def get_requests() -> list[dict[str, Any]]:
        return [asdict(r) for r in state.requests]

    @app.delete("/_requests")
    async def clear_requests() -> Response:
        state.clear_requests()
        return Response(status_code=204)

    @app.post("/_contacts", status_code=201)
    async def add_contact(request: Request) -> Response:
        try:
            resource = state.add_contact(await request.json())
        except (ValueError, TypeError, AttributeError) as exc:
            return _error(409, 245, str(exc))
        return JSONResponse(resource, status_code=201)

    @app.put("/_contacts/{nimble_id}")
    async def update_contact(nimble_id: str, request: Request) -> Response:
        try:
            resource = state.update_contact(nimble_id, await request.json())
        except (ValueError, TypeError, AttributeError) as exc:
            return _error(409, 245, f"bad change: {exc}")
        if resource is None:
            return _error(404, 404, f"Contact {nimble_id} not found")
        return JSONResponse(resource)

    @app.delete("/_contacts/{nimble_id}")
    async def delete_contact(nimble_id: str) -> Response:
        if not state.delete_contact(nimble_id):
            return _error(404, 404, f"Contact {nimble_id} not found")
        return Response(status_code=204)

    return app


# -- running it -------------------------------------------------------------------------


def load_contacts(data: Path | None = None, contacts: int | None = None, seed: int = 0) -> list:
    """Records from a JSON file (a list of Nimble resources) or ``contacts`` generated ones."""
    if data is not None:
        records = json.loads(Path(data).read_text(encoding="utf-8"))
        if not isinstance(records, list) or not all(
            isinstance(r, dict) and isinstance(r.get("id"), str) for r in records
        ):
            raise ValueError(f"{data}: expected a JSON list of Nimble resources with an 'id'")
        return records
    return generate_contacts(contacts if contacts is not None else 500, seed)


def run_simulator(
    host: str = "127.0.0.1",
    port: int = 8765,
    contacts: int | None = None,
    data: Path | None = None,
    api_key: str = DEFAULT_API_KEY,
    *,
    faults: FaultPlan | None = None,
    seed: int = 0,
) -> None:
    """Serve the simulator under uvicorn until interrupted (``contactbook fake-nimble``).

    The port is bound before the address is printed: a port in use is an error naming
    the port and ``--port`` (``preflight.PortInUse``), never an address that does not work.
    """
    from contactbook.preflight import bind_socket

    records = load_contacts(data, contacts, seed)
    people = sum(1 for r in records if r.get("record_type", "person") == "person")
    sock = bind_socket(host, port, command="fake-nimble")
    print(
        f"Nimble simulator: {people} people and {len(records) - people} other records on "
        f"http://{host}:{port} (set NIMBLE_API_URL to this address; it accepts the key "
        f"in NIMBLE_API_KEY)",
        flush=True,
    )
    config = uvicorn.Config(create_app(records, api_key, faults), log_level="warning")
    with contextlib.closing(sock):
        uvicorn.Server(config).run(sockets=[sock])


class ThreadedServer:
    """Runs an ASGI app under uvicorn in a background thread on a free loopback port.

    ``with ThreadedServer(app) as server: httpx.get(server.url + "/...")``
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", ws="none", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the simulator failed to start")
            threading.Event().wait(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
