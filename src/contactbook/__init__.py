"""Contact Book: Nimble CRM contacts in PostgreSQL, searchable."""

__version__ = "0.1.0"
