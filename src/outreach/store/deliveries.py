"""The outbox and ledger: one row per campaign x contact x round.

Claims are one atomic ``WITH due AS (SELECT ... LIMIT n [FOR UPDATE SKIP LOCKED]) UPDATE ...``,
so two senders never take the same delivery; every result is committed as it is recorded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import Engine, Text, Update, and_, bindparam, func, insert, or_, select, update

from outreach.domain.delivery import DeliveryStatus, Recipient
from outreach.ports import ClaimedDelivery, NewDelivery, OutboxCounts, Outcome
from outreach.store.tables import (
    contacts,
    deliveries,
    delivery_recipients,
    organisations,
    suppressions,
)

QUEUED = DeliveryStatus.QUEUED.value
SENDING = DeliveryStatus.SENDING.value
SENT = DeliveryStatus.SENT.value
FAILED = DeliveryStatus.FAILED.value
UNKNOWN = DeliveryStatus.UNKNOWN.value
SUPPRESSED = DeliveryStatus.SUPPRESSED.value


def _record_statement(status: str, *, spend_attempt: bool, now: datetime) -> Update:
    """The UPDATE that records one kind of result, run with many rows at once
    (parameters ``b_id``, ``b_detail``, ``b_next``)."""
    detail = bindparam("b_detail", type_=Text)
    values: dict[str, Any] = {"status": status, "updated_at": now}
    values |= {"claimed_by": None, "lease_until": None}
    if status != SUPPRESSED:
        spent = deliveries.c.attempts + 1 if spend_attempt else deliveries.c.attempts
        values["attempts"] = spent
    if status == SENT:
        values |= {"provider_message_id": func.substr(detail, 1, 255), "sent_at": now}
    elif status == QUEUED:
        values |= {"last_error": detail, "next_attempt_at": bindparam("b_next")}
    elif status in (FAILED, UNKNOWN):
        values["last_error"] = detail
    elif status != SUPPRESSED:
        raise ValueError(f"not a result a delivery can be recorded with: {status!r}")
    return update(deliveries).where(deliveries.c.id == bindparam("b_id")).values(**values)


def batched(items: Iterable[NewDelivery], size: int) -> Iterator[list[NewDelivery]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


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
            added = 0
            for chunk in batched((row for row in rows if row.contact_id not in existing), 5000):
                connection.execute(
                    insert(deliveries),
                    [
                        {
                            "campaign_id": campaign_id,
                            "contact_id": row.contact_id,
                            "round": round,
                            "language": row.language,
                            "status": SUPPRESSED if row.suppressed else QUEUED,
                            "attempts": 0,
                            "queued_at": now,
                            "updated_at": now,
                        }
                        for row in chunk
                    ],
                )
                added += len(chunk)
        return added

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
                        handed_over_at=None,
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
                .select_from(delivery_recipients)
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

    def record(self, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        """Record many results in one transaction (one ``executemany`` per kind of result)."""
        groups: dict[tuple[str, bool], list[dict[str, object]]] = defaultdict(list)
        for outcome in outcomes:
            groups[(outcome.status, outcome.spend_attempt)].append(
                {
                    "b_id": outcome.delivery_id,
                    "b_detail": outcome.detail,
                    "b_next": outcome.next_attempt_at,
                }
            )
        with self.engine.begin() as connection:
            for (status, spend), rows in groups.items():
                statement = _record_statement(status, spend_attempt=spend, now=now)
                connection.execute(statement, rows)

    def mark_sent(self, delivery_id: int, *, reply: str, now: datetime) -> None:
        self.record([Outcome(delivery_id, SENT, reply)], now=now)

    def mark_retry(
        self, delivery_id: int, *, error: str, next_attempt_at: datetime, now: datetime
    ) -> None:
        self.record([Outcome(delivery_id, QUEUED, error, next_attempt_at)], now=now)

    def mark_failed(self, delivery_id: int, *, error: str, now: datetime) -> None:
        self.record([Outcome(delivery_id, FAILED, error)], now=now)

    def mark_suppressed(self, delivery_id: int, *, now: datetime) -> None:
        self.record([Outcome(delivery_id, SUPPRESSED)], now=now)

    def mark_unknown(self, delivery_id: int, *, error: str, now: datetime) -> None:
        """The request went out but its answer was lost: never re-sent; provider events
        settle it later (``store.events``)."""
        self.record([Outcome(delivery_id, UNKNOWN, error)], now=now)

    def release(self, delivery_ids: list[int], *, worker: str, now: datetime) -> None:
        """Give ``worker``'s claimed deliveries that were never handed over back to the queue
        (a claim another process recovered in the meantime is that process's now)."""
        self._update_held(
            delivery_ids,
            worker,
            status=QUEUED,
            claimed_by=None,
            lease_until=None,
            updated_at=now,
        )

    def handing_over(self, delivery_ids: Sequence[int], *, worker: str, now: datetime) -> set[int]:
        """Record, committed, that ``worker`` is about to hand these claimed deliveries over
        (only with ``recover_as = "unknown"``: recovery marks exactly these ``unknown`` if the
        worker dies). Returns the ids it still holds; the others must not be sent."""
        return self._update_held(delivery_ids, worker, handed_over_at=now)

    def renew(
        self, delivery_ids: Sequence[int], *, worker: str, until: datetime, now: datetime
    ) -> set[int]:
        """Extend this worker's lease on claimed deliveries it has not handed over yet (a
        sender held back by rate limits); returns the ids it still holds. A claim recovered by
        another process in the meantime is not this worker's any more and must not be sent."""
        return self._update_held(delivery_ids, worker, lease_until=until, updated_at=now)

    def _update_held(self, delivery_ids: Sequence[int], worker: str, **values: Any) -> set[int]:
        """Update the deliveries among ``delivery_ids`` that ``worker`` still holds in
        ``sending``, committed; returns their ids."""
        if not delivery_ids:
            return set()
        with self.engine.begin() as connection:
            return set(
                connection.scalars(
                    update(deliveries)
                    .where(
                        deliveries.c.id.in_(list(delivery_ids)),
                        deliveries.c.status == SENDING,
                        deliveries.c.claimed_by == worker,
                    )
                    .values(**values)
                    .returning(deliveries.c.id)
                )
            )

    def recover(
        self,
        *,
        campaign_id: str,
        as_unknown: bool,
        now: datetime,
        dead_workers: Collection[str] = (),
    ) -> int:
        """Deliveries left in ``sending`` by a process that died (its lease ran out, or it is
        known dead): back to the queue; or, ``as_unknown``, those it had begun to hand over
        (``handing_over``) are marked ``unknown``, as a second copy is worse than none, and
        the rest go back to the queue."""
        gone = or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
        if dead_workers:
            gone = or_(gone, deliveries.c.claimed_by.in_(list(dead_workers)))
        left = and_(deliveries.c.campaign_id == campaign_id, deliveries.c.status == SENDING, gone)
        released = {"claimed_by": None, "lease_until": None, "updated_at": now}
        recovered = 0
        with self.engine.begin() as connection:
            if as_unknown:
                result = connection.execute(
                    update(deliveries)
                    .where(left, deliveries.c.handed_over_at.is_not(None))
                    .values(status=UNKNOWN, **released)
                )
                recovered += result.rowcount or 0
            result = connection.execute(
                update(deliveries).where(left).values(status=QUEUED, **released)
            )
            recovered += result.rowcount or 0
        return recovered

    def claimants(self, *, campaign_id: str) -> set[str]:
        """Workers that hold deliveries of this campaign in ``sending``."""
        with self.engine.connect() as connection:
            return set(
                connection.scalars(
                    select(deliveries.c.claimed_by)
                    .where(
                        deliveries.c.campaign_id == campaign_id,
                        deliveries.c.status == SENDING,
                        deliveries.c.claimed_by.is_not(None),
                    )
                    .distinct()
                )
            )

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
