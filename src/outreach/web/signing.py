"""The sign page: a member city's statement, signed on behalf of the organisation; and the public
list of the cities that have signed.

Nothing a person does happens on GET: mail security scanners open every link. A GET on a sign
link only shows the statement and the form; the POST from that page signs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from outreach.domain.campaign import CallToAction, Campaign, CtaKind, localise
from outreach.errors import TokenError
from outreach.pipeline.tokens import LinkClaims, LinkPurpose
from outreach.pipeline.tracking import best_page_language, format_day, page_language, page_texts
from outreach.store.signatures import (
    StoredResponse,
    organisation_response,
    record_response,
    signatories,
)
from outreach.store.tracking import DeliveryContext
from outreach.web.deps import get_form_guard, get_services, same_site_post, templates
from outreach.web.public import (
    NO_STORE,
    campaign_cache,
    clock_now,
    invalid_link_page,
    link_delivery,
)

router = APIRouter()

MAX_FIELD = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class SignTarget:
    """What a sign link asks: which statement, on behalf of whom, in which language."""

    token: str
    claims: LinkClaims
    context: DeliveryContext
    campaign: Campaign
    cta: CallToAction
    language: str

    def text(self, texts: dict[str, str]) -> str:
        return localise(texts, self.language, self.campaign.default_language)


def _sign_target(request: Request, token: str, now: datetime) -> SignTarget:
    claims = get_services(request).signer.verify(token, LinkPurpose.SIGN, now=now)
    campaign = campaign_cache(request).get(claims.campaign_id)
    cta = campaign.cta(claims.cta_id) if campaign is not None and claims.cta_id else None
    if campaign is None or cta is None or cta.kind is not CtaKind.SIGN:
        raise TokenError("this link names no statement to sign")
    context = link_delivery(request, claims)
    language = campaign.language_for(context.language)
    return SignTarget(token, claims, context, campaign, cta, language)


def _paragraphs(text: str) -> list[str]:
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


def _sign_page(
    request: Request,
    target: SignTarget,
    *,
    now: datetime,
    existing: StoredResponse | None = None,
    thanked: StoredResponse | None = None,
    error: str | None = None,
    name: str | None = None,
    title: str = "",
    status_code: int = 200,
) -> Response:
    t = page_texts(target.language)
    statement = target.cta.statement
    organisation = target.context.organisation
    context: dict[str, Any] = {
        "lang": page_language(target.language),
        "t": t,
        "brand": target.campaign.sender.name,
        "organisation": organisation,
        "heading": t["sign_heading"].format(organisation=organisation),
        "intro": t["sign_intro"].format(organisation=organisation),
        "statement_title": target.text(statement.title)
        if statement
        else target.text(target.cta.label),
        "statement_paragraphs": _paragraphs(target.text(statement.text)) if statement else [],
        "action": f"/s/{target.token}",
        "nonce": get_form_guard(request).nonce(action="sign", token=target.token, now=now),
        "name": target.context.contact_name if name is None else name,
        "title": title,
        "error": error,
        "signatories_url": f"/campaigns/{target.campaign.id}/signatories"
        f"?lang={page_language(target.language)}",
        "signed_line": None,
        "thanks_line": None,
    }
    if thanked is not None:
        context["thanks_line"] = t["thanks_body"].format(
            organisation=thanked.organisation, name=thanked.signer_name
        )
    elif existing is not None:
        context["signed_line"] = t["already_signed"].format(
            organisation=existing.organisation,
            date=format_day(existing.created_at.date(), target.language),
            name=existing.signer_name,
        )
    return templates.TemplateResponse(
        request, "public/sign.html", context, status_code=status_code, headers=NO_STORE
    )


@router.get("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
def sign_form(token: str, request: Request) -> Response:
    """The statement and the form; or, once the organisation has signed, who signed and when.

    Records nothing.
    """
    now = clock_now(request)
    target = _sign_target(request, token, now)
    existing = organisation_response(
        get_services(request).engine,
        campaign_id=target.campaign.id,
        organisation_id=target.context.organisation_id,
        cta_id=target.cta.id,
    )
    return _sign_page(request, target, now=now, existing=existing)


def _clean(value: str) -> str:
    return " ".join(_CONTROL.sub(" ", value).split())


@router.post("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
def sign(
    token: str,
    request: Request,
    name: Annotated[str, Form()] = "",
    title: Annotated[str, Form()] = "",
    nonce: Annotated[str, Form()] = "",
) -> Response:
    """Record the organisation's signature, committed before the thank-you page is shown."""
    services = get_services(request)
    now = services.clock.now()
    target = _sign_target(request, token, now)
    t = page_texts(target.language)
    name, title = _clean(name), _clean(title)
    guard = get_form_guard(request)
    if not same_site_post(request, base_url=services.settings.base_url) or not guard.check(
        nonce, action="sign", token=token, now=now
    ):
        return _sign_page(
            request,
            target,
            now=now,
            error=t["form_expired"],
            name=name,
            title=title,
            status_code=403,
        )
    problem = None
    if not name or not title:
        problem = t["required"]
    elif len(name) > MAX_FIELD or len(title) > MAX_FIELD:
        problem = t["too_long"]
    if problem:
        return _sign_page(
            request, target, now=now, error=problem, name=name, title=title, status_code=422
        )
    recorded = record_response(
        services.engine,
        context=target.context,
        cta_id=target.cta.id,
        signer_name=name,
        signer_title=title,
        now=now,
    )
    if recorded.created:
        return _sign_page(request, target, now=now, thanked=recorded.response)
    return _sign_page(request, target, now=now, existing=recorded.response)


# --- the public list of signatories -------------------------------------------------------


@router.get(
    "/campaigns/{campaign_id}/signatories", response_class=HTMLResponse, include_in_schema=False
)
def signatories_page(campaign_id: str, request: Request, lang: str | None = None) -> Response:
    """The cities that have signed, by region, with their number."""
    campaign = campaign_cache(request).get(campaign_id) if len(campaign_id) <= 64 else None
    if campaign is None:
        return invalid_link_page(request)
    language = (
        page_language(lang) if lang else best_page_language(request.headers.get("accept-language"))
    )
    t = page_texts(language)
    signed = signatories(get_services(request).engine, campaign_id=campaign.id)
    if signed.count == 0:
        count_line = t["signatories_none"]
    elif signed.count == 1:
        count_line = t["signatories_count_one"]
    else:
        count_line = t["signatories_count_many"].format(count=signed.count)
    statement = next(
        (c.statement for c in campaign.calls_to_action if c.statement is not None), None
    )
    heading = (
        localise(statement.title, language, campaign.default_language)
        if statement
        else campaign.name
    )
    return templates.TemplateResponse(
        request,
        "public/signatories.html",
        {
            "lang": language,
            "t": t,
            "brand": campaign.sender.name,
            "heading": heading,
            "count_line": count_line,
            "by_region": signed.by_region,
        },
        headers={"Cache-Control": "public, max-age=60"},
    )
