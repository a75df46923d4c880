"""Read a Nimble contacts CSV as a stream of contacts and skipped rows.

One reader serves every way a CSV arrives (``contactbook import``, the initial
import at start-up, the upload endpoint)::

    with ContactsCsv.open(path) as csv_file:
        for item in csv_file.rows():
            if isinstance(item, SkippedRow):
                ...  # item.line, item.reason
            else:
                ...  # a CsvContact

What it accepts (the "CSV input" contract in DESIGN.md):

* **Encoding**: UTF-8, with or without a byte-order mark. Anything else is
  refused with :class:`UnusableCsvError` naming the line of the first bad byte,
  even when that byte sits near the end of a large file: the importer writes
  nothing until the whole file has been read, so refusing late is safe.
  Also refused, each with a message saying what to do: a missing path, a
  directory, an empty file, a binary one (NUL bytes in the first 64 KiB, a zip
  or Excel workbook), UTF-16, a header without any known column, a field over
  :data:`FIELD_SIZE_LIMIT` (usually an unclosed quote), a line over
  :data:`LINE_SIZE_LIMIT` (read no further, so memory stays bounded) and a NUL
  byte in a value that would be stored (PostgreSQL text cannot hold one).
* **Line endings**: CRLF, LF or CR; quoted fields may contain newlines, which
  are kept as written.
* **Delimiter**: a comma, unless the header row clearly uses a semicolon or a
  tab (Excel writes those in some locales): the delimiter that turns the header
  into the most known columns wins, ties go to the comma. An Excel ``sep=;``
  first line is honoured too.
* **Header**: the first non-blank row. Names are matched ignoring case,
  spaces, punctuation and a parenthesised qualifier, so ``First Name``,
  ``first_name``, ``FirstName`` and ``first-name`` are one column, and
  ``email (work)`` is ``email``. The names understood are:

  ============  ===============================================================
  field         header names (after normalising)
  ============  ===============================================================
  first_name    first name, firstname, first, given name, forename
  last_name     last name, lastname, last, surname, family name
  email         email, e-mail, email address, e-mail address, mail address
  description   description, bio, biography, about
  phones        phone, phones, phone number, telephone, mobile, mobile phone,
                cell phone, work phone, home phone (``phone (work)`` is phone)
  title         title, job title
  company       company, company name, organization, organisation
  tags          tags, tag
  location      location; else city and country (``"City, Country"``)
  ============  ===============================================================

  "notes" is deliberately *not* a description: in CRM exports it holds call
  notes, not a profile. Other columns are ignored and listed once in
  :attr:`ContactsCsv.ignored_columns`; when two columns mean the same field the
  first one is used and the second is listed as ignored, except phones: every
  phone column is read, and the numbers are kept in column order (the first is
  the primary).
* **Rows**: values are stripped of surrounding whitespace and an empty value
  becomes ``None``. Missing cells are ``None``. A phone cell may hold several
  numbers separated by semicolons (how ``contactbook export`` writes them); a
  number is kept once (two spellings with the same digits are one number). A
  tags cell holds several tags separated by semicolons, or by commas when it has
  no semicolon (so a tag may contain a comma when the tags are separated by
  semicolons, as ``contactbook export`` writes them); each tag is kept once. A
  row without any of the known fields (including a blank line) is yielded as a
  :class:`SkippedRow` with its line number.
* **Problems** (:attr:`CsvContact.problems`): a row with more (non-blank) cells
  than the header usually had an unquoted comma that shifted every later cell;
  it is read as the header says and reported. An email cell that is not an
  address ("EMEA", "a@b@c") is reported and *not* stored: the row is read without
  it, so it can never link the row to another contact (a row left with nothing
  else is skipped). Nothing else is judged: a cell starting with ``=``, ``+``,
  ``-`` or ``@`` is kept exactly as written, because the import must never lose
  data (the export neutralises formulas on the way out). An apostrophe before such a
  first character is the mark that neutralising leaves (see :data:`FORMULA_STARTS`):
  it is taken off.

Line numbers are physical lines of the file (the header is usually line 1); a
record whose quoted field spans several lines is reported at the line where it
starts, and later records keep their true line numbers.
"""

from __future__ import annotations

import codecs
import csv
import io
import operator
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, NamedTuple, Protocol, Self

__all__ = [
    "FIELDS",
    "FIELD_SIZE_LIMIT",
    "FORMULA_STARTS",
    "LINE_SIZE_LIMIT",
    "NO_KNOWN_FIELDS",
    "ContactsCsv",
    "CsvContact",
    "SkippedRow",
    "UnusableCsvError",
    "field_for_header",
    "split_tags",
]

FIELDS = (
    "first_name",
    "last_name",
    "email",
    "description",
    "phones",
    "title",
    "company",
    "location",
    "tags",
)
"""The fields of a :class:`CsvContact`, in the order a CSV usually has them."""

FIELD_SIZE_LIMIT = 1024 * 1024
"""Longest field accepted, in characters. A larger one means the file is not a
contacts CSV, or an unclosed quote swallowed the rest of the file."""

LINE_SIZE_LIMIT = 4 * FIELD_SIZE_LIMIT
"""Longest physical line accepted, in characters: room for four fields at their limit.
Lines are read with this cap, so a file without line ends (or one endless line of short
cells, which no field limit catches) is refused after reading this much
rather than loaded whole: a 100 MB line would otherwise take over 1 GB of memory."""

NO_KNOWN_FIELDS = (
    "no first name, last name, email, description, phone, title, company, location or tags"
)
"""The reason given for a skipped row (a blank line included)."""

SAVE_AS_UTF8 = "save it as UTF-8 (in Excel: File > Save As > CSV UTF-8) and import again"

_SNIFF_BYTES = 64 * 1024
_SCAN_BYTES = 1024 * 1024

_HEADER_NAMES = {
    "first_name": ("firstname", "first", "givenname", "forename"),
    "last_name": ("lastname", "last", "surname", "familyname"),
    "email": ("email", "emailaddress", "mailaddress"),
    "description": ("description", "bio", "biography", "about"),
    "phones": (
        "phone",
        "phones",
        "phonenumber",
        "telephone",
        "mobile",
        "mobilephone",
        "cellphone",
        "workphone",
        "homephone",
    ),
    "title": ("title", "jobtitle"),
    "company": ("company", "companyname", "organization", "organisation"),
    "tags": ("tags", "tag"),
    "location": ("location",),
    "city": ("city",),
    "country": ("country",),
}
_FIELD_BY_HEADER = {name: field for field, names in _HEADER_NAMES.items() for name in names}
#: The columns read one cell each (every other known column is a phone column), in the
#: order rows() picks them.
_ONE_CELL_COLUMNS = (
    "first_name",
    "last_name",
    "email",
    "description",
    "title",
    "company",
    "tags",
    "location",
    "city",
    "country",
)
# An address: something, one @, a domain with a dot; no spaces. Deliberately loose (what
# mail servers accept is looser still); it tells "EMEA" or "a@b@c" from an address.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet runs as a formula. ``contactbook export`` puts an apostrophe before
a cell starting with one of these (spreadsheets show such a cell as text and hide the
apostrophe); the reader takes it off, so an exported file imports back unchanged."""

_ADDRESS = re.compile(r"[^@\s]+@[^@\s.][^@\s]*\.[^@\s]*[^@\s.]")
_NOT_DIGITS = re.compile(r"[^0-9]")
_QUALIFIER = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_SEPARATORS = re.compile(r"[\W_]+")
_EXCEL_SEP_LINE = re.compile(r"sep=(.)\s*$", re.IGNORECASE)
_DELIMITERS = (",", ";", "\t")


class UnusableCsvError(Exception):
    """The file cannot be imported at all; the message says why and what to do."""


class CsvContact(NamedTuple):
    """One contact read from the file: values stripped, empty ones ``None``.

    A named tuple rather than a frozen dataclass: one is made per row, and a frozen
    dataclass of eleven fields took four times as long to make (a third of the
    reader's time)."""

    line: int
    first_name: str | None
    last_name: str | None
    email: str | None
    description: str | None
    #: Every number, in column order (the first is the primary).
    phones: tuple[str, ...] = ()
    title: str | None = None
    company: str | None = None
    #: The location column, else "City, Country" from those columns.
    location: str | None = None
    tags: tuple[str, ...] = ()
    #: What was wrong with the row (it is imported all the same, see the module docs).
    problems: tuple[str, ...] = ()

    def field_values(self) -> tuple[object, ...]:
        """The values of :data:`FIELDS`, in that order, lists as lists (what COPY takes
        for a ``text[]`` column)."""
        return (
            self.first_name,
            self.last_name,
            self.email,
            self.description,
            list(self.phones),
            self.title,
            self.company,
            self.location,
            list(self.tags),
        )


@dataclass(slots=True)
class SkippedRow:
    """A row that holds no contact, with the line where it starts."""

    line: int
    reason: str
    #: What else was wrong with it (as for :attr:`CsvContact.problems`).
    problems: tuple[str, ...] = ()


def field_for_header(header: str) -> str | None:
    """The known column a header names (``"E-mail (work)"`` -> ``"email"``, ``"Mobile"`` ->
    ``"phones"``, ``"City"`` -> ``"city"``), or ``None``."""
    key = _SEPARATORS.sub("", _QUALIFIER.sub("", header).casefold())
    return _FIELD_BY_HEADER.get(key)


class ContactsCsv:
    """An open contacts CSV whose header has been read; iterate :meth:`rows` once.

    Use :meth:`open`, not the constructor. ``columns`` maps each known field
    found to its header as written; ``ignored_columns`` lists the other headers
    (an unnamed column appears as ``"column 5 (no header)"``). ``size`` and
    :meth:`position` (bytes) let a caller draw a progress bar.
    """

    def __init__(
        self,
        name: str,
        binary: IO[bytes],
        text: io.TextIOWrapper,
        reader: _CsvReader,
        size: int,
        delimiter: str,
        header_line: int,
        columns: dict[str, str],
        indexes: dict[str, list[int]],
        ignored_columns: list[str],
        width: int,
    ) -> None:
        self.name = name
        self.size = size
        self.delimiter = delimiter
        self.header_line = header_line
        self.columns = columns
        self.ignored_columns = ignored_columns
        self._binary = binary
        self._text = text
        self._reader = reader
        self._indexes = indexes
        self._width = width

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, display_name: str | None = None) -> Self:
        """Open ``path`` and read its header, or raise :class:`UnusableCsvError`.

        ``display_name`` is how messages name the file (say, the name of an
        uploaded file saved under a temporary path); the path by default.
        """
        name = display_name or os.fspath(path)
        binary = _open_binary(Path(path), name)
        try:
            size = os.fstat(binary.fileno()).st_size
            start = binary.read(_SNIFF_BYTES)
            _check_looks_like_text(start, name, complete=len(start) == size)
            delimiter, sep_line = _choose_delimiter(start.decode("utf-8-sig", errors="replace"))
            binary.seek(0)
            text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        except BaseException:
            binary.close()
            raise
        try:
            # Process-wide, as the csv module offers no per-reader limit.
            csv.field_size_limit(FIELD_SIZE_LIMIT)
            reader = csv.reader(_bounded_lines(name, text), delimiter=delimiter)
            header, header_line = _read_header(name, Path(path), reader, sep_line)
            columns, indexes, ignored = _match_columns(name, header, header_line)
        except BaseException:
            text.close()
            raise
        return cls(
            name,
            binary,
            text,
            reader,
            size,
            delimiter,
            header_line,
            columns,
            indexes,
            ignored,
            len(header),
        )

    def rows(self) -> Iterator[CsvContact | SkippedRow]:
        """Yield each record after the header as a contact or a skipped row.

        Raises :class:`UnusableCsvError` when the rest of the file turns out
        not to be UTF-8, holds a field over :data:`FIELD_SIZE_LIMIT` or a NUL
        byte in a known column. Iterate once: a second call goes on from where
        the first stopped.
        """
        # The hot loop of every import: one itemgetter call picks the known cells (the
        # original four first, then the other one-cell columns, then every phone column),
        # a short row is padded rather than checked cell by cell, and a file with only the
        # original four columns pays for nothing else.
        slots = [column for column in _ONE_CELL_COLUMNS if column in self._indexes]
        where = [self._indexes[column][0] for column in slots] + self._indexes.get("phones", [])
        pick = _cell_picker(where)
        needed = max(where) + 1
        padding = [""] * needed
        width = self._width
        positions = [FIELDS.index(column) for column in slots if column in FIELDS[:4]]
        four = len(positions)
        every_original = positions == [0, 1, 2, 3]
        more_slots = slots[four:] if len(where) > four else None
        reader = self._reader
        ended = reader.line_num  # csv counts lines read so far: a record starts one later
        try:
            for row in reader:
                line, ended = ended + 1, reader.line_num
                longer = len(row) > width and any(cell.strip() for cell in row[width:])
                if len(row) < needed:
                    row += padding
                cells = pick(row)
                joined = "".join(cells)
                if "\x00" in joined:  # PostgreSQL text cannot hold it
                    raise UnusableCsvError(
                        f"{self.name} line {line} holds a NUL byte, so it is not a text CSV: "
                        "export the contacts as CSV and import that file"
                    )
                values = [cell.strip() or None for cell in cells]
                if "'" in joined:
                    values = [_without_formula_guard(value) for value in values]
                if every_original:
                    first, last, email, bio = values[:4]
                else:
                    original: list[str | None] = [None, None, None, None]
                    for position, value in zip(positions, values, strict=False):
                        original[position] = value
                    first, last, email, bio = original
                more = None
                if more_slots is not None:
                    named = dict(zip(more_slots, values[four:], strict=False))
                    more = _more_fields(named, values[len(slots) :])
                problems: tuple[str, ...] = ()
                if longer:
                    problems = (_longer_row(row, width),)
                if email is not None and not _ADDRESS.fullmatch(email):
                    problems += (f"the email {_shown(email)} is not an address: not imported",)
                    email = None
                if more is not None and any(more):
                    yield CsvContact(line, first, last, email, bio, *more, problems=problems)
                elif first or last or email or bio:
                    yield CsvContact(line, first, last, email, bio, problems=problems)
                else:
                    yield SkippedRow(line, NO_KNOWN_FIELDS, problems)
        except (UnicodeDecodeError, csv.Error) as error:
            raise _unusable(self.name, Path(self._text.name), error, ended + 1) from error

    def position(self) -> int:
        """Bytes of the file consumed so far (ahead by at most one read chunk)."""
        if self._binary.closed:
            return self.size
        return min(self._binary.tell(), self.size)

    def close(self) -> None:
        self._text.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _CsvReader(Protocol):
    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


def _bounded_lines(name: str, text: io.TextIOWrapper) -> Iterator[str]:
    """The file's physical lines; UnusableCsvError at one over :data:`LINE_SIZE_LIMIT`."""
    readline = text.readline
    number = 0
    while line := readline(LINE_SIZE_LIMIT + 1):
        number += 1
        if len(line) > LINE_SIZE_LIMIT:
            raise UnusableCsvError(
                f"{name} line {number} is longer than {LINE_SIZE_LIMIT // (1024 * 1024)} MiB, "
                "which no contact needs: it is not a contacts CSV, or its line ends are "
                "missing. Fix that line and import again"
            )
        yield line


def _without_formula_guard(value: str | None) -> str | None:
    if value is not None and value[:1] == "'" and value[1:2] in FORMULA_STARTS:
        return value[1:]
    return value


def _more_fields(
    named: dict[str, str | None], phone_cells: list[str | None]
) -> tuple[tuple[str, ...], str | None, str | None, str | None, tuple[str, ...]]:
    """(phones, title, company, location, tags) from a row's picked cells."""
    location = named.get("location")
    if location is None:
        location = ", ".join(filter(None, (named.get("city"), named.get("country")))) or None
    tags = split_tags(named.get("tags"))
    return _phones(phone_cells), named.get("title"), named.get("company"), location, tags


def _phones(cells: list[str | None]) -> tuple[str, ...]:
    numbers: dict[str, str] = {}
    for cell in cells:
        if cell is not None:
            for part in cell.split(";"):
                number = part.strip()
                if number:
                    numbers.setdefault(_NOT_DIGITS.sub("", number) or number, number)
    return tuple(numbers.values())


def split_tags(cell: str | None) -> tuple[str, ...]:
    """The tags of one cell: separated by semicolons, or by commas when it has none."""
    if cell is None:
        return ()
    parts = cell.split(";" if ";" in cell else ",")
    return tuple(dict.fromkeys(tag for tag in (part.strip() for part in parts) if tag))


def _longer_row(row: list[str], width: int) -> str:
    extra = [cell.strip() for cell in row[width:]]
    first = next(cell for cell in extra if cell)
    cells = "cell" if len(extra) == 1 else "cells"
    return (
        f"{len(extra)} more {cells} than the header (from {_shown(first)}): an unquoted "
        "comma shifts the cells after it; quote that value and import again"
    )


def _shown(value: str) -> str:
    """A value quoted for a message, cut short."""
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _cell_picker(indexes: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    """Like ``itemgetter(*indexes)``, but a tuple even for one index."""
    if len(indexes) == 1:
        (only,) = indexes
        return lambda row: (row[only],)
    return operator.itemgetter(*indexes)


def _read_header(
    name: str, path: Path, reader: _CsvReader, sep_line: bool
) -> tuple[list[str], int]:
    """The first non-blank record and the line where it starts."""
    ended = 0
    try:
        for row in reader:
            line, ended = ended + 1, reader.line_num
            if line == 1 and sep_line:
                continue
            if any(cell.strip() for cell in row):
                return row, line
    except (UnicodeDecodeError, csv.Error) as error:
        raise _unusable(name, path, error, ended + 1) from error
    raise UnusableCsvError(
        f"{name} is empty: export the contacts from Nimble as CSV and import that file"
    )


def _match_columns(
    name: str, header: list[str], header_line: int
) -> tuple[dict[str, str], dict[str, list[int]], list[str]]:
    """Known column -> header as written, known column -> indexes (several for phones
    only), and the ignored headers."""
    columns: dict[str, str] = {}
    indexes: dict[str, list[int]] = {}
    ignored: list[str] = []
    for index, written in enumerate(header):
        field = field_for_header(written)
        if field == "phones" or (field is not None and field not in columns):
            columns.setdefault(field, written)
            indexes.setdefault(field, []).append(index)
        elif written.strip():
            ignored.append(written)
        else:
            ignored.append(f"column {index + 1} (no header)")
    if not columns:
        raise UnusableCsvError(_no_known_column_message(name, header, header_line))
    return columns, indexes, ignored


def _unusable(name: str, path: Path, error: Exception, line: int) -> UnusableCsvError:
    """Explain a decoding or csv error met while reading the record starting at ``line``."""
    if isinstance(error, UnicodeDecodeError):
        # The decoder only knows its position in one read chunk; find the byte's line.
        where = _first_bad_byte(path)
        detail = f"invalid byte 0x{where[0]:02x} at line {where[1]}" if where else str(error)
        return UnusableCsvError(f"{name} is not UTF-8 text ({detail}): {SAVE_AS_UTF8}")
    if "field larger than field limit" in str(error):
        return UnusableCsvError(
            f"{name} line {line}: a field is longer than {FIELD_SIZE_LIMIT // (1024 * 1024)} MiB, "
            'which no contact has; often a quote (") opened there is never closed. '
            "Fix that line and import again"
        )
    return UnusableCsvError(
        f"{name} line {line} is not valid CSV ({error}): fix that line and import again"
    )


def _open_binary(path: Path, name: str) -> IO[bytes]:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise UnusableCsvError(f"{name} does not exist: check the path and try again") from None
    except IsADirectoryError:
        raise UnusableCsvError(
            f"{name} is a directory, not a file: give the path of the CSV file inside it"
        ) from None
    except PermissionError:
        raise UnusableCsvError(
            f"{name} cannot be read (permission denied): check its permissions"
        ) from None
    except OSError as error:
        raise UnusableCsvError(f"{name} cannot be opened ({error.strerror})") from None


def _check_looks_like_text(start: bytes, name: str, *, complete: bool) -> None:
    """Refuse, from the first chunk, files that are clearly not UTF-8 CSV text."""
    if not start.removeprefix(codecs.BOM_UTF8).strip():
        raise UnusableCsvError(
            f"{name} is empty: export the contacts from Nimble as CSV and import that file"
        )
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UnusableCsvError(f"{name} is UTF-16 text, not UTF-8: {SAVE_AS_UTF8}")
    if start.startswith(b"PK\x03\x04"):
        raise UnusableCsvError(
            f"{name} is a zip archive or an Excel workbook, not CSV: "
            "in Excel use File > Save As > CSV UTF-8, then import that file"
        )
    if b"\x00" in start:
        raise UnusableCsvError(
            f"{name} is a binary file, not CSV text: "
            "export the contacts as CSV and import that file"
        )
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(start, final=complete)
    except UnicodeDecodeError as error:
        byte = start[error.start]
        line = start.count(b"\n", 0, error.start) + 1
        raise UnusableCsvError(
            f"{name} is not UTF-8 text (invalid byte 0x{byte:02x} at line {line}): {SAVE_AS_UTF8}"
        ) from None


def _first_bad_byte(path: Path) -> tuple[int, int] | None:
    """The first byte that is not UTF-8 and its line number, scanning the file again."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines_before = 0
    with path.open("rb") as file:
        while True:
            chunk = file.read(_SCAN_BYTES)
            # The decoder keeps the bytes of a character cut by the chunk end and
            # reports positions within (those bytes + chunk); they are never b"\n".
            pending = decoder.getstate()[0]
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as error:
                data = pending + chunk
                return data[error.start], lines_before + data.count(b"\n", 0, error.start) + 1
            if not chunk:
                return None
            lines_before += chunk.count(b"\n")


def _choose_delimiter(start: str) -> tuple[str, bool]:
    """The delimiter (see module docs), and whether line 1 is Excel's ``sep=`` line."""
    lines = start.splitlines()
    if not lines:
        return ",", False
    excel = _EXCEL_SEP_LINE.match(lines[0])
    if excel and excel.group(1) in _DELIMITERS:
        return excel.group(1), True
    first = next((line for line in lines if line.strip()), "")
    best, best_known = ",", -1
    for delimiter in _DELIMITERS:
        cells = next(csv.reader([first], delimiter=delimiter), [])
        known = len({field_for_header(cell) for cell in cells} - {None})
        if known > best_known:
            best, best_known = delimiter, known
    return best, False


def _no_known_column_message(name: str, header: list[str], line: int) -> str:
    shown = ", ".join(repr(cell.strip()) for cell in header[:8])
    if len(header) > 8:
        shown += ", …"
    looks_like_data = any("@" in cell for cell in header)
    why = (
        "it looks like data, so the header row seems to be missing"
        if looks_like_data
        else "none of these is a known column"
    )
    return (
        f"{name} has no usable header: line {line} reads {shown} and {why}. "
        "Put a header row first naming at least one of: first name, last name, "
        "email, description, phone, title, company, tags, location; then import again"
    )
