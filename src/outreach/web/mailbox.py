"""The mailbox viewer under ``/mailbox``: the messages the file mailer captured, shown the way
each recipient sees them (like Mailpit), so a newcomer to the demo can open São Paulo's email,
press Sign, and watch the admin report change.

It reads the ``.eml`` files of the outbox directory (``OUTREACH_MAILER=file://DIR``) and lists
them per recipient, with subject, city and language. One message is shown as its HTML part in a
sandboxed frame, its text part, and its headers. The HTML is served by its own route with a
Content-Security-Policy that runs no script and a ``<base target="_top">``, so the tracked links
in it open in the whole window, as they would from a mail client.

The viewer is a development and demo tool: it shows every captured message (and the signed
links inside), so it answers only requests from this machine (127.0.0.1 or ::1; behind a proxy, the
address uvicorn reports for the client), and it is off unless the mailer writes files.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.responses import Response

from outreach.bootstrap import Services
from outreach.errors import ConfigurationError
from outreach.mailers.dsn import parse_dsn
from outreach.store.search import Place, delivery_places
from outreach.web.deps import get_services, templates

ServicesDep = Annotated[Services, Depends(get_services)]
LOOPBACK = frozenset({"127.0.0.1", "::1"})


def viewer_allowed(request: Request) -> None:
    """The viewer answers only this machine (the demo's browser): from anywhere else, 403, as
    captured messages carry members' signed links."""
    client = request.client.host if request.client is not None else None
    if client not in LOOPBACK:
        raise HTTPException(
            status_code=403, detail="The mailbox viewer is open only on the machine that runs it."
        )


router = APIRouter(
    prefix="/mailbox", include_in_schema=False, dependencies=[Depends(viewer_allowed)]
)

MAX_LISTED = 2000
HEAD_BYTES = 64 * 1024
_NAME = re.compile(r"^[A-Za-z0-9@_+-][A-Za-z0-9@._+-]{0,250}\.eml$")
_HEAD = re.compile(rb"<head(\s[^>]*)?>", re.IGNORECASE)
_HTML = re.compile(rb"<html(\s[^>]*)?>", re.IGNORECASE)
_PARSER = BytesParser(policy=policy.default)
VIEWS = ("html", "text", "headers")
# The captured email: inline styles and remote images as a mail client shows them, no script,
# no plugin, no form; its links may only replace the whole window (or open a new one).
MESSAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src http: https: data: cid:; "
    "font-src http: https: data:; base-uri 'self'; form-action 'none'; frame-ancestors 'self'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
)


@dataclass(frozen=True, slots=True)
class Captured:
    """One captured message, as the list shows it."""

    name: str
    recipient: str
    display_name: str
    subject: str
    date: datetime | None
    campaign: str
    delivery_id: int | None


@dataclass(slots=True)
class Inbox:
    """Everything captured for one recipient."""

    recipient: str
    display_name: str
    place: Place | None
    messages: list[Captured] = field(default_factory=list)


def outbox_directory(services: Services) -> tuple[Path | None, str]:
    """The file mailer's directory, or None and why the mailbox has nothing to show."""
    try:
        dsn = parse_dsn(services.settings.mailer)
    except ConfigurationError as err:
        return None, str(err)
    if dsn.scheme != "file" or not dsn.path:
        return None, (
            f"The mailbox shows the messages of the file mailer (OUTREACH_MAILER=file://DIR); "
            f"this app sends through {dsn.scheme}://, so nothing is captured here."
        )
    return Path(dsn.path).expanduser().absolute(), ""


def _headers_of(path: Path) -> EmailMessage:
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    end = head.find(b"\r\n\r\n")
    end = end if end >= 0 else head.find(b"\n\n")
    return _PARSER.parsebytes(head[: end if end >= 0 else None], headersonly=True)


def _summary(path: Path) -> Captured:
    message = _headers_of(path)
    addresses = getaddresses([str(message.get("To", ""))])
    display, address = addresses[0] if addresses else ("", "")
    try:
        date = parsedate_to_datetime(str(message["Date"])) if message["Date"] else None
    except (TypeError, ValueError):
        date = None
    delivery = str(message.get("X-Outreach-Delivery", "")).strip()
    return Captured(
        name=path.name,
        recipient=address.lower() or "(no recipient)",
        display_name=display,
        subject=str(message.get("Subject", "")) or "(no subject)",
        date=date,
        campaign=str(message.get("X-Outreach-Campaign", "")),
        delivery_id=int(delivery) if delivery.isdigit() and len(delivery) < 18 else None,
    )


def captured_messages(directory: Path, *, limit: int = MAX_LISTED) -> tuple[list[Captured], int]:
    """The newest ``limit`` messages of the directory, and how many there are in all."""
    if not directory.is_dir():
        return [], 0
    files = [
        p for p in directory.iterdir() if _NAME.match(p.name) and p.is_file() and not p.is_symlink()
    ]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    found = []
    for path in files[:limit]:
        try:
            found.append(_summary(path))
        except OSError:  # removed while we were reading: skip it
            continue
    return found, len(files)


def _inboxes(services: Services, messages: list[Captured], query: str) -> list[Inbox]:
    ids = sorted({m.delivery_id for m in messages if m.delivery_id is not None})
    emails = sorted({m.recipient for m in messages})
    by_delivery, by_email = delivery_places(services.engine, delivery_ids=ids, emails=emails)
    inboxes: dict[str, Inbox] = {}
    for message in messages:
        place = by_delivery.get(message.delivery_id or -1) or by_email.get(message.recipient)
        inbox = inboxes.setdefault(
            message.recipient, Inbox(message.recipient, message.display_name, place)
        )
        inbox.messages.append(message)
    wanted = query.casefold()
    chosen = [
        inbox
        for inbox in inboxes.values()
        if not wanted
        or any(
            wanted in text.casefold()
            for text in (
                inbox.recipient,
                inbox.display_name,
                inbox.place.organisation if inbox.place else "",
                *(m.subject for m in inbox.messages),
            )
        )
    ]
    return sorted(chosen, key=lambda i: ((i.place.organisation if i.place else "~"), i.recipient))


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = templates.TemplateResponse(
        request, name, {**context, "nonce": nonce}, status_code=status_code
    )
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; "
        "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("")
def mailbox(request: Request, services: ServicesDep, q: str = "") -> Response:
    directory, problem = outbox_directory(services)
    messages, total = captured_messages(directory) if directory else ([], 0)
    context = {
        "directory": directory,
        "problem": problem,
        "inboxes": _inboxes(services, messages, q.strip()[:200]),
        "listed": len(messages),
        "total": total,
        "q": q.strip()[:200],
    }
    return _page(request, "mailbox/index.html", context)


def _message_path(services: Services, name: str) -> Path | None:
    directory, _ = outbox_directory(services)
    if directory is None or not _NAME.match(name):
        return None
    path = directory / name
    if path.is_symlink() or not path.is_file() or path.resolve().parent != directory.resolve():
        return None
    return path


def _missing(request: Request, name: str) -> Response:
    return _page(request, "mailbox/missing.html", {"name": name}, status_code=404)


def _read(path: Path) -> EmailMessage:
    with path.open("rb") as handle:
        return _PARSER.parse(handle)


def _part(message: EmailMessage, kind: str) -> str | None:
    part = message.get_body(preferencelist=(kind,))
    if part is None:
        return None
    try:
        return str(part.get_content())
    except (LookupError, ValueError):  # unknown charset or broken encoding
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None


@router.get("/{name}")
def message_page(
    request: Request, services: ServicesDep, name: str, view: str = "html"
) -> Response:
    path = _message_path(services, name)
    if path is None:
        return _missing(request, name)
    message = _read(path)
    summary = _summary(path)
    html = _part(message, "html")
    context = {
        "message": summary,
        "view": view if view in VIEWS else "html",
        "has_html": html is not None,
        "text": _part(message, "plain"),
        "headers": [(key, str(value)) for key, value in message.items()],
    }
    return _page(request, "mailbox/message.html", context)


def with_top_target(html: bytes) -> bytes:
    """The HTML with ``<base target="_top">`` first in its head: links replace the window."""
    base = b'<base target="_top">'
    for pattern, wrap in ((_HEAD, b"%s"), (_HTML, b"<head>%s</head>")):
        match = pattern.search(html)
        if match:
            return html[: match.end()] + wrap % base + html[match.end() :]
    return base + html


@router.get("/{name}/html")
def message_html(request: Request, services: ServicesDep, name: str) -> Response:
    path = _message_path(services, name)
    html = _part(_read(path), "html") if path else None
    if html is None:
        return _missing(request, name)
    return Response(
        with_top_target(html.encode("utf-8")),
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": MESSAGE_CSP,
            "Cache-Control": "no-store",
            "X-Frame-Options": "SAMEORIGIN",
        },
    )


@router.get("/{name}/raw")
def message_raw(request: Request, services: ServicesDep, name: str) -> Response:
    path = _message_path(services, name)
    if path is None:
        return _missing(request, name)
    return Response(
        path.read_bytes(),
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'"},
    )
