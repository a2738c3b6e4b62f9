"""Provider webhooks: captured payloads of every event type of every provider, normalised field
by field; then through the web app against a real SQLite store: signatures, duplicates,
suppressions, delivery statuses and the reconciliation of deliveries left ``unknown``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from outreach.bootstrap import Services
from outreach.domain.delivery import EventKind
from outreach.errors import WebhookVerificationError
from outreach.mailers.brevo import BrevoWebhook
from outreach.mailers.mailgun import MailgunWebhook
from outreach.mailers.postmark import PostmarkWebhook
from outreach.mailers.sendgrid import SendGridWebhook
from outreach.operations import import_contacts, queue_campaign
from outreach.settings import Settings
from outreach.store.tables import deliveries, events, suppressions
from outreach.web.app import create_app
from tests.conftest import REPO
from tests.support.providers import basic
from tests.support.signing import SendGridKey, mailgun_signature

CAMPAIGN_ID = "world-refugee-day-2018"
CAMPAIGN = REPO / "campaigns" / "world-refugee-day-2018.yaml"
CONTACTS = REPO / "campaigns" / "audiences" / "metropolis-members.csv"
MAILGUN_KEY = "mailgun-signing-key-test"
POSTMARK = ("postmark-hooks", "pm-pass-9f2c")
BREVO_TOKEN = "brevo-token-4d1e"
SENDGRID = SendGridKey()
WHEN = datetime(2027, 6, 20, 9, 30, 5, tzinfo=UTC)
EPOCH = int(WHEN.timestamp())
EMAIL = "international@barcelona.example.org"


# ---- captured payloads, one builder per provider ----


def mailgun(event: str, delivery: int = 7, email: str = EMAIL, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": f"mg-{event}-{delivery}-{extra.get('severity', '')}{extra.get('reason', '')}",
        "timestamp": EPOCH + 0.25,
        "event": event,
        "recipient": email,
        "log-level": "info",
        "message": {"headers": {"message-id": "20270620.a1b2c3@mg.metropolis.example.org"}},
        "user-variables": {"outreach-campaign": CAMPAIGN_ID, "outreach-delivery": str(delivery)},
        "tags": [CAMPAIGN_ID],
        "delivery-status": {"code": 250, "message": "OK", "description": ""},
    }
    data.update(extra)
    return data


def sendgrid(event: str, delivery: int = 7, email: str = EMAIL, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "email": email,
        "timestamp": EPOCH,
        "event": event,
        "sg_event_id": f"sg-{event}-{delivery}-{extra.get('type', '')}",
        "sg_message_id": "sgQ3x7bJ9kTeW.filterdrecv-5b8c-1-62B2F9A1-3.0",
        "outreach_campaign": CAMPAIGN_ID,
        "outreach_delivery": str(delivery),
        "category": [CAMPAIGN_ID],
        "smtp-id": "<sgQ3x7bJ9kTeW@ismtpd0001p1lon1.sendgrid.net>",
    }
    data.update(extra)
    return data


def postmark(record: str, delivery: int = 7, email: str = EMAIL, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "RecordType": record,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"outreach_campaign": CAMPAIGN_ID, "outreach_delivery": str(delivery)},
        "Tag": CAMPAIGN_ID,
        "MessageStream": "broadcast",
    }
    if record in ("Bounce", "SpamComplaint"):
        data.update(Email=email, BouncedAt="2027-06-20T09:30:05Z", ID=4323372036 + delivery)
    elif record == "Delivery":
        data.update(Recipient=email, DeliveredAt="2027-06-20T09:30:05Z", Details="250 2.0.0 OK")
    elif record == "SubscriptionChange":
        data.update(Recipient=email, ChangedAt="2027-06-20T09:30:05Z")
    else:
        data.update(Recipient=email, ReceivedAt="2027-06-20T09:30:05Z")
    data.update(extra)
    return data


def brevo(event: str, delivery: int = 7, email: str = EMAIL, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event": event,
        "email": email,
        "id": 5517,
        "date": "2027-06-20 11:30:05",
        "ts": EPOCH,
        "message-id": "<202706200930.12345678901@smtp-relay.mailin.fr>",
        "ts_event": EPOCH,
        "subject": "Sign the Cities #WithRefugees statement",
        "X-Mailin-custom": json.dumps({"campaign": CAMPAIGN_ID, "delivery": delivery}),
        "sending_ip": "185.41.28.109",
        "ts_epoch": EPOCH * 1000 + 250,
        "tags": [CAMPAIGN_ID],
    }
    data.update(extra)
    return data


# ---- every event type, normalised ----

Expect = tuple[EventKind, str, bool, str]  # kind, raw kind, permanent, reason contains

MAILGUN_CASES: list[tuple[dict[str, Any], Expect]] = [
    (mailgun("accepted"), (EventKind.UNKNOWN, "accepted", False, "")),
    (mailgun("delivered"), (EventKind.DELIVERED, "delivered", False, "250 OK")),
    (
        mailgun(
            "failed",
            severity="permanent",
            reason="bounce",
            **{"delivery-status": {"code": 550, "message": "5.1.1 user unknown"}},
        ),
        (EventKind.BOUNCED, "failed", True, "550 5.1.1 user unknown"),
    ),
    (
        mailgun(
            "failed",
            severity="temporary",
            reason="generic",
            **{"delivery-status": {"code": 452, "message": "mailbox full"}},
        ),
        (EventKind.DEFERRED, "failed", False, "452 mailbox full"),
    ),
    (
        mailgun("failed", severity="permanent", reason="suppress-bounce"),
        (EventKind.REJECTED, "failed", False, ""),
    ),
    (mailgun("rejected", reject={"reason": "x"}), (EventKind.REJECTED, "rejected", False, "")),
    (mailgun("complained"), (EventKind.COMPLAINED, "complained", False, "")),
    (mailgun("unsubscribed"), (EventKind.UNSUBSCRIBED, "unsubscribed", False, "")),
    (
        mailgun("opened", **{"client-info": {"user-agent": "Mozilla/5.0"}}),
        (EventKind.OPENED, "opened", False, ""),
    ),
    (
        mailgun("clicked", url="https://outreach.example.org/s/tok"),
        (EventKind.CLICKED, "clicked", False, ""),
    ),
]
SENDGRID_CASES: list[tuple[dict[str, Any], Expect]] = [
    (sendgrid("processed"), (EventKind.UNKNOWN, "processed", False, "")),
    (
        sendgrid("delivered", response="250 2.0.0 OK"),
        (EventKind.DELIVERED, "delivered", False, "250"),
    ),
    (
        sendgrid("deferred", response="451 try later", attempt="2"),
        (EventKind.DEFERRED, "deferred", False, "451"),
    ),
    (
        sendgrid("bounce", type="bounce", status="5.1.1", reason="550 no such user"),
        (EventKind.BOUNCED, "bounce/bounce", True, "5.1.1 550 no such user"),
    ),
    (
        sendgrid("bounce", type="blocked", status="4.0.0", reason="blocked by policy"),
        (EventKind.BOUNCED, "bounce/blocked", False, "blocked by policy"),
    ),
    (
        sendgrid("dropped", reason="Bounced Address"),
        (EventKind.REJECTED, "dropped", False, "Bounced"),
    ),
    (sendgrid("spamreport"), (EventKind.COMPLAINED, "spamreport", False, "")),
    (sendgrid("unsubscribe"), (EventKind.UNSUBSCRIBED, "unsubscribe", False, "")),
    (
        sendgrid("group_unsubscribe", asm_group_id=10),
        (EventKind.UNSUBSCRIBED, "group_unsubscribe", False, ""),
    ),
    (sendgrid("group_resubscribe"), (EventKind.UNKNOWN, "group_resubscribe", False, "")),
    (sendgrid("open", useragent="Mozilla/5.0"), (EventKind.OPENED, "open", False, "")),
    (
        sendgrid("click", url="https://outreach.example.org/c/tok", useragent="Mozilla/5.0"),
        (EventKind.CLICKED, "click", False, ""),
    ),
]
POSTMARK_CASES: list[tuple[dict[str, Any], Expect]] = [
    (postmark("Delivery"), (EventKind.DELIVERED, "Delivery", False, "250 2.0.0 OK")),
    (
        postmark(
            "Bounce",
            Type="HardBounce",
            Description="The server was unable to deliver",
            Details="smtp;550 5.1.1 user unknown",
        ),
        (EventKind.BOUNCED, "Bounce/HardBounce", True, "550 5.1.1"),
    ),
    (
        postmark("Bounce", Type="SoftBounce", Details="mailbox full"),
        (EventKind.BOUNCED, "Bounce/SoftBounce", False, "mailbox full"),
    ),
    (
        postmark("Bounce", Type="Transient", Details="delayed"),
        (EventKind.DEFERRED, "Bounce/Transient", False, "delayed"),
    ),
    (
        postmark("Bounce", Type="ManuallyDeactivated", Details="deactivated"),
        (EventKind.REJECTED, "Bounce/ManuallyDeactivated", False, "deactivated"),
    ),
    (
        postmark("SpamComplaint", Type="SpamComplaint"),
        (EventKind.COMPLAINED, "SpamComplaint", False, ""),
    ),
    (postmark("Open", UserAgent="Mozilla/5.0"), (EventKind.OPENED, "Open", False, "")),
    (
        postmark("Click", OriginalLink="https://outreach.example.org/c/tok"),
        (EventKind.CLICKED, "Click", False, ""),
    ),
    (
        postmark("SubscriptionChange", SuppressSending=True, SuppressionReason="ManualSuppression"),
        (EventKind.UNSUBSCRIBED, "SubscriptionChange", False, ""),
    ),
    (
        postmark("SubscriptionChange", SuppressSending=False),
        (EventKind.UNKNOWN, "SubscriptionChange", False, ""),
    ),
]
BREVO_CASES: list[tuple[dict[str, Any], Expect]] = [
    (brevo("request"), (EventKind.UNKNOWN, "request", False, "")),
    (brevo("delivered"), (EventKind.DELIVERED, "delivered", False, "")),
    (brevo("deferred", reason="greylisted"), (EventKind.DEFERRED, "deferred", False, "grey")),
    (brevo("soft_bounce", reason="mailbox full"), (EventKind.BOUNCED, "soft_bounce", False, "")),
    (
        brevo("hard_bounce", reason="550 unknown user"),
        (EventKind.BOUNCED, "hard_bounce", True, "550"),
    ),
    (brevo("blocked", reason="blocklisted"), (EventKind.REJECTED, "blocked", False, "block")),
    (brevo("invalid_email"), (EventKind.REJECTED, "invalid_email", False, "")),
    (brevo("error", reason="sending failed"), (EventKind.REJECTED, "error", False, "sending")),
    (brevo("spam"), (EventKind.COMPLAINED, "spam", False, "")),
    (brevo("unsubscribed"), (EventKind.UNSUBSCRIBED, "unsubscribed", False, "")),
    (brevo("opened"), (EventKind.OPENED, "opened", False, "")),
    (brevo("unique_opened"), (EventKind.OPENED, "unique_opened", False, "")),
    (brevo("proxy_open"), (EventKind.OPENED, "proxy_open", False, "")),
    (
        brevo("click", link="https://outreach.example.org/c/tok"),
        (EventKind.CLICKED, "click", False, ""),
    ),
]
PARSERS: dict[str, Any] = {
    "mailgun": MailgunWebhook(signing_key=MAILGUN_KEY),
    "sendgrid": SendGridWebhook(public_key=SENDGRID.public),
    "postmark": PostmarkWebhook(user=POSTMARK[0], password=POSTMARK[1]),
    "brevo": BrevoWebhook(token=BREVO_TOKEN),
}
CASES = [
    pytest.param(provider, payload, expect, id=f"{provider}-{expect[1]}-{number}")
    for provider, cases in (
        ("mailgun", MAILGUN_CASES),
        ("sendgrid", SENDGRID_CASES),
        ("postmark", POSTMARK_CASES),
        ("brevo", BREVO_CASES),
    )
    for number, (payload, expect) in enumerate(cases)
]
MESSAGE_IDS = {
    "mailgun": "20270620.a1b2c3@mg.metropolis.example.org",
    "sendgrid": "sgQ3x7bJ9kTeW",
    "postmark": "883953f4-6105-42a2-a16a-77a8eac79483",
    "brevo": "<202706200930.12345678901@smtp-relay.mailin.fr>",
}


def wire(provider: str, payload: dict[str, Any]) -> bytes:
    """The body as the provider posts it."""
    if provider == "mailgun":
        signed_at = str(int(datetime.now(UTC).timestamp()))  # signatures are checked for age
        # one token per signed body, as Mailgun does (a retry of the same post repeats both)
        signed = json.dumps(payload, sort_keys=True) + signed_at
        unique = hashlib.sha1(signed.encode()).hexdigest()[:20]
        signature = {"timestamp": signed_at, "token": "f0e1d2c3b4a5" + unique}
        signature["signature"] = mailgun_signature(MAILGUN_KEY, **signature)
        return json.dumps({"signature": signature, "event-data": payload}).encode()
    if provider == "sendgrid":
        return json.dumps([payload]).encode()
    return json.dumps(payload).encode()


@pytest.mark.parametrize(("provider", "payload", "expect"), CASES)
def test_every_event_type_is_normalised(
    provider: str, payload: dict[str, Any], expect: Expect
) -> None:
    [event] = PARSERS[provider].parse(wire(provider, payload))
    kind, raw_kind, permanent, reason = expect

    assert (event.provider, event.kind, event.raw_kind) == (provider, kind, raw_kind)
    assert event.permanent is permanent
    assert reason in event.reason
    assert event.occurred_at.replace(microsecond=0) == WHEN
    assert (event.recipient, event.campaign_id, event.delivery_id) == (EMAIL, CAMPAIGN_ID, 7)
    assert event.provider_message_id == MESSAGE_IDS[provider]
    assert dict(event.payload) == payload  # the raw payload is kept as received
    assert event.event_id
    link = payload.get("url") or payload.get("OriginalLink") or payload.get("link")
    assert event.url == link
    agent = payload.get("useragent") or payload.get("UserAgent")
    agent = agent or payload.get("client-info", {}).get("user-agent")
    assert event.user_agent == agent


def test_mailgun_refuses_old_signatures_and_a_token_reused_for_another_event() -> None:
    hook = MailgunWebhook(signing_key=MAILGUN_KEY, now=lambda: WHEN)

    def body(timestamp: int, event: str) -> bytes:
        signature = {"timestamp": str(timestamp), "token": "token-1"}
        signature["signature"] = mailgun_signature(MAILGUN_KEY, **signature)
        return json.dumps({"signature": signature, "event-data": mailgun(event)}).encode()

    hook.verify(headers={}, body=body(EPOCH, "delivered"))
    hook.verify(headers={}, body=body(EPOCH, "delivered"))  # a retry of the same post
    with pytest.raises(WebhookVerificationError, match="already used"):
        hook.verify(headers={}, body=body(EPOCH, "complained"))
    with pytest.raises(WebhookVerificationError, match="too old"):
        hook.verify(headers={}, body=body(EPOCH - 2 * 86400, "delivered"))


def test_sendgrid_signature_matches_sendgrids_published_example() -> None:
    """The verifier agrees with the key, signature and payload in SendGrid's own SDK tests."""
    hook = SendGridWebhook(
        public_key="MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhd"
        "bcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
    )
    body = b'{"category":"example_payload","event":"test_event","message_id":"message_id"}'
    headers = {
        "x-twilio-email-event-webhook-signature": "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6"
        "n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=",
        "x-twilio-email-event-webhook-timestamp": "1588788367",
    }
    hook.verify(headers=headers, body=body)
    with pytest.raises(WebhookVerificationError):
        hook.verify(headers=headers, body=body.replace(b"test_event", b"test_evenT"))


# ---- through the web app, against a real store ----


@dataclass
class World:
    services: Services
    client: TestClient
    deliveries: dict[str, int]  # email -> delivery id

    def post(
        self, provider: str, payload: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> Any:
        body = wire(provider, payload)
        return self.client.post(
            f"/webhooks/{provider}", content=body, headers=headers or auth(provider, body)
        )

    def rows(self) -> list[Any]:
        with self.services.engine.connect() as connection:
            return list(connection.execute(select(events).where(events.c.source != "outreach")))

    def status(self, email: str) -> str:
        with self.services.engine.connect() as connection:
            return str(
                connection.scalar(
                    select(deliveries.c.status).where(deliveries.c.id == self.deliveries[email])
                )
            )

    def suppressed(self) -> dict[str, str]:
        with self.services.engine.connect() as connection:
            query = select(suppressions.c.email, suppressions.c.reason)
            return {row.email: row.reason for row in connection.execute(query)}


def auth(provider: str, body: bytes) -> dict[str, str]:
    if provider == "sendgrid":
        return SENDGRID.headers(body)
    if provider == "postmark":
        return {"Authorization": basic(*POSTMARK), "Content-Type": "application/json"}
    if provider == "brevo":
        return {"Authorization": f"Bearer {BREVO_TOKEN}", "Content-Type": "application/json"}
    return {"Content-Type": "application/json"}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'outreach.db'}",
        secret_key="test-secret",
        templates_dir=str(REPO / "templates"),
        mailgun_webhook_signing_key=MAILGUN_KEY,
        sendgrid_webhook_public_key=SENDGRID.public,
        postmark_webhook_user=POSTMARK[0],
        postmark_webhook_password=POSTMARK[1],
        brevo_webhook_token=BREVO_TOKEN,
    )
    services = Services(settings=settings)
    import_contacts(services, CONTACTS, encoding=None)
    queue_campaign(services, services.load_campaign(CAMPAIGN), source=None)
    now = services.clock.now()
    claimed = services.ledger.claim(
        campaign_id=CAMPAIGN_ID,
        round=0,
        worker="t",
        limit=1000,
        now=now,
        lease=timedelta(minutes=5),
    )
    for item in claimed:
        services.ledger.mark_sent(
            item.recipient.delivery_id, reply=f"<pm-{item.recipient.delivery_id}@x>", now=now
        )
    with TestClient(create_app(services)) as client:
        yield World(services, client, {c.recipient.email: c.recipient.delivery_id for c in claimed})
    services.close()


Builder = Callable[..., dict[str, Any]]
DELIVERED: dict[str, tuple[Builder, str]] = {
    "mailgun": (mailgun, "delivered"),
    "sendgrid": (sendgrid, "delivered"),
    "postmark": (postmark, "Delivery"),
    "brevo": (brevo, "delivered"),
}
HARD_BOUNCE: dict[str, Callable[[int, str], dict[str, Any]]] = {
    "mailgun": lambda d, e: mailgun("failed", d, e, severity="permanent", reason="bounce"),
    "sendgrid": lambda d, e: sendgrid("bounce", d, e, type="bounce", reason="550 unknown"),
    "postmark": lambda d, e: postmark("Bounce", d, e, Type="HardBounce", Details="550"),
    "brevo": lambda d, e: brevo("hard_bounce", d, e, reason="550 unknown"),
}
PROVIDERS = list(DELIVERED)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_verified_event_is_recorded_against_its_delivery(world: World, provider: str) -> None:
    delivery = world.deliveries[EMAIL]
    build, name = DELIVERED[provider]
    payload = build(name, delivery)

    response = world.post(provider, payload)

    assert response.status_code == 200
    assert response.json() == {"recorded": 1, "duplicates": 0, "unmatched": 0, "suppressed": 0}
    [row] = world.rows()
    assert (row.kind, row.source, row.delivery_id, row.campaign_id) == (
        "delivered",
        provider,
        delivery,
        CAMPAIGN_ID,
    )
    assert row.payload["raw"] == payload and row.payload["recipient"] == EMAIL
    assert row.occurred_at.replace(microsecond=0) == WHEN
    assert world.status(EMAIL) == "sent"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("forgery", ["wrong-secret", "missing", "tampered"])
def test_an_unverified_request_gets_403_and_changes_nothing(
    world: World, provider: str, forgery: str
) -> None:
    delivery = world.deliveries[EMAIL]
    payload = HARD_BOUNCE[provider](delivery, EMAIL)
    body = wire(provider, payload)
    headers = auth(provider, body)
    if forgery == "wrong-secret":
        if provider == "mailgun":
            body = body.replace(b'"signature": "', b'"signature": "00')
        elif provider == "sendgrid":
            headers = SendGridKey().headers(body)
        elif provider == "postmark":
            headers["Authorization"] = basic(POSTMARK[0], "guess")
        else:
            headers["Authorization"] = "Bearer guess"
    elif forgery == "missing":
        if provider == "mailgun":
            body = json.dumps({"event-data": payload}).encode()
        else:
            headers = {k: v for k, v in headers.items() if k.lower() == "content-type"}
    elif provider == "mailgun":  # Mailgun signs timestamp and token, not the event
        body = body.replace(b"f0e1d2c3b4a5", b"f0e1d2c3b4a6")
    else:  # the body changed after it was signed
        body = body.replace(EMAIL.encode(), b"mayor@athens.example.org")
        if provider in ("postmark", "brevo"):
            headers["Authorization"] = headers["Authorization"][:-2] + "zz"

    response = world.client.post(f"/webhooks/{provider}", content=body, headers=headers)

    assert response.status_code == 403
    assert world.rows() == [] and world.suppressed() == {}
    assert world.status(EMAIL) == "sent"


def test_a_provider_without_a_configured_secret_is_refused(world: World) -> None:
    world.client.app.state.webhooks = {}  # type: ignore[attr-defined]
    world.services.settings.brevo_webhook_token = None
    response = world.post("brevo", brevo("hard_bounce", world.deliveries[EMAIL]))
    assert response.status_code == 403 and "OUTREACH_BREVO_WEBHOOK_TOKEN" in response.text
    assert world.rows() == [] and world.suppressed() == {}


def test_unknown_provider_and_unreadable_body(world: World) -> None:
    assert world.client.post("/webhooks/sparkpost", content=b"{}").status_code == 404
    response = world.client.post(
        "/webhooks/brevo",
        content=b"not json",
        headers={"Authorization": f"Bearer {BREVO_TOKEN}"},
    )
    assert response.status_code == 400 and world.rows() == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_same_event_twice_is_recorded_once(world: World, provider: str) -> None:
    payload = HARD_BOUNCE[provider](world.deliveries[EMAIL], EMAIL)

    first = world.post(provider, payload).json()
    second = world.post(provider, payload).json()

    assert first["recorded"] == 1 and first["suppressed"] == 1
    assert second == {"recorded": 0, "duplicates": 1, "unmatched": 0, "suppressed": 0}
    assert len(world.rows()) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_hard_bounce_suppresses_the_address_and_marks_the_delivery(
    world: World, provider: str
) -> None:
    world.post(provider, HARD_BOUNCE[provider](world.deliveries[EMAIL], EMAIL))

    assert world.status(EMAIL) == "bounced"
    assert world.suppressed() == {EMAIL: "bounced"}


COMPLAINTS: dict[str, Callable[[int], dict[str, Any]]] = {
    "mailgun": lambda d: mailgun("complained", d),
    "sendgrid": lambda d: sendgrid("spamreport", d),
    "postmark": lambda d: postmark("SpamComplaint", d, Type="SpamComplaint"),
    "brevo": lambda d: brevo("spam", d),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_complaint_suppresses_and_is_never_downgraded_by_a_later_bounce(
    world: World, provider: str
) -> None:
    delivery = world.deliveries[EMAIL]
    world.post(provider, COMPLAINTS[provider](delivery))
    world.post(provider, HARD_BOUNCE[provider](delivery, EMAIL))

    assert world.status(EMAIL) == "complained"
    assert world.suppressed() == {EMAIL: "complained"}


def test_a_soft_bounce_neither_suppresses_nor_bounces(world: World) -> None:
    world.post("brevo", brevo("soft_bounce", world.deliveries[EMAIL], reason="mailbox full"))
    world.post("sendgrid", sendgrid("bounce", world.deliveries[EMAIL], type="blocked"))
    assert world.status(EMAIL) == "sent" and world.suppressed() == {}
    assert [row.kind for row in world.rows()] == ["bounced", "bounced"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_unknown_delivery_is_settled_by_the_providers_events(
    world: World, provider: str
) -> None:
    ledger, now = world.services.ledger, world.services.clock.now()
    other = "international@athens.example.org"
    for email in (EMAIL, other):
        ledger.mark_unknown(world.deliveries[email], error="read timeout", now=now)
    build, name = DELIVERED[provider]

    world.post(provider, build(name, world.deliveries[EMAIL]))
    world.post(provider, HARD_BOUNCE[provider](world.deliveries[other], other))

    assert world.status(EMAIL) == "sent"
    assert world.status(other) == "bounced"


def test_a_dropped_message_is_failed_with_the_providers_reason(world: World) -> None:
    world.post("sendgrid", sendgrid("dropped", world.deliveries[EMAIL], reason="Bounced Address"))
    with world.services.engine.connect() as connection:
        error = connection.scalar(
            select(deliveries.c.last_error).where(deliveries.c.id == world.deliveries[EMAIL])
        )
    assert world.status(EMAIL) == "failed" and "Bounced Address" in str(error)


def test_delivery_found_by_provider_message_id_without_metadata(world: World) -> None:
    delivery = world.deliveries[EMAIL]
    payload = postmark("Delivery", delivery, MessageID=f"pm-{delivery}@x")
    del payload["Metadata"]
    assert world.post("postmark", payload).json()["recorded"] == 1
    [row] = world.rows()
    assert row.delivery_id == delivery


def test_metadata_naming_someone_elses_delivery_is_not_trusted(world: World) -> None:
    """Another install on the same provider account has its own delivery 7: the address
    decides, and an event that matches nothing here is kept without a delivery."""
    stranger = "someone@elsewhere.example.net"
    answer = world.post("mailgun", mailgun("delivered", world.deliveries[EMAIL], stranger)).json()
    assert answer == {"recorded": 1, "duplicates": 0, "unmatched": 1, "suppressed": 0}
    [row] = world.rows()
    assert row.delivery_id is None and world.status(EMAIL) == "sent"


def test_a_sendgrid_post_with_many_events_records_each(world: World) -> None:
    emails = list(world.deliveries)[:5]
    items = [sendgrid("delivered", world.deliveries[e], e) for e in emails]
    items.append(sendgrid("delivered", world.deliveries[emails[0]], emails[0]))  # a repeat
    body = json.dumps(items).encode()
    response = world.client.post("/webhooks/sendgrid", content=body, headers=SENDGRID.headers(body))
    assert response.json() == {"recorded": 5, "duplicates": 1, "unmatched": 0, "suppressed": 0}
