"""A search is several statements; all of them must see the same data."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

from contactbook.contacts.importer import import_csv
from contactbook.contacts.search import search_contacts

PEOPLE = (
    "First Name,Last Name,Email,Description\n"
    "Tom,Brooks,tbrooks@northwind.io,Account executive\n"
    "Tom,Okafor,tom@lanternbay.co,Brooks the sales team\n"
)


class ImportMidSearch(psycopg.Connection):
    """A connection that lets an import commit right after its third statement."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.statements = 0
        self.on_third = None

    def execute(self, *args, **kwargs):
        cursor = super().execute(*args, **kwargs)
        self.statements += 1
        if self.statements == 3 and self.on_third is not None:
            self.on_third()
        return cursor


def test_an_import_committing_during_a_search_is_seen_whole_or_not_at_all(db_url, write_csv):
    path = write_csv(PEOPLE)
    with ImportMidSearch.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        conn.on_third = lambda: import_csv(db_url, path)

        during = search_contacts(conn, "Tom Brooks")
        after = search_contacts(conn, "Tom Brooks")

    assert conn.statements > 3  # the import really committed between two statements
    assert (during.total, during.contacts) == (0, [])
    assert [c["last_name"] for c in after.contacts][:1] == ["Brooks"]


def test_a_search_inside_the_callers_transaction_uses_it(db_url, write_csv):
    import_csv(db_url, write_csv(PEOPLE))
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        conn.execute("SELECT 1")  # the caller's transaction is already open

        page = search_contacts(conn, "Tom Brooks")

        assert page.contacts[0]["last_name"] == "Brooks"
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
