"""The Alembic migrations build exactly the schema ``store/tables.py`` describes, on both real
databases: a table, column or index added to one and not the other shows up here."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from outreach.store.engine import open_engine
from outreach.store.tables import metadata


def test_migrations_match_the_tables_the_code_uses(database_url: str) -> None:
    engine = open_engine(database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    # APScheduler's job store is created by APScheduler, not described in tables.py
    differences = [d for d in differences if "apscheduler_jobs" not in repr(d)]
    assert differences == []
