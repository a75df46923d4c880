"""Embedded PostgreSQL and Redis: start, reuse, stop, and only stop what we started."""

from __future__ import annotations

import psycopg
import redis

from contactbook.config import Settings
from contactbook.embedded import EmbeddedPostgres, EmbeddedRedis, embedded_services


def test_embedded_servers_start_reuse_and_stop(tmp_path):
    settings = Settings(_env_file=None, contactbook_home=tmp_path / "home")

    with embedded_services(settings, redis_needed=True) as urls:
        with psycopg.connect(urls.database_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("contactbook",)
        assert urls.redis_url.startswith("redis+socket://")
        client = redis.Redis(unix_socket_path=urls.redis_url.removeprefix("redis+socket://"))
        assert client.ping()
        client.close()

        # A second user of the same home reuses the running servers and leaves them up.
        with embedded_services(settings, redis_needed=True) as again:
            assert again == urls
        assert EmbeddedPostgres(tmp_path / "home" / "postgres").is_running()
        assert EmbeddedRedis(tmp_path / "home" / "redis").is_running()

    assert not EmbeddedPostgres(tmp_path / "home" / "postgres").is_running()
    assert not EmbeddedRedis(tmp_path / "home" / "redis").is_running()


def test_configured_urls_are_used_as_they_are(tmp_path):
    settings = Settings(
        _env_file=None,
        contactbook_home=tmp_path / "home",
        database_url="postgresql://db.example/contacts",
        redis_url="redis://cache.example:6379/0",
    )

    with embedded_services(settings, redis_needed=True) as urls:
        assert urls.database_url == "postgresql://db.example/contacts"
        assert urls.redis_url == "redis://cache.example:6379/0"
    assert not (tmp_path / "home").exists()


def test_a_long_home_gets_a_short_redis_socket(tmp_path):
    deep = tmp_path.joinpath(*["nested-folder-name"] * 8)
    server = EmbeddedRedis(deep)

    assert len(str(server.socket)) <= 100
    try:
        assert server.start().startswith("redis+socket://")
    finally:
        server.stop()
