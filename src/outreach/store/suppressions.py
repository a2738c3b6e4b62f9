"""The suppression list: addresses that must never be mailed again."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, insert, select

from outreach.store.tables import suppressions


def suppress(
    engine: Engine,
    email: str,
    *,
    reason: str,
    now: datetime,
    campaign_id: str | None = None,
    detail: str | None = None,
) -> bool:
    """Add ``email``; returns False when it was already suppressed (repeating is harmless)."""
    with engine.begin() as connection:
        if connection.scalar(select(suppressions.c.email).where(suppressions.c.email == email)):
            return False
        connection.execute(
            insert(suppressions).values(
                email=email, reason=reason, campaign_id=campaign_id, detail=detail, created_at=now
            )
        )
    return True


def suppressed_addresses(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.scalars(select(suppressions.c.email)))
