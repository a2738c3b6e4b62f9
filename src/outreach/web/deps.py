"""What every router of the web app shares: the wired services, the page templates, and the
cookie-less guard of the public forms.

Public forms (sign, unsubscribe) are reached from an email link, with no session to hang a
CSRF cookie on. The link's signed token already makes the form unguessable; on top of it each
form carries a nonce, an HMAC over the form's purpose, the token and the time it was served,
and a browser POST whose ``Origin`` (or ``Referer``) names another site is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

if TYPE_CHECKING:
    from outreach.bootstrap import Services

WEB = Path(__file__).parent
TEMPLATES_DIR = WEB / "templates"
STATIC_DIR = WEB / "static"

templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True, auto_reload=False)
)


def get_services(request: Request) -> Services:
    """The services the app was created with (``app.state.services``)."""
    return cast("Services", request.app.state.services)


def get_form_guard(request: Request) -> FormGuard:
    return cast(FormGuard, request.app.state.form_guard)


class FormGuard:
    """Issues and checks the nonces of the public forms (no cookie, no server-side state)."""

    __slots__ = ("_key", "_lifetime")

    def __init__(self, *, secret: bytes, lifetime: timedelta = timedelta(days=2)) -> None:
        self._key = hmac.new(secret, b"outreach public form nonce v1", hashlib.sha256).digest()
        self._lifetime = lifetime

    def _mac(self, *, action: str, token: str, stamp: int) -> str:
        message = f"{action}\n{token}\n{stamp}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def nonce(self, *, action: str, token: str, now: datetime) -> str:
        stamp = int(now.timestamp())
        return f"{stamp}.{self._mac(action=action, token=token, stamp=stamp)}"

    def check(self, nonce: str, *, action: str, token: str, now: datetime) -> bool:
        """Whether ``nonce`` was issued by this app for this form and is still fresh."""
        stamp_text, _, mac = nonce.partition(".")
        if not stamp_text.isdigit() or len(stamp_text) > 12:
            return False
        stamp = int(stamp_text)
        age = now.timestamp() - stamp
        if age < -300 or age > self._lifetime.total_seconds():
            return False
        expected = self._mac(action=action, token=token, stamp=stamp)
        return hmac.compare_digest(expected.encode(), mac.encode("ascii", "replace"))


def same_site_post(request: Request, *, base_url: str) -> bool:
    """False when the browser says the POST came from a page of another site.

    Browsers send ``Origin`` on every POST (``Referer`` when a privacy setting strips it); an
    answer naming this app's public address or the host the request was sent to is ours. A
    request with neither header (a mail client, a script) is judged by its nonce alone.
    """
    ours = {urlsplit(base_url).netloc.lower(), request.headers.get("host", "").lower()}
    ours.discard("")
    origin = request.headers.get("origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc.lower() in ours
    referer = request.headers.get("referer")
    if referer is not None:
        return urlsplit(referer).netloc.lower() in ours
    return True
