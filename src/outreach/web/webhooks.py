"""Provider webhooks: ``POST /webhooks/{provider}`` for mailgun, postmark, sendgrid and brevo.

Each request is checked the way its provider signs it (Mailgun HMAC signing key, SendGrid
signed event webhook, Postmark basic auth, Brevo bearer token; the secrets come from the
``OUTREACH_*_WEBHOOK_*`` settings). A request that does not pass, or reaches a provider whose
secret is not set, gets 403 and changes nothing. A verified body is parsed into normalised
events and recorded by ``store.events`` (once each, with suppressions and delivery statuses);
the answer says how many were recorded, already known, or matched no delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from outreach.errors import WebhookVerificationError
from outreach.mailers.brevo import BrevoWebhook
from outreach.mailers.events import Webhook, WebhookPayloadError
from outreach.mailers.mailgun import MailgunWebhook
from outreach.mailers.postmark import PostmarkWebhook
from outreach.mailers.sendgrid import SendGridWebhook
from outreach.store.events import record_provider_events
from outreach.web.deps import get_services

if TYPE_CHECKING:
    from outreach.settings import Settings

log = logging.getLogger("outreach.webhooks")
router = APIRouter()
MAX_BODY = 10 * 1024 * 1024

WEBHOOKS: dict[str, Callable[[Settings], Webhook]] = {
    "mailgun": lambda s: MailgunWebhook(signing_key=s.mailgun_webhook_signing_key),  # wall clock
    "sendgrid": lambda s: SendGridWebhook(public_key=s.sendgrid_webhook_public_key),
    "postmark": lambda s: PostmarkWebhook(
        user=s.postmark_webhook_user, password=s.postmark_webhook_password
    ),
    "brevo": lambda s: BrevoWebhook(token=s.brevo_webhook_token),
}


def _webhook(request: Request, provider: str) -> Webhook | None:
    made = WEBHOOKS.get(provider)
    if made is None:
        return None
    cache: dict[str, Webhook] = request.app.state.__dict__.setdefault("webhooks", {})
    if provider not in cache:
        cache[provider] = made(get_services(request).settings)
    return cache[provider]


def _answer(status: int, **content: object) -> JSONResponse:
    return JSONResponse(content, status_code=status, headers={"Cache-Control": "no-store"})


@router.post("/webhooks/{provider}", include_in_schema=False)
async def receive(provider: str, request: Request) -> JSONResponse:
    hook = _webhook(request, provider)
    if hook is None:
        return _answer(404, error=f"no webhook for {provider[:40]!r}", known=sorted(WEBHOOKS))
    body = await request.body()
    if len(body) > MAX_BODY:
        return _answer(413, error="the body is larger than 10 MB")
    try:
        hook.verify(headers=request.headers, body=body)
    except WebhookVerificationError as err:
        log.warning("refused a %s webhook from %s: %s", provider, _client(request), err)
        return _answer(403, error=str(err))
    try:
        events = hook.parse(body)
    except WebhookPayloadError as err:
        log.warning("unreadable %s webhook: %s", provider, err)
        return _answer(400, error=str(err))
    services = get_services(request)
    result = await run_in_threadpool(
        record_provider_events, services.engine, events, now=services.clock.now()
    )
    return _answer(
        200,
        recorded=result.recorded,
        duplicates=result.duplicates,
        unmatched=len(result.unmatched),
        suppressed=len(result.suppressed),
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"
