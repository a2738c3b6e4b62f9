"""Unsubscribing: from one campaign's reminders, or from every mailing.

Nothing a person does happens on GET: mail security scanners open every link. A GET on an
unsubscribe link only shows a page that says what the button does; the POST from that page (or
the RFC 8058 one-click POST of the mail client) unsubscribes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from outreach.pipeline.tokens import LinkPurpose
from outreach.pipeline.tracking import page_language, page_texts
from outreach.store.tracking import DeliveryContext
from outreach.store.unsubscribes import UnsubscribeScope, unsubscribe
from outreach.web.deps import get_form_guard, get_services, same_site_post, templates
from outreach.web.public import NO_STORE, campaign_cache, clock_now, link_delivery

router = APIRouter()


def _unsubscribe_context(request: Request, token: str, now: datetime) -> DeliveryContext:
    claims = get_services(request).signer.verify(token, LinkPurpose.UNSUBSCRIBE, now=now)
    return link_delivery(request, claims)


def _unsubscribe_page(
    request: Request,
    token: str,
    context: DeliveryContext,
    *,
    now: datetime,
    done: UnsubscribeScope | None = None,
    error_key: str | None = None,
    status_code: int = 200,
) -> Response:
    campaign = campaign_cache(request).get(context.campaign_id)
    language = campaign.language_for(context.language) if campaign else context.language
    t = page_texts(language)
    name = campaign.name if campaign else context.campaign_id
    done_line = None
    if done is UnsubscribeScope.ALL:
        done_line = t["unsubscribed_all"].format(email=context.email)
    elif done is UnsubscribeScope.CAMPAIGN:
        done_line = t["unsubscribed_campaign"].format(email=context.email, campaign=name)
    page = {
        "lang": page_language(language),
        "t": t,
        "brand": campaign.sender.name if campaign else None,
        "intro": t["unsubscribe_intro"].format(email=context.email),
        "scope_campaign": t["scope_campaign"].format(campaign=name),
        "action": f"/u/{token}",
        "nonce": get_form_guard(request).nonce(action="unsubscribe", token=token, now=now),
        "done_line": done_line,
        "error": t[error_key] if error_key else None,
    }
    return templates.TemplateResponse(
        request, "public/unsubscribe.html", page, status_code=status_code, headers=NO_STORE
    )


@router.get("/u/{token}", response_class=HTMLResponse, include_in_schema=False)
def unsubscribe_form(token: str, request: Request) -> Response:
    """A page that says what the button does and lets the person choose; records nothing."""
    now = clock_now(request)
    context = _unsubscribe_context(request, token, now)
    return _unsubscribe_page(request, token, context, now=now)


@router.post("/u/{token}", include_in_schema=False)
def unsubscribe_post(
    token: str,
    request: Request,
    one_click: Annotated[str, Form(alias="List-Unsubscribe")] = "",
    scope: Annotated[str, Form()] = "",
    nonce: Annotated[str, Form()] = "",
) -> Response:
    """RFC 8058 one-click (no cookie, no nonce: the mail client posts it) or the page's form."""
    services = get_services(request)
    now = services.clock.now()
    context = _unsubscribe_context(request, token, now)
    if one_click == "One-Click":
        unsubscribe(
            services.engine,
            context=context,
            scope=UnsubscribeScope.ALL,
            now=now,
            source="one-click",
        )
        return PlainTextResponse(
            f"{context.email} is unsubscribed from all mailings.\n", headers=NO_STORE
        )
    guard = get_form_guard(request)
    if not same_site_post(request, base_url=services.settings.base_url) or not guard.check(
        nonce, action="unsubscribe", token=token, now=now
    ):
        return _unsubscribe_page(
            request, token, context, now=now, error_key="form_expired", status_code=403
        )
    chosen = UnsubscribeScope.CAMPAIGN if scope == "campaign" else UnsubscribeScope.ALL
    unsubscribe(services.engine, context=context, scope=chosen, now=now, source="page")
    return _unsubscribe_page(request, token, context, now=now, done=chosen)
