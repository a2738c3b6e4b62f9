"""The one FastAPI application: public member pages, admin pages, the demo mailbox viewer.

``create_app`` wires the routers to already-built ``Services``; nothing here opens a connection
at import time. Every response carries a Content-Security-Policy and the other security headers
(a route may set its own policy, e.g. to show a captured email, and keeps it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outreach.errors import TokenError
from outreach.store.meta import get_or_create_secret
from outreach.web import admin, links, mailbox, metrics, public, signing, unsubscribing, webhooks
from outreach.web.deps import STATIC_DIR, FormGuard

if TYPE_CHECKING:
    from outreach.bootstrap import Services

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(services: Services) -> FastAPI:
    """The web app over ``services`` (its engine, link signer, clock and settings)."""
    app = FastAPI(
        title="outreach",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # outreach exports no OpenTelemetry data; left on, FastAPI asks on every request
        # whether a tracer is configured (a few percent of a tracked click)
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    secret = services.settings.secret_key or get_or_create_secret(services.engine)
    app.state.form_guard = FormGuard(secret=secret.encode())
    app.state.campaign_cache = public.CampaignCache(services.engine)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(TokenError, public.invalid_link_page)
    app.router.routes.insert(0, links.CLICK_ROUTE)  # the busiest route, matched first
    for module in (links, signing, unsubscribing, admin, mailbox, webhooks):
        app.include_router(module.router)
    if services.settings.metrics:
        app.include_router(metrics.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
