"""What the pages members reach from an email share: the campaign cache, the "not valid" page,
and how a link finds its delivery. The pages themselves are in ``web.links`` (tracked links and
the open pixel), ``web.signing`` (the sign page and the public list of signatories) and
``web.unsubscribing``.

Every link carries a signed token (``outreach.pipeline.tokens``). A token that is forged,
altered, expired or meant for another purpose raises ``TokenError``, which the app answers with
a plain "this link is not valid" page and status 404, having changed nothing.
"""

from __future__ import annotations

import time
from datetime import datetime
from threading import Lock

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import Engine

from outreach.domain.campaign import Campaign
from outreach.errors import TokenError
from outreach.pipeline.tokens import LinkClaims
from outreach.pipeline.tracking import best_page_language, page_texts
from outreach.store.campaigns import load_stored_campaign
from outreach.store.tracking import DeliveryContext, delivery_context
from outreach.web.deps import get_services, templates

NO_STORE = {"Cache-Control": "no-store"}


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


def campaign_cache(request: Request) -> CampaignCache:
    cache: CampaignCache = request.app.state.campaign_cache
    return cache


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


def clock_now(request: Request) -> datetime:
    return get_services(request).clock.now()


def link_delivery(request: Request, claims: LinkClaims) -> DeliveryContext:
    context = delivery_context(get_services(request).engine, claims.delivery_id)
    if context is None or context.campaign_id != claims.campaign_id:
        raise TokenError("this link belongs to a delivery this installation does not know")
    return context
