"""Real ``outreach`` processes for crash and scale-out tests: a synthetic audience, the
environment a process reads, starting commands, and waiting for what a user would see."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.conftest import REPO
from tests.support.smtp import SmtpServer

CAMPAIGN = REPO / "campaigns" / "world-refugee-day-2018.yaml"
CAMPAIGN_ID = "world-refugee-day-2018"
LANGUAGES = ("en", "fr", "es")
ZONES = (
    ("Europe", "Europe/Paris", "FR"),
    ("Africa", "Africa/Cairo", "EG"),
    ("Asia-Pacific", "Asia/Tokyo", "JP"),
    ("Latin America", "America/Sao_Paulo", "BR"),
)


def write_audience(path: Path, count: int) -> list[str]:
    """A contacts CSV of ``count`` members (ten per city); returns their addresses."""
    lines = ["city,country,region,timezone,name,email,language,tags"]
    addresses = []
    for number in range(count):
        city = number // 10
        region, zone, country = ZONES[city % len(ZONES)]
        email = f"member{number:05d}@city{city:04d}.example.org"
        language = LANGUAGES[number % len(LANGUAGES)]
        lines.append(
            f"Testville {city:04d},{country},{region},{zone},Member {number},{email},"
            f"{language},member"
        )
        addresses.append(email)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return addresses


def environment(database_url: str, server: SmtpServer, **extra: str) -> dict[str, str]:
    """What an ``outreach`` process reads: this database, this SMTP server, fast retries."""
    return {
        **os.environ,
        "OUTREACH_DATABASE_URL": database_url,
        "OUTREACH_MAILER": server.dsn(),
        "OUTREACH_SECRET_KEY": "test-secret-for-signing-links",
        "OUTREACH_BASE_URL": "https://outreach.example.org",
        "OUTREACH_TEMPLATES_DIR": str(REPO / "templates"),
        "OUTREACH_RETRY_BASE_SECONDS": "0.05",
        **extra,
    }


def command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from outreach.cli import main; main()", *args]


def run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start ``outreach ARGS`` with its output (both streams) going to ``log``."""
    with log.open("ab") as sink:
        return subprocess.Popen(command(*args), env=env, stdout=sink, stderr=subprocess.STDOUT)


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


def wait_for_messages(
    server: SmtpServer, process: subprocess.Popen[bytes], count: int, *, timeout: float = 60
) -> None:
    """Until the server holds ``count`` messages, or the process has ended."""
    wait_until(
        lambda: len(server.messages) >= count or process.poll() is not None,
        timeout=timeout,
        what=f"the server has {count} messages",
    )


def received(server: SmtpServer) -> Counter[str]:
    """How many times each address received a message."""
    return Counter(address for message in server.messages for address in message.rcpt_tos)


def duplicates(counts: Counter[str]) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


def text(path: Path) -> str:
    """A log, with the console's line wrapping undone."""
    return " ".join(path.read_text(encoding="utf-8", errors="replace").split())


def scheduled_campaign(folder: Path, *, at: datetime) -> Path:
    """The seed campaign, without reminders, scheduled at ``at`` (UTC) for everyone at once."""
    wall = at.astimezone(ZoneInfo("Europe/Paris")).replace(tzinfo=None)
    block = f"schedule:\n  at: {wall.isoformat(timespec='seconds')}\n  timezone: Europe/Paris\n"
    definition = CAMPAIGN.read_text(encoding="utf-8")
    definition = re.sub(r"schedule:\n  at: .*\n  timezone: .*\n", block, definition)
    definition = definition[: definition.index("reminders:")]
    if not (folder / "news").exists():
        shutil.copytree(CAMPAIGN.parent / "news", folder / "news")
    path = folder / f"campaign-{time.monotonic_ns()}.yaml"
    path.write_text(definition, encoding="utf-8")
    return path
