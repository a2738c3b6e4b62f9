"""Mailgun: ``mailgun+api://KEY:DOMAIN@default?region=eu`` (Messages API v3, form fields).

Sending: ``POST /v3/{domain}/messages`` with HTTP basic auth ``api:KEY``, multipart form
fields ``from``, ``to``, ``subject``, ``text``, ``html``, ``h:<Header>`` for extra headers,
``v:<name>`` for the variables that come back in events and ``o:tag``. A batch is one request
with up to 1,000 ``to`` fields and ``recipient-variables`` (a JSON object keyed by address):
the shared body holds ``%recipient.<var>%`` placeholders, which Mailgun fills per recipient,
also in ``h:`` headers and ``v:`` variables, so each recipient keeps their own links, name,
List-Unsubscribe and ``outreach-delivery``. Mailgun answers ``{"id": "<...>", "message":
"Queued. Thank you."}``: one id for the whole batch. The EU region is ``api.eu.mailgun.net``.

Events arrive as JSON ``{"signature": {...}, "event-data": {...}}``; the signature is the hex
HMAC-SHA256 of ``timestamp + token`` under the webhook signing key. It does not cover the
event itself, so a signature is accepted only within a day of its timestamp, and a token seen
before is accepted again only with the very same body (a retry), never with another event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import formataddr
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from outreach.domain.delivery import EventKind
from outreach.errors import ConfigurationError, DeliveryError, WebhookVerificationError
from outreach.mailers import events as read
from outreach.mailers.batching import batch_body, can_share, envelope_key
from outreach.mailers.http import HttpMailer
from outreach.mailers.http_payload import Content, content_of
from outreach.ports import OutgoingMessage, ProviderEvent

US_API = "https://api.mailgun.net"
EU_API = "https://api.eu.mailgun.net"
CAMPAIGN_VAR = "outreach-campaign"
DELIVERY_VAR = "outreach-delivery"


def _address(address: str, name: str) -> str:
    return formataddr((name, address)) if name else address


class MailgunMailer(HttpMailer):
    name = "mailgun"
    default_base_url = US_API
    provider_max_batch = 1000

    def __init__(self, *, api_key: str, domain: str, **options: Any) -> None:
        super().__init__(**options)
        if not api_key or not domain:
            raise ConfigurationError("Mailgun needs an API key and a sending domain")
        token = base64.b64encode(f"api:{api_key}".encode()).decode("ascii")
        self.auth_headers = {"Authorization": f"Basic {token}"}
        self.domain = domain
        self._path = f"/v3/{quote(domain, safe='')}/messages"

    def _common(self, content: Content, campaign_id: str) -> list[tuple[str, str]]:
        form = [("from", _address(content.from_address, content.from_name))]
        form.append(("subject", content.subject))
        if content.reply_to:
            form.append(("h:Reply-To", content.reply_to))
        form += [(f"v:{CAMPAIGN_VAR}", campaign_id), ("o:tag", campaign_id)]
        return form

    def build_single(self, message: OutgoingMessage) -> httpx.Request:
        content = content_of(message)
        form = self._common(content, message.campaign_id)
        form.append(("to", _address(content.to_address, content.to_name)))
        form += [("text", content.text)] if content.text else []
        form += [("html", content.html)] if content.html else []
        form += [(f"h:{name}", value) for name, value in content.headers.items()]
        form.append((f"v:{DELIVERY_VAR}", str(message.delivery_id)))
        return self.request("POST", self._path, form=form)

    def read_single(self, response: httpx.Response, message: OutgoingMessage) -> str:
        return _message_id(response)

    def batch_key(self, message: OutgoingMessage) -> Hashable | None:
        if not can_share(message, forbidden=("%recipient.",)):
            return None
        return (*envelope_key(message), tuple(sorted(message.headers)))

    def build_batch(self, messages: Sequence[OutgoingMessage]) -> httpx.Request:
        first = messages[0]
        body = batch_body(messages, placeholder=lambda var: f"%recipient.{var}%")
        form = self._common(content_of(first), first.campaign_id)
        form += [("to", _address(m.recipient, m.recipient_name)) for m in messages]
        form += [("text", body.text), ("html", body.html)]
        pairs = zip(messages, body.variables, strict=True)
        variables = {m.recipient: dict(values) for m, values in pairs}
        for number, header in enumerate(first.headers):
            values = [m.headers[header] for m in messages]
            if all(value == values[0] for value in values):
                form.append((f"h:{header}", values[0]))
                continue
            form.append((f"h:{header}", f"%recipient.x{number}%"))
            for message, value in zip(messages, values, strict=True):
                variables[message.recipient][f"x{number}"] = value
        for message in messages:
            variables[message.recipient]["d"] = str(message.delivery_id)
        form.append((f"v:{DELIVERY_VAR}", "%recipient.d%"))
        form.append(("recipient-variables", json.dumps(variables, ensure_ascii=False)))
        return self.request("POST", self._path, form=form)

    def read_batch(
        self, response: httpx.Response, messages: Sequence[OutgoingMessage]
    ) -> list[str | DeliveryError]:
        message_id = _message_id(response)
        return [message_id for _ in messages]

    def refusal(self, response: httpx.Response) -> Exception:
        if response.status_code == 404:
            return ConfigurationError(
                f"Mailgun does not know the sending domain {self.domain!r} in this region "
                f"({self.base_url}): {self.error_text(response)}"
            )
        return super().refusal(response)


def _message_id(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("id"), str) and body["id"]:
        return str(body["id"])
    return f"{response.status_code} {response.text.strip()[:200]}"


class MailgunWebhook:
    """Mailgun's event webhook (JSON): HMAC-checked, mapped through ``EVENTS``."""

    provider = "mailgun"
    SETTING = "OUTREACH_MAILGUN_WEBHOOK_SIGNING_KEY"
    EVENTS: ClassVar[dict[str, EventKind]] = {
        "accepted": EventKind.UNKNOWN,
        "delivered": EventKind.DELIVERED,
        "failed": EventKind.BOUNCED,  # severity temporary: deferred (see parse)
        "rejected": EventKind.REJECTED,
        "complained": EventKind.COMPLAINED,
        "unsubscribed": EventKind.UNSUBSCRIBED,
        "opened": EventKind.OPENED,
        "clicked": EventKind.CLICKED,
    }
    # a permanent failure for these reasons means Mailgun never tried: it was on its own list
    DROPPED_REASONS: ClassVar[frozenset[str]] = frozenset(
        {"suppress-bounce", "suppress-complaint", "suppress-unsubscribe"}
    )

    MAX_AGE = timedelta(hours=24)
    REMEMBERED = 50_000  # tokens kept to refuse a signature reused for another body

    def __init__(
        self, *, signing_key: str | None, now: Callable[[], datetime] | None = None
    ) -> None:
        self._key = signing_key
        self._now = now or (lambda: datetime.now(UTC))
        self._tokens: OrderedDict[str, str] = OrderedDict()

    def verify(self, *, headers: Mapping[str, str], body: bytes) -> None:
        key = read.require_secret(self._key, provider=self.provider, setting=self.SETTING)
        try:
            signature = read.as_object(read.as_object(read.load_json(body), "body")["signature"],
                                       "signature")  # fmt: skip
        except (read.WebhookPayloadError, KeyError):
            raise WebhookVerificationError("the Mailgun request carries no signature") from None
        timestamp, token = str(signature.get("timestamp", "")), str(signature.get("token", ""))
        expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not timestamp or not token or not read.same(expected, signature.get("signature")):
            raise WebhookVerificationError("the Mailgun signature does not match")
        signed_at = read.from_epoch(timestamp)
        if signed_at is None or abs(self._now() - signed_at) > self.MAX_AGE:
            raise WebhookVerificationError("the Mailgun signature is too old (or from the future)")
        digest = hashlib.sha256(body).hexdigest()
        if self._tokens.setdefault(token, digest) != digest:
            raise WebhookVerificationError(
                "the Mailgun signature was already used for another event"
            )
        self._tokens.move_to_end(token)
        while len(self._tokens) > self.REMEMBERED:
            self._tokens.popitem(last=False)

    def parse(self, body: bytes) -> list[ProviderEvent]:
        root = read.as_object(read.load_json(body), "body")
        data = read.as_object(root.get("event-data"), "event-data")
        return [self.event(data)]

    def event(self, data: dict[str, Any]) -> ProviderEvent:
        raw_kind = read.text(data.get("event"))
        kind = self.EVENTS.get(raw_kind, EventKind.UNKNOWN)
        severity = read.text(data.get("severity"))
        reason = read.text(data.get("reason"))
        status = read.member(data, "delivery-status")
        if raw_kind == "failed" and severity == "temporary":
            kind = EventKind.DEFERRED
        elif raw_kind == "failed" and reason in self.DROPPED_REASONS:
            kind = EventKind.REJECTED
        variables = read.member(data, "user-variables")
        message = read.member(data, "message")
        headers = read.member(message, "headers")
        client = read.member(data, "client-info")
        detail = " ".join(
            part
            for part in (
                str(status.get("code", "")) if status.get("code") else "",
                read.text(status.get("message")),
                read.text(status.get("description")),
            )
            if part
        )
        when = read.from_epoch(data.get("timestamp"))
        if when is None:
            raise read.WebhookPayloadError("the Mailgun event has no timestamp")
        event_id = read.text(data.get("id")) or read.payload_id(self.provider, data)
        return ProviderEvent(
            provider=self.provider,
            kind=kind,
            raw_kind=raw_kind or "(none)",
            event_id=event_id,
            occurred_at=when,
            recipient=read.text(data.get("recipient")),
            campaign_id=read.text(variables.get(CAMPAIGN_VAR)) or None,
            delivery_id=read.delivery_id(variables.get(DELIVERY_VAR)),
            provider_message_id=read.text(headers.get("message-id")) or None,
            permanent=kind is EventKind.BOUNCED and severity == "permanent",
            reason=detail or reason,
            url=read.text(data.get("url")) or None,
            user_agent=read.text(client.get("user-agent")) or None,
            payload=data,
        )
