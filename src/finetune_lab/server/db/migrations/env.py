"""Alembic environment: runs on the engine handed over by finetune_lab.server.db.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from finetune_lab.server.db.tables import metadata

MIGRATION_LOCK_ID = 0x46544C  # any constant shared by all server processes


def run_migrations_online() -> None:
    engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Several servers starting at once on one database: migrate one at a time.
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        try:
            context.configure(connection=connection, target_metadata=metadata)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID}
                )
                connection.commit()


run_migrations_online()
