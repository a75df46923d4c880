"""`contactbook export`: every live contact as JSON lines or as a CSV that imports back.

JSON lines carry the API's contact, key for key (:class:`~contactbook.contacts.schemas.
Contact`). The CSV has one column per field; phones and tags are one cell each, joined
with "; " (the importer splits a phone or tags cell at semicolons), and the location
is one cell. Importing the CSV gives the same contacts back (ids and Nimble ids aside:
an import makes CSV contacts), as long as no phone or tag holds a semicolon.

A spreadsheet runs a cell starting with ``=``, ``+``, ``-`` or ``@`` as a formula, so
such a CSV cell gets an apostrophe in front (spreadsheets show it as text and hide the
apostrophe): a phone number "+1 415 555 0142" is written "'+1 415 555 0142". The
CSV reader takes that apostrophe off again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import TextIO

from contactbook.contacts.csv_reader import FIELDS, FORMULA_STARTS
from contactbook.contacts.schemas import Contact

#: The contact's fields as the importer reads them back, after its two ids.
CSV_COLUMNS = ("id", "nimble_id", *FIELDS)
LIST_SEPARATOR = "; "


def write_jsonl(contacts: Iterable[dict], stream: TextIO) -> None:
    for contact in contacts:
        stream.write(json.dumps(_api_json(contact), ensure_ascii=False) + "\n")


def write_csv(contacts: Iterable[dict], stream: TextIO) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for contact in contacts:
        writer.writerow(csv_row(contact))


def csv_row(contact: dict) -> list:
    row = []
    for column in CSV_COLUMNS:
        value = contact[column]
        if isinstance(value, list):
            value = LIST_SEPARATOR.join(value)
            if "," in value and ";" not in value:
                # One tag with a comma: the semicolon tells the importer not to split it.
                value += ";"
        row.append(formula_safe(value))
    return row


def formula_safe(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _api_json(contact: dict) -> dict:
    return Contact.model_validate(contact).model_dump(mode="json")
