"""Alembic environment: plain SQL migrations, run under an advisory lock."""

from alembic import context
from sqlalchemy import create_engine, pool, text

# Several API replicas may start at once; the first migrates, the others wait and then
# find nothing left to do.
MIGRATION_LOCK_KEY = 7_201_001


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:  # db.alembic_config always sets it
        raise SystemExit("no database URL to migrate: run `contactbook db upgrade`")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=False)
        with context.begin_transaction():
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run `contactbook db upgrade`")
run_migrations_online()
