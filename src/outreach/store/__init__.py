"""SQLAlchemy 2 adapter: engine, tables, repositories and Alembic migrations."""
