"""Several ``outreach worker`` processes on one database: they share the sending of a campaign
(each member exactly once), and exactly one of them schedules at a time, with another taking
over when it stops answering or dies."""

from __future__ import annotations

import re
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from outreach import operations
from outreach.bootstrap import Services
from outreach.cli import app
from outreach.domain.delivery import CampaignState
from outreach.settings import Settings
from outreach.store.campaigns import campaign_state, set_campaign_state
from outreach.store.leases import current
from tests.support.processes import (
    CAMPAIGN,
    CAMPAIGN_ID,
    duplicates,
    environment,
    received,
    scheduled_campaign,
    start,
    text,
    wait_until,
    write_audience,
)
from tests.support.smtp import SmtpServer

FAST_LEASE = ("--heartbeat", "0.5", "--lease", "3")


def services_for(env: dict[str, str]) -> Services:
    return Services(
        settings=Settings(
            database_url=env["OUTREACH_DATABASE_URL"],
            templates_dir=env["OUTREACH_TEMPLATES_DIR"],
            secret_key=env["OUTREACH_SECRET_KEY"],
        )
    )


def stopped(workers: list[subprocess.Popen[bytes]]) -> list[int]:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGCONT)  # in case it was left frozen
            worker.send_signal(signal.SIGTERM)
    return [worker.wait(timeout=30) for worker in workers]


def sent_by(log: Path) -> int:
    """Messages this worker reports having sent (one log line per round it worked on)."""
    found = re.findall(rf"{CAMPAIGN_ID} first send: (\d+) sent", text(log))
    return sum(int(n) for n in found)


def test_workers_share_one_campaign_and_send_each_member_once(
    tmp_path: Path, database_url: str
) -> None:
    """Three workers on PostgreSQL with 5,000 members; two on SQLite, where claims take turns."""
    postgres = database_url.startswith("postgresql")
    audience, count = (5000, 3) if postgres else (1000, 2)
    write_audience(tmp_path / "audience.csv", audience)
    logs = [tmp_path / f"worker-{n}.log" for n in range(count)]
    with SmtpServer(delay=0.002) as server:
        env = environment(database_url, server)
        imported = CliRunner().invoke(
            app, ["contacts", "import", str(tmp_path / "audience.csv")], env=env
        )
        assert imported.exit_code == 0, imported.output
        workers = [start(env, log, "worker", *FAST_LEASE) for log in logs]
        services = services_for(env)
        try:
            wait_until(
                lambda: all("scheduling here" in text(log) for log in logs),
                timeout=60,
                what="every worker is up",
            )
            # queued as `outreach send` would leave it, or as the scheduler does when it is due
            campaign = services.load_campaign(CAMPAIGN)
            operations.queue_campaign(services, campaign, source=CAMPAIGN)
            set_campaign_state(
                services.engine, CAMPAIGN_ID, CampaignState.SENDING, now=services.clock.now()
            )

            def finished() -> bool:
                state = campaign_state(services.engine, CAMPAIGN_ID)
                return state is not None and state[0] is CampaignState.SENT

            wait_until(finished, timeout=60, what="the campaign is sent")
            codes = stopped(workers)
        finally:
            stopped(workers)
            services.close()
        counts = received(server)
    shares = [sent_by(log) for log in logs]
    print(f"{count} workers, {audience} members: {shares} sent by each; {duplicates(counts)} twice")
    assert codes == [0] * count, [text(log)[-2000:] for log in logs]
    assert len(counts) == audience and set(counts.values()) == {1}
    assert sum(shares) == audience
    assert sum(1 for share in shares if share) >= 2  # the work was shared
    for log in logs:
        assert "Traceback" not in text(log) and "worker stopped" in text(log)


def test_one_worker_schedules_and_another_takes_over_when_it_stops_answering_or_dies(
    tmp_path: Path,
) -> None:
    with SmtpServer() as server:
        env = environment(f"sqlite:///{tmp_path / 'outreach.db'}", server)
        write_audience(tmp_path / "audience.csv", 40)
        imported = CliRunner().invoke(
            app, ["contacts", "import", str(tmp_path / "audience.csv")], env=env
        )
        assert imported.exit_code == 0, imported.output
        log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
        a = start(env, log_a, "worker", *FAST_LEASE)
        services = services_for(env)
        b: subprocess.Popen[bytes] | None = None
        try:
            wait_until(lambda: "scheduling here (" in text(log_a), timeout=30, what="A schedules")
            b = start(env, log_b, "worker", *FAST_LEASE)
            holder_a = f"pid {a.pid} on"
            wait_until(
                lambda: f"not scheduling here: {holder_a}" in text(log_b),
                timeout=30,
                what="B says A schedules",
            )
            assert "this worker only delivers" in text(log_b)

            # A stops answering (frozen): its lease runs out and B takes over
            a.send_signal(signal.SIGSTOP)
            wait_until(lambda: "scheduling here (" in text(log_b), timeout=15, what="B takes over")
            assert f"taken over from {holder_a}" in text(log_b)
            lease = current(services.engine)
            assert lease is not None and lease.holder.startswith(f"pid {b.pid} on")
            # A wakes up, finds its lease gone, stops scheduling and only delivers
            a.send_signal(signal.SIGCONT)
            wait_until(
                lambda: f"not scheduling here: pid {b.pid} on" in text(log_a),
                timeout=15,
                what="A gives scheduling up",
            )
            assert "scheduler stopped: the scheduler lease was taken over" in text(log_a)

            # B is killed: A, on the same machine, sees it is gone and takes over at once
            b.kill()
            b.wait()
            wait_until(
                lambda: f"taken over from pid {b.pid} on" in text(log_a),
                timeout=5,
                what="A takes over from the dead B",
            )
            due = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
            booked = CliRunner().invoke(
                app, ["schedule", str(scheduled_campaign(tmp_path, at=due))], env=env
            )
            assert booked.exit_code == 0, booked.output
            wait_until(lambda: len(server.messages) >= 40, timeout=20, what="the campaign is sent")
            assert stopped([a]) == [0]
            assert current(services.engine) is None  # the lease was given back
        finally:
            stopped([a] if b is None else [a, b])
            services.close()
        counts = received(server)
    assert len(counts) == 40 and set(counts.values()) == {1}
    assert "scheduler stopped" in text(log_a) and "Traceback" not in text(log_a)
