"""Admin sessions: who is logged in, and the CSRF token every admin form must carry.

A session is one cookie, ``outreach_admin``: a small JSON payload (username, CSRF token,
expiry) and an HMAC-SHA256 tag over it, keyed by a key derived from the installation's secret
(``OUTREACH_SECRET_KEY`` or the one generated on first run). The cookie is HttpOnly, SameSite=Lax,
limited to ``/admin``, and Secure when the app is served over HTTPS. A visitor who is not logged
in gets an anonymous session too, so the login form itself is protected against CSRF; logging
in replaces it with a fresh one (new token), so a planted cookie is worth nothing.

``csrf_guard`` runs before every route of the admin router: any POST whose form lacks the
session's token is refused with 403 before the route sees it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.responses import Response

from outreach.bootstrap import Services
from outreach.store.admin_users import verify_user
from outreach.store.meta import get_or_create_secret
from outreach.web.deps import get_services, same_site_post

COOKIE = "outreach_admin"
COOKIE_PATH = "/admin"
CSRF_FIELD = "csrf_token"
LIFETIME = timedelta(hours=12)
_PURPOSE = b"outreach admin session v1"
_MAX_COOKIE = 1024


@dataclass(frozen=True, slots=True)
class AdminSession:
    """A session: ``username`` is None until the visitor logs in."""

    username: str | None
    csrf: str
    expires: int

    @property
    def logged_in(self) -> bool:
        return self.username is not None


def session_key(services: Services) -> bytes:
    secret = services.settings.secret_key or get_or_create_secret(services.engine)
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_session(session: AdminSession, *, key: bytes) -> str:
    payload = json.dumps(
        {"u": session.username, "c": session.csrf, "e": session.expires}, separators=(",", ":")
    ).encode()
    tag = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(tag)}"


def decode_session(value: str, *, key: bytes, now: float) -> AdminSession | None:
    """The session in a cookie value, or None when it is malformed, forged or expired."""
    if len(value) > _MAX_COOKIE or value.count(".") != 1:
        return None
    body, tag = value.split(".")
    try:
        payload, given = _unb64(body), _unb64(tag)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).digest(), given):
        return None
    try:
        data = json.loads(payload)
        session = AdminSession(username=data["u"], csrf=data["c"], expires=int(data["e"]))
    except (ValueError, KeyError, TypeError):
        return None
    if session.expires <= now or not isinstance(session.csrf, str):
        return None
    if session.username is not None and not isinstance(session.username, str):
        return None
    return session


def new_session(services: Services, username: str | None) -> AdminSession:
    expires = int((services.clock.now() + LIFETIME).timestamp())
    return AdminSession(username=username, csrf=secrets.token_urlsafe(32), expires=expires)


def read_session(request: Request, services: Services) -> AdminSession | None:
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    return decode_session(value, key=session_key(services), now=services.clock.now().timestamp())


def current_admin(request: Request, services: Services) -> AdminSession | None:
    """The session of a logged-in admin, or None."""
    session = read_session(request, services)
    return session if session is not None and session.logged_in else None


def store_session(response: Response, session: AdminSession, services: Services) -> None:
    response.set_cookie(
        COOKIE,
        encode_session(session, key=session_key(services)),
        max_age=int(LIFETIME.total_seconds()),
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=services.settings.base_url.lower().startswith("https://"),
    )


def clear_session(response: Response, services: Services) -> None:
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=services.settings.base_url.lower().startswith("https://"),
    )


def check_password(services: Services, username: str, password: str) -> bool:
    return verify_user(services.engine, username, password)


async def csrf_guard(
    request: Request, services: Annotated[Services, Depends(get_services)]
) -> None:
    """Refuse (403) every POST that does not carry the session's CSRF token in its form, or
    that a browser says was sent from a page of another site."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if not same_site_post(request, base_url=services.settings.base_url):
        raise HTTPException(status_code=403, detail="this form was sent from another site")
    session = read_session(request, services)
    try:
        form = await request.form()
    except Exception as err:  # an unreadable body carries no token either
        raise HTTPException(status_code=403, detail="missing or invalid CSRF token") from err
    token = form.get(CSRF_FIELD)
    if (
        session is None
        or not isinstance(token, str)
        or not hmac.compare_digest(token.encode(), session.csrf.encode())
    ):
        raise HTTPException(
            status_code=403,
            detail="missing or invalid CSRF token: reload the page and submit the form again",
        )
