"""End to end: the shipped contacts and the World Refugee Day campaign, sent through the CLI to a
real SMTP server and recorded in a real SQLite file."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from outreach.cli import app
from outreach.pipeline.tokens import LinkPurpose, LinkSigner
from tests.conftest import REPO
from tests.support.smtp import SmtpServer

CAMPAIGN = REPO / "campaigns" / "world-refugee-day-2018.yaml"
CONTACTS = REPO / "campaigns" / "audiences" / "metropolis-members.csv"
SECRET = "test-secret-for-signing-links"
BASE_URL = "https://outreach.example.org"


def _count_contacts() -> int:
    return sum(1 for line in CONTACTS.read_text(encoding="utf-8").splitlines()[1:] if line.strip())


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "OUTREACH_DATABASE_URL": f"sqlite:///{tmp_path / 'outreach.db'}",
        "OUTREACH_SECRET_KEY": SECRET,
        "OUTREACH_BASE_URL": BASE_URL,
        "OUTREACH_MAILER": f"file://{tmp_path / 'outbox'}",
        "OUTREACH_RETRY_BASE_SECONDS": "0.05",
        "OUTREACH_TEMPLATES_DIR": str(REPO / "templates"),
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def _imported(env: dict[str, str]) -> None:
    code, _, stderr = run(env, "contacts", "import", str(CONTACTS))
    assert code == 0, stderr
    assert "skipped" not in stderr


def test_campaign_reaches_every_contact_once_with_both_parts(env: dict[str, str]) -> None:
    _imported(env)
    with SmtpServer() as server:
        code, stdout, stderr = run(env, "send", str(CAMPAIGN), "--mailer", server.dsn())
        assert code == 0, stdout + stderr
        received = server.messages
        connections = server.connections
    contacts = _count_contacts()
    recipients = [r for message in received for r in message.rcpt_tos]
    assert len(recipients) == contacts == len(set(recipients))
    assert connections < len(received)  # connections are reused across messages
    assert "sent now" in stdout

    signer = LinkSigner(secret=SECRET.encode(), base_url=BASE_URL, lifetime=timedelta(days=365))
    for raw in received:
        message = parse(raw.data)
        assert message.get_content_type() == "multipart/alternative"
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        assert text is not None and html is not None
        html_body = html.get_content()
        assert 'style="' in html_body and "<style" in html_body.lower()  # inlined, media kept
        assert message["X-Outreach-Campaign"] == "world-refugee-day-2018"
        assert message["X-Outreach-Delivery"].isdigit()
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["Message-ID"] and message["Date"]
        # the raw bytes carry the unsubscribe URI intact on one line, never as an encoded-word
        raw_header = re.search(rb"\r\nList-Unsubscribe: (.*?)\r\n(?![ \t])", raw.data, re.S)
        assert raw_header is not None
        uri = raw_header.group(1)
        assert uri.startswith(b"<https://outreach.example.org/u/") and b"=?" not in uri
        token = uri.decode().strip("<>").rsplit("/", 1)[1]
        claims = signer.verify(token, LinkPurpose.UNSUBSCRIBE)
        assert claims.campaign_id == "world-refugee-day-2018"
        assert str(claims.delivery_id) == message["X-Outreach-Delivery"]
        # every tracked link in the HTML verifies too
        links = re.findall(r"https://outreach\.example\.org/([cs])/([\w-]+)", html_body)
        assert len(links) >= 2
        for purpose, token in links:
            signer.verify(token, LinkPurpose(purpose))
    subjects = {parse(r.data)["Subject"] for r in received}
    assert len(subjects) >= 3  # English, French and Spanish variants went out


def test_non_ascii_names_survive(env: dict[str, str]) -> None:
    _imported(env)
    with SmtpServer() as server:
        assert run(env, "send", str(CAMPAIGN), "--mailer", server.dsn())[0] == 0
        received = server.messages
    messages = [parse(r.data) for r in received]
    to_headers = " ".join(str(m["To"]) for m in messages)
    bodies = " ".join(m.get_body(("plain",)).get_content() for m in messages)  # type: ignore[union-attr]
    assert "東京" in to_headers or "東京" in bodies
    assert "São Paulo" in bodies and "Montréal" in bodies
    french = [m for m in messages if "é" in str(m["Subject"])]
    assert french, "the French subject keeps its accents"
    for r in received:
        for line in r.data.split(b"\r\n"):
            assert len(line) <= 998


def test_second_send_sends_nobody_twice(env: dict[str, str]) -> None:
    _imported(env)
    with SmtpServer() as server:
        assert run(env, "send", str(CAMPAIGN), "--mailer", server.dsn())[0] == 0
        first = len(server.messages)
        code, stdout, _ = run(env, "send", str(CAMPAIGN), "--mailer", server.dsn())
        assert code == 0
        assert len(server.messages) == first
    code, stdout, _ = run(env, "report", "world-refugee-day-2018", "--format", "json")
    report = json.loads(stdout)
    assert report["sent"] == first == report["recipients"]
    assert report["failed"] == 0
    assert sum(sum(v.values()) for v in report["by_region"].values()) == first


def test_temporary_failures_are_retried(env: dict[str, str]) -> None:
    _imported(env)
    with SmtpServer(refuse_connections=2, fail_data=3) as server:
        code, stdout, stderr = run(env, "send", str(CAMPAIGN), "--mailer", server.dsn())
        assert code == 0, stdout + stderr
        recipients = [r for m in server.messages for r in m.rcpt_tos]
    assert len(recipients) == _count_contacts() == len(set(recipients))


def test_permanent_failure_is_recorded_with_the_reply(env: dict[str, str]) -> None:
    _imported(env)
    bad = "international@barcelona.example.org"
    with SmtpServer(reject=[bad]) as server:
        code, stdout, stderr = run(env, "send", str(CAMPAIGN), "--mailer", server.dsn())
        delivered = {r for m in server.messages for r in m.rcpt_tos}
    assert code == 0
    assert bad not in delivered and len(delivered) == _count_contacts() - 1
    assert "550" in stderr
    code, stdout, _ = run(
        env, "report", "world-refugee-day-2018", "--format", "csv", "--deliveries"
    )
    row = next(line for line in stdout.splitlines() if bad in line)
    assert ",failed," in row and "550" in row


def test_connection_dropped_mid_campaign_loses_and_duplicates_nothing(
    env: dict[str, str],
) -> None:
    _imported(env)
    with SmtpServer(drop_after=7) as server:
        code, stdout, stderr = run(env, "send", str(CAMPAIGN), "--mailer", server.dsn())
        assert code == 0, stdout + stderr
        recipients = [r for m in server.messages for r in m.rcpt_tos]
    assert len(recipients) == _count_contacts() == len(set(recipients))


def test_wrong_password_stops_without_failing_deliveries(env: dict[str, str]) -> None:
    _imported(env)
    with SmtpServer(auth=("outreach", "right")) as server:
        code, stdout, stderr = run(
            env, "send", str(CAMPAIGN), "--mailer", server.dsn(user="outreach", password="wrong")
        )
        assert not server.messages
    assert code == 2 and "configuration error" in stderr and "wrong" not in stderr
    code, stdout, _ = run(env, "report", "world-refugee-day-2018", "--format", "json")
    report = json.loads(stdout)
    assert report["failed"] == 0 and report["queued"] == report["recipients"]
    assert report["state"] == "paused"


def test_dry_run_sends_nothing_and_explains(env: dict[str, str], tmp_path: Path) -> None:
    _imported(env)
    code, stdout, _ = run(env, "send", str(CAMPAIGN), "--dry-run")
    assert code == 0
    assert "Nothing was sent" in stdout and "would receive" in stdout
    assert not (tmp_path / "outbox").exists()
    code, _, stderr = run(env, "report", "world-refugee-day-2018")
    assert code == 2 and "no campaign" in stderr


def test_file_outbox_is_the_default_transport(env: dict[str, str], tmp_path: Path) -> None:
    _imported(env)
    assert run(env, "send", str(CAMPAIGN))[0] == 0
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == _count_contacts()
    assert parse(files[0].read_bytes())["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_bad_campaign_file_lists_problems_and_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nid: y\nname: Test\ncolour: blue\n", encoding="utf-8")
    code, stdout, stderr = run(env, "validate", str(bad))
    assert code == 2
    assert f"{bad}:2: id: " in stderr and f"{bad}:4: colour: " in stderr
    assert "Traceback" not in stdout + stderr


def test_preview_renders_each_language(env: dict[str, str], tmp_path: Path) -> None:
    for language, word in (("en", "refugees"), ("fr", "réfugiés"), ("es", "refugiados")):
        out = tmp_path / f"{language}.html"
        code, _, stderr = run(
            env, "preview", str(CAMPAIGN), "--language", language, "--out", str(out)
        )
        assert code == 0, stderr
        assert word in out.read_text(encoding="utf-8").lower()
