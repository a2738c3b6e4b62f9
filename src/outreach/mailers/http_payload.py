"""What a provider module builds its requests from: a message's parts, JSON, the API's URL.

``content_of`` gives the parts a JSON or form API takes, read from the message's MIME data when
it has no bodies; ``dumps`` writes a compact UTF-8 JSON body; ``base_url_for`` turns the DSN
host into the API's base URL (plain http only on loopback).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from outreach.ports import OutgoingMessage

CORRELATION_HEADERS = ("X-Outreach-Campaign", "X-Outreach-Delivery")


@dataclass(frozen=True, slots=True)
class Content:
    """The parts of a message a JSON or form API takes."""

    subject: str
    html: str
    text: str
    from_address: str
    from_name: str
    to_address: str
    to_name: str
    reply_to: str
    headers: dict[str, str] = field(default_factory=dict)


def content_of(message: OutgoingMessage) -> Content:
    """Structured fields of ``message``; read from its MIME ``data`` when it has no bodies."""
    if message.html or message.text or not message.data:
        return Content(
            subject=message.subject,
            html=message.html,
            text=message.text,
            from_address=message.envelope_from,
            from_name=message.from_name,
            to_address=message.recipient,
            to_name=message.recipient_name,
            reply_to=message.reply_to,
            headers=dict(message.headers),
        )
    parsed = BytesParser(policy=policy.default).parsebytes(message.data)
    assert isinstance(parsed, EmailMessage)
    html_part = parsed.get_body(("html",))
    text_part = parsed.get_body(("plain",))
    sender = parsed["From"]
    names = [address.display_name for address in getattr(sender, "addresses", ())]
    headers = {name: str(parsed[name]) for name in CORRELATION_HEADERS if parsed[name]}
    headers.update(message.headers)
    return Content(
        subject=message.subject or str(parsed["Subject"] or ""),
        html=html_part.get_content() if html_part is not None else "",
        text=text_part.get_content() if text_part is not None else "",
        from_address=message.envelope_from,
        from_name=message.from_name or (names[0] if names else ""),
        to_address=message.recipient,
        to_name=message.recipient_name,
        reply_to=message.reply_to or str(parsed["Reply-To"] or ""),
        headers=headers,
    )


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def base_url_for(*, host: str, port: int | None, default: str) -> str:
    """``default`` for the DSN host ``default``; else ``host:port`` (http only on loopback)."""
    if host in ("", "default"):
        return default
    scheme = "http" if is_loopback(host) else "https"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + (f":{port}" if port else "")


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
