"""Who a link belongs to: the delivery behind a member's link, its contact and organisation.

The public web pages start here: ``delivery_context`` tells them whom a signed link speaks for.
What the member then does is recorded in ``store.clicks`` (clicks and opens),
``store.signatures`` (the organisation's signature) and ``store.unsubscribes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from outreach.store.tables import contacts, deliveries, delivery_recipients, organisations


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """Who a delivery went to: the contact and the organisation a link speaks for."""

    delivery_id: int
    campaign_id: str
    language: str
    sent_at: datetime | None
    contact_id: int
    contact_name: str
    email: str
    organisation_id: int
    organisation: str
    country: str
    region: str


def delivery_context(engine: Engine, delivery_id: int) -> DeliveryContext | None:
    query = (
        select(
            deliveries.c.id,
            deliveries.c.campaign_id,
            deliveries.c.language,
            deliveries.c.sent_at,
            contacts.c.id.label("contact_id"),
            contacts.c.name.label("contact_name"),
            contacts.c.email,
            organisations.c.id.label("organisation_id"),
            organisations.c.name.label("organisation"),
            organisations.c.country,
            organisations.c.region,
        )
        .select_from(delivery_recipients)
        .where(deliveries.c.id == delivery_id)
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    return DeliveryContext(
        delivery_id=row.id,
        campaign_id=row.campaign_id,
        language=row.language,
        sent_at=row.sent_at,
        contact_id=row.contact_id,
        contact_name=row.contact_name,
        email=row.email,
        organisation_id=row.organisation_id,
        organisation=row.organisation,
        country=row.country,
        region=row.region,
    )
