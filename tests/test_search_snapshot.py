"""A search is one statement of a STABLE function: one round trip, one snapshot."""

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


class CountingConnection(psycopg.Connection):
    """A connection that counts the statements sent through it."""

    statements = 0

    def execute(self, *args, **kwargs):
        self.statements += 1
        return super().execute(*args, **kwargs)


def test_a_search_is_one_statement(db_url, write_csv):
    import_csv(db_url, write_csv(PEOPLE))
    with CountingConnection.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        page = search_contacts(conn, "Tom Brooks")
        empty_page = search_contacts(conn, "Tom Brooks", offset=10)

    assert conn.statements == 2
    assert [c["last_name"] for c in page.contacts] == ["Brooks", "Okafor"]
    assert (empty_page.total, empty_page.contacts) == (page.total, [])


def test_every_band_reads_one_snapshot(conn):
    # A STABLE function runs all its statements in the snapshot of the call, so an import
    # committing while it runs is seen whole or not at all (several statements in READ
    # COMMITTED once put all of an import's rows into the last band).
    volatility = conn.execute(
        "SELECT provolatile FROM pg_proc WHERE proname = 'contactbook_search'"
    ).fetchone()["provolatile"]
    assert volatility == "s"


def test_a_search_inside_the_callers_transaction_uses_it(db_url, write_csv):
    import_csv(db_url, write_csv(PEOPLE))
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        conn.execute("SELECT 1")  # the caller's transaction is already open

        page = search_contacts(conn, "Tom Brooks")

        assert page.contacts[0]["last_name"] == "Brooks"
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
