"""What delivery workers look for: campaigns in state ``sending`` with deliveries to send.

Any round counts (the first send or a reminder), whether the campaign was scheduled or sent
with ``outreach send``: a worker continues what a killed ``outreach send`` left behind.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Engine, and_, exists, or_, select

from outreach.domain.delivery import CampaignState, DeliveryStatus
from outreach.store.tables import campaigns, deliveries

QUEUED = DeliveryStatus.QUEUED.value
SENDING = DeliveryStatus.SENDING.value


def sending_claimants(engine: Engine) -> set[str]:
    """Workers holding deliveries ``sending`` in campaigns that are sending."""
    with engine.connect() as connection:
        return set(
            connection.scalars(
                select(deliveries.c.claimed_by)
                .join(campaigns, campaigns.c.id == deliveries.c.campaign_id)
                .where(
                    campaigns.c.state == CampaignState.SENDING.value,
                    deliveries.c.status == SENDING,
                    deliveries.c.claimed_by.is_not(None),
                )
                .distinct()
            )
        )


def campaigns_with_work(
    engine: Engine, *, now: datetime, dead_workers: Collection[str] = ()
) -> list[str]:
    """Campaigns in state ``sending`` with a delivery queued and due, or left ``sending`` by a
    worker whose lease ran out or that is known to be dead."""
    abandoned = or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
    if dead_workers:
        abandoned = or_(abandoned, deliveries.c.claimed_by.in_(list(dead_workers)))
    due = or_(
        and_(
            deliveries.c.status == QUEUED,
            or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
        ),
        and_(deliveries.c.status == SENDING, abandoned),
    )
    waiting = exists().where(deliveries.c.campaign_id == campaigns.c.id, due)
    with engine.connect() as connection:
        return list(
            connection.scalars(
                select(campaigns.c.id)
                .where(campaigns.c.state == CampaignState.SENDING.value, waiting)
                .order_by(campaigns.c.id)
            )
        )
