"""SendGrid: ``sendgrid+api://KEY@default`` (v3 Mail Send, JSON).

Sending: ``POST /v3/mail/send`` with ``Authorization: Bearer KEY`` and a body of
``personalizations`` (each with ``to``, and per recipient ``headers``, ``custom_args`` and
``substitutions``), ``from``, ``reply_to``, ``subject``, ``content`` (``text/plain`` first,
then ``text/html``), ``categories``. A batch is one request with up to 1,000 personalizations:
the shared body holds substitution keys, unique to this mailer, that SendGrid replaces with
each recipient's values (at most 10,000 bytes of them per personalization). SendGrid answers
``202 Accepted`` with the message id in the ``X-Message-Id`` header, one for the request.
``X-RateLimit-Reset`` (Unix time) says when a throttled window reopens.

The Event Webhook posts a JSON array of events; with signing enabled, the
``X-Twilio-Email-Event-Webhook-Signature`` header is the base64 ECDSA (P-256, SHA-256)
signature of ``X-Twilio-Email-Event-Webhook-Timestamp`` + the raw body, checked against the
verification key SendGrid shows (base64 DER).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar

import httpx
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from outreach.domain.delivery import EventKind
from outreach.errors import ConfigurationError, DeliveryError, WebhookVerificationError
from outreach.mailers import events as read
from outreach.mailers.batching import batch_body, can_share, envelope_key
from outreach.mailers.http import HttpMailer
from outreach.mailers.http_payload import content_of
from outreach.ports import OutgoingMessage, ProviderEvent

API = "https://api.sendgrid.com"
CAMPAIGN_ARG = "outreach_campaign"
DELIVERY_ARG = "outreach_delivery"
SUBSTITUTION_LIMIT = 10_000
SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"


def _person(address: str, name: str) -> dict[str, str]:
    return {"email": address, "name": name} if name else {"email": address}


class SendGridMailer(HttpMailer):
    name = "sendgrid"
    default_base_url = API
    provider_max_batch = 1000

    def __init__(self, *, api_key: str, **options: Any) -> None:
        super().__init__(**options)
        if not api_key:
            raise ConfigurationError("SendGrid needs an API key")
        self.auth_headers = {"Authorization": f"Bearer {api_key}"}
        self._marker = f"-o{secrets.token_hex(6)}"  # substitution keys no text contains

    def _envelope(self, message: OutgoingMessage, text: str, html: str) -> dict[str, Any]:
        content = content_of(message)
        body: dict[str, Any] = {
            "from": _person(content.from_address, content.from_name),
            "subject": content.subject,
            "content": [
                part
                for part in (
                    {"type": "text/plain", "value": text} if text else None,
                    {"type": "text/html", "value": html} if html else None,
                )
                if part is not None
            ],
            "categories": [message.campaign_id],
        }
        if content.reply_to:
            body["reply_to"] = {"email": content.reply_to}
        return body

    def _personalization(self, message: OutgoingMessage) -> dict[str, Any]:
        person: dict[str, Any] = {
            "to": [_person(message.recipient, message.recipient_name)],
            "custom_args": {
                CAMPAIGN_ARG: message.campaign_id,
                DELIVERY_ARG: str(message.delivery_id),
            },
        }
        if message.headers:
            person["headers"] = dict(message.headers)
        return person

    def build_single(self, message: OutgoingMessage) -> httpx.Request:
        content = content_of(message)
        body = self._envelope(message, content.text, content.html)
        person = self._personalization(message)
        if content.headers:
            person["headers"] = content.headers
        body["personalizations"] = [person]
        return self.request("POST", "/v3/mail/send", json_body=body)

    def read_single(self, response: httpx.Response, message: OutgoingMessage) -> str:
        return response.headers.get("X-Message-Id") or f"{response.status_code} accepted"

    def batch_key(self, message: OutgoingMessage) -> Hashable | None:
        if not can_share(message, forbidden=(self._marker,)):
            return None
        values = sum(len(v) for v in message.html_values.values())
        if 2 * values + 200 > SUBSTITUTION_LIMIT:
            return None
        return envelope_key(message)

    def build_batch(self, messages: Sequence[OutgoingMessage]) -> httpx.Request:
        marker = self._marker
        shared = batch_body(messages, placeholder=lambda var: f"{marker}{var}-")
        body = self._envelope(messages[0], shared.text, shared.html)
        people = []
        for message, values in zip(messages, shared.variables, strict=True):
            person = self._personalization(message)
            person["substitutions"] = {f"{marker}{k}-": v for k, v in values.items()}
            people.append(person)
        body["personalizations"] = people
        return self.request("POST", "/v3/mail/send", json_body=body)

    def read_batch(
        self, response: httpx.Response, messages: Sequence[OutgoingMessage]
    ) -> list[str | DeliveryError]:
        message_id = self.read_single(response, messages[0])
        return [message_id for _ in messages]

    def error_text(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return super().error_text(response)
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors:
            return "; ".join(
                f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
                for e in errors
                if isinstance(e, dict)
            )
        return super().error_text(response)

    def reset_after(self, response: httpx.Response) -> float | None:
        reset = read.from_epoch(response.headers.get("X-RateLimit-Reset"))
        if reset is None:
            return None
        return max(0.0, (reset - self._timer.wall()).total_seconds())


class SendGridWebhook:
    """SendGrid's signed Event Webhook: a JSON array of events, mapped through ``EVENTS``."""

    provider = "sendgrid"
    SETTING = "OUTREACH_SENDGRID_WEBHOOK_PUBLIC_KEY"
    EVENTS: ClassVar[dict[str, EventKind]] = {
        "processed": EventKind.UNKNOWN,
        "delivered": EventKind.DELIVERED,
        "deferred": EventKind.DEFERRED,
        "bounce": EventKind.BOUNCED,  # type "bounce" is hard; "blocked" is soft
        "dropped": EventKind.REJECTED,
        "spamreport": EventKind.COMPLAINED,
        "unsubscribe": EventKind.UNSUBSCRIBED,
        "group_unsubscribe": EventKind.UNSUBSCRIBED,
        "group_resubscribe": EventKind.UNKNOWN,
        "open": EventKind.OPENED,
        "click": EventKind.CLICKED,
    }

    def __init__(self, *, public_key: str | None) -> None:
        self._key_text = public_key
        self._key: ec.EllipticCurvePublicKey | None = None

    def verify(self, *, headers: Mapping[str, str], body: bytes) -> None:
        text = read.require_secret(self._key_text, provider=self.provider, setting=self.SETTING)
        if self._key is None:
            self._key = _public_key(text, setting=self.SETTING)
        signature, timestamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise WebhookVerificationError("the SendGrid request is not signed")
        try:
            der = base64.b64decode(signature, validate=True)
        except binascii.Error:
            raise WebhookVerificationError("the SendGrid signature is not base64") from None
        try:
            self._key.verify(der, timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise WebhookVerificationError("the SendGrid signature does not match") from None

    def parse(self, body: bytes) -> list[ProviderEvent]:
        items = read.load_json(body)
        if not isinstance(items, list):
            raise read.WebhookPayloadError("SendGrid posts a JSON array of events")
        return [self.event(read.as_object(item, "an event")) for item in items]

    def event(self, data: dict[str, Any]) -> ProviderEvent:
        raw_kind = read.text(data.get("event"))
        kind = self.EVENTS.get(raw_kind, EventKind.UNKNOWN)
        bounce_type = read.text(data.get("type"))
        if raw_kind == "bounce" and bounce_type:
            raw_kind = f"bounce/{bounce_type}"
        when = read.from_epoch(data.get("timestamp"))
        if when is None:
            raise read.WebhookPayloadError("a SendGrid event has no timestamp")
        message_id = read.text(data.get("sg_message_id")).split(".", 1)[0]
        reason = " ".join(
            part
            for part in (read.text(data.get("status")), read.text(data.get("reason"))
                         or read.text(data.get("response")))
            if part
        )  # fmt: skip
        return ProviderEvent(
            provider=self.provider,
            kind=kind,
            raw_kind=raw_kind or "(none)",
            event_id=read.text(data.get("sg_event_id")) or read.payload_id(self.provider, data),
            occurred_at=when,
            recipient=read.text(data.get("email")),
            campaign_id=read.text(data.get(CAMPAIGN_ARG)) or None,
            delivery_id=read.delivery_id(data.get(DELIVERY_ARG)),
            provider_message_id=message_id or None,
            permanent=kind is EventKind.BOUNCED and bounce_type != "blocked",
            reason=reason,
            url=read.text(data.get("url")) or None,
            user_agent=read.text(data.get("useragent")) or None,
            payload=data,
        )


def _public_key(text: str, *, setting: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key: base64 DER (as its settings page shows it) or PEM."""
    try:
        if "-----BEGIN" in text:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm) as err:
        raise WebhookVerificationError(f"{setting}: not a public key ({err})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise WebhookVerificationError(f"{setting}: expected an ECDSA P-256 public key")
    return key
