"""What can go wrong when talking to Nimble.

Every message is written for the person running the sync and never contains the
API key: the key travels in a header, and no header is ever put into a message.
"""

from __future__ import annotations

from contactbook.errors import ContactBookError


class NimbleError(ContactBookError):
    """Base class: the Nimble API could not give us what we asked for."""

    status_code = 502  # an upstream failure, in HTTP terms


class NimbleAuthError(NimbleError):
    """401/403: the key was refused. Retrying cannot help."""


class NimbleQuotaExceeded(NimbleError):
    """402 (Nimble code 108): the account's API quota is used up."""


class NimbleUnavailable(NimbleError):
    """5xx answers, timeouts or dropped connections that outlasted every retry."""


class NimbleProtocolError(NimbleError):
    """An answer we cannot use: malformed JSON, an unexpected shape, a 4xx we did not cause
    knowingly, or a contact list that changed while we were paging through it."""
