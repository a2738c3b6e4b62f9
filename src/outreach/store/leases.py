"""The scheduler lease: which process schedules for this database, renewed by its heartbeat.

APScheduler's job store cannot be shared: two schedulers on one database would both run every
job. The scheduler therefore holds a lease, one row of ``scheduler_leases``, written on start,
renewed on every heartbeat and deleted on a clean stop. A second scheduler finds a live lease
and refuses, naming the holder; a lease whose holder died runs out after its time to live and
can then be taken over. Works alike on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from outreach.errors import StoreError
from outreach.store.tables import scheduler_leases

SCHEDULER = "scheduler"


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    holder: str
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime

    def alive(self, now: datetime) -> bool:
        return self.expires_at > now


class LeaseHeld(StoreError):
    """Another process holds the lease; ``lease`` says which and since when."""

    def __init__(self, lease: Lease, *, now: datetime) -> None:
        self.lease = lease
        age = max(0.0, (now - lease.heartbeat_at).total_seconds())
        super().__init__(
            f"another scheduler is already running on this database: {lease.holder}, "
            f"since {lease.acquired_at:%Y-%m-%d %H:%M:%S} UTC, last heartbeat {age:.0f}s ago. "
            "Only one process may schedule: stop that one first (or run `outreach serve` "
            "without its scheduler). If that process is gone, its lease runs out at "
            f"{lease.expires_at:%Y-%m-%d %H:%M:%S} UTC and a new scheduler may start then."
        )


def _lease(row: Any) -> Lease:
    return Lease(row.name, row.holder, row.acquired_at, row.heartbeat_at, row.expires_at)


def current(engine: Engine, *, name: str = SCHEDULER) -> Lease | None:
    """The lease as stored (possibly run out), or None."""
    with engine.connect() as connection:
        row = connection.execute(
            select(scheduler_leases).where(scheduler_leases.c.name == name)
        ).first()
    return None if row is None else _lease(row)


def acquire(
    engine: Engine, *, holder: str, now: datetime, ttl: timedelta, name: str = SCHEDULER
) -> Lease:
    """Take the lease for ``holder``; raises ``LeaseHeld`` while another holder's is alive."""
    values = {"holder": holder, "acquired_at": now, "heartbeat_at": now, "expires_at": now + ttl}
    try:
        with engine.begin() as connection:
            connection.execute(insert(scheduler_leases).values(name=name, **values))
    except IntegrityError:
        with engine.begin() as connection:
            taken = connection.execute(
                update(scheduler_leases)
                .where(
                    scheduler_leases.c.name == name,
                    or_(
                        scheduler_leases.c.holder == holder,
                        scheduler_leases.c.expires_at <= now,
                    ),
                )
                .values(**values)
            ).rowcount
        if not taken:
            held = current(engine, name=name)
            if held is not None:
                raise LeaseHeld(held, now=now) from None
            return acquire(engine, holder=holder, now=now, ttl=ttl, name=name)
    lease = current(engine, name=name)
    assert lease is not None
    return lease


def renew(
    engine: Engine, *, holder: str, now: datetime, ttl: timedelta, name: str = SCHEDULER
) -> bool:
    """Extend the lease; False when ``holder`` no longer holds it (another process took it)."""
    with engine.begin() as connection:
        result = connection.execute(
            update(scheduler_leases)
            .where(scheduler_leases.c.name == name, scheduler_leases.c.holder == holder)
            .values(heartbeat_at=now, expires_at=now + ttl)
        )
    return bool(result.rowcount)


def release(engine: Engine, *, holder: str, name: str = SCHEDULER) -> None:
    """Give the lease up (only if ``holder`` still holds it)."""
    with engine.begin() as connection:
        connection.execute(
            delete(scheduler_leases).where(
                scheduler_leases.c.name == name, scheduler_leases.c.holder == holder
            )
        )
