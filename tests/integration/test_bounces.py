"""Bounces that come back by mail (RFC 3464 DSNs): parsed, matched by the returned original's
correlation headers or Message-ID, and recorded from ``outreach bounces import`` like a
provider event, in a real SQLite store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from outreach.bootstrap import Services
from outreach.cli import app
from outreach.domain.delivery import EventKind
from outreach.operations import import_contacts, queue_campaign
from outreach.pipeline.bounces import parse_bounce
from outreach.settings import Settings
from outreach.store.tables import deliveries, events, suppressions
from tests.conftest import REPO

CAMPAIGN_ID = "world-refugee-day-2018"
CAMPAIGN = REPO / "campaigns" / "world-refugee-day-2018.yaml"
CONTACTS = REPO / "campaigns" / "audiences" / "metropolis-members.csv"
NOW = datetime(2027, 6, 21, 8, 0, tzinfo=UTC)
EMAIL = "international@barcelona.example.org"


def dsn(
    *,
    delivery: int,
    email: str = EMAIL,
    action: str = "failed",
    status: str = "5.1.1",
    headers_only: bool = True,
    correlation: bool = True,
    dsn_id: str = "20270620091500.ABC@mx.metropolis.example.org",
) -> bytes:
    original = (
        "From: Metropolis <news@metropolis.example.org>\r\n"
        f"To: Marta <{email}>\r\n"
        "Subject: Sign the Cities #WithRefugees statement\r\n"
        f"Message-ID: <{CAMPAIGN_ID}.{delivery}@metropolis.example.org>\r\n"
    )
    if correlation:
        original += f"X-Outreach-Campaign: {CAMPAIGN_ID}\r\nX-Outreach-Delivery: {delivery}\r\n"
    returned = (
        f"Content-Type: text/rfc822-headers\r\n\r\n{original}"
        if headers_only
        else f"Content-Type: message/rfc822\r\n\r\n{original}\r\nDear Marta,\r\n"
    )
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.metropolis.example.org>\r\n"
        "To: bounces@metropolis.example.org\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{dsn_id}>\r\n"
        "Date: Sun, 20 Jun 2027 09:15:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B0"\r\n'
        "\r\n--B0\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "\r\n--B0\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.metropolis.example.org\r\n"
        "Arrival-Date: Sun, 20 Jun 2027 09:14:58 +0000\r\n\r\n"
        f"Final-Recipient: rfc822; {email}\r\n"
        f"Original-Recipient: rfc822;{email}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n"
        "Remote-MTA: dns; mx.barcelona.example.org\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{email}>: Recipient address\r\n"
        "    rejected: User unknown in virtual mailbox table\r\n"
        "Last-Attempt-Date: Sun, 20 Jun 2027 09:15:00 +0000\r\n"
        f"\r\n--B0\r\n{returned}\r\n--B0--\r\n"
    ).encode()


AUTO_REPLY = (
    b"From: Marta <international@barcelona.example.org>\r\nTo: news@metropolis.example.org\r\n"
    b"Subject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\nBack on Monday.\r\n"
)


def test_a_hard_bounce_is_parsed_into_a_normalised_event() -> None:
    [event] = parse_bounce(dsn(delivery=12), source="1.eml", now=NOW) or []

    assert (event.provider, event.kind, event.permanent) == ("dsn", EventKind.BOUNCED, True)
    assert (event.campaign_id, event.delivery_id, event.recipient) == (CAMPAIGN_ID, 12, EMAIL)
    assert event.occurred_at == datetime(2027, 6, 20, 9, 15, tzinfo=UTC)
    assert event.raw_kind == "failed 5.1.1"
    assert "User unknown in virtual mailbox table" in event.reason
    assert event.provider_message_id == f"<{CAMPAIGN_ID}.12@metropolis.example.org>"
    assert event.payload["remote_mta"] == "mx.barcelona.example.org"
    assert event.payload["reporting_mta"] == "mx.metropolis.example.org"


def test_the_message_id_of_a_returned_original_is_enough() -> None:
    raw = dsn(delivery=31, correlation=False, headers_only=False)
    [event] = parse_bounce(raw, source="x", now=NOW) or []
    assert (event.campaign_id, event.delivery_id) == (CAMPAIGN_ID, 31)


@pytest.mark.parametrize(
    ("action", "status", "kind", "permanent"),
    [
        ("failed", "4.2.2", EventKind.BOUNCED, False),
        ("delayed", "4.4.1", EventKind.DEFERRED, False),
        ("delivered", "2.0.0", EventKind.DELIVERED, False),
    ],
)
def test_actions_and_status_classes(
    action: str, status: str, kind: EventKind, permanent: bool
) -> None:
    [event] = parse_bounce(dsn(delivery=3, action=action, status=status), source="x", now=NOW) or []
    assert (event.kind, event.permanent) == (kind, permanent)


def test_a_message_that_is_not_a_dsn_is_not_read_as_one() -> None:
    assert parse_bounce(AUTO_REPLY, source="x", now=NOW) is None


# ---- the command ----


@dataclass
class Store:
    services: Services
    env: dict[str, str]
    deliveries: dict[str, int]

    def status(self, email: str) -> str:
        with self.services.engine.connect() as connection:
            query = select(deliveries.c.status).where(deliveries.c.id == self.deliveries[email])
            return str(connection.scalar(query))

    def suppressed(self) -> dict[str, str]:
        with self.services.engine.connect() as connection:
            rows = connection.execute(select(suppressions.c.email, suppressions.c.reason))
            return {row.email: row.reason for row in rows}

    def events(self) -> list[tuple[str, str, int | None]]:
        with self.services.engine.connect() as connection:
            rows = connection.execute(select(events.c.kind, events.c.source, events.c.delivery_id))
            return [(row.kind, row.source, row.delivery_id) for row in rows]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    env = {
        "OUTREACH_DATABASE_URL": f"sqlite:///{tmp_path / 'outreach.db'}",
        "OUTREACH_SECRET_KEY": "test-secret",
        "OUTREACH_TEMPLATES_DIR": str(REPO / "templates"),
    }
    services = Services(settings=Settings(**{k[9:].lower(): v for k, v in env.items()}))
    import_contacts(services, CONTACTS, encoding=None)
    queue_campaign(services, services.load_campaign(CAMPAIGN), source=None)
    now = services.clock.now()
    claimed = services.ledger.claim(
        campaign_id=CAMPAIGN_ID, round=0, worker="t", limit=1000, now=now, lease=timedelta(1)
    )
    for item in claimed:
        services.ledger.mark_sent(item.recipient.delivery_id, reply="250 queued", now=now)
    yield Store(services, env, {c.recipient.email: c.recipient.delivery_id for c in claimed})
    services.close()


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def maildir(root: Path, files: dict[str, bytes]) -> Path:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, raw in files.items():
        (root / name).write_bytes(raw)
    return root


def test_import_from_a_maildir_records_bounces_and_reports_the_rest(
    store: Store, tmp_path: Path
) -> None:
    barcelona = store.deliveries[EMAIL]
    athens = "international@athens.example.org"
    store.services.ledger.mark_unknown(store.deliveries[athens], error="timeout", now=NOW)
    box = maildir(
        tmp_path / "bounces",
        {
            "new/1.eml": dsn(delivery=barcelona),
            "cur/2.eml:2,S": dsn(delivery=barcelona),  # the same report, kept twice
            "new/3.eml": AUTO_REPLY,
            "new/4.eml": dsn(delivery=99999, email="nobody@nowhere.example", dsn_id="X@mx"),
            "new/5.eml": dsn(
                delivery=store.deliveries[athens],
                email=athens,
                action="delivered",
                status="2.0.0",
                dsn_id="Y@mx",
            ),
        },
    )

    code, output = run(store.env, "bounces", "import", str(box))

    assert code == 0, output
    assert "messages read" in output and "5" in output
    assert "no delivery found" in output and "nobody@nowhere.example" in output
    assert "not a bounce report" in output and "3.eml" in output
    assert store.status(EMAIL) == "bounced"
    assert store.suppressed() == {EMAIL: "bounced"}
    assert store.status(athens) == "sent"  # an unknown delivery, settled by the report
    assert sorted(store.events()) == sorted(
        [("bounced", "dsn", barcelona), ("delivered", "dsn", store.deliveries[athens])]
    )

    again_code, again = run(store.env, "bounces", "import", str(box))
    assert again_code == 0 and len(store.events()) == 2  # imported twice, recorded once
    assert "already recorded" in again


def test_import_of_a_single_file(store: Store, tmp_path: Path) -> None:
    file = tmp_path / "bounce.eml"
    file.write_bytes(dsn(delivery=store.deliveries[EMAIL], action="delayed", status="4.4.1"))
    code, _ = run(store.env, "bounces", "import", str(file))
    assert code == 0
    assert store.events() == [("deferred", "dsn", store.deliveries[EMAIL])]
    assert store.status(EMAIL) == "sent" and store.suppressed() == {}


def test_import_of_a_missing_path_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    code, output = run(store.env, "bounces", "import", str(tmp_path / "nowhere"))
    assert code == 2
    assert "no such file or Maildir" in " ".join(output.split()) and "Traceback" not in output


def test_a_bad_setting_is_named_not_a_traceback(store: Store, tmp_path: Path) -> None:
    env = {**store.env, "OUTREACH_RATE_PER_SECOND": "-1"}
    code, output = run(env, "bounces", "import", str(tmp_path / "nowhere"))
    assert code == 2
    assert "OUTREACH_RATE_PER_SECOND" in output and "Traceback" not in output


def test_a_folder_of_eml_files_is_read_too(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "a.eml").write_bytes(dsn(delivery=store.deliveries[EMAIL]))
    shutil.copy(folder / "a.eml", folder / "b.eml")
    code, _ = run(store.env, "bounces", "import", str(folder))
    assert code == 0 and store.events() == [("bounced", "dsn", store.deliveries[EMAIL])]
