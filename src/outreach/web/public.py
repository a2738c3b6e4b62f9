"""The pages members reach from an email: tracked links, sign, unsubscribe, open pixel, and the
public list of signatories.

Every link carries a signed token (``outreach.pipeline.tokens``). A token that is forged,
altered, expired or meant for another purpose raises ``TokenError``, which the app answers with
a plain "this link is not valid" page and status 404, having changed nothing.

Nothing a person does happens on GET: mail security scanners open every link. A GET on a sign
or unsubscribe link only shows a page; the POST from that page (or the RFC 8058 one-click POST
of the mail client) acts.

A tracked click is the busiest request of all: its event is committed, together with the other
clicks of that moment (``ClickBatcher``), before the redirect goes out.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from threading import Lock
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy import Engine
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from outreach.domain.campaign import CallToAction, Campaign, CtaKind, localise
from outreach.errors import StoreError, TokenError
from outreach.pipeline.tokens import LinkClaims, LinkPurpose
from outreach.pipeline.tracking import (
    best_page_language,
    burst_clicks,
    format_day,
    may_be_in_burst,
    page_language,
    page_texts,
    suspected_scanner,
)
from outreach.store.campaigns import load_stored_campaign
from outreach.store.clicks import (
    ClickRecord,
    delivery_clicks,
    flag_suspected,
    record_clicks,
    record_open,
)
from outreach.store.signatures import (
    StoredResponse,
    organisation_response,
    record_response,
    signatories,
)
from outreach.store.tracking import DeliveryContext, delivery_context
from outreach.store.unsubscribes import UnsubscribeScope, unsubscribe
from outreach.web.deps import get_form_guard, get_services, same_site_post, templates

router = APIRouter()

NO_STORE = {"Cache-Control": "no-store"}
MAX_FIELD = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


class CampaignCache:
    """Campaign definitions by id, kept a little while: a click costs no campaign query."""

    def __init__(self, engine: Engine, *, ttl: float = 30.0) -> None:
        self._engine = engine
        self._ttl = ttl
        self._entries: dict[str, tuple[float, Campaign | None]] = {}
        self._lock = Lock()

    def cached(self, campaign_id: str) -> tuple[bool, Campaign | None]:
        """``(True, campaign)`` when a fresh entry is at hand, ``(False, None)`` otherwise."""
        entry = self._entries.get(campaign_id)
        if entry is not None and time.monotonic() - entry[0] < self._ttl:
            return True, entry[1]
        return False, None

    def get(self, campaign_id: str) -> Campaign | None:
        now = time.monotonic()
        entry = self._entries.get(campaign_id)
        if entry is not None and now - entry[0] < self._ttl:
            return entry[1]
        campaign = load_stored_campaign(self._engine, campaign_id)
        with self._lock:
            if len(self._entries) > 1000:
                self._entries.clear()
            self._entries[campaign_id] = (now, campaign)
        return campaign


def _campaigns(request: Request) -> CampaignCache:
    cache: CampaignCache = request.app.state.campaign_cache
    return cache


class ClickBatcher:
    """Group commit of click events: many requests' clicks in one transaction.

    A click request hands its event over and waits until the transaction holding it has
    committed; only then is the redirect sent, so a redirect never goes out for a click that is
    not stored (nothing to flush on shutdown, nothing lost in a crash). While one batch is
    written in a worker thread, the clicks that arrive meanwhile gather for the next one: under
    load one commit serves dozens of clicks, and the event loop never waits for the database.
    It serves one event loop at a time, as a server process runs one.
    """

    def __init__(self, engine: Engine, *, max_batch: int = 2000) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._pending: list[tuple[ClickRecord, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, click: ClickRecord) -> bool:
        """Whether the click was committed (False: its delivery does not exist)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((click, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    stored = await run_in_threadpool(
                        record_clicks, self._engine, clicks=[click for click, _ in batch]
                    )
                except Exception as err:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(err)
                    continue
                except BaseException:  # cancelled: the loop is going away
                    for _, future in batch:
                        future.cancel()
                    raise
                for (_, future), ok in zip(batch, stored, strict=True):
                    if not future.done():
                        future.set_result(ok)
        finally:
            self._writer = None
            for _, future in self._pending:  # left only when cancelled
                future.cancel()
            self._pending.clear()


def _click_batcher(request: Request) -> ClickBatcher:
    """The app's click batcher, made on the first click."""
    state = request.app.state
    batcher: ClickBatcher | None = getattr(state, "click_batcher", None)
    if batcher is None:
        batcher = state.click_batcher = ClickBatcher(get_services(request).engine)
    return batcher


def invalid_link_page(request: Request, exc: Exception | None = None) -> Response:
    """The plain 404 page of every link that does not verify; it records nothing."""
    language = best_page_language(request.headers.get("accept-language"))
    return templates.TemplateResponse(
        request,
        "public/invalid.html",
        {"lang": language, "t": page_texts(language)},
        status_code=404,
        headers=NO_STORE,
    )


def _now(request: Request) -> datetime:
    return get_services(request).clock.now()


# --- tracked links ---------------------------------------------------------------------------


async def click(request: Request) -> Response:
    """Record the click, then redirect to the URL stored for this campaign and call to action.

    The busiest route of the app, kept lean: a plain Starlette route (``GET``/``HEAD
    /c/{token}``, registered below without FastAPI's parameter machinery) that runs on the event
    loop. The token is verified in memory, the campaign comes from the cache (a miss is read in
    a worker thread), and the event is committed with the other clicks of the moment by the
    ``ClickBatcher`` before the redirect goes out.
    """
    services = get_services(request)
    now = services.clock.now()
    claims = services.signer.verify(request.path_params["token"], LinkPurpose.CLICK, now=now)
    cache = _campaigns(request)
    fresh, campaign = cache.cached(claims.campaign_id)
    if not fresh:
        campaign = await run_in_threadpool(cache.get, claims.campaign_id)
    cta = campaign.cta(claims.cta_id) if campaign is not None and claims.cta_id else None
    if campaign is None or cta is None:
        raise TokenError("this link names a call to action the campaign does not have")
    user_agent = request.headers.get("user-agent")
    recorded = await _click_batcher(request).record(
        ClickRecord(
            campaign_id=claims.campaign_id,
            delivery_id=claims.delivery_id,
            cta_id=cta.id,
            user_agent=user_agent,
            suspected_bot=suspected_scanner(user_agent=user_agent, method=request.method),
            occurred_at=now,
        )
    )
    if not recorded:
        raise TokenError("this link belongs to a delivery this installation does not know")
    lifetime = timedelta(days=services.settings.link_lifetime_days)
    links = [c.id for c in campaign.calls_to_action if c.kind is CtaKind.LINK]
    check = None
    if len(links) > 1 and may_be_in_burst(issued_at=claims.expires_at - lifetime, now=now):
        check = BackgroundTask(
            _flag_burst, services.engine, delivery_id=claims.delivery_id, link_ids=links
        )
    return RedirectResponse(str(cta.url), status_code=302, headers=NO_STORE, background=check)


# not on ``router``: the app puts it first among its own routes (``web.app``), so a click is
# matched before any router is walked
CLICK_ROUTE = Route("/c/{token}", click, methods=["GET", "HEAD"], include_in_schema=False)


def _flag_burst(engine: Engine, *, delivery_id: int, link_ids: list[str]) -> None:
    """After an early click: were all links of this message opened within seconds of sending?"""
    sent_at, clicks = delivery_clicks(engine, delivery_id=delivery_id)
    flag_suspected(engine, event_ids=burst_clicks(clicks, sent_at=sent_at, link_ids=link_ids))


@router.api_route("/o/{token}", methods=["GET", "HEAD"], include_in_schema=False)
def open_pixel(token: str, request: Request) -> Response:
    """A transparent pixel; records an open when the campaign asked for open tracking.

    Opens are unreliable (image blocking, privacy proxies that load every image) and reports
    say so; they never count as a person's act.
    """
    services = get_services(request)
    now = services.clock.now()
    claims = services.signer.verify(token, LinkPurpose.OPEN, now=now)
    campaign = _campaigns(request).get(claims.campaign_id)
    if campaign is not None and campaign.open_tracking:
        user_agent = request.headers.get("user-agent")
        try:
            record_open(
                services.engine,
                campaign_id=claims.campaign_id,
                delivery_id=claims.delivery_id,
                user_agent=user_agent,
                suspected_bot=suspected_scanner(user_agent=user_agent, method=request.method),
                now=now,
            )
        except StoreError as err:
            raise TokenError("this link belongs to an unknown delivery") from err
    return Response(_PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store, private"})


# --- signing ---------------------------------------------------------------------------------


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


def _delivery(request: Request, claims: LinkClaims) -> DeliveryContext:
    context = delivery_context(get_services(request).engine, claims.delivery_id)
    if context is None or context.campaign_id != claims.campaign_id:
        raise TokenError("this link belongs to a delivery this installation does not know")
    return context


def _sign_target(request: Request, token: str, now: datetime) -> SignTarget:
    claims = get_services(request).signer.verify(token, LinkPurpose.SIGN, now=now)
    campaign = _campaigns(request).get(claims.campaign_id)
    cta = campaign.cta(claims.cta_id) if campaign is not None and claims.cta_id else None
    if campaign is None or cta is None or cta.kind is not CtaKind.SIGN:
        raise TokenError("this link names no statement to sign")
    context = _delivery(request, claims)
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
    now = _now(request)
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


# --- unsubscribing ---------------------------------------------------------------------------


def _unsubscribe_context(request: Request, token: str, now: datetime) -> DeliveryContext:
    claims = get_services(request).signer.verify(token, LinkPurpose.UNSUBSCRIBE, now=now)
    return _delivery(request, claims)


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
    campaign = _campaigns(request).get(context.campaign_id)
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
    now = _now(request)
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


# --- the public list of signatories -------------------------------------------------------


@router.get(
    "/campaigns/{campaign_id}/signatories", response_class=HTMLResponse, include_in_schema=False
)
def signatories_page(campaign_id: str, request: Request, lang: str | None = None) -> Response:
    """The cities that have signed, by region, with their number."""
    campaign = _campaigns(request).get(campaign_id) if len(campaign_id) <= 64 else None
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
