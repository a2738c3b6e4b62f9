"""The real scheduler (APScheduler with its SQLite job store) sending the World Refugee Day
campaign to a real SMTP server at its scheduled time: once, after restarts, never when too
late, reminders only to cities that have not signed, pause and resume without duplicates."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from outreach.bootstrap import Services, SystemClock
from outreach.cli import app
from outreach.domain.delivery import CampaignState
from outreach.operations import queue_campaign
from outreach.scheduler import SchedulerHandle, start_scheduler
from outreach.settings import Settings
from outreach.store.campaigns import campaign_state, set_campaign_state
from outreach.store.leases import LeaseHeld, acquire, current, release, renew
from outreach.store.signatures import record_response
from outreach.store.tables import contacts, deliveries, organisations, scheduler_leases
from outreach.store.tracking import delivery_context
from tests.conftest import REPO
from tests.support.smtp import Received, SmtpServer

SEED = REPO / "campaigns" / "world-refugee-day-2018.yaml"
CONTACTS = REPO / "campaigns" / "audiences" / "metropolis-members.csv"
CAMPAIGN_ID = "world-refugee-day-2018"
ADMIN = "secretariat-admin@metropolis.example.org"
PARIS = ZoneInfo("Europe/Paris")
HEARTBEAT = 0.2


def _count_contacts() -> int:
    return sum(1 for line in CONTACTS.read_text(encoding="utf-8").splitlines()[1:] if line.strip())


AUDIENCE = _count_contacts()


class ShiftedClock(SystemClock):
    """The system clock, moved: a scheduler that starts 'hours later' without waiting."""

    def __init__(self, shift: timedelta) -> None:
        self.shift = shift

    def now(self) -> datetime:
        return super().now() + self.shift


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with SmtpServer() as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, server: SmtpServer) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'outreach.db'}",
        mailer=server.dsn(),
        secret_key="test-secret-for-signing-links",
        base_url="https://outreach.example.org",
        templates_dir=str(REPO / "templates"),
        admin_emails=[ADMIN],
        retry_base_seconds=0.05,
    )


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return {
        "OUTREACH_DATABASE_URL": settings.database_url,
        "OUTREACH_MAILER": settings.mailer,
        "OUTREACH_SECRET_KEY": str(settings.secret_key),
        "OUTREACH_BASE_URL": settings.base_url,
        "OUTREACH_TEMPLATES_DIR": str(settings.templates_dir),
        "OUTREACH_ADMIN_EMAILS": ADMIN,
    }


@pytest.fixture
def schedulers() -> Iterator[Callable[[Services], SchedulerHandle]]:
    """Starts schedulers; every one still running is stopped after the test."""
    started: list[SchedulerHandle] = []
    made: list[Services] = []

    def start(services: Services) -> SchedulerHandle:
        made.append(services)
        handle = start_scheduler(services, heartbeat=HEARTBEAT, lease=5.0)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.shutdown()
    for services in made:
        services.close()


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def imported(env: dict[str, str]) -> None:
    code, _, stderr = run(env, "contacts", "import", str(CONTACTS))
    assert code == 0, stderr


def campaign_file(
    folder: Path,
    *,
    at: datetime,
    timezone: str = "Europe/Paris",
    max_lateness: str | None = None,
    reminder_after: str | None = None,
) -> Path:
    """The seed campaign, scheduled at ``at`` (given in UTC, written as Paris wall-clock time)."""
    text = SEED.read_text(encoding="utf-8")
    wall = at.astimezone(PARIS).replace(tzinfo=None).isoformat(timespec="seconds")
    block = f"schedule:\n  at: {wall}\n  timezone: {timezone}\n"
    if max_lateness:
        block += f"  max_lateness: {max_lateness}\n"
    text = re.sub(r"schedule:\n  at: .*\n  timezone: .*\n", block, text)
    if reminder_after is None:
        text = text[: text.index("reminders:")]
    else:
        text = text.replace("after: 7d", f"after: {reminder_after}")
    if not (folder / "news").exists():
        shutil.copytree(REPO / "campaigns" / "news", folder / "news")
    path = folder / f"campaign-{time.monotonic_ns()}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def soon(seconds: float) -> datetime:
    """A whole second at least ``seconds`` from now, in UTC."""
    return (datetime.now(UTC) + timedelta(seconds=seconds + 1)).replace(microsecond=0)


def wait_until(check: Callable[[], bool], *, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def to_members(server: SmtpServer) -> list[Received]:
    return [m for m in server.messages if ADMIN not in m.rcpt_tos]


def to_admins(server: SmtpServer) -> list[EmailMessage]:
    return [parse(m.data) for m in server.messages if ADMIN in m.rcpt_tos]


def recipients(messages: list[Received]) -> list[str]:
    return [r for m in messages for r in m.rcpt_tos]


def state_of(services: Services) -> CampaignState | None:
    stored = campaign_state(services.engine, CAMPAIGN_ID)
    return None if stored is None else stored[0]


def scheduled(env: dict[str, str], path: Path) -> str:
    code, stdout, stderr = run(env, "schedule", str(path))
    assert code == 0, stdout + stderr
    return stdout


# --- tests -------------------------------------------------------------------------------------


def test_schedule_prints_every_timezone_group_auckland_first(env: dict[str, str]) -> None:
    imported(env)
    stdout = scheduled(env, SEED)  # 09:00 on 20 June 2027 in each contact's own timezone
    rows = [line.split() for line in stdout.splitlines() if re.match(r"^[A-Z][a-z]+/", line)]
    assert rows[0][:5] == ["Pacific/Auckland", "2027-06-20", "09:00", "NZST", "2027-06-19"]
    assert rows[0][5:] == ["21:00", "UTC", "1"]
    paris = next(row for row in rows if row[0] == "Europe/Paris")
    assert paris[1:7] == ["2027-06-20", "09:00", "CEST", "2027-06-20", "07:00", "UTC"]
    mexico = next(row for row in rows if row[0] == "America/Mexico_City")
    assert mexico[5:] == ["15:00", "UTC", "2"]
    assert sum(int(row[-1]) for row in rows) == AUDIENCE
    utc_times = [(row[4], row[5]) for row in rows]
    assert utc_times == sorted(utc_times)
    assert "reminder 1: 2027-06-27 09:00 local time (7d after the first send)" in stdout
    code, listing, _ = run(env, "schedule", "--list")
    assert code == 0 and f"{CAMPAIGN_ID}  [scheduled]" in listing
    assert "first send   39 group(s): 39 pending; next 2027-06-19 21:00 UTC" in listing
    assert "scheduler: not running" in listing


def test_a_time_in_the_past_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    imported(env)
    path = campaign_file(tmp_path, at=datetime.now(UTC) - timedelta(hours=1))
    code, stdout, stderr = run(env, "schedule", str(path))
    assert code == 2
    line = next(
        n for n, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("  at:")
    )
    assert f"{path}:{line}: schedule.at: " in stderr and "is in the past" in stderr
    assert "Traceback" not in stdout + stderr
    assert run(env, "status", CAMPAIGN_ID)[0] == 2  # nothing was stored


def test_sent_at_its_time_not_before_and_admins_get_a_summary(
    env: dict[str, str],
    settings: Settings,
    server: SmtpServer,
    tmp_path: Path,
    schedulers: Callable[[Services], SchedulerHandle],
) -> None:
    imported(env)
    due = soon(2)
    stdout = scheduled(env, campaign_file(tmp_path, at=due))
    assert f"{due:%Y-%m-%d %H:%M:%S} UTC" in stdout and f"{AUDIENCE:>8}" in stdout
    services = Services(settings=settings)
    schedulers(services)
    while datetime.now(UTC) < due - timedelta(seconds=0.15):
        assert not server.messages, "sent before its time"
        time.sleep(0.05)
    wait_until(lambda: len(to_members(server)) >= AUDIENCE)
    wait_until(lambda: bool(to_admins(server)))
    sent = recipients(to_members(server))
    assert len(sent) == AUDIENCE == len(set(sent))
    with services.engine.connect() as connection:
        first_sent = connection.scalar(select(func.min(deliveries.c.sent_at)))
    assert first_sent is not None and first_sent >= due
    summary = to_admins(server)[0]
    assert "first send complete" in str(summary["Subject"])
    body = summary.get_content()
    assert re.search(rf"sent\s+{AUDIENCE}\s", body) and re.search(r"failed\s+0\s", body)
    assert f"https://outreach.example.org/admin/campaigns/{CAMPAIGN_ID}" in body
    wait_until(lambda: state_of(services) is CampaignState.SENT)
    code, stdout, _ = run(env, "status")
    assert code == 0 and f"{CAMPAIGN_ID}  [sent]" in stdout and f"sent {AUDIENCE}," in stdout
    assert "scheduler: running, pid" in stdout


def test_stopped_and_started_again_the_campaign_goes_out_exactly_once(
    env: dict[str, str],
    settings: Settings,
    server: SmtpServer,
    tmp_path: Path,
    schedulers: Callable[[Services], SchedulerHandle],
    database_url: str,
) -> None:
    """On SQLite and on PostgreSQL: the job survives in the job store of the database."""
    settings = settings.model_copy(update={"database_url": database_url})
    env = {**env, "OUTREACH_DATABASE_URL": database_url}
    imported(env)
    due = soon(2.5)
    scheduled(env, campaign_file(tmp_path, at=due))
    schedulers(Services(settings=settings)).shutdown()  # stopped before its time
    sleep_until(due + timedelta(seconds=0.5))
    assert not server.messages  # nobody scheduled it while the scheduler was down
    services = Services(settings=settings)
    handle = schedulers(services)  # late by half a second: well within max_lateness
    wait_until(lambda: state_of(services) is CampaignState.SENT)
    handle.shutdown()
    again = schedulers(Services(settings=settings))  # once more: nothing is due any more
    time.sleep(HEARTBEAT * 4)
    again.shutdown()  # before the PostgreSQL schema goes away
    sent = recipients(to_members(server))
    assert len(sent) == AUDIENCE == len(set(sent))


def test_a_second_worker_refuses_to_schedule_names_the_holder_and_still_delivers(
    env: dict[str, str],
    settings: Settings,
    server: SmtpServer,
    tmp_path: Path,
    schedulers: Callable[[Services], SchedulerHandle],
) -> None:
    """``outreach worker`` as its own process schedules; a second worker, and a scheduler in
    this process, refuse to schedule and name it, but the second worker still delivers; the
    first picks up a campaign scheduled after it started; both stop cleanly on SIGTERM."""
    imported(env)

    def worker(log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as sink:
            return subprocess.Popen(
                [sys.executable, "-c", "from outreach.cli import main; main()", "worker"],
                env={**os.environ, **env},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def said(log: Path) -> str:
        return " ".join(log.read_text(encoding="utf-8").split())  # the console may wrap lines

    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = worker(first_log)
    second: subprocess.Popen[bytes] | None = None
    probe = Services(settings=settings)
    try:
        wait_until(lambda: current(probe.engine) is not None, timeout=30)
        second = worker(second_log)
        holder = f"pid {first.pid} on"
        wait_until(lambda: f"not scheduling here: {holder}" in said(second_log), timeout=30)
        assert "this worker only delivers" in said(second_log)
        with pytest.raises(LeaseHeld) as refused:
            schedulers(Services(settings=settings))
        assert holder in str(refused.value)
        due = soon(1)
        scheduled(env, campaign_file(tmp_path, at=due))  # booked from this process
        wait_until(lambda: len(to_members(server)) >= AUDIENCE, timeout=20)

        # the scheduling worker frozen, the second one alone sends another campaign
        first.send_signal(signal.SIGSTOP)
        other = campaign_file(tmp_path, at=soon(60))
        other.write_text(
            other.read_text(encoding="utf-8").replace(f"id: {CAMPAIGN_ID}", "id: second-send"),
            encoding="utf-8",
        )
        campaign = probe.load_campaign(other)
        queue_campaign(probe, campaign, source=other)
        set_campaign_state(
            probe.engine, "second-send", CampaignState.SENDING, now=probe.clock.now()
        )
        wait_until(lambda: len(to_members(server)) >= 2 * AUDIENCE, timeout=20)
        first.send_signal(signal.SIGCONT)

        for process in (first, second):
            process.send_signal(signal.SIGTERM)
        assert first.wait(timeout=20) == 0, said(first_log)
        assert second.wait(timeout=20) == 0, said(second_log)
        assert "scheduler stopped" in said(first_log) and "Traceback" not in said(first_log)
        assert "worker stopped" in said(second_log) and "Traceback" not in said(second_log)
        assert current(probe.engine) is None  # the lease was given back
    finally:
        probe.close()
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait()
    members = to_members(server)
    campaigns = Counter(parse(m.data)["X-Outreach-Campaign"] for m in members)
    assert campaigns == {CAMPAIGN_ID: AUDIENCE, "second-send": AUDIENCE}
    sent = [(parse(m.data)["X-Outreach-Campaign"], r) for m in members for r in m.rcpt_tos]
    assert len(sent) == len(set(sent))  # nobody twice


def test_too_late_it_is_not_sent_and_the_campaign_is_missed(
    env: dict[str, str],
    settings: Settings,
    server: SmtpServer,
    tmp_path: Path,
    schedulers: Callable[[Services], SchedulerHandle],
) -> None:
    imported(env)
    due = soon(1)
    scheduled(env, campaign_file(tmp_path, at=due))  # max_lateness: the default hour
    sleep_until(due)
    # the scheduler comes back two hours after the send was due
    services = Services(settings=settings, clock=ShiftedClock(timedelta(hours=2)))
    schedulers(services)
    wait_until(lambda: state_of(services) is CampaignState.MISSED)
    wait_until(lambda: bool(to_admins(server)))
    time.sleep(HEARTBEAT * 3)
    assert not to_members(server)
    notice = to_admins(server)
    assert len(notice) == 1 and "missed" in str(notice[0]["Subject"])
    assert "Europe/Paris" in notice[0].get_content()
    code, stdout, _ = run(env, "status", CAMPAIGN_ID)
    assert code == 0 and f"{CAMPAIGN_ID}  [missed]" in stdout and "not sent: due" in stdout


def _sign(services: Services, city: str) -> None:
    """A contact of ``city`` signs the statement (as the public sign page records it)."""
    with services.engine.connect() as connection:
        delivery_id = connection.scalar(
            select(func.min(deliveries.c.id))
            .join(contacts, contacts.c.id == deliveries.c.contact_id)
            .join(organisations, organisations.c.id == contacts.c.organisation_id)
            .where(organisations.c.name == city, deliveries.c.round == 0)
        )
    context = delivery_context(services.engine, delivery_id)
    assert context is not None
    record_response(
        services.engine,
        context=context,
        cta_id="sign-statement",
        signer_name="A. Signer",
        signer_title="Mayor's office",
        now=datetime.now(UTC),
    )


def test_reminders_go_only_to_cities_that_have_not_signed(
    env: dict[str, str],
    settings: Settings,
    server: SmtpServer,
    tmp_path: Path,
    schedulers: Callable[[Services], SchedulerHandle],
) -> None:
    imported(env)
    due = soon(1)
    scheduled(env, campaign_file(tmp_path, at=due, reminder_after="3s"))
    services = Services(settings=settings)
    schedulers(services)
    wait_until(lambda: len(to_members(server)) >= AUDIENCE)
    first = {m.rcpt_tos[0]: m for m in to_members(server)}
    # Barcelona (two contacts, one of whom signs) and Paris sign before the reminder is due
    _sign(services, "Barcelona")
    _sign(services, "Paris")
    assert datetime.now(UTC) < due + timedelta(seconds=3), "the reminder must still be ahead"
    wait_until(lambda: len(to_admins(server)) >= 2)  # first send and reminder 1 summaries
    reminded = Counter(recipients(to_members(server)[AUDIENCE:]))
    signed = {
        "international@barcelona.example.org",
        "refugees@barcelona.example.org",
        next(address for address in first if "paris" in address),
    }
    assert set(reminded) == set(first) - signed
    assert set(reminded.values()) == {1}
    reminders = [parse(m.data) for m in to_members(server)[AUDIENCE:]]
    english = next(m for m in reminders if "athens" in str(m["To"]))  # Athens reads English
    assert str(english["Subject"]) == "Reminder: has your city joined Cities #WithRefugees?"
    assert {str(m["Subject"]) for m in reminders} == {
        "Reminder: has your city joined Cities #WithRefugees?",
        "Rappel : votre ville a-t-elle rejoint Cities #WithRefugees ?",
        "Recordatorio: ¿su ciudad ya se sumó a Cities #WithRefugees?",
    }
    text = english.get_body(("plain",))
    assert text is not None
    assert "Barcelona and Paris have already signed." in text.get_content()
    subjects = [str(m["Subject"]) for m in to_admins(server)]
    assert any("reminder 1 complete" in s for s in subjects)
    wait_until(lambda: state_of(services) is CampaignState.SENT)


def test_pause_stops_within_a_batch_and_resume_sends_nobody_twice(
    env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
    schedulers: Callable[[Services], SchedulerHandle],
) -> None:
    batch = 10
    imported(env)
    with SmtpServer(delay=0.3) as slow:  # about 26 messages a second: time to pause
        slow_settings = settings.model_copy(update={"mailer": slow.dsn(), "batch_size": batch})
        slow_env = {**env, "OUTREACH_MAILER": slow.dsn()}
        scheduled(slow_env, campaign_file(tmp_path, at=soon(0.5)))
        services = Services(settings=slow_settings)
        schedulers(services)
        wait_until(lambda: len(to_members(slow)) >= 5)
        code, stdout, _ = run(slow_env, "pause", CAMPAIGN_ID)
        assert code == 0 and "paused" in stdout
        at_pause = len(to_members(slow))

        def settled() -> bool:
            with services.engine.connect() as connection:
                return not connection.scalar(
                    select(func.count()).where(deliveries.c.status == "sending")
                )

        wait_until(settled)
        after_pause = len(to_members(slow))
        assert after_pause - at_pause <= batch  # messages in flight finish; nothing else
        time.sleep(HEARTBEAT * 5)  # paused: heartbeats come and go, nothing is sent
        assert len(to_members(slow)) == after_pause < AUDIENCE
        assert state_of(services) is CampaignState.PAUSED
        code, stdout, _ = run(slow_env, "resume", CAMPAIGN_ID)
        assert code == 0 and "resumed" in stdout and "queued message(s)" in stdout
        wait_until(lambda: len(to_members(slow)) >= AUDIENCE)
        wait_until(lambda: state_of(services) is CampaignState.SENT)
        time.sleep(HEARTBEAT * 2)
        sent = recipients(to_members(slow))
    assert len(sent) == AUDIENCE == len(set(sent))


def test_a_cancelled_campaign_is_not_sent(
    env: dict[str, str],
    settings: Settings,
    server: SmtpServer,
    tmp_path: Path,
    schedulers: Callable[[Services], SchedulerHandle],
) -> None:
    imported(env)
    due = soon(1)
    scheduled(env, campaign_file(tmp_path, at=due))
    services = Services(settings=settings)
    schedulers(services)
    code, stdout, _ = run(env, "schedule", "--cancel", CAMPAIGN_ID)
    assert code == 0 and "cancelled" in stdout
    sleep_until(due + timedelta(seconds=HEARTBEAT * 4))
    assert not server.messages
    code, listing, _ = run(env, "schedule", "--list")
    assert f"{CAMPAIGN_ID}  [cancelled]" in listing and "1 cancelled" in listing
    assert run(env, "pause", CAMPAIGN_ID)[0] == 2  # nothing left to pause


def test_the_lease_names_its_holder_and_runs_out(database_url: str) -> None:
    services = Services(settings=Settings(database_url=database_url))
    engine = services.engine
    now = datetime.now(UTC)
    ttl = timedelta(seconds=30)
    acquire(engine, holder="pid 1 on alpha", now=now, ttl=ttl)
    with pytest.raises(LeaseHeld) as held:
        acquire(engine, holder="pid 2 on beta", now=now + timedelta(seconds=5), ttl=ttl)
    assert "pid 1 on alpha" in str(held.value)
    assert renew(engine, holder="pid 1 on alpha", now=now + timedelta(seconds=10), ttl=ttl)
    assert not renew(engine, holder="pid 2 on beta", now=now, ttl=ttl)
    # the holder dies without releasing: its lease runs out, then another may take it
    taken = acquire(engine, holder="pid 2 on beta", now=now + timedelta(seconds=41), ttl=ttl)
    assert taken.holder == "pid 2 on beta"
    assert not renew(engine, holder="pid 1 on alpha", now=now + timedelta(seconds=42), ttl=ttl)
    release(engine, holder="pid 1 on alpha")  # not the holder: changes nothing
    assert current(engine) is not None
    release(engine, holder="pid 2 on beta")
    assert current(engine) is None
    with engine.begin() as connection:  # a stale row with another holder does not block
        acquire(engine, holder="pid 3 on gamma", now=now, ttl=ttl)
        connection.execute(update(scheduler_leases).values(expires_at=now))
    assert acquire(engine, holder="pid 4", now=now + timedelta(seconds=1), ttl=ttl).holder == (
        "pid 4"
    )
    services.close()
