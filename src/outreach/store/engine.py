"""Opening the database: engine options per backend, and migrations applied on start."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from outreach.errors import ConfigurationError

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_WRITERS: WeakKeyDictionary[Engine, threading.Lock] = WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


def one_writer(engine: Engine) -> AbstractContextManager[object]:
    """Hold this around a busy write transaction (a sign POST): on SQLite, the threads of one
    process then take turns in a queue instead of all waiting on the database's one write
    lock, whose busy handler sleeps between retries. Other databases need no turns."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _WRITERS_LOCK:
        lock = _WRITERS.get(engine)
        if lock is None:
            lock = _WRITERS[engine] = threading.Lock()
    return lock


def open_engine(url: str, *, migrate: bool = True) -> Engine:
    """An engine for ``url`` with the schema brought up to date (unless ``migrate`` is False)."""
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise ConfigurationError(f"OUTREACH_DATABASE_URL is not a database URL: {url!r}") from err
    if parsed.drivername.startswith("sqlite"):
        database = parsed.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if migrate:
        try:
            upgrade(engine)
        except OperationalError as err:
            raise ConfigurationError(
                f"cannot open the database {parsed.render_as_string(hide_password=True)}: "
                f"{err.orig}"
            ) from err
    return engine


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Apply every Alembic migration not yet applied."""
    command.upgrade(alembic_config(engine), "head")
