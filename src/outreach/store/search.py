"""Finding deliveries: the admin's delivery detail search and the mailbox viewer's places.

``search_deliveries`` finds the deliveries whose contact's address or name, or whose city,
contains a text, each with every event recorded for it; ``delivery_places`` gives the city and
language of the messages the mailbox viewer shows, by delivery id or by contact address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, or_, select, true

from outreach.store.tables import contacts, deliveries, delivery_recipients, events, organisations


@dataclass(frozen=True, slots=True)
class EventLine:
    kind: str
    occurred_at: datetime
    cta_id: str | None
    suspected_bot: bool
    user_agent: str | None
    source: str


@dataclass(frozen=True, slots=True)
class DeliveryDetail:
    id: int
    campaign_id: str
    round: int
    email: str
    name: str
    organisation: str
    country: str
    region: str
    language: str
    status: str
    attempts: int
    queued_at: datetime
    sent_at: datetime | None
    last_error: str | None
    events: list[EventLine]


# -- delivery detail ----------------------------------------------------------------------
def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its wildcards taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_deliveries(
    engine: Engine, *, text: str, campaign_id: str | None = None, limit: int = 100
) -> tuple[list[DeliveryDetail], bool]:
    """Deliveries whose contact's address or name, or whose city, contains ``text``, each with
    every event; the flag says more matched than ``limit``."""
    wanted = text.strip()
    if not wanted:
        return [], False
    patterns = {_like(wanted), _like(wanted.lower())}  # SQLite folds ASCII case only
    query = (
        select(
            deliveries.c.id,
            deliveries.c.campaign_id,
            deliveries.c.round,
            contacts.c.email,
            contacts.c.name,
            organisations.c.name.label("organisation"),
            organisations.c.country,
            organisations.c.region,
            deliveries.c.language,
            deliveries.c.status,
            deliveries.c.attempts,
            deliveries.c.queued_at,
            deliveries.c.sent_at,
            deliveries.c.last_error,
        )
        .select_from(delivery_recipients)
        .where(
            or_(
                *(
                    column.ilike(pattern, escape="\\")
                    for column in (contacts.c.email, contacts.c.name, organisations.c.name)
                    for pattern in patterns
                )
            ),
            deliveries.c.campaign_id == campaign_id if campaign_id else true(),
        )
        .order_by(
            organisations.c.name, contacts.c.email, deliveries.c.campaign_id, deliveries.c.round
        )
        .limit(limit + 1)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
        found = rows[:limit]
        happened: dict[int, list[EventLine]] = {}
        if found:
            ids = [row.id for row in found]
            for event in connection.execute(
                select(events)
                .where(events.c.delivery_id.in_(ids))
                .order_by(events.c.occurred_at, events.c.id)
            ):
                happened.setdefault(event.delivery_id, []).append(
                    EventLine(
                        event.kind,
                        event.occurred_at,
                        event.cta_id,
                        bool(event.suspected_bot),
                        event.user_agent,
                        event.source,
                    )
                )
    details = [DeliveryDetail(**row._mapping, events=happened.get(row.id, [])) for row in found]
    return details, len(rows) > limit


# -- the mailbox viewer's lookup ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Place:
    """Where a message went: the contact's city and the language of the delivery."""

    organisation: str
    country: str
    language: str


def delivery_places(
    engine: Engine, *, delivery_ids: list[int], emails: list[str]
) -> tuple[dict[int, Place], dict[str, Place]]:
    """City and language by delivery id, and (for messages without one) by contact address."""
    by_delivery: dict[int, Place] = {}
    by_email: dict[str, Place] = {}
    with engine.connect() as connection:
        for start in range(0, len(delivery_ids), 500):
            chunk = delivery_ids[start : start + 500]
            for row in connection.execute(
                select(
                    deliveries.c.id,
                    organisations.c.name,
                    organisations.c.country,
                    deliveries.c.language,
                )
                .select_from(delivery_recipients)
                .where(deliveries.c.id.in_(chunk))
            ):
                by_delivery[row[0]] = Place(row[1], row[2], row[3])
        for start in range(0, len(emails), 500):
            chunk_emails = emails[start : start + 500]
            for row in connection.execute(
                select(
                    contacts.c.email,
                    organisations.c.name,
                    organisations.c.country,
                    contacts.c.language,
                )
                .join(organisations, organisations.c.id == contacts.c.organisation_id)
                .where(contacts.c.email.in_(chunk_emails))
            ):
                by_email[row[0]] = Place(row[1], row[2], row[3])
    return by_delivery, by_email
