"""Turning a claimed delivery into a message: variant + recipient + signed links -> MIME.

Everything expensive (templates, inlined CSS, MIME skeleton) is prepared once per campaign and
language by ``message_factory``; the function it returns does only per-recipient work.

Besides the MIME bytes, a message carries what HTTP providers take as fields: the bodies, the
names, the correlation and List-Unsubscribe headers, and the variant's slotted bodies with this
recipient's slot values (``SharedBody``), so a batch API can send the shared part once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from outreach.domain.campaign import Campaign
from outreach.domain.delivery import Recipient
from outreach.pipeline.messages import MessageSkeleton, ascii_address
from outreach.pipeline.render import CompiledCampaign, links_for, personalise
from outreach.pipeline.tokens import LinkSigner
from outreach.ports import OutgoingMessage, SharedBody


def message_factory(
    *,
    campaign: Campaign,
    compiled: CompiledCampaign,
    signer: LinkSigner,
    now: Callable[[], datetime],
) -> Callable[[Recipient], OutgoingMessage]:
    skeletons = {
        language: MessageSkeleton.for_variant(variant=variant, campaign=campaign)
        for language, variant in compiled.variants.items()
    }
    nonce = secrets.token_hex(6)  # a reminder compiled later has other segments: another key
    shared = {
        language: SharedBody(
            key=f"{campaign.id}:{language}:{nonce}",
            html_segments=variant.html.segments,
            html_slots=variant.html.slots,
            text_segments=variant.text.segments,
            text_slots=variant.text.slots,
        )
        for language, variant in compiled.variants.items()
    }
    sender = campaign.sender
    reply_to = str(campaign.reply_to) if campaign.reply_to else ""

    def build(recipient: Recipient) -> OutgoingMessage:
        variant = compiled.variant_for(recipient.language)
        language = variant.language
        links = links_for(signer, campaign, recipient)
        personalised = personalise(variant, recipient, links)
        data = skeletons[language].build(
            recipient=recipient, personalised=personalised, links=links, now=now()
        )
        values = personalised.values
        return OutgoingMessage(
            delivery_id=recipient.delivery_id,
            campaign_id=campaign.id,
            envelope_from=str(sender.address),
            recipient=ascii_address(recipient.email, field="To"),
            data=data,
            subject=variant.subject,
            html=personalised.html,
            text=personalised.text,
            headers={
                "List-Unsubscribe": f"<{links.unsubscribe}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "X-Outreach-Campaign": campaign.id,
                "X-Outreach-Delivery": str(recipient.delivery_id),
            },
            from_name=sender.name,
            reply_to=reply_to,
            recipient_name=" ".join(recipient.name.split()),
            shared=shared[language] if values is not None else None,
            html_values=values.escaped if values is not None else {},
            text_values=values.raw if values is not None else {},
        )

    return build
