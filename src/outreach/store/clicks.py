"""Clicks and opens: what a member did with a message's links and its open pixel.

Owns the event rows the public web pages write for them (the clicks of many requests at once,
in one transaction, with ``record_clicks``), the flag on clicks suspected to come from link
scanners, and the clicks per call to action of a campaign.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from outreach.domain.delivery import EventKind
from outreach.errors import StoreError
from outreach.store.tables import deliveries, events

USER_AGENT_CHARS = 512


@dataclass(frozen=True, slots=True)
class StoredClick:
    event_id: int
    cta_id: str | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class ClickCounts:
    """Clicks on one call to action: by people, and by suspected scanners."""

    human: int = 0
    suspected: int = 0

    @property
    def total(self) -> int:
        return self.human + self.suspected


def record_click(
    engine: Engine,
    *,
    campaign_id: str,
    delivery_id: int,
    cta_id: str | None,
    user_agent: str | None,
    suspected_bot: bool,
    now: datetime,
    kind: EventKind = EventKind.CLICKED,
) -> None:
    """One click (or open, with ``kind``) as one committed insert.

    Raises ``StoreError`` when the delivery does not exist (a link from another database).
    """
    values = {
        "delivery_id": delivery_id,
        "campaign_id": campaign_id,
        "kind": kind.value,
        "occurred_at": now,
        "cta_id": cta_id,
        "user_agent": (user_agent or "")[:USER_AGENT_CHARS] or None,
        "suspected_bot": suspected_bot,
        "source": "outreach",
    }
    try:
        with engine.begin() as connection:
            connection.execute(insert(events).values(values))
    except IntegrityError as err:
        raise StoreError(f"delivery {delivery_id} does not exist") from err


@dataclass(frozen=True, slots=True)
class ClickRecord:
    """One click (or open) to store: what ``record_clicks`` writes as an event row."""

    campaign_id: str
    delivery_id: int
    cta_id: str | None
    user_agent: str | None
    suspected_bot: bool
    occurred_at: datetime
    kind: EventKind = EventKind.CLICKED


def record_clicks(engine: Engine, *, clicks: Sequence[ClickRecord]) -> list[bool]:
    """Many clicks as one committed transaction: one multi-row insert, one commit.

    Returns, per click, whether it was recorded: False when its delivery does not exist (a
    link from another database); those are left out and the others are still committed.
    """
    if not clicks:
        return []
    wanted = sorted({click.delivery_id for click in clicks})
    with engine.begin() as connection:
        known = set(connection.scalars(select(deliveries.c.id).where(deliveries.c.id.in_(wanted))))
        rows = [
            {
                "delivery_id": click.delivery_id,
                "campaign_id": click.campaign_id,
                "kind": click.kind.value,
                "occurred_at": click.occurred_at,
                "cta_id": click.cta_id,
                "user_agent": (click.user_agent or "")[:USER_AGENT_CHARS] or None,
                "suspected_bot": click.suspected_bot,
                "source": "outreach",
            }
            for click in clicks
            if click.delivery_id in known
        ]
        if rows:
            connection.execute(insert(events), rows)
    return [click.delivery_id in known for click in clicks]


def record_open(
    engine: Engine,
    *,
    campaign_id: str,
    delivery_id: int,
    user_agent: str | None,
    suspected_bot: bool,
    now: datetime,
) -> None:
    record_click(
        engine,
        campaign_id=campaign_id,
        delivery_id=delivery_id,
        cta_id=None,
        user_agent=user_agent,
        suspected_bot=suspected_bot,
        now=now,
        kind=EventKind.OPENED,
    )


def delivery_clicks(
    engine: Engine, *, delivery_id: int
) -> tuple[datetime | None, list[StoredClick]]:
    """When a delivery was sent, and every click recorded on its links."""
    with engine.connect() as connection:
        sent_at = connection.scalar(
            select(deliveries.c.sent_at).where(deliveries.c.id == delivery_id)
        )
        rows = connection.execute(
            select(events.c.id, events.c.cta_id, events.c.occurred_at).where(
                events.c.delivery_id == delivery_id, events.c.kind == EventKind.CLICKED.value
            )
        ).all()
    return sent_at, [StoredClick(r.id, r.cta_id, r.occurred_at) for r in rows]


def flag_suspected(engine: Engine, *, event_ids: set[int]) -> int:
    """Mark events as suspected scanner activity; returns how many changed."""
    if not event_ids:
        return 0
    with engine.begin() as connection:
        result = connection.execute(
            update(events)
            .where(events.c.id.in_(sorted(event_ids)), events.c.suspected_bot.is_(False))
            .values(suspected_bot=True)
        )
    return int(result.rowcount or 0)


def click_counts(engine: Engine, *, campaign_id: str) -> dict[str, ClickCounts]:
    """Clicks per call to action of a campaign, people and suspected scanners apart."""
    query = (
        select(events.c.cta_id, events.c.suspected_bot, func.count())
        .where(events.c.campaign_id == campaign_id, events.c.kind == EventKind.CLICKED.value)
        .group_by(events.c.cta_id, events.c.suspected_bot)
    )
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"human": 0, "suspected": 0})
    with engine.connect() as connection:
        for cta_id, suspected, number in connection.execute(query):
            counts[cta_id or ""]["suspected" if suspected else "human"] += int(number)
    return {cta: ClickCounts(**numbers) for cta, numbers in sorted(counts.items())}
