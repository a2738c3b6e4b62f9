"""The Mailer contract over each HTTP provider, against a local fake of that provider.

The fakes (tests/support/providers.py) check every request the way the provider documents it
and answer with its recorded response shapes. The contract runs over a real HTTP server on
127.0.0.1 reached through the mailer DSN; faults (429 with each header form, 5xx, 401, 400,
a read timeout) are injected with ``httpx.MockTransport`` and a fake clock that records waits.
Then the send loop with a batch provider, and a campaign sent from the CLI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from outreach.bootstrap import Services
from outreach.cli import app
from outreach.domain.delivery import Recipient
from outreach.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownDeliveryError,
)
from outreach.mailers import open_mailer
from outreach.mailers.brevo import BrevoMailer
from outreach.mailers.http import HttpMailer
from outreach.mailers.mailgun import MailgunMailer
from outreach.mailers.postmark import PostmarkMailer
from outreach.mailers.sendgrid import SendGridMailer
from outreach.operations import queue_campaign
from outreach.pipeline.delivery import send_round
from outreach.pipeline.personalise import message_factory
from outreach.pipeline.sending import SendPolicy
from outreach.pipeline.tokens import LinkSigner
from outreach.ports import BatchMailer, OutgoingMessage
from outreach.settings import Settings
from tests.conftest import REPO
from tests.support.http import LocalHttpServer
from tests.support.providers import DOMAIN, FAKES, KEY, Fake, dsn
from tests.support.smtp import free_port

PROVIDERS = ["mailgun", "postmark", "sendgrid", "brevo"]
CAMPAIGN = REPO / "campaigns" / "world-refugee-day-2018.yaml"
CONTACTS = REPO / "campaigns" / "audiences" / "metropolis-members.csv"
SECRET = "test-secret-for-signing-links"
NOW = datetime(2027, 6, 20, 9, 0, tzinfo=UTC)
PEOPLE = [
    ("Ana Souza", "São Paulo", "en"),
    ("Jean-François Tremblay", "Montréal", "fr"),
    ("María Fernández & Co", "Barcelona", "es"),
    ("Zofia <Wójcik>", "Kraków", "en"),
    ("山田 花子", "東京", "fr"),
    ("أحمد محمد", "القاهرة", "es"),
]


# ---- messages made by the real pipeline ----


@pytest.fixture(scope="module")
def build() -> Any:
    services = Services(settings=Settings(templates_dir=str(REPO / "templates")))
    campaign = services.load_campaign(CAMPAIGN)
    signer = LinkSigner(
        secret=SECRET.encode(), base_url="https://outreach.example.org", lifetime=timedelta(1)
    )
    return message_factory(
        campaign=campaign, compiled=services.compile(campaign), signer=signer, now=lambda: NOW
    )


def recipients(count: int) -> Iterator[Recipient]:
    for number in range(1, count + 1):
        name, city, language = PEOPLE[number % len(PEOPLE)]
        yield Recipient(
            delivery_id=number,
            email=f"mayor{number}@city{number}.example.org",
            name=name,
            language=language,
            organisation=city,
            country="ES",
            region="Europe",
            timezone="Europe/Madrid",
        )


@pytest.fixture(scope="module")
def messages(build: Any) -> list[OutgoingMessage]:
    return [build(recipient) for recipient in recipients(24)]


def one_variant(messages: list[OutgoingMessage], count: int) -> list[OutgoingMessage]:
    """``count`` messages of the same language: they share one batch request."""
    key = messages[0].shared.key if messages[0].shared else None
    chosen = [m for m in messages if m.shared and m.shared.key == key][:count]
    assert len(chosen) == count
    return chosen


def mailer_for(provider: str, fake: Fake, **options: Any) -> HttpMailer:
    """A provider mailer that talks to ``fake`` in memory (``httpx.MockTransport``)."""
    common: dict[str, Any] = {
        "base_url": "https://api.test",
        "transport": httpx.MockTransport(fake),
        "backoff": 0.5,
        **options,
    }
    if provider == "mailgun":
        return MailgunMailer(api_key=KEY, domain=DOMAIN, **common)
    if provider == "postmark":
        return PostmarkMailer(server_token=KEY, **common)
    if provider == "sendgrid":
        return SendGridMailer(api_key=KEY, **common)
    return BrevoMailer(api_key=KEY, **common)


class FakeTimer:
    """Time that passes only when the mailer sleeps; every wait is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return NOW + timedelta(seconds=self.now - 1000.0)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def assert_arrived(fake: Fake, message: OutgoingMessage) -> None:
    [copy] = fake.to(message.recipient)
    assert copy.subject == message.subject
    assert copy.html == message.html
    assert copy.text == message.text
    assert copy.to_name == message.recipient_name
    assert copy.headers["List-Unsubscribe"] == message.headers["List-Unsubscribe"]
    assert copy.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert copy.headers["X-Outreach-Delivery"] == str(message.delivery_id)
    assert copy.headers["X-Outreach-Campaign"] == "world-refugee-day-2018"
    assert (copy.campaign, copy.delivery) == ("world-refugee-day-2018", str(message.delivery_id))


# ---- the contract, for every provider, over a real local HTTP server ----


@dataclass
class Running:
    fake: Fake
    server: LocalHttpServer


@pytest.fixture(params=PROVIDERS)
def running(request: pytest.FixtureRequest) -> Iterator[Running]:
    fake = FAKES[request.param]()
    with LocalHttpServer(fake) as server:
        yield Running(fake, server)


async def test_every_message_arrives_with_its_own_fields(
    running: Running, messages: list[OutgoingMessage]
) -> None:
    mailer = open_mailer(dsn(running.fake.name, running.server.port), concurrency=3)
    chosen = messages[:6]

    replies = await asyncio.gather(*(mailer.send(m) for m in chosen))
    await mailer.close()

    assert all(reply and " " not in reply for reply in replies)  # the provider message ids
    assert len(running.fake.delivered) == 6
    for message in chosen:
        assert_arrived(running.fake, message)
    assert 1 <= running.server.connections <= 3  # keep-alive: connections are reused


async def test_a_batch_carries_many_recipients_each_with_their_own_links(
    running: Running, messages: list[OutgoingMessage]
) -> None:
    mailer = open_mailer(dsn(running.fake.name, running.server.port))
    assert isinstance(mailer, BatchMailer) and mailer.max_batch >= 500

    results = await mailer.send_batch(messages)
    await mailer.close()

    assert all(isinstance(result, str) and result for result in results)
    languages = {m.shared.key for m in messages if m.shared}
    expected = 1 if running.fake.name == "postmark" else len(languages)  # one per variant
    assert len(running.fake.requests) == expected == (1 if expected == 1 else 3)
    for message in messages:
        assert_arrived(running.fake, message)


async def test_a_mailer_sends_again_after_close(
    running: Running, messages: list[OutgoingMessage]
) -> None:
    mailer = open_mailer(dsn(running.fake.name, running.server.port))
    await mailer.send(messages[0])
    await mailer.close()
    await mailer.send(messages[1])
    await mailer.close()

    assert [d.to for d in running.fake.delivered] == [messages[0].recipient, messages[1].recipient]


async def test_batch_false_sends_one_request_per_message(
    running: Running, messages: list[OutgoingMessage]
) -> None:
    mailer = open_mailer(dsn(running.fake.name, running.server.port, batch="false"))
    assert isinstance(mailer, HttpMailer) and mailer.max_batch == 1
    results = await mailer.send_batch(messages[:3])
    await mailer.close()
    assert all(isinstance(r, str) for r in results)
    assert len(running.fake.requests) == 3


async def test_a_raw_mime_message_is_sent_from_its_parts(running: Running) -> None:
    """Admin reports carry only MIME bytes: the provider still gets subject and body."""
    data = (
        b"From: Metropolis <news@metropolis.example.org>\r\nTo: admin@metropolis.example.org\r\n"
        b"Subject: [outreach] first send complete\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n1,204 sent, 3 failed\r\n"
    )
    message = OutgoingMessage(
        delivery_id=0,
        campaign_id="world-refugee-day-2018",
        envelope_from="news@metropolis.example.org",
        recipient="admin@metropolis.example.org",
        data=data,
    )
    mailer = open_mailer(dsn(running.fake.name, running.server.port))
    await mailer.send(message)
    await mailer.close()
    [copy] = running.fake.delivered
    assert copy.subject == "[outreach] first send complete"
    assert copy.text.strip() == "1,204 sent, 3 failed"


# ---- limits and errors, with the provider in memory ----


def _request_times(fake: Fake, timer: FakeTimer) -> tuple[list[float], Any]:
    times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(timer.now)
        return fake(request)

    return times, handler


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_retry_after_slows_the_whole_mailer(
    provider: str, form: str, messages: list[OutgoingMessage]
) -> None:
    fake, timer = FAKES[provider](), FakeTimer()
    value = "7" if form == "seconds" else format_datetime(timer.wall() + timedelta(seconds=7), True)
    fake.fail_next(httpx.Response(429, headers={"Retry-After": value}, json={"message": "slow"}))
    times, handler = _request_times(fake, timer)
    mailer = mailer_for(provider, fake, transport=httpx.MockTransport(handler), timer=timer)

    replies = await asyncio.gather(*(mailer.send(m) for m in messages[:4]))

    assert all(replies)
    assert len(fake.delivered) == 4
    assert times[0] == 1000.0  # the throttled request
    assert all(t >= 1007.0 for t in times[1:])  # every later request waited, not just its own
    assert 7.0 in [round(s) for s in timer.sleeps]


@pytest.mark.parametrize(
    ("provider", "header"),
    [("sendgrid", "X-RateLimit-Reset"), ("brevo", "x-sib-ratelimit-reset")],
)
async def test_429_honours_the_providers_reset_header(
    provider: str, header: str, messages: list[OutgoingMessage]
) -> None:
    fake, timer = FAKES[provider](), FakeTimer()
    epoch = str(int((timer.wall() + timedelta(seconds=12)).timestamp()))
    reset = epoch if header == "X-RateLimit-Reset" else "12"  # Unix time, or seconds to wait
    fake.fail_next(httpx.Response(429, headers={header: reset}))
    mailer = mailer_for(provider, fake, timer=timer)

    await mailer.send(messages[0])

    assert [round(s) for s in timer.sleeps] == [12]
    assert len(fake.requests) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_429_too_long_fails_fast_as_temporary_with_retry_after(
    provider: str, messages: list[OutgoingMessage]
) -> None:
    fake, timer = FAKES[provider](), FakeTimer()
    fake.fail_next(httpx.Response(429, headers={"Retry-After": "3600"}))
    mailer = mailer_for(provider, fake, timer=timer, max_wait=60)

    with pytest.raises(TemporaryDeliveryError) as first:
        await mailer.send(messages[0])
    with pytest.raises(TemporaryDeliveryError) as second:
        await mailer.send(messages[1])

    assert first.value.retry_after == pytest.approx(3600, abs=1)
    assert second.value.retry_after == pytest.approx(3600, abs=1)
    assert first.value.recipient == messages[0].recipient
    assert len(fake.requests) == 1  # the second send did not knock again
    assert timer.sleeps == []


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_429_past_the_retries_is_temporary(
    provider: str, messages: list[OutgoingMessage]
) -> None:
    fake, timer = FAKES[provider](), FakeTimer()
    fake.fail_next(httpx.Response(429, headers={"Retry-After": "2"}), times=3)
    mailer = mailer_for(provider, fake, timer=timer, retries=2)

    with pytest.raises(TemporaryDeliveryError) as failure:
        await mailer.send(messages[0])

    assert failure.value.code == 429 and failure.value.retry_after is not None
    assert len(fake.requests) == 3 and fake.delivered == []


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_5xx_is_retried_with_backoff_then_succeeds(
    provider: str, messages: list[OutgoingMessage]
) -> None:
    fake, timer = FAKES[provider](), FakeTimer()
    fake.fail_next(httpx.Response(503, text="upstream unavailable"), times=2)
    mailer = mailer_for(provider, fake, timer=timer, retries=3, backoff=1.0)

    reply = await mailer.send(messages[0])

    assert reply and len(fake.requests) == 3
    assert 0.5 <= timer.sleeps[0] <= 1.5 and 1.0 <= timer.sleeps[1] <= 3.0  # doubling, jittered
    assert_arrived(fake, messages[0])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_5xx_past_the_retries_is_temporary_with_the_providers_reply(
    provider: str, messages: list[OutgoingMessage]
) -> None:
    fake, timer = FAKES[provider](), FakeTimer()
    fake.fail_next(httpx.Response(500, json={"message": "internal error 7f3a"}), times=5)
    mailer = mailer_for(provider, fake, timer=timer, retries=2)

    with pytest.raises(TemporaryDeliveryError) as failure:
        await mailer.send(messages[0])

    assert failure.value.code == 500 and "internal error 7f3a" in failure.value.reply
    assert failure.value.provider == provider
    assert len(fake.requests) == 3


async def test_connection_refused_is_temporary_after_the_retries(
    messages: list[OutgoingMessage],
) -> None:
    mailer = open_mailer(f"sendgrid+api://{KEY}@127.0.0.1:{free_port()}?retries=1")
    assert isinstance(mailer, HttpMailer)
    mailer.backoff = 0.01

    with pytest.raises(TemporaryDeliveryError) as failure:
        await mailer.send(messages[0])

    assert "127.0.0.1" in failure.value.reply and mailer.requests == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_401_stops_the_run_without_retrying_or_showing_the_key(
    provider: str, messages: list[OutgoingMessage]
) -> None:
    fake = FAKES[provider]()
    fake.key = fake.token = "another-key"  # type: ignore[attr-defined]
    mailer = mailer_for(provider, fake, timer=FakeTimer())

    with pytest.raises(ConfigurationError) as failure:
        await mailer.send(messages[0])
    with pytest.raises(ConfigurationError):
        await mailer.send_batch(messages[:3])

    assert not isinstance(failure.value, DeliveryError)
    assert "401" in str(failure.value) and KEY not in str(failure.value)
    assert len(fake.requests) == 2


@pytest.mark.parametrize("provider", ["mailgun", "sendgrid", "brevo", "postmark"])
async def test_a_refused_address_is_permanent_with_the_providers_message(
    provider: str, messages: list[OutgoingMessage]
) -> None:
    fake = FAKES[provider]()
    fake.refuse = {messages[0].recipient}
    mailer = mailer_for(provider, fake, timer=FakeTimer())

    with pytest.raises(PermanentDeliveryError) as failure:
        await mailer.send(messages[0])
    await mailer.send(messages[1])

    words = {"mailgun": "not a valid address", "sendgrid": "valid address",
             "brevo": "email is not valid", "postmark": "inactive"}  # fmt: skip
    assert words[provider] in failure.value.reply
    assert failure.value.recipient == messages[0].recipient
    assert [d.to for d in fake.delivered] == [messages[1].recipient]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_one_refused_address_in_a_batch_fails_alone(
    provider: str, messages: list[OutgoingMessage]
) -> None:
    fake = FAKES[provider]()
    bad = messages[5]
    fake.refuse = {bad.recipient}
    mailer = mailer_for(provider, fake, timer=FakeTimer())

    results = await mailer.send_batch(messages)

    failed = [m for m, r in zip(messages, results, strict=True) if isinstance(r, DeliveryError)]
    assert failed == [bad]
    assert isinstance(results[5], PermanentDeliveryError)
    assert results[5].recipient == bad.recipient
    assert sorted(d.to for d in fake.delivered) == sorted(
        m.recipient for m in messages if m is not bad
    )


async def test_413_is_permanent(messages: list[OutgoingMessage]) -> None:
    fake = FAKES["sendgrid"]()
    fake.fail_next(httpx.Response(413, text="Request Entity Too Large"))
    mailer = mailer_for("sendgrid", fake, timer=FakeTimer())
    with pytest.raises(PermanentDeliveryError) as failure:
        await mailer.send(messages[0])
    assert failure.value.code == 413 and "Too Large" in failure.value.reply


@pytest.mark.parametrize("provider", ["mailgun", "postmark", "sendgrid"])
async def test_read_timeout_after_sending_is_unknown_and_never_resent(
    provider: str, messages: list[OutgoingMessage]
) -> None:
    fake = FAKES[provider]()
    fake.fail_next(error=httpx.ReadTimeout("timed out"), deliver_first=True)
    mailer = mailer_for(provider, fake, timer=FakeTimer(), retries=3)

    with pytest.raises(UnknownDeliveryError) as failure:
        await mailer.send(messages[0])
    results = await mailer.send_batch(one_variant(messages[1:], 2))

    assert failure.value.recipient == messages[0].recipient
    assert len(fake.to(messages[0].recipient)) == 1  # the provider had it: not sent twice
    assert all(isinstance(r, str) for r in results)
    assert len(fake.requests) == 2


async def test_brevo_resends_a_lost_answer_with_the_same_idempotency_key(
    messages: list[OutgoingMessage],
) -> None:
    fake = FAKES["brevo"]()
    fake.fail_next(error=httpx.ReadTimeout("timed out"), deliver_first=True)
    mailer = mailer_for("brevo", fake, timer=FakeTimer())

    batch = one_variant(messages, 5)
    results = await mailer.send_batch(batch)

    assert all(isinstance(r, str) for r in results)
    bodies = [request.content for request in fake.requests]
    assert len(bodies) == 2 and bodies[0] == bodies[1]  # the very same request, same key
    assert b"idempotencyKey" in bodies[0]
    assert sorted(d.to for d in fake.delivered) == sorted(m.recipient for m in batch)


async def test_brevo_answer_lost_every_time_is_unknown(messages: list[OutgoingMessage]) -> None:
    fake = FAKES["brevo"]()
    fake.fail_next(error=httpx.ReadTimeout("timed out"), deliver_first=True, times=4)
    mailer = mailer_for("brevo", fake, timer=FakeTimer(), retries=3)

    with pytest.raises(UnknownDeliveryError):
        await mailer.send(messages[0])

    assert len(fake.requests) == 4 and len(fake.delivered) == 1


@pytest.mark.parametrize(
    ("provider", "response", "words"),
    [
        ("mailgun", httpx.Response(404, json={"message": "Domain not found"}), "sending domain"),
        (
            "postmark",
            httpx.Response(422, json={"ErrorCode": 401, "Message": "Sender not confirmed"}),
            "not confirmed",
        ),
        ("brevo", httpx.Response(402, json={"code": "not_enough_credits"}), "402"),
    ],
)
async def test_an_account_that_cannot_send_stops_the_run(
    provider: str, response: httpx.Response, words: str, messages: list[OutgoingMessage]
) -> None:
    fake = FAKES[provider]()
    fake.fail_next(response)
    mailer = mailer_for(provider, fake, timer=FakeTimer())
    with pytest.raises(ConfigurationError, match=words):
        await mailer.send(messages[0])


# ---- the DSN ----


@pytest.mark.parametrize(
    ("value", "base_url"),
    [
        (f"mailgun+api://{KEY}:{DOMAIN}@default", "https://api.mailgun.net"),
        (f"mailgun+api://{KEY}:{DOMAIN}@default?region=eu", "https://api.eu.mailgun.net"),
        (f"postmark+api://{KEY}@default", "https://api.postmarkapp.com"),
        (f"sendgrid+api://{KEY}@default", "https://api.sendgrid.com"),
        (f"brevo+api://{KEY}@default", "https://api.brevo.com"),
        (f"brevo+api://{KEY}@127.0.0.1:8025", "http://127.0.0.1:8025"),
        (f"sendgrid+api://{KEY}@localhost:8025", "http://localhost:8025"),
        (f"postmark+api://{KEY}@relay.example.org:8443", "https://relay.example.org:8443"),
    ],
)
def test_dsn_picks_the_endpoint_and_plain_http_only_on_loopback(value: str, base_url: str) -> None:
    mailer = open_mailer(value, concurrency=4)
    assert isinstance(mailer, HttpMailer)
    assert mailer.base_url == base_url and mailer.concurrency == 4
    assert KEY not in repr(mailer)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mailgun+api://zq9xkw7v@default", "KEY:DOMAIN"),
        ("mailgun+api://zq9xkw7v:mg.example.org@default?region=asia", "region"),
        ("sendgrid+api://@default", "API key"),
        ("postmark+api://zq9xkw7v@default?stream=Bad%20Stream", "stream"),
        ("brevo+api://zq9xkw7v@default?retries=many", "retries"),
        ("brevo+api://zq9xkw7v@default?fast=yes", "unknown option 'fast'"),
        ("sendgrid+api://zq9xkw7v@default/v3", "no path"),
        ("sparkpost+api://zq9xkw7v@default", "not supported yet"),
    ],
)
def test_bad_provider_dsn_is_explained_without_the_key(value: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as failure:
        open_mailer(value)
    assert expected in str(failure.value) and "zq9x" not in str(failure.value)


# ---- the send loop with a batch provider ----


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'outreach.db'}",
        secret_key=SECRET,
        templates_dir=str(REPO / "templates"),
    )
    svc = Services(settings=settings)
    from outreach.operations import import_contacts

    import_contacts(svc, CONTACTS, encoding=None)
    yield svc
    svc.close()


def _provider_ids(svc: Services) -> list[str]:
    from sqlalchemy import select

    from outreach.store.tables import deliveries

    with svc.engine.connect() as connection:
        return list(
            connection.scalars(
                select(deliveries.c.provider_message_id).where(deliveries.c.status == "sent")
            )
        )


def _statuses(svc: Services) -> dict[str, int]:
    counts = svc.ledger.counts(campaign_id="world-refugee-day-2018", round=0, now=NOW)
    return {k: v for k, v in counts.by_status.items() if v}


async def _send(svc: Services, mailer: HttpMailer) -> Any:
    campaign = svc.load_campaign(CAMPAIGN)
    queue_campaign(svc, campaign, source=None)
    build = message_factory(
        campaign=campaign, compiled=svc.compile(campaign), signer=svc.signer, now=svc.clock.now
    )
    return await send_round(
        campaign_id=campaign.id,
        build=build,
        ledger=svc.ledger,
        mailer=mailer,
        clock=svc.clock,
        policy=SendPolicy(batch_size=200, retry_base=timedelta(seconds=30)),
        worker="test",
    )


async def test_send_loop_hands_batches_over_and_records_each_result(services: Services) -> None:
    fake = FAKES["sendgrid"]()
    fake.refuse = {"international@barcelona.example.org"}
    mailer = mailer_for("sendgrid", fake, timer=FakeTimer())

    summary = await _send(services, mailer)

    contacts = len(CONTACTS.read_text(encoding="utf-8").splitlines()) - 1
    assert summary.sent + summary.failed + summary.suppressed == contacts
    assert len(fake.requests) < summary.sent / 5  # many recipients per request
    assert _statuses(services) == {"sent": summary.sent, "failed": 1}
    [(address, reply)] = summary.failures
    assert address == "international@barcelona.example.org" and "valid address" in reply
    assert len({d.to for d in fake.delivered}) == len(fake.delivered) == summary.sent
    ids = _provider_ids(services)
    assert len(ids) == summary.sent and all(i.startswith("sg") for i in ids)


async def test_send_loop_records_a_lost_answer_as_unknown_and_does_not_resend(
    services: Services,
) -> None:
    fake = FAKES["sendgrid"]()
    fake.fail_next(error=httpx.ReadTimeout("timed out"), deliver_first=True)
    mailer = mailer_for("sendgrid", fake, timer=FakeTimer())

    first = await _send(services, mailer)
    delivered = len(fake.delivered)
    second = await _send(services, mailer)

    assert first.unknown > 0 and _statuses(services).get("unknown") == first.unknown
    assert first.sent + first.unknown == delivered  # the lost answer's batch was accepted
    assert second.sent == 0 and len(fake.delivered) == delivered  # nothing was sent twice


async def test_send_loop_stops_on_401_and_gives_every_claim_back(services: Services) -> None:
    fake = FAKES["mailgun"]()
    fake.key = "another-key"  # type: ignore[attr-defined]
    mailer = mailer_for("mailgun", fake, timer=FakeTimer())

    with pytest.raises(ConfigurationError):
        await _send(services, mailer)

    statuses = _statuses(services)
    assert "sent" not in statuses and "sending" not in statuses and statuses.get("queued")


# ---- a campaign from the command line, through a local fake provider ----


def test_cli_send_through_a_batch_provider_reaches_every_contact_once(tmp_path: Path) -> None:
    fake = FAKES["mailgun"]()
    env = {
        "OUTREACH_DATABASE_URL": f"sqlite:///{tmp_path / 'outreach.db'}",
        "OUTREACH_SECRET_KEY": SECRET,
        "OUTREACH_BASE_URL": "https://outreach.example.org",
        "OUTREACH_TEMPLATES_DIR": str(REPO / "templates"),
    }
    runner = CliRunner()
    assert runner.invoke(app, ["contacts", "import", str(CONTACTS)], env=env).exit_code == 0
    with LocalHttpServer(fake) as server:
        result = runner.invoke(
            app, ["send", str(CAMPAIGN), "--mailer", dsn("mailgun", server.port)], env=env
        )
    assert result.exit_code == 0, result.output
    addresses = [d.to for d in fake.delivered]
    assert len(addresses) == len(set(addresses)) >= 40
    assert len(fake.requests) <= 6  # batches, not one request per contact
    links = {d.headers["List-Unsubscribe"] for d in fake.delivered}
    assert len(links) == len(addresses)  # each member has their own unsubscribe link
    for copy in fake.delivered:
        assert copy.delivery.isdigit() and copy.headers["X-Outreach-Delivery"] == copy.delivery
        assert copy.headers["List-Unsubscribe"].strip("<>") in copy.text  # their own link
        assert "%recipient." not in copy.html + copy.text
