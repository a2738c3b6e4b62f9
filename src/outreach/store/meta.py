"""Small key-value facts the installation keeps about itself (such as its generated secret)."""

from __future__ import annotations

import secrets

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from outreach.store.tables import meta


def get_or_create_secret(engine: Engine, key: str = "secret_key") -> str:
    """The installation's signing secret, generated and stored on first use."""
    with engine.connect() as connection:
        value = connection.scalar(select(meta.c.value).where(meta.c.key == key))
    if value:
        return str(value)
    fresh = secrets.token_urlsafe(48)
    try:
        with engine.begin() as connection:
            connection.execute(insert(meta).values(key=key, value=fresh))
    except IntegrityError:  # another process stored one first: use theirs
        return get_or_create_secret(engine, key)
    return fresh
