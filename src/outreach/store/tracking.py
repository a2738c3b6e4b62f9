"""What members did with a message: clicks, opens, signatures and unsubscribes.

Owns the writes of the public web pages (events, responses, suppressions made by a member; the
clicks of many requests at once, in one transaction, with ``record_clicks``) and the reads those
pages need: who a link belongs to, whether the organisation has already signed, the public list
of signatories. A response belongs to the organisation: the ``responses`` table allows one per
campaign, organisation and call to action, and a second signer gets the first signature back
instead of an error.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from outreach.domain.delivery import EventKind
from outreach.errors import StoreError
from outreach.store.engine import one_writer
from outreach.store.tables import (
    contacts,
    deliveries,
    events,
    organisations,
    responses,
    suppressions,
)

USER_AGENT_CHARS = 512


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


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """An organisation's signature under a campaign's call to action."""

    campaign_id: str
    cta_id: str
    organisation_id: int
    organisation: str
    signer_name: str
    signer_title: str
    created_at: datetime
    contact_id: int | None
    delivery_id: int | None


@dataclass(frozen=True, slots=True)
class RecordedResponse:
    """The organisation's response, and whether this call created it."""

    response: StoredResponse
    created: bool


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


@dataclass(frozen=True, slots=True)
class Signatory:
    name: str
    country: str
    region: str
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class Signatories:
    """The organisations that have signed a campaign, by region (each counted once)."""

    by_region: dict[str, list[Signatory]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(group) for group in self.by_region.values())

    @property
    def names(self) -> list[str]:
        """Every signatory's name, alphabetically (what email templates list)."""
        return sorted((s.name for group in self.by_region.values() for s in group), key=str.lower)

    def template_context(self) -> dict[str, Any]:
        """The variables a campaign template takes: ``signatories`` and ``signatory_count``."""
        return {"signatories": self.names, "signatory_count": self.count}


class UnsubscribeScope(StrEnum):
    """What a member stops receiving."""

    CAMPAIGN = "campaign"  # this campaign's reminders only
    ALL = "all"  # every mailing: the address goes on the suppression list


# --- who a link belongs to -------------------------------------------------------------------


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
        .join(contacts, contacts.c.id == deliveries.c.contact_id)
        .join(organisations, organisations.c.id == contacts.c.organisation_id)
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


# --- clicks and opens ------------------------------------------------------------------------


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


# --- responses -------------------------------------------------------------------------------


def _response_query(*, campaign_id: str, organisation_id: int, cta_id: str) -> Any:
    return (
        select(responses, organisations.c.name.label("organisation"))
        .join(organisations, organisations.c.id == responses.c.organisation_id)
        .where(
            responses.c.campaign_id == campaign_id,
            responses.c.organisation_id == organisation_id,
            responses.c.cta_id == cta_id,
        )
    )


def _response(row: Any) -> StoredResponse:
    return StoredResponse(
        campaign_id=row.campaign_id,
        cta_id=row.cta_id,
        organisation_id=row.organisation_id,
        organisation=row.organisation,
        signer_name=row.signer_name,
        signer_title=row.signer_title,
        created_at=row.created_at,
        contact_id=row.contact_id,
        delivery_id=row.delivery_id,
    )


def organisation_response(
    engine: Engine, *, campaign_id: str, organisation_id: int, cta_id: str
) -> StoredResponse | None:
    """The organisation's signature under this call to action, if it has signed."""
    query = _response_query(campaign_id=campaign_id, organisation_id=organisation_id, cta_id=cta_id)
    with engine.connect() as connection:
        row = connection.execute(query).first()
    return None if row is None else _response(row)


def record_response(
    engine: Engine,
    *,
    context: DeliveryContext,
    cta_id: str,
    signer_name: str,
    signer_title: str,
    now: datetime,
) -> RecordedResponse:
    """Record the organisation's signature (and a ``signed`` event), committed on return.

    When the organisation has already signed, nothing changes and the first signature comes
    back with ``created=False`` (also when two of its contacts sign at the same moment).
    """

    signed = StoredResponse(
        campaign_id=context.campaign_id,
        cta_id=cta_id,
        organisation_id=context.organisation_id,
        organisation=context.organisation,
        signer_name=signer_name,
        signer_title=signer_title,
        created_at=now,
        contact_id=context.contact_id,
        delivery_id=context.delivery_id,
    )
    try:
        # no read first: the unique (campaign, organisation, call to action) refuses a second
        with one_writer(engine), engine.begin() as connection:
            connection.execute(
                insert(responses).values(
                    campaign_id=context.campaign_id,
                    organisation_id=context.organisation_id,
                    cta_id=cta_id,
                    contact_id=context.contact_id,
                    delivery_id=context.delivery_id,
                    signer_name=signer_name,
                    signer_title=signer_title,
                    created_at=now,
                )
            )
            connection.execute(
                insert(events).values(
                    delivery_id=context.delivery_id,
                    campaign_id=context.campaign_id,
                    kind=EventKind.SIGNED.value,
                    occurred_at=now,
                    cta_id=cta_id,
                    suspected_bot=False,
                    source="outreach",
                    dedupe_key=(f"signed:{context.campaign_id}:{context.organisation_id}:{cta_id}"),
                )
            )
    except IntegrityError as err:
        existing = organisation_response(
            engine,
            campaign_id=context.campaign_id,
            organisation_id=context.organisation_id,
            cta_id=cta_id,
        )
        if existing is None:
            raise StoreError(f"could not record the signature of {context.organisation}") from err
        return RecordedResponse(existing, created=False)
    return RecordedResponse(signed, created=True)


def signatories(engine: Engine, *, campaign_id: str) -> Signatories:
    """Organisations that signed any call to action of the campaign, by region, once each."""
    query = (
        select(
            organisations.c.name,
            organisations.c.country,
            organisations.c.region,
            func.min(responses.c.created_at).label("signed_at"),
        )
        .join(organisations, organisations.c.id == responses.c.organisation_id)
        .where(responses.c.campaign_id == campaign_id)
        .group_by(
            organisations.c.id,
            organisations.c.name,
            organisations.c.country,
            organisations.c.region,
        )
    )
    by_region: dict[str, list[Signatory]] = defaultdict(list)
    with engine.connect() as connection:
        for row in connection.execute(query):
            by_region[row.region].append(
                Signatory(row.name, row.country, row.region, row.signed_at)
            )
    return Signatories(
        by_region={
            region: sorted(group, key=lambda s: s.name.lower())
            for region, group in sorted(by_region.items())
        }
    )


# --- unsubscribing ---------------------------------------------------------------------------


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
