"""Filling the outbox: who of the audience gets the campaign, in which language.

Planning is pure (the dry run shows it as it is); ``enqueue`` writes the plan to the ledger,
adding only deliveries that do not exist yet, so running a send twice never queues anyone twice.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from outreach.domain.campaign import Campaign
from outreach.domain.contacts import Contact
from outreach.pipeline.audience import select
from outreach.ports import DeliveryLedger, NewDelivery


@dataclass(frozen=True, slots=True)
class PlannedRecipient:
    contact_id: int
    contact: Contact
    language: str
    excluded: str | None  # why the audience leaves this contact out
    suppressed: bool

    @property
    def receives(self) -> bool:
        return self.excluded is None and not self.suppressed


@dataclass(frozen=True, slots=True)
class EnqueueSummary:
    audience: int
    added: int
    suppressed: int
    excluded: int


def plan(
    campaign: Campaign,
    contacts: Iterable[tuple[int, Contact]],
    *,
    suppressed: Container[str],
) -> Iterator[PlannedRecipient]:
    """Every contact, with the variant it would receive and, if any, why it is left out."""
    for contact_id, contact in contacts:
        yield PlannedRecipient(
            contact_id=contact_id,
            contact=contact,
            language=campaign.language_for(contact.language),
            excluded=select(campaign.audience, contact),
            suppressed=contact.email in suppressed,
        )


def enqueue(
    campaign: Campaign,
    planned: Iterable[PlannedRecipient],
    *,
    ledger: DeliveryLedger,
    now: datetime,
    round: int = 0,
) -> EnqueueSummary:
    tally = {"audience": 0, "suppressed": 0, "excluded": 0}

    def rows() -> Iterator[NewDelivery]:  # streamed: never the whole audience in memory
        for item in planned:
            if item.excluded is not None:
                tally["excluded"] += 1
                continue
            tally["audience"] += 1
            tally["suppressed"] += item.suppressed
            yield NewDelivery(
                contact_id=item.contact_id, language=item.language, suppressed=item.suppressed
            )

    added = ledger.enqueue(campaign_id=campaign.id, round=round, rows=rows(), now=now)
    return EnqueueSummary(added=added, **tally)
