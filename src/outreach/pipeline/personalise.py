"""Turning a claimed delivery into a message: variant + recipient + signed links -> MIME.

Everything expensive (templates, inlined CSS, MIME skeleton) is prepared once per campaign and
language by ``message_factory``; the function it returns does only per-recipient work.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from outreach.domain.campaign import Campaign
from outreach.domain.delivery import Recipient
from outreach.pipeline.messages import MessageSkeleton, ascii_address
from outreach.pipeline.render import CompiledCampaign, links_for, personalise
from outreach.pipeline.tokens import LinkSigner
from outreach.ports import OutgoingMessage


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

    def build(recipient: Recipient) -> OutgoingMessage:
        variant = compiled.variant_for(recipient.language)
        language = variant.language
        links = links_for(signer, campaign, recipient)
        personalised = personalise(variant, recipient, links)
        data = skeletons[language].build(
            recipient=recipient, personalised=personalised, links=links, now=now()
        )
        return OutgoingMessage(
            delivery_id=recipient.delivery_id,
            campaign_id=campaign.id,
            envelope_from=str(campaign.sender.address),
            recipient=ascii_address(recipient.email, field="To"),
            data=data,
            subject=variant.subject,
            html=personalised.html,
            text=personalised.text,
        )

    return build
