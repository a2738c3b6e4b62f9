"""Pacing a send: the rates a user sets (in all, and per recipient domain), and claims that
outlast their lease while the pacer holds them back. Real SMTP server, real SQLite file;
times are the server's, when it accepted each message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from outreach.bootstrap import Services
from outreach.cli import app
from outreach.mailers.memory import MemoryMailer
from outreach.operations import queue_campaign
from outreach.pipeline.delivery import send_round
from outreach.pipeline.personalise import message_factory
from outreach.pipeline.ratelimit import RateLimits
from outreach.pipeline.sending import SendPolicy, SendSummary
from outreach.ports import OutgoingMessage
from outreach.settings import Settings
from tests.conftest import REPO
from tests.support.processes import CAMPAIGN, CAMPAIGN_ID, environment, received, write_audience
from tests.support.smtp import Received, SmtpServer


def _import(env: dict[str, str], audience: Path) -> None:
    result = CliRunner().invoke(app, ["contacts", "import", str(audience)], env=env)
    assert result.exit_code == 0, result.output


def _send(env: dict[str, str]) -> str:
    result = CliRunner().invoke(app, ["send", str(CAMPAIGN)], env=env)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def _most_in_one_second(messages: list[Received]) -> int:
    times = sorted(m.at for m in messages)
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


def test_a_rate_per_second_spreads_the_send_and_everyone_gets_it_once(tmp_path: Path) -> None:
    with SmtpServer() as server:
        env = environment(
            f"sqlite:///{tmp_path / 'outreach.db'}", server, OUTREACH_RATE_PER_SECOND="10"
        )
        everyone = write_audience(tmp_path / "audience.csv", 30)
        _import(env, tmp_path / "audience.csv")
        _send(env)
        messages = server.messages
    assert received(server) == {address: 1 for address in everyone}
    times = sorted(m.at for m in messages)
    # ten at once (the burst), then one every 0.1 s: the last twenty take two seconds
    assert times[-1] - times[0] >= 1.8
    assert _most_in_one_second(messages) <= 21


def _relay_audience(path: Path) -> tuple[list[str], list[str]]:
    """Forty members whose addresses share one domain (a government relay), listed first, then
    eight members of eight other cities."""
    lines = ["city,country,region,timezone,name,email,language,tags"]
    relay = [f"mayor{n:02d}@relay.gov.example.org" for n in range(40)]
    others = [f"mayor@city{n}.example.org" for n in range(8)]
    for number, email in enumerate(relay + others):
        lines.append(
            f"Town {number},BR,Latin America,America/Sao_Paulo,Mayor {number},{email},en,member"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return relay, others


def test_a_rate_per_domain_holds_back_that_domain_and_not_the_others(tmp_path: Path) -> None:
    with SmtpServer() as server:
        env = environment(
            f"sqlite:///{tmp_path / 'outreach.db'}",
            server,
            OUTREACH_RATE_PER_DOMAIN="10",
            OUTREACH_SEND_CONCURRENCY="2",
            OUTREACH_BATCH_SIZE="4",
        )
        relay, others = _relay_audience(tmp_path / "audience.csv")
        _import(env, tmp_path / "audience.csv")
        output = _send(env)
        messages = server.messages
    assert received(server) == {address: 1 for address in relay + others}
    start = min(m.at for m in messages)
    to_relay = [m for m in messages if m.rcpt_tos[0].endswith("@relay.gov.example.org")]
    # the relay gets ten a second: forty take more than three seconds ...
    assert max(m.at for m in to_relay) - start >= 2.8
    assert _most_in_one_second(to_relay) <= 21
    # ... while both senders held relay messages first, the other cities did not wait for them
    assert all(m.at - start < 2.0 for m in messages if m not in to_relay)
    assert "held back for a domain's rate limit" in output


# ---- claims and their lease, in the send loop ----


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'outreach.db'}",
        secret_key="test-secret-for-signing-links",
        templates_dir=str(REPO / "templates"),
    )
    write_audience(tmp_path / "audience.csv", 12)
    svc = Services(settings=settings)
    _import({"OUTREACH_DATABASE_URL": settings.database_url}, tmp_path / "audience.csv")
    queue_campaign(svc, svc.load_campaign(CAMPAIGN), source=None)
    yield svc
    svc.close()


async def _other_worker(svc: Services, taken: list[int], *, until: asyncio.Event) -> None:
    """Another process, once the sender has claimed: recovers claims whose lease ran out, and
    takes them."""
    while not svc.ledger.claimants(campaign_id=CAMPAIGN_ID):
        await asyncio.sleep(0.001)
    while not until.is_set():
        now = svc.clock.now()
        svc.ledger.recover(campaign_id=CAMPAIGN_ID, as_unknown=False, now=now)
        claimed = svc.ledger.claim(
            campaign_id=CAMPAIGN_ID,
            round=0,
            worker="other",
            limit=100,
            now=now,
            lease=timedelta(minutes=10),
        )
        taken.extend(c.recipient.delivery_id for c in claimed)
        await asyncio.sleep(0.05)


@dataclass
class Race:
    summary: SendSummary
    sent: list[OutgoingMessage]
    taken: list[int]  # deliveries the other worker recovered and claimed


async def _race(svc: Services, *, lease: float, per_second: float) -> Race:
    """One sender claims all twelve deliveries and sends them at ``per_second`` with claims
    leased for ``lease`` seconds, while ``_other_worker`` recovers what runs out."""
    campaign = svc.load_campaign(CAMPAIGN)
    build = message_factory(
        campaign=campaign, compiled=svc.compile(campaign), signer=svc.signer, now=svc.clock.now
    )
    policy = SendPolicy(
        batch_size=12,
        lease=timedelta(seconds=lease),
        limits=RateLimits(per_second=per_second),
    )
    mailer = MemoryMailer(concurrency=1)
    done, taken = asyncio.Event(), []
    other = asyncio.create_task(_other_worker(svc, taken, until=done))
    try:
        summary = await send_round(
            campaign_id=CAMPAIGN_ID,
            build=build,
            ledger=svc.ledger,
            mailer=mailer,
            clock=svc.clock,
            policy=policy,
            worker="paced",
        )
    finally:
        done.set()
        await other
    return Race(summary, mailer.sent, taken)


async def test_a_sender_held_back_by_the_rate_keeps_its_claims(services: Services) -> None:
    # at four a second the twelve take three seconds; the lease is 0.6
    race = await _race(services, lease=0.6, per_second=4)

    assert race.taken == []
    assert race.summary.sent == 12 and len({m.recipient for m in race.sent}) == 12


async def test_claims_recovered_by_another_process_meanwhile_are_left_to_it(
    services: Services,
) -> None:
    # one a second: the sender sleeps a second before its second message, long after its
    # 0.3-second lease has run out, and another worker has taken the rest by then
    race = await _race(services, lease=0.3, per_second=1)

    assert race.summary.sent == len(race.sent) == 1
    assert len(race.taken) == 11
    counts = services.ledger.counts(campaign_id=CAMPAIGN_ID, round=0, now=services.clock.now())
    assert counts.by_status == {"sent": 1, "sending": 11}
    assert services.ledger.claimants(campaign_id=CAMPAIGN_ID) == {"other"}
