"""Brevo: ``brevo+api://KEY@default`` (transactional email API v3, JSON).

Sending: ``POST /v3/smtp/email`` with the key in the ``api-key`` header; fields ``sender``,
``to``, ``subject``, ``htmlContent``, ``textContent``, ``replyTo``, ``headers`` and ``tags``.
Correlation goes in the ``X-Mailin-custom`` header, which Brevo hands back in every event.
A batch is one request with up to 1,000 ``messageVersions`` (one recipient each here, with
their own ``params`` and ``headers``); the shared body holds ``{{ params.<var> }}``
placeholders, so a body whose text already looks like Brevo's template syntax is sent alone.
Brevo answers ``201`` with ``messageId``, or ``messageIds`` in version order.

Every request carries an ``idempotencyKey`` header (a UUID, kept by Brevo for 15 minutes):
when the answer to a request is lost, the mailer sends the same request again with the same
key, and Brevo accepts it at most once. 402 (no credits left) stops the run like 401/403.
Brevo signals throttling with 429 and ``x-sib-ratelimit-reset`` (seconds to wait).

Webhooks carry ``Authorization: Bearer <token>`` (the token set when the webhook was made);
each body is one event, mapped through ``EVENTS``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar

import httpx

from outreach.domain.delivery import EventKind
from outreach.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    WebhookVerificationError,
)
from outreach.mailers import events as read
from outreach.mailers.batching import batch_body, can_share, envelope_key
from outreach.mailers.http import HttpMailer
from outreach.mailers.http_payload import content_of
from outreach.ports import OutgoingMessage, ProviderEvent

API = "https://api.brevo.com"
CUSTOM_HEADER = "X-Mailin-custom"
TEMPLATE_SYNTAX = ("{{", "{%", "{#")


def _person(address: str, name: str) -> dict[str, str]:
    return {"email": address, "name": name} if name else {"email": address}


def _param(var: str) -> str:
    return "{{ params." + var + " }}"


def correlation(message: OutgoingMessage) -> str:
    return json.dumps(
        {"campaign": message.campaign_id, "delivery": message.delivery_id},
        separators=(",", ":"),
    )


class BrevoMailer(HttpMailer):
    name = "brevo"
    default_base_url = API
    provider_max_batch = 1000
    idempotent = True

    def __init__(self, *, api_key: str, **options: Any) -> None:
        super().__init__(**options)
        if not api_key:
            raise ConfigurationError("Brevo needs an API key")
        self.auth_headers = {"api-key": api_key}

    def _envelope(self, message: OutgoingMessage, text: str, html: str) -> dict[str, Any]:
        content = content_of(message)
        body: dict[str, Any] = {
            "sender": _person(content.from_address, content.from_name),
            "subject": content.subject,
            "tags": [message.campaign_id],
            "headers": {"idempotencyKey": str(uuid.uuid4())},
        }
        if html:
            body["htmlContent"] = html
        if text:
            body["textContent"] = text
        if content.reply_to:
            body["replyTo"] = {"email": content.reply_to}
        return body

    def build_single(self, message: OutgoingMessage) -> httpx.Request:
        content = content_of(message)
        body = self._envelope(message, content.text, content.html)
        body["to"] = [_person(content.to_address, content.to_name)]
        body["headers"].update(content.headers)
        body["headers"][CUSTOM_HEADER] = correlation(message)
        return self.request("POST", "/v3/smtp/email", json_body=body)

    def read_single(self, response: httpx.Response, message: OutgoingMessage) -> str:
        body = _json(response)
        if isinstance(body, dict) and isinstance(body.get("messageId"), str):
            return str(body["messageId"])
        return f"{response.status_code} accepted"

    def batch_key(self, message: OutgoingMessage) -> Hashable | None:
        if not can_share(message, forbidden=TEMPLATE_SYNTAX):
            return None
        return envelope_key(message)

    def build_batch(self, messages: Sequence[OutgoingMessage]) -> httpx.Request:
        shared = batch_body(messages, placeholder=_param)
        body = self._envelope(messages[0], shared.text, shared.html)
        versions = []
        for message, values in zip(messages, shared.variables, strict=True):
            headers = dict(message.headers)
            headers[CUSTOM_HEADER] = correlation(message)
            versions.append(
                {
                    "to": [_person(message.recipient, message.recipient_name)],
                    "params": values,
                    "headers": headers,
                }
            )
        body["messageVersions"] = versions
        return self.request("POST", "/v3/smtp/email", json_body=body)

    def read_batch(
        self, response: httpx.Response, messages: Sequence[OutgoingMessage]
    ) -> list[str | DeliveryError]:
        body = _json(response)
        ids = body.get("messageIds") if isinstance(body, dict) else None
        if not isinstance(ids, list) or len(ids) != len(messages):
            raise PermanentDeliveryError(
                f"{response.status_code} Brevo did not answer with one id per version",
                provider=self.name,
                code=response.status_code,
            )
        return [str(message_id) for message_id in ids]

    def refusal(self, response: httpx.Response) -> Exception:
        if response.status_code == 402:
            return ConfigurationError(
                f"Brevo will not send for this account (402): {self.error_text(response)}"
            )
        return super().refusal(response)

    def reset_after(self, response: httpx.Response) -> float | None:
        value = response.headers.get("x-sib-ratelimit-reset")
        try:
            return max(0.0, float(value)) if value else None
        except ValueError:
            return None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class BrevoWebhook:
    """Brevo's transactional webhook: a bearer token, one event per body."""

    provider = "brevo"
    SETTING = "OUTREACH_BREVO_WEBHOOK_TOKEN"
    EVENTS: ClassVar[dict[str, tuple[EventKind, bool]]] = {
        "request": (EventKind.UNKNOWN, False),
        "delivered": (EventKind.DELIVERED, False),
        "deferred": (EventKind.DEFERRED, False),
        "soft_bounce": (EventKind.BOUNCED, False),
        "hard_bounce": (EventKind.BOUNCED, True),
        "blocked": (EventKind.REJECTED, False),
        "invalid_email": (EventKind.REJECTED, False),
        "error": (EventKind.REJECTED, False),
        "spam": (EventKind.COMPLAINED, False),
        "unsubscribed": (EventKind.UNSUBSCRIBED, False),
        "opened": (EventKind.OPENED, False),
        "unique_opened": (EventKind.OPENED, False),
        "proxy_open": (EventKind.OPENED, False),
        "unique_proxy_open": (EventKind.OPENED, False),
        "click": (EventKind.CLICKED, False),
    }

    def __init__(self, *, token: str | None) -> None:
        self._token = token

    def verify(self, *, headers: Mapping[str, str], body: bytes) -> None:
        token = read.require_secret(self._token, provider=self.provider, setting=self.SETTING)
        scheme, _, given = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not read.same(token, given.strip()):
            raise WebhookVerificationError("the Brevo webhook token does not match")

    def parse(self, body: bytes) -> list[ProviderEvent]:
        data = read.load_json(body)
        items = data if isinstance(data, list) else [data]
        return [self.event(read.as_object(item, "an event")) for item in items]

    def event(self, data: dict[str, Any]) -> ProviderEvent:
        raw_kind = read.text(data.get("event"))
        kind, permanent = self.EVENTS.get(raw_kind, (EventKind.UNKNOWN, False))
        when = read.from_epoch(data.get("ts_epoch")) or read.from_epoch(data.get("ts_event"))
        if when is None:
            raise read.WebhookPayloadError("a Brevo event has no ts_event")
        custom: dict[str, Any] = {}
        raw_custom = data.get(CUSTOM_HEADER)
        if isinstance(raw_custom, str) and raw_custom.startswith("{"):
            try:
                loaded = json.loads(raw_custom)
            except ValueError:
                loaded = None
            custom = loaded if isinstance(loaded, dict) else {}
        return ProviderEvent(
            provider=self.provider,
            kind=kind,
            raw_kind=raw_kind or "(none)",
            event_id=read.payload_id(self.provider, data),
            occurred_at=when,
            recipient=read.text(data.get("email")),
            campaign_id=read.text(custom.get("campaign")) or None,
            delivery_id=read.delivery_id(custom.get("delivery")),
            provider_message_id=read.text(data.get("message-id")) or None,
            permanent=permanent,
            reason=read.text(data.get("reason")),
            url=read.text(data.get("link")) or None,
            user_agent=read.text(data.get("user_agent")) or None,
            payload=data,
        )
