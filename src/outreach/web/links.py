"""Tracked links and the open pixel: the click that is recorded, then redirected to the URL the
campaign stores for that call to action, and the pixel that records an open.

A tracked click is the busiest request of all: its event is committed, together with the other
clicks of that moment (``ClickBatcher``), before the redirect goes out.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from outreach.domain.campaign import CtaKind
from outreach.errors import StoreError, TokenError
from outreach.pipeline.tokens import LinkPurpose
from outreach.pipeline.tracking import burst_clicks, may_be_in_burst, suspected_scanner
from outreach.store.clicks import (
    ClickRecord,
    delivery_clicks,
    flag_suspected,
    record_clicks,
    record_open,
)
from outreach.web.deps import get_services
from outreach.web.public import NO_STORE, campaign_cache

router = APIRouter()

_PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


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
    cache = campaign_cache(request)
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
    campaign = campaign_cache(request).get(claims.campaign_id)
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
