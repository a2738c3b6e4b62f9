"""Unsubscribing, and the suppression check.

A member stops one campaign's reminders, or every mailing (the address then goes on the
suppression list). Owns those writes, the contacts a campaign's reminders must skip, and
whether an address is suppressed.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from outreach.domain.delivery import EventKind
from outreach.errors import StoreError
from outreach.store.tables import deliveries, events, suppressions
from outreach.store.tracking import DeliveryContext


class UnsubscribeScope(StrEnum):
    """What a member stops receiving."""

    CAMPAIGN = "campaign"  # this campaign's reminders only
    ALL = "all"  # every mailing: the address goes on the suppression list


def unsubscribe(
    engine: Engine,
    *,
    context: DeliveryContext,
    scope: UnsubscribeScope,
    now: datetime,
    source: str,
) -> bool:
    """Stop this campaign's reminders, or every mailing, for the delivery's contact.

    Records an ``unsubscribed`` event for the campaign (with the scope in its payload); scope
    ``all`` also puts the address on the suppression list. Returns False when it had already
    been done: repeating is harmless.
    """
    for attempt in range(2):
        try:
            with engine.begin() as connection:
                return _unsubscribe(
                    connection, context=context, scope=scope, now=now, source=source
                )
        except IntegrityError as err:  # the same unsubscribe, at the same moment, elsewhere
            if attempt:
                raise StoreError(f"could not unsubscribe {context.email}") from err
    raise AssertionError("unreachable")


def _unsubscribe(
    connection: Connection,
    *,
    context: DeliveryContext,
    scope: UnsubscribeScope,
    now: datetime,
    source: str,
) -> bool:
    changed = False
    if scope is UnsubscribeScope.ALL and not connection.scalar(
        select(suppressions.c.email).where(suppressions.c.email == context.email)
    ):
        connection.execute(
            insert(suppressions).values(
                email=context.email,
                reason="unsubscribed",
                campaign_id=context.campaign_id,
                detail=source,
                created_at=now,
            )
        )
        changed = True
    dedupe = f"unsubscribed:{context.campaign_id}:{context.contact_id}:{scope.value}"
    if not connection.scalar(select(events.c.id).where(events.c.dedupe_key == dedupe)):
        connection.execute(
            insert(events).values(
                delivery_id=context.delivery_id,
                campaign_id=context.campaign_id,
                kind=EventKind.UNSUBSCRIBED.value,
                occurred_at=now,
                suspected_bot=False,
                source="outreach",
                dedupe_key=dedupe,
                payload={"scope": scope.value, "via": source},
            )
        )
        changed = True
    return changed


def unsubscribed_contacts(engine: Engine, *, campaign_id: str) -> set[int]:
    """Contacts who stopped this campaign's mail (either scope): reminders must skip them."""
    query = (
        select(deliveries.c.contact_id)
        .join(events, events.c.delivery_id == deliveries.c.id)
        .where(
            events.c.campaign_id == campaign_id,
            events.c.kind == EventKind.UNSUBSCRIBED.value,
        )
    )
    with engine.connect() as connection:
        return set(connection.scalars(query))


def is_suppressed(engine: Engine, email: str) -> bool:
    with engine.connect() as connection:
        return (
            connection.scalar(select(suppressions.c.email).where(suppressions.c.email == email))
            is not None
        )
