"""Postmark: ``postmark+api://TOKEN@default?stream=broadcast`` (Email API, JSON).

Sending: ``POST /email`` with the server token in ``X-Postmark-Server-Token``; fields
``From``, ``To``, ``Subject``, ``HtmlBody``, ``TextBody``, ``ReplyTo``, ``Headers`` (a list of
``{"Name", "Value"}``), ``Metadata`` (strings that come back in events), ``Tag`` and
``MessageStream`` (``outbound`` unless the DSN names another, e.g. ``broadcast``). A batch is
``POST /email/batch`` with up to 500 complete messages (each with its own bodies), answered by
one result per message in order: ``ErrorCode`` 0 and a ``MessageID``, or the refusal.

Postmark refuses with HTTP 422 and an ``ErrorCode``: 406 (inactive recipient) and 300
(invalid request) are permanent for that message; 400, 401, 405, 412 and 413 mean the sender
signature or the account cannot send at all, and stop the run.

Webhooks are authenticated with HTTP basic auth (user and password in the webhook URL set up
at Postmark); the body is one record whose ``RecordType`` (and a bounce's ``Type``) picks the
event through ``RECORDS`` and ``BOUNCES``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Hashable, Mapping, Sequence
from email.utils import formataddr
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
from outreach.mailers.http import HttpMailer
from outreach.mailers.http_payload import content_of
from outreach.ports import OutgoingMessage, ProviderEvent

API = "https://api.postmarkapp.com"
CAMPAIGN_KEY = "outreach_campaign"
DELIVERY_KEY = "outreach_delivery"
# ErrorCodes that say the account or sender cannot send anything
ACCOUNT_ERRORS = frozenset({10, 400, 401, 405, 412, 413})


class PostmarkMailer(HttpMailer):
    name = "postmark"
    default_base_url = API
    provider_max_batch = 500

    def __init__(self, *, server_token: str, stream: str = "outbound", **options: Any) -> None:
        super().__init__(**options)
        if not server_token:
            raise ConfigurationError("Postmark needs a server token")
        self.auth_headers = {"X-Postmark-Server-Token": server_token}
        self.stream = stream

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        content = content_of(message)
        body: dict[str, Any] = {
            "From": formataddr((content.from_name, content.from_address))
            if content.from_name
            else content.from_address,
            "To": formataddr((content.to_name, content.to_address))
            if content.to_name
            else content.to_address,
            "Subject": content.subject,
            "MessageStream": self.stream,
            "Tag": message.campaign_id,
            "Metadata": {
                CAMPAIGN_KEY: message.campaign_id,
                DELIVERY_KEY: str(message.delivery_id),
            },
        }
        if content.html:
            body["HtmlBody"] = content.html
        if content.text:
            body["TextBody"] = content.text
        if content.reply_to:
            body["ReplyTo"] = content.reply_to
        if content.headers:
            body["Headers"] = [{"Name": k, "Value": v} for k, v in content.headers.items()]
        return body

    def build_single(self, message: OutgoingMessage) -> httpx.Request:
        return self.request("POST", "/email", json_body=self.payload(message))

    def read_single(self, response: httpx.Response, message: OutgoingMessage) -> str:
        result = self._result(_json(response), message)
        if isinstance(result, DeliveryError):
            raise result
        return result

    def batch_key(self, message: OutgoingMessage) -> Hashable | None:
        return "postmark"  # every message carries its own bodies: any can share a batch

    def build_batch(self, messages: Sequence[OutgoingMessage]) -> httpx.Request:
        return self.request("POST", "/email/batch", json_body=[self.payload(m) for m in messages])

    def read_batch(
        self, response: httpx.Response, messages: Sequence[OutgoingMessage]
    ) -> list[str | DeliveryError]:
        answers = _json(response)
        if not isinstance(answers, list) or len(answers) != len(messages):
            raise PermanentDeliveryError(
                f"{response.status_code} Postmark answered the batch of {len(messages)} "
                "without one result per message",
                provider=self.name,
                code=response.status_code,
            )
        return [self._result(answer, m) for answer, m in zip(answers, messages, strict=True)]

    def _result(self, answer: Any, message: OutgoingMessage) -> str | DeliveryError:
        if not isinstance(answer, dict):
            return PermanentDeliveryError("Postmark sent no result", provider=self.name)
        code = answer.get("ErrorCode", 0)
        text = str(answer.get("Message", "")).strip()
        if code == 0 and answer.get("MessageID"):
            return str(answer["MessageID"])
        if code in ACCOUNT_ERRORS:
            raise ConfigurationError(f"Postmark cannot send for this account ({code}): {text}")
        return PermanentDeliveryError(
            f"Postmark ErrorCode {code}: {text}",
            provider=self.name,
            campaign=message.campaign_id,
            recipient=message.recipient,
            code=code if isinstance(code, int) else None,
        )

    def error_text(self, response: httpx.Response) -> str:
        body = _json(response)
        if isinstance(body, dict) and "Message" in body:
            return f"ErrorCode {body.get('ErrorCode')}: {body.get('Message')}"
        return super().error_text(response)

    def refusal(self, response: httpx.Response) -> Exception:
        body = _json(response)
        if isinstance(body, dict) and body.get("ErrorCode") in ACCOUNT_ERRORS:
            return ConfigurationError(
                f"Postmark cannot send for this account: {self.error_text(response)}"
            )
        return super().refusal(response)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class PostmarkWebhook:
    """Postmark's webhooks: basic auth, one record per request, mapped by record type."""

    provider = "postmark"
    SETTING = "OUTREACH_POSTMARK_WEBHOOK_USER / _PASSWORD"
    RECORDS: ClassVar[dict[str, EventKind]] = {
        "Delivery": EventKind.DELIVERED,
        "Bounce": EventKind.BOUNCED,  # refined by BOUNCES
        "SpamComplaint": EventKind.COMPLAINED,
        "Open": EventKind.OPENED,
        "Click": EventKind.CLICKED,
        "SubscriptionChange": EventKind.UNSUBSCRIBED,  # only when SuppressSending is true
    }
    # bounce Type -> (kind, permanent)
    BOUNCES: ClassVar[dict[str, tuple[EventKind, bool]]] = {
        "HardBounce": (EventKind.BOUNCED, True),
        "BadEmailAddress": (EventKind.BOUNCED, True),
        "SoftBounce": (EventKind.BOUNCED, False),
        "DnsError": (EventKind.BOUNCED, False),
        "Transient": (EventKind.DEFERRED, False),
        "SpamNotification": (EventKind.COMPLAINED, False),
        "SpamComplaint": (EventKind.COMPLAINED, False),
        "Unsubscribe": (EventKind.UNSUBSCRIBED, False),
        "Blocked": (EventKind.REJECTED, False),
        "ManuallyDeactivated": (EventKind.REJECTED, False),
        "DMARCPolicy": (EventKind.REJECTED, False),
        "SMTPApiError": (EventKind.REJECTED, False),
        "AutoResponder": (EventKind.UNKNOWN, False),
        "AddressChange": (EventKind.UNKNOWN, False),
        "Unknown": (EventKind.UNKNOWN, False),
    }
    TIMES: ClassVar[tuple[str, ...]] = ("DeliveredAt", "BouncedAt", "ReceivedAt", "ChangedAt")

    def __init__(self, *, user: str | None, password: str | None) -> None:
        self._user = user
        self._password = password

    def verify(self, *, headers: Mapping[str, str], body: bytes) -> None:
        user = read.require_secret(self._user, provider=self.provider, setting=self.SETTING)
        password = read.require_secret(self._password, provider=self.provider, setting=self.SETTING)
        scheme, _, encoded = (headers.get("authorization") or "").partition(" ")
        try:
            given = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            given = ""
        given_user, colon, given_password = given.partition(":")
        ok_user = read.same(user, given_user)
        ok_password = read.same(password, given_password)
        if scheme.lower() != "basic" or not colon or not (ok_user and ok_password):
            raise WebhookVerificationError("the Postmark webhook credentials do not match")

    def parse(self, body: bytes) -> list[ProviderEvent]:
        return [self.event(read.as_object(read.load_json(body), "body"))]

    def event(self, data: dict[str, Any]) -> ProviderEvent:
        record = read.text(data.get("RecordType"))
        kind = self.RECORDS.get(record, EventKind.UNKNOWN)
        raw_kind, permanent = record or "(none)", False
        if record == "Bounce":
            bounce = read.text(data.get("Type"))
            kind, permanent = self.BOUNCES.get(bounce, (EventKind.UNKNOWN, False))
            raw_kind = f"Bounce/{bounce}"
        elif record == "SubscriptionChange" and data.get("SuppressSending") is not True:
            kind = EventKind.UNKNOWN  # a resubscription
        when = next(
            (read.from_iso(data.get(key)) for key in self.TIMES if read.from_iso(data.get(key))),
            None,
        )
        if when is None:
            raise read.WebhookPayloadError("the Postmark record has no time")
        metadata = read.member(data, "Metadata")
        message_id = read.text(data.get("MessageID"))
        if data.get("ID") is not None and record == "Bounce":
            event_id = f"bounce:{data['ID']}"
        else:
            event_id = read.payload_id(self.provider, data)
        user_agent = read.text(data.get("UserAgent")) or None
        return ProviderEvent(
            provider=self.provider,
            kind=kind,
            raw_kind=raw_kind,
            event_id=event_id,
            occurred_at=when,
            recipient=read.text(data.get("Recipient")) or read.text(data.get("Email")),
            campaign_id=read.text(metadata.get(CAMPAIGN_KEY)) or None,
            delivery_id=read.delivery_id(metadata.get(DELIVERY_KEY)),
            provider_message_id=message_id or None,
            permanent=permanent,
            reason=read.text(data.get("Details")) or read.text(data.get("Description")),
            url=read.text(data.get("OriginalLink")) or None,
            user_agent=user_agent,
            payload=data,
        )
