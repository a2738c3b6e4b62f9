"""Provider events in the store: each recorded once, and what it means for its delivery.

``record_provider_events`` takes normalised events (from a provider webhook or a returned
bounce) and, one transaction per event:

- finds the delivery from the correlation metadata the message carried (delivery id, checked
  against the campaign and the address), else the provider's message id, else the campaign
  and the address;
- records the event under a ``dedupe_key`` of provider and event id, so the same event
  delivered twice (providers retry webhooks) is recorded once; the row keeps the provider's
  raw payload next to the normalised fields;
- applies it: a hard bounce, a complaint or an unsubscription puts the address on the
  suppression list; the delivery becomes ``bounced`` or ``complained``; a message the provider
  dropped becomes ``failed``; and a delivery left ``unknown`` (its answer was lost) becomes
  ``sent`` as soon as any event shows the provider had it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from outreach.domain.contacts import normalise_email
from outreach.domain.delivery import DeliveryStatus, EventKind
from outreach.ports import ProviderEvent, RecordedEvents
from outreach.store.tables import contacts, deliveries, events, suppressions

SENT = DeliveryStatus.SENT.value
UNKNOWN = DeliveryStatus.UNKNOWN.value
# events that prove the provider had the message
_ACCEPTED = frozenset(
    {
        EventKind.DELIVERED,
        EventKind.DEFERRED,
        EventKind.OPENED,
        EventKind.CLICKED,
        EventKind.UNSUBSCRIBED,
        EventKind.COMPLAINED,
        EventKind.BOUNCED,
    }
)


@dataclass(frozen=True, slots=True)
class _Match:
    delivery_id: int
    campaign_id: str
    email: str


def _addresses(address: str) -> list[str]:
    """The address as a contact row may hold it: as given, and with an IDNA domain decoded."""
    found = [normalise_email(address)]
    local, _, domain = found[0].rpartition("@")
    if "xn--" in domain:
        with contextlib.suppress(UnicodeError):
            found.append(f"{local}@{domain.encode('ascii').decode('idna')}")
    return found


def _find(connection: Connection, event: ProviderEvent) -> _Match | None:
    columns = (deliveries.c.id, deliveries.c.campaign_id, contacts.c.email)
    joined = select(*columns).join(contacts, contacts.c.id == deliveries.c.contact_id)
    addresses = _addresses(event.recipient) if event.recipient else []
    if event.delivery_id is not None:
        row = connection.execute(joined.where(deliveries.c.id == event.delivery_id)).first()
        if (
            row is not None
            and (event.campaign_id is None or event.campaign_id == row.campaign_id)
            and (not addresses or normalise_email(row.email) in addresses)
        ):
            return _Match(row.id, row.campaign_id, row.email)
    if event.provider_message_id and addresses:
        bare = event.provider_message_id.strip().strip("<>")
        row = connection.execute(
            joined.where(
                deliveries.c.provider_message_id.in_([bare, f"<{bare}>"]),
                func.lower(contacts.c.email).in_([a.lower() for a in addresses]),
            ).order_by(deliveries.c.id.desc())
        ).first()
        if row is not None:
            return _Match(row.id, row.campaign_id, row.email)
    if event.campaign_id and addresses:
        row = connection.execute(
            joined.where(
                deliveries.c.campaign_id == event.campaign_id,
                func.lower(contacts.c.email).in_([a.lower() for a in addresses]),
            ).order_by(deliveries.c.round.desc(), deliveries.c.id.desc())
        ).first()
        if row is not None:
            return _Match(row.id, row.campaign_id, row.email)
    return None


def _payload(event: ProviderEvent) -> dict[str, Any]:
    return {
        "provider_event": event.raw_kind,
        "recipient": event.recipient,
        "permanent": event.permanent,
        "reason": event.reason,
        "provider_message_id": event.provider_message_id,
        "url": event.url,
        "raw": dict(event.payload),
    }


def _suppression_reason(event: ProviderEvent) -> str | None:
    if event.kind is EventKind.BOUNCED and event.permanent:
        return "bounced"
    if event.kind is EventKind.COMPLAINED:
        return "complained"
    if event.kind is EventKind.UNSUBSCRIBED:
        return "unsubscribed"
    return None


def _suppress(
    connection: Connection, email: str, *, reason: str, event: ProviderEvent, campaign: str | None
) -> bool:
    if connection.scalar(select(suppressions.c.email).where(suppressions.c.email == email)):
        return False
    detail = f"{event.provider} {event.raw_kind}: {event.reason}".strip().rstrip(":")
    connection.execute(
        insert(suppressions).values(
            email=email,
            reason=reason,
            campaign_id=campaign,
            detail=detail[:1000],
            created_at=event.occurred_at,
        )
    )
    return True


def _settle(connection: Connection, event: ProviderEvent, delivery_id: int, now: datetime) -> None:
    """What the event means for its delivery's status (never a step back)."""
    row = deliveries.c
    where = row.id == delivery_id
    new: dict[str, Any]
    if event.kind is EventKind.COMPLAINED:
        new = {"status": DeliveryStatus.COMPLAINED.value}
        where = where & (row.status != DeliveryStatus.COMPLAINED.value)
    elif event.kind is EventKind.BOUNCED and event.permanent:
        new = {"status": DeliveryStatus.BOUNCED.value}
        where = where & row.status.notin_(
            [DeliveryStatus.COMPLAINED.value, DeliveryStatus.BOUNCED.value]
        )
    elif event.kind is EventKind.REJECTED:
        reason = f"{event.provider} {event.raw_kind}: {event.reason}".strip().rstrip(":")
        new = {"status": DeliveryStatus.FAILED.value, "last_error": reason}
        where = where & row.status.in_([SENT, UNKNOWN])
    elif event.kind in _ACCEPTED:
        new = {"status": SENT, "sent_at": func.coalesce(row.sent_at, event.occurred_at)}
        where = where & (row.status == UNKNOWN)
    else:
        return
    connection.execute(update(deliveries).where(where).values(updated_at=now, **new))


def _record_one(
    connection: Connection, event: ProviderEvent, *, keep_unmatched: bool, now: datetime
) -> tuple[str, str | None]:
    """('recorded' | 'duplicate' | 'unmatched', the address suppressed or None)."""
    dedupe = f"{event.provider}:{event.event_id}"[:255]
    if connection.scalar(select(events.c.id).where(events.c.dedupe_key == dedupe)):
        return "duplicate", None
    match = _find(connection, event)
    if match is None and not keep_unmatched:
        return "unmatched", None
    campaign = match.campaign_id if match else event.campaign_id
    connection.execute(
        insert(events).values(
            delivery_id=match.delivery_id if match else None,
            campaign_id=campaign,
            kind=event.kind.value,
            occurred_at=event.occurred_at,
            cta_id=None,
            user_agent=(event.user_agent or "")[:512] or None,
            suspected_bot=False,
            source=event.provider[:32],
            dedupe_key=dedupe,
            payload=_payload(event),
        )
    )
    suppressed = None
    reason = _suppression_reason(event)
    email = match.email if match else (normalise_email(event.recipient) if event.recipient else "")
    if reason and email and _suppress(connection, email, reason=reason, event=event,
                                      campaign=campaign):  # fmt: skip
        suppressed = email
    if match is not None:
        _settle(connection, event, match.delivery_id, now)
    return ("recorded" if match else "unmatched"), suppressed


def record_provider_events(
    engine: Engine,
    provider_events: Sequence[ProviderEvent],
    *,
    now: datetime,
    keep_unmatched: bool = True,
) -> RecordedEvents:
    """Record each event once and apply it; see the module docstring.

    ``keep_unmatched``: record (and apply to the address) events whose delivery is not found;
    without it they are only reported back in ``unmatched``.
    """
    recorded = duplicates = 0
    unmatched: list[ProviderEvent] = []
    suppressed: list[str] = []
    for event in provider_events:
        try:
            with engine.begin() as connection:
                outcome, address = _record_one(
                    connection, event, keep_unmatched=keep_unmatched, now=now
                )
        except IntegrityError:  # the same event, recorded at the same moment elsewhere
            outcome, address = "duplicate", None
        if outcome == "duplicate":
            duplicates += 1
            continue
        if outcome == "unmatched":
            unmatched.append(event)
        if outcome == "recorded" or keep_unmatched:
            recorded += 1
        if address:
            suppressed.append(address)
    return RecordedEvents(
        recorded=recorded, duplicates=duplicates, unmatched=unmatched, suppressed=suppressed
    )


def provider_events_of(engine: Engine, *, delivery_id: int) -> list[dict[str, Any]]:
    """The provider events recorded for one delivery, oldest first (kind, source, payload)."""
    query = (
        select(events.c.kind, events.c.source, events.c.occurred_at, events.c.payload)
        .where(events.c.delivery_id == delivery_id, events.c.source != "outreach")
        .order_by(events.c.occurred_at, events.c.id)
    )
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]
