"""An organisation's signature under a campaign's call to action, and the signatories.

Owns the signatures the public sign page writes and the reads it needs: whether the
organisation has already signed, the public list of signatories. A response belongs to the
organisation: the ``responses`` table allows one per campaign, organisation and call to action,
and a second signer gets the first signature back instead of an error.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from outreach.domain.delivery import EventKind
from outreach.errors import StoreError
from outreach.store.engine import one_writer
from outreach.store.tables import events, organisations, responses
from outreach.store.tracking import DeliveryContext


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
