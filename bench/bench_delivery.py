"""Delivery benchmark: the whole send, end to end, against Postfix's smtp-sink on 127.0.0.1.

One run = queue a campaign for N synthetic contacts in a fresh SQLite file, then render, sign,
build MIME, hand every message to the SMTP server over pooled connections and commit every
result (the durable per-message state the product relies on). Beside it, in the same run,
Postfix's own C client ``smtp-source`` sends the same number of messages of the same size to
the same sink: the physical limit of this machine.

    python bench/bench_delivery.py [--contacts 10000] [--repeats 5] [--concurrency 8]
    python bench/bench_delivery.py --contacts 100000 --repeats 1     # memory and rate at scale

Needs /usr/sbin/smtp-sink and /usr/sbin/smtp-source (Debian package ``postfix``). See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from outreach import operations
from outreach.bootstrap import Services
from outreach.domain.contacts import Contact, Organisation
from outreach.settings import Settings
from outreach.store.contacts import upsert_contacts
from outreach.store.engine import open_engine

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN = REPO / "campaigns" / "world-refugee-day-2018.yaml"
SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
CITIES = [
    ("São Paulo", "BR", "Latin America", "America/Sao_Paulo", "pt-BR"),
    ("Montréal", "CA", "North America", "America/Toronto", "fr"),
    ("Barcelona", "ES", "Europe", "Europe/Madrid", "es"),
    ("Kraków", "PL", "Europe", "Europe/Warsaw", "en"),
    ("Tokyo", "JP", "Asia-Pacific", "Asia/Tokyo", "ja"),
    ("Amman", "JO", "Middle East", "Asia/Amman", "ar"),
    ("Dakar", "SN", "Africa", "Africa/Dakar", "fr"),
    ("Mexico City", "MX", "Latin America", "America/Mexico_City", "es"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def contacts(n: int) -> Iterator[Contact]:
    for i in range(n):
        city, country, region, tz, language = CITIES[i % len(CITIES)]
        yield Contact(
            email=f"member{i}@city{i % 997}.example.org",
            name=f"Member {i} of {city}",
            language=language,
            organisation=Organisation(
                name=f"{city} {i % 500}", country=country, region=region, timezone=tz
            ),
            tags=frozenset({"member"}),
        )


def seed(database_url: str, n: int) -> None:
    engine = open_engine(database_url)
    upsert_contacts(engine, contacts(n), now=datetime.now(UTC))
    engine.dispose()


class Sink:
    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [SINK, "-u", "nobody", f"127.0.0.1:{self.port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("smtp-sink did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_outreach(
    n: int, port: int, concurrency: int, folder: Path, recover_as: str = "queue"
) -> tuple[float, int, int]:
    """(messages per second, messages sent, message size) for one fresh send of n contacts."""
    database = folder / f"bench-{time.monotonic_ns()}.db"
    settings = Settings(
        database_url=f"sqlite:///{database}",
        mailer=f"smtp://127.0.0.1:{port}?starttls=never",
        base_url="https://outreach.example.org",
        secret_key="benchmark-only-secret",
        templates_dir=str(REPO / "templates"),
        send_concurrency=concurrency,
        recover_as=recover_as,
    )
    # the contacts are imported by another process, as `outreach contacts import` would be:
    # the peak memory reported is the sending process's own
    seeder = multiprocessing.get_context("spawn").Process(
        target=seed, args=(settings.database_url, n)
    )
    seeder.start()
    seeder.join()
    services = Services(settings=settings)
    campaign = services.load_campaign(CAMPAIGN)
    sample = operations.preview_recipient(services, campaign, email=None, language="en")
    size = len(operations.preview_message(services, campaign, sample).data)
    started = time.perf_counter()
    outcome = asyncio.run(operations.send_campaign(services, campaign))
    elapsed = time.perf_counter() - started
    services.close()
    for leftover in folder.glob(f"{database.name}*"):
        leftover.unlink()
    sent = outcome.summary.sent
    if sent != n:
        raise SystemExit(f"only {sent} of {n} messages were sent: {outcome.summary}")
    return sent / elapsed, sent, size


def run_smtp_source(n: int, port: int, size: int, sessions: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [SOURCE, "-s", str(sessions), "-m", str(n), "-l", str(size), "-f", "news@example.org",
         "-t", "member@example.org", f"127.0.0.1:{port}"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return n / (time.perf_counter() - started)


def spread(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):,.0f} (min {min(values):,.0f}, max {max(values):,.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=16, help="smtp-source sessions")
    parser.add_argument(
        "--recover-as",
        choices=["queue", "unknown"],
        default="queue",
        help="OUTREACH_RECOVER_AS (unknown: senders claim one delivery at a time)",
    )
    args = parser.parse_args()
    for tool in (SINK, SOURCE):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install postfix (only its binaries run)")
    sink = Sink()
    ours: list[float] = []
    theirs: list[float] = []
    size = 0
    try:
        with tempfile.TemporaryDirectory(prefix="outreach-bench-") as tmp:
            for _ in range(args.repeats):
                rate, _sent, size = run_outreach(
                    args.contacts, sink.port, args.concurrency, Path(tmp), args.recover_as
                )
                ours.append(rate)
                print(f"  peak RSS after the send: {peak_rss_mb():.0f} MB", flush=True)
                theirs.append(run_smtp_source(args.contacts, sink.port, size, args.sessions))
                print(
                    f"  outreach {rate:,.0f} msg/s   smtp-source {theirs[-1]:,.0f} msg/s",
                    flush=True,
                )
    finally:
        sink.stop()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.contacts:,} contacts, "
          f"{size:,}-byte messages, concurrency {args.concurrency}, {args.repeats} runs, "
          f"recover_as={args.recover_as}")  # fmt: skip
    print(f"outreach end to end (render + durable state + SMTP): {spread(ours)} msg/s")
    print(f"smtp-source, {args.sessions} sessions, same sink:   {spread(theirs)} msg/s")
    print(
        f"ratio outreach / smtp-source: {statistics.median(ours) / statistics.median(theirs):.2f}"
    )
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
