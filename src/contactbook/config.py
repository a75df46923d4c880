"""Settings: the one place that reads the environment (and a `.env` file)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contactbook.errors import ConfigurationError, InvalidSetting

SAMPLE_CSV = Path(__file__).parent / "contacts" / "sample_contacts.csv"
#: Nimble's support article "Generate an API key to access the Nimble API": requests made
#: with an API key go to app.nimble.com (api.nimble.com is not the API-key host).
NIMBLE_API_URL = "https://app.nimble.com"


def default_home() -> Path:
    """CONTACTBOOK_HOME when unset: the per-user data folder (`~/.local/share/contactbook`
    on Linux, XDG_DATA_HOME respected), the same whatever the current directory, so every
    command finds the one embedded database `serve` uses."""
    return platformdirs.user_data_path("contactbook", appauthor=False)


class Settings(BaseSettings):
    """Every knob of Contact Book. Names match the environment variables in DESIGN.md."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str | None = None
    # A streaming replica for searches and contact reads; writes, imports, syncs,
    # migrations and admin endpoints always use DATABASE_URL (see db/replica.py).
    database_read_url: str | None = None
    redis_url: str | None = None
    celery_broker_url: str | None = None
    celery_result_backend: str | None = None

    nimble_api_url: str = NIMBLE_API_URL
    nimble_api_key: SecretStr | None = None
    nimble_per_page: int = Field(default=100, ge=1, le=1000)
    nimble_concurrency: int = Field(default=4, ge=1, le=32)
    sync_schedule: str = "0 0 * * *"
    # A full sync that would remove more than this share of the live Nimble-linked
    # contacts fails unchanged unless run with --allow-removals.
    sync_max_removals_percent: float = Field(default=10.0, ge=0, le=100)

    contactbook_home: Path = Field(default_factory=default_home)
    contactbook_csv: Path | None = None
    contactbook_admin_token: SecretStr | None = None
    contactbook_api_tokens: SecretStr | None = None
    # Bearer token `GET /metrics` needs; unset: /metrics is open like /healthz.
    metrics_token: SecretStr | None = None

    # Origins whose pages may call the API from a browser (CORS_ORIGINS, comma-separated);
    # empty: no CORS headers at all, so only the search page served here can.
    cors_origins: Annotated[list[str], NoDecode] = []

    log_level: str = "INFO"
    # json or text; unset: text on a terminal, JSON otherwise (files, pipes, containers).
    log_format: Literal["json", "text"] | None = None
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_pool_timeout: float = Field(default=5.0, gt=0)
    # Seconds any statement of the API's and the worker's search connections may run
    # before PostgreSQL cancels it (503); 0: no bound. Imports, syncs and backups are not
    # bounded.
    db_statement_timeout: float = Field(default=2.0, ge=0)
    max_upload_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    # Seconds a client has to send a request's line and headers (408 after, closed).
    http_head_timeout: float = Field(default=15.0, gt=0, le=3600)
    # Open connections per API process; a connection beyond them gets 503 and is closed.
    http_max_connections: int = Field(default=1000, ge=1)
    # Ten minutes: clients poll within seconds, and every result is kept in Redis meanwhile.
    search_result_expires: int = Field(default=600, ge=60)
    # v2 searches that may wait for a worker at once; one more is refused (503 with
    # Retry-After) until the workers catch up. 0: no bound.
    search_queue_limit: int = Field(default=50, ge=0)
    broker_visibility_timeout: int = Field(default=3600, ge=1)
    # An accepted upload no worker has taken this many seconds after it was queued is
    # sent again (contacts/uploads.py): its task may have been lost.
    upload_resend_after: int = Field(default=600, ge=1)

    @field_validator(
        "nimble_api_key", "contactbook_admin_token", "contactbook_api_tokens", "metrics_token"
    )
    @classmethod
    def _blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return value

    @field_validator("database_read_url", mode="before")
    @classmethod
    def _blank_read_url_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("contactbook_home", mode="before")
    @classmethod
    def _blank_home_is_default(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return default_home()
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_name(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL once an entry point has resolved it: the CLI starts the embedded
        database when it is unset and exports its URL (`export_service_urls`) before the
        API, a worker or a command uses it."""
        if self.database_url is None:
            raise ConfigurationError(
                "DATABASE_URL is not set: start Contact Book with the `contactbook` command "
                "(it starts the embedded database), or set DATABASE_URL"
            )
        return self.database_url

    @property
    def initial_csv(self) -> Path:
        """The file the start-up import reads when the database has no contacts."""
        return self.contactbook_csv or SAMPLE_CSV

    @property
    def api_tokens(self) -> list[str]:
        """Read tokens; an empty list means the read endpoints are open."""
        if self.contactbook_api_tokens is None:
            return []
        raw = self.contactbook_api_tokens.get_secret_value()
        return [token.strip() for token in raw.split(",") if token.strip()]

    @property
    def broker_url(self) -> str | None:
        return self.celery_broker_url or self.redis_url

    @property
    def result_backend(self) -> str | None:
        return self.celery_result_backend or self.redis_url


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once. A variable that does not parse raises
    InvalidSetting naming it (never its value: it may be a secret)."""
    try:
        return Settings()
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = str(item["loc"][0]).upper() if item.get("loc") else "a setting"
            problems.append(f"{name}: {item['msg']}")
        raise InvalidSetting(
            "invalid configuration (environment or .env): " + "; ".join(problems)
        ) from None


def export_service_urls(database_url: str, redis_url: str | None) -> Settings:
    """Make resolved URLs (embedded servers) the environment of this process and its children.

    Uvicorn workers, Celery and `serve`'s child processes build their own settings from
    the environment, so the URLs chosen at start-up must be there.
    """
    os.environ["DATABASE_URL"] = database_url
    if redis_url is not None:
        os.environ["REDIS_URL"] = redis_url
    get_settings.cache_clear()
    return get_settings()
