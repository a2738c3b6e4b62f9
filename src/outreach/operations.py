"""What the entry points (CLI, web app, scheduler) do, each as one function over ``Services``.

The entry points stay thin: they parse arguments and present results; the steps of a use case
(load, plan, enqueue, recover, compile, send) are written out once, here.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from outreach.bootstrap import Services
from outreach.domain.campaign import Campaign
from outreach.domain.contacts import Contact, normalise_email
from outreach.domain.delivery import CampaignState, Recipient
from outreach.domain.report import CampaignReport
from outreach.errors import AudienceError, Problem
from outreach.pipeline.contacts import read_contacts_csv
from outreach.pipeline.delivery import OnResult, send_round
from outreach.pipeline.outbox import EnqueueSummary, PlannedRecipient, enqueue, plan
from outreach.pipeline.personalise import message_factory
from outreach.pipeline.sending import SendSummary
from outreach.ports import OutgoingMessage
from outreach.recovery import recover_claims
from outreach.store.campaigns import held_reason, save_campaign, set_campaign_state
from outreach.store.contacts import ImportCounts, iter_contacts, upsert_contacts
from outreach.store.exports import (
    DELIVERY_COLUMNS,
    RESPONSE_COLUMNS,
    iter_delivery_export,
    iter_response_rows,
)
from outreach.store.reports import campaign_report
from outreach.store.responses import response_summary
from outreach.store.suppressions import suppressed_addresses


@dataclass(frozen=True, slots=True)
class ImportResult:
    counts: ImportCounts
    problems: list[Problem]
    rows: int


def import_contacts(services: Services, path: Path, *, encoding: str | None) -> ImportResult:
    parsed = read_contacts_csv(path, encoding=encoding)
    counts = upsert_contacts(
        services.engine, (row.contact for row in parsed.contacts), now=services.clock.now()
    )
    return ImportResult(counts=counts, problems=parsed.problems, rows=len(parsed.contacts))


def _contacts(services: Services) -> Iterator[tuple[int, Contact]]:
    for stored in iter_contacts(services.engine):
        yield stored.id, stored.contact


def plan_campaign(services: Services, campaign: Campaign) -> Iterator[PlannedRecipient]:
    """The dry run's view: every contact, the language it gets, or why it is left out."""
    return plan(campaign, _contacts(services), suppressed=suppressed_addresses(services.engine))


@dataclass(frozen=True, slots=True)
class SendOutcome:
    enqueued: EnqueueSummary
    recovered: int
    summary: SendSummary
    # the signal (SIGINT, SIGTERM) that stopped the run, when one did
    interrupted: signal.Signals | None = None


def queue_campaign(
    services: Services, campaign: Campaign, *, source: Path | None
) -> EnqueueSummary:
    now = services.clock.now()
    save_campaign(services.engine, campaign, source_path=str(source) if source else None, now=now)
    return enqueue(campaign, plan_campaign(services, campaign), ledger=services.ledger, now=now)


async def send_campaign(
    services: Services,
    campaign: Campaign,
    *,
    source: Path | None = None,
    mailer_dsn: str | None = None,
    on_result: OnResult | None = None,
    on_queued: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    interruptible: bool = False,
) -> SendOutcome:
    """Queue the audience (only those not queued before), then send what is queued.

    Deliveries a killed run left ``sending`` are recovered first (at once when that run was on
    this machine). With ``interruptible``, SIGINT and SIGTERM stop the run cleanly: nothing
    more is claimed, the messages in hand finish, the rest go back to the queue, every result
    is recorded, and the campaign is paused until the same command runs again.
    """
    stop = stop or asyncio.Event()
    with _stopped_by_signals(stop, enabled=interruptible) as received:
        outcome = await _send_campaign(
            services,
            campaign,
            source=source,
            mailer_dsn=mailer_dsn,
            on_result=on_result,
            on_queued=on_queued,
            stop=stop,
            received=received,
        )
    return outcome


@contextmanager
def _stopped_by_signals(stop: asyncio.Event, *, enabled: bool) -> Iterator[list[signal.Signals]]:
    """While inside, SIGINT and SIGTERM set ``stop`` and are noted in the list yielded (only
    in the main thread, where signal handlers can be installed)."""
    received: list[signal.Signals] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield received
        return
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum)
        stop.set()

    watched = (signal.SIGINT, signal.SIGTERM)
    for signum in watched:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield received
    finally:
        for signum in watched:
            loop.remove_signal_handler(signum)


async def _send_campaign(
    services: Services,
    campaign: Campaign,
    *,
    source: Path | None,
    mailer_dsn: str | None,
    on_result: OnResult | None,
    on_queued: Callable[[int], None] | None,
    stop: asyncio.Event,
    received: list[signal.Signals],
) -> SendOutcome:
    mailer = services.mailer(mailer_dsn)
    compiled = services.compile(campaign)
    enqueued = queue_campaign(services, campaign, source=source)
    ledger = services.ledger
    recovered = recover_claims(services, campaign.id)
    if on_queued is not None:
        counts = ledger.counts(campaign_id=campaign.id, round=0, now=services.clock.now())
        on_queued(counts.queued)
    set_campaign_state(
        services.engine, campaign.id, CampaignState.SENDING, now=services.clock.now()
    )
    build = message_factory(
        campaign=campaign, compiled=compiled, signer=services.signer, now=services.clock.now
    )

    def held() -> str | None:
        """Paused or cancelled from elsewhere (admin page, ``outreach pause``)?"""
        return held_reason(services.engine, campaign.id)

    try:
        summary = await send_round(
            campaign_id=campaign.id,
            build=build,
            ledger=ledger,
            mailer=mailer,
            clock=services.clock,
            policy=services.policy,
            worker=services.worker_name,
            on_result=on_result,
            stop=stop,
            stop_check=held,
        )
    except Exception as err:
        set_campaign_state(
            services.engine,
            campaign.id,
            CampaignState.PAUSED,
            now=services.clock.now(),
            reason=str(err),
        )
        raise
    finally:
        await mailer.close()
    counts = ledger.counts(campaign_id=campaign.id, round=0, now=services.clock.now())
    if held() is not None:
        return SendOutcome(enqueued=enqueued, recovered=recovered, summary=summary)
    if received and (counts.queued or counts.get("sending")):
        summary.stopped_reason = f"interrupted by {received[0].name}"
        why = f"{summary.stopped_reason}; `outreach send` with the same file continues it"
        now = services.clock.now()
        set_campaign_state(services.engine, campaign.id, CampaignState.PAUSED, now=now, reason=why)
        return SendOutcome(
            enqueued=enqueued, recovered=recovered, summary=summary, interrupted=received[0]
        )
    if received:  # the signal came after the last message: nothing was interrupted
        summary.stopped_reason = None
    if summary.stopped_reason:
        state, reason = CampaignState.PAUSED, summary.stopped_reason
    elif counts.queued or counts.get("sending"):
        state, reason = CampaignState.SENDING, None
    else:
        state, reason = CampaignState.SENT, None
    set_campaign_state(services.engine, campaign.id, state, now=services.clock.now(), reason=reason)
    return SendOutcome(enqueued=enqueued, recovered=recovered, summary=summary)


def preview_recipient(
    services: Services, campaign: Campaign, *, email: str | None, language: str | None
) -> Recipient:
    """The stored contact with ``email``, or a sample member reading ``language``."""
    if email is not None:
        wanted = normalise_email(email)
        for stored in iter_contacts(services.engine):
            if stored.contact.email == wanted:
                contact = stored.contact
                org = contact.organisation
                return Recipient(
                    delivery_id=0,
                    email=contact.email,
                    name=contact.name,
                    language=campaign.language_for(language or contact.language),
                    organisation=org.name,
                    country=org.country,
                    region=org.region,
                    timezone=org.timezone,
                )
        raise AudienceError(f"no contact with the address {email!r}; import contacts first")
    return Recipient(
        delivery_id=0,
        email="preview@example.org",
        name="Ana Exemplo",
        language=campaign.language_for(language or campaign.default_language),
        organisation="São Paulo",
        country="BR",
        region="Latin America",
        timezone="America/Sao_Paulo",
    )


def preview_message(
    services: Services, campaign: Campaign, recipient: Recipient
) -> OutgoingMessage:
    build = message_factory(
        campaign=campaign,
        compiled=services.compile(campaign),
        signer=services.signer,
        now=services.clock.now,
    )
    return build(recipient)


def report(services: Services, campaign_id: str) -> CampaignReport | None:
    """Deliveries by status, region and language, with who responded and who has not."""
    found = campaign_report(services.engine, campaign_id)
    if found is None:
        return None
    return replace(found, extra=response_summary(services.engine, campaign_id))


def export_rows(
    services: Services, campaign_id: str, *, deliveries: bool
) -> tuple[tuple[str, ...], Iterator[dict[str, object]]]:
    """Columns and rows of the responses export (or of the deliveries export)."""
    if deliveries:
        return DELIVERY_COLUMNS, iter_delivery_export(services.engine, campaign_id)
    return RESPONSE_COLUMNS, iter_response_rows(services.engine, campaign_id)


__all__ = [
    "Campaign",
    "CampaignReport",
    "SendOutcome",
    "export_rows",
    "import_contacts",
    "iter_contacts",
    "plan_campaign",
    "preview_message",
    "preview_recipient",
    "queue_campaign",
    "report",
    "send_campaign",
]
