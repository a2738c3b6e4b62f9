"""Short reports to the admins (``OUTREACH_ADMIN_EMAILS``), sent through the configured mailer.

The scheduler tells the admins when a send or a reminder round has completed (sent, failed,
bounced, responses so far, the link to the admin report), when a scheduled send was missed,
and when sending stopped on its own. A report that cannot be delivered is logged; it never
fails the send it reports on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from outreach.bootstrap import Services
from outreach.domain.campaign import Campaign
from outreach.errors import ConfigurationError, OutreachError
from outreach.ports import OutgoingMessage

log = logging.getLogger("outreach.notify")


@dataclass(frozen=True, slots=True)
class RoundFigures:
    """What a completed round did, as the summary shows it."""

    label: str  # "first send", "reminder 1"
    counts: Mapping[str, int]  # deliveries of the round by status
    responded: int  # organisations that signed so far
    organisations: int  # organisations the first send went to
    missed: Sequence[str] = ()  # timezone groups that were missed


def report_link(services: Services, campaign_id: str) -> str:
    return f"{services.settings.base_url.rstrip('/')}/admin/campaigns/{campaign_id}"


def summary_text(campaign: Campaign, figures: RoundFigures, *, link: str) -> tuple[str, str]:
    """Subject and body of the summary of a completed round."""
    counts = figures.counts
    sent, failed = counts.get("sent", 0), counts.get("failed", 0) + counts.get("unknown", 0)
    subject = f"[outreach] {campaign.name}: {figures.label} complete, {sent} sent, {failed} failed"
    lines = [
        f'The {figures.label} of "{campaign.name}" ({campaign.id}) is complete.',
        "",
        f"  sent        {sent}",
        f"  failed      {failed}",
        f"  bounced     {counts.get('bounced', 0)}",
        f"  suppressed  {counts.get('suppressed', 0)}",
        f"  responses   {figures.responded} of {figures.organisations} organisations so far",
    ]
    if figures.missed:
        lines += [
            "",
            f"Missed (the scheduler was down too long): {', '.join(figures.missed)}.",
        ]
    lines += ["", f"Report: {link}", ""]
    return subject, "\n".join(lines)


def _message(
    services: Services, campaign: Campaign, *, to: str, subject: str, text: str
) -> OutgoingMessage | None:
    if "\r" in to or "\n" in to:
        log.warning("admin address %r contains a line break; skipped", to)
        return None
    try:
        recipient = Address(addr_spec=to.strip())
    except (ValueError, IndexError) as err:
        log.warning("admin address %r is not an email address (%s); skipped", to, err)
        return None
    sender = str(campaign.sender.address)
    message = EmailMessage(policy=SMTP)
    message["From"] = Address(display_name=f"{campaign.sender.name} (outreach)", addr_spec=sender)
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(services.clock.now())
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Outreach-Campaign"] = campaign.id
    message.set_content(text)
    return OutgoingMessage(
        delivery_id=0,
        campaign_id=campaign.id,
        envelope_from=sender,
        recipient=recipient.addr_spec,
        data=message.as_bytes(),
        subject=subject,
        text=text,
    )


async def _deliver(services: Services, messages: list[OutgoingMessage]) -> int:
    mailer = services.mailer()
    delivered = 0
    try:
        for message in messages:
            try:
                await mailer.send(message)
                delivered += 1
            except OutreachError as err:
                log.warning("the report to %s was not delivered: %s", message.recipient, err)
    finally:
        await mailer.close()
    return delivered


def tell_admins(services: Services, campaign: Campaign, *, subject: str, text: str) -> int:
    """Send one short plain-text message to every admin address; returns how many went."""
    addresses = services.settings.admin_emails
    if not addresses:
        log.info("no OUTREACH_ADMIN_EMAILS; not sent: %s", subject)
        return 0
    messages = [
        message
        for address in addresses
        if (message := _message(services, campaign, to=address, subject=subject, text=text))
    ]
    if not messages:
        return 0
    try:
        return asyncio.run(_deliver(services, messages))
    except (ConfigurationError, OutreachError) as err:
        log.error("the admins could not be told %r: %s", subject, err)
        return 0
