"""The outbox and ledger: one row per campaign x contact x round.

Claims are one atomic ``WITH due AS (SELECT ... LIMIT n [FOR UPDATE SKIP LOCKED]) UPDATE ...``,
so two senders never take the same delivery; every result is committed as it is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, func, insert, or_, select, update

from outreach.domain.delivery import DeliveryStatus, Recipient
from outreach.ports import ClaimedDelivery, NewDelivery, OutboxCounts
from outreach.store.tables import contacts, deliveries, organisations, suppressions

QUEUED = DeliveryStatus.QUEUED.value
SENDING = DeliveryStatus.SENDING.value


class SqlDeliveryLedger:
    """``DeliveryLedger`` on SQLAlchemy Core; works on SQLite and PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- filling the outbox -------------------------------------------------------------
    def enqueue(
        self, *, campaign_id: str, round: int, rows: Iterable[NewDelivery], now: datetime
    ) -> int:
        """Queue deliveries that do not exist yet; returns how many were added."""
        with self.engine.begin() as connection:
            existing = set(
                connection.scalars(
                    select(deliveries.c.contact_id).where(
                        deliveries.c.campaign_id == campaign_id, deliveries.c.round == round
                    )
                )
            )
            batch = [
                {
                    "campaign_id": campaign_id,
                    "contact_id": row.contact_id,
                    "round": round,
                    "language": row.language,
                    "status": DeliveryStatus.SUPPRESSED.value if row.suppressed else QUEUED,
                    "attempts": 0,
                    "queued_at": now,
                    "updated_at": now,
                }
                for row in rows
                if row.contact_id not in existing
            ]
            for start in range(0, len(batch), 5000):
                connection.execute(insert(deliveries), batch[start : start + 5000])
        return len(batch)

    # -- the send loop's side -----------------------------------------------------------
    def claim(
        self,
        *,
        campaign_id: str,
        round: int,
        worker: str,
        limit: int,
        now: datetime,
        lease: timedelta,
    ) -> list[ClaimedDelivery]:
        due = (
            select(deliveries.c.id)
            .where(
                deliveries.c.campaign_id == campaign_id,
                deliveries.c.round == round,
                deliveries.c.status == QUEUED,
                or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
            )
            .order_by(deliveries.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        with self.engine.begin() as connection:
            ids = list(
                connection.scalars(
                    update(deliveries)
                    .where(deliveries.c.id == due.c.id, deliveries.c.status == QUEUED)
                    .values(
                        status=SENDING,
                        claimed_by=worker,
                        lease_until=now + lease,
                        updated_at=now,
                    )
                    .returning(deliveries.c.id)
                )
            )
            if not ids:
                return []
            rows = connection.execute(
                select(
                    deliveries.c.id,
                    deliveries.c.attempts,
                    deliveries.c.language,
                    contacts.c.email,
                    contacts.c.name,
                    organisations.c.name.label("organisation"),
                    organisations.c.country,
                    organisations.c.region,
                    organisations.c.timezone,
                    suppressions.c.email.label("suppressed"),
                )
                .join(contacts, contacts.c.id == deliveries.c.contact_id)
                .join(organisations, organisations.c.id == contacts.c.organisation_id)
                .outerjoin(suppressions, suppressions.c.email == contacts.c.email)
                .where(deliveries.c.id.in_(ids))
                .order_by(deliveries.c.id)
            ).all()
        return [
            ClaimedDelivery(
                recipient=Recipient(
                    delivery_id=row.id,
                    email=row.email,
                    name=row.name,
                    language=row.language,
                    organisation=row.organisation,
                    country=row.country,
                    region=row.region,
                    timezone=row.timezone,
                ),
                attempts=row.attempts,
                suppressed=row.suppressed is not None,
            )
            for row in rows
        ]

    def _set(self, delivery_id: int, **values: object) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(deliveries).where(deliveries.c.id == delivery_id).values(**values)
            )

    def mark_sent(self, delivery_id: int, *, reply: str, now: datetime) -> None:
        self._set(
            delivery_id,
            status=DeliveryStatus.SENT.value,
            attempts=deliveries.c.attempts + 1,
            provider_message_id=reply[:255],
            sent_at=now,
            updated_at=now,
            claimed_by=None,
            lease_until=None,
        )

    def mark_retry(
        self, delivery_id: int, *, error: str, next_attempt_at: datetime, now: datetime
    ) -> None:
        self._set(
            delivery_id,
            status=QUEUED,
            attempts=deliveries.c.attempts + 1,
            last_error=error,
            next_attempt_at=next_attempt_at,
            updated_at=now,
            claimed_by=None,
            lease_until=None,
        )

    def mark_failed(self, delivery_id: int, *, error: str, now: datetime) -> None:
        self._set(
            delivery_id,
            status=DeliveryStatus.FAILED.value,
            attempts=deliveries.c.attempts + 1,
            last_error=error,
            updated_at=now,
            claimed_by=None,
            lease_until=None,
        )

    def mark_suppressed(self, delivery_id: int, *, now: datetime) -> None:
        self._set(
            delivery_id,
            status=DeliveryStatus.SUPPRESSED.value,
            updated_at=now,
            claimed_by=None,
            lease_until=None,
        )

    def mark_unknown(self, delivery_id: int, *, error: str, now: datetime) -> None:
        """The request went out but its answer was lost: never re-sent; provider events
        settle it later (``store.events``)."""
        self._set(
            delivery_id,
            status=DeliveryStatus.UNKNOWN.value,
            attempts=deliveries.c.attempts + 1,
            last_error=error,
            updated_at=now,
            claimed_by=None,
            lease_until=None,
        )

    def release(self, delivery_ids: list[int], *, now: datetime) -> None:
        """Give claimed deliveries that were never handed over back to the queue."""
        if not delivery_ids:
            return
        with self.engine.begin() as connection:
            connection.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(delivery_ids), deliveries.c.status == SENDING)
                .values(status=QUEUED, claimed_by=None, lease_until=None, updated_at=now)
            )

    def recover(self, *, campaign_id: str, as_unknown: bool, now: datetime) -> int:
        """Deliveries left in ``sending`` by a process that died, whose lease has run out:
        back to the queue, or ``unknown`` when a possible second copy is worse than none."""
        status = DeliveryStatus.UNKNOWN.value if as_unknown else QUEUED
        with self.engine.begin() as connection:
            result = connection.execute(
                update(deliveries)
                .where(
                    deliveries.c.campaign_id == campaign_id,
                    deliveries.c.status == SENDING,
                    or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
                )
                .values(status=status, claimed_by=None, lease_until=None, updated_at=now)
            )
        return result.rowcount or 0

    def counts(self, *, campaign_id: str, round: int, now: datetime) -> OutboxCounts:
        where = and_(deliveries.c.campaign_id == campaign_id, deliveries.c.round == round)
        with self.engine.connect() as connection:
            by_status = {
                status: count
                for status, count in connection.execute(
                    select(deliveries.c.status, func.count())
                    .where(where)
                    .group_by(deliveries.c.status)
                )
            }
            next_retry = connection.scalar(
                select(func.min(deliveries.c.next_attempt_at)).where(
                    where, deliveries.c.status == QUEUED
                )
            )
        return OutboxCounts(by_status=by_status, next_retry_at=next_retry)
