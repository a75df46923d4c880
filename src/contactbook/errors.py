"""The one error tree: every failure a user can cause or fix is a `ContactBookError`.

Each error carries a message written for the person who has to act (what went wrong,
which setting or input to check, what to do next), the HTTP status the API answers
with and the exit code of the CLI. The API maps the whole family once (`api/app.py`),
the CLI once (`cli.py`'s command group), so no endpoint or command repeats the mapping
and nothing a user can cause ends in a traceback.

    ContactBookError                 500, exit 1
    ├── UnusableInput                422, exit 2   a file, a search text, an argument
    ├── NotFound                     404, exit 1
    ├── Conflict                     409, exit 1   another sync holds the lock
    ├── ConfigurationError           500, exit 1   a setting or option that cannot work
    │   └── InvalidSetting                exit 2   a variable that does not parse
    └── ServiceUnavailable           503, exit 1   (with Retry-After)
        ├── DatabaseUnavailable                    DATABASE_URL
        ├── DatabaseNotMigrated                    run `contactbook db upgrade`
        ├── QueryTimedOut                          DB_STATEMENT_TIMEOUT
        └── BrokerUnavailable                      REDIS_URL

The domains' own errors join the tree where they are defined: `nimble.errors.NimbleError`
(502), `nimble.sync.SyncError`, `backup.BackupError`, `embedded.EmbeddedServerError`,
`preflight.PortInUse`. Messages never contain a secret: a
password, key or token is never put into one (`db.describe_database` names a server
without its password).
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_UNUSABLE_INPUT = 2


class ContactBookError(Exception):
    """Something the user can fix; the message says what and how."""

    status_code: int = 500
    exit_code: int = EXIT_FAILURE
    #: Seconds a client should wait before trying again (a `Retry-After` header), if any.
    retry_after: int | None = None

    @property
    def message(self) -> str:
        return str(self)


class UnusableInput(ContactBookError):
    """The input itself (a file, a search text, an argument) cannot be used."""

    status_code = 422
    exit_code = EXIT_UNUSABLE_INPUT


class NotFound(ContactBookError):
    status_code = 404


class Conflict(ContactBookError):
    """The request collides with work in progress; trying again later can succeed."""

    status_code = 409


class ConfigurationError(ContactBookError):
    """A setting or an option that cannot work as given; the message names it."""


class InvalidSetting(ConfigurationError):
    """An environment variable (or `.env` line) whose value does not parse."""

    exit_code = EXIT_UNUSABLE_INPUT


class ServiceUnavailable(ContactBookError):
    """A server we depend on cannot be reached now."""

    status_code = 503
    retry_after = 5


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL (DATABASE_URL, or the embedded server) cannot be reached."""


class DatabaseNotMigrated(ServiceUnavailable):
    """The database lacks this version's tables or functions: `contactbook db upgrade`."""


class QueryTimedOut(ServiceUnavailable):
    """PostgreSQL cancelled a statement that ran past DB_STATEMENT_TIMEOUT."""

    retry_after = 1

    @classmethod
    def after(cls, seconds: float) -> QueryTimedOut:
        return cls(
            f"the database did not answer within {seconds:g} s (DB_STATEMENT_TIMEOUT) and "
            "the query was stopped: the database is busy, or the search is too broad. "
            "Try again in a moment, or search for fewer or rarer words."
        )


class BrokerUnavailable(ServiceUnavailable):
    """The Celery broker or result backend (REDIS_URL) cannot be reached."""


__all__ = [
    "EXIT_FAILURE",
    "EXIT_UNUSABLE_INPUT",
    "BrokerUnavailable",
    "Conflict",
    "ConfigurationError",
    "ContactBookError",
    "DatabaseNotMigrated",
    "DatabaseUnavailable",
    "InvalidSetting",
    "NotFound",
    "QueryTimedOut",
    "ServiceUnavailable",
    "UnusableInput",
]
