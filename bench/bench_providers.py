"""HTTP provider benchmark: a 10,000-contact campaign handed to a provider API on a local sink.

Two ways of handing the same personalised messages over:

- **batch**: the provider's batch API through ``send_batch`` (SendGrid personalizations by
  default, ``--provider mailgun`` for recipient-variables): up to 1,000 recipients per request,
  the shared body sent once per request, ``--workers`` batches in flight;
- **single**: one request per message (``batch=false``) with keep-alive connections and
  ``--concurrency`` requests in flight per process, in ``--processes`` sending processes (as
  several delivery workers would run).

The sink is a separate process on 127.0.0.1 that reads each request (headers and the whole
body) and answers with the provider's recorded success response; it counts requests and bytes
so the run can check that everything arrived. The messages are built once, before timing, by
the real pipeline (campaign file, templates, signed links): rendering has its own benchmark.
With ``--loop`` it also times the whole send loop (SQLite ledger, personalisation, MIME and
the batch API) for one campaign, as ``outreach send`` runs it.

    python bench/bench_providers.py                       # 10,000 contacts, 5 runs of each
    python bench/bench_providers.py --provider mailgun --runs 7 --processes 2 --loop

See bench/README.md for what the figures mean.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from outreach.bootstrap import Services
from outreach.domain.delivery import Recipient
from outreach.mailers import open_mailer
from outreach.mailers.http import HttpMailer
from outreach.pipeline.personalise import message_factory
from outreach.pipeline.tokens import LinkSigner
from outreach.ports import BatchMailer, OutgoingMessage
from outreach.settings import Settings

REPO = Path(__file__).resolve().parent.parent
CAMPAIGN = REPO / "campaigns" / "world-refugee-day-2018.yaml"
TEMPLATES = REPO / "templates"
KEY = "bench-key"
DOMAIN = "mg.metropolis.example.org"
PEOPLE = [
    ("Ana Souza", "São Paulo", "en"),
    ("Jean-François Tremblay", "Montréal", "fr"),
    ("María Fernández", "Barcelona", "es"),
    ("Zofia Wójcik", "Kraków", "en"),
    ("山田 花子", "東京", "en"),
    ("أحمد محمد", "القاهرة", "fr"),
    ("Aminata Diallo", "Dakar", "fr"),
    ("Lucía Gómez", "Montevideo", "es"),
]

# ---- the sink ------------------------------------------------------------------------------

_ANSWERS = {
    b"/v3/mail/send": b"HTTP/1.1 202 Accepted\r\nX-Message-Id: sgBenchMessage0001\r\n"
    b"Content-Length: 0\r\n\r\n",
}
_MAILGUN = b'{"id":"<20270620.bench@mg.metropolis.example.org>","message":"Queued. Thank you."}'
_DEFAULT = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_MAILGUN),
    _MAILGUN,
)


class _Sink(asyncio.Protocol):
    counts: Any = None  # shared array: requests, bytes

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 : head.find(b"\r\n", at) % (len(head) + 1)]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            path = head.split(b" ", 2)[1]
            del self.buffer[: end + 4 + length]
            self.counts[0] += 1
            self.counts[1] += length
            self.transport.write(_ANSWERS.get(path, _DEFAULT))


def _serve(port: int, ready: Any, counts: Any) -> None:
    async def main() -> None:
        _Sink.counts = counts
        server = await asyncio.get_running_loop().create_server(_Sink, "127.0.0.1", port)
        ready.set()
        await server.serve_forever()

    asyncio.run(main())


def start_sink() -> tuple[mp.Process, int, Any]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ready, counts = mp.Event(), mp.Array("q", 2, lock=False)
    process = mp.Process(target=_serve, args=(port, ready, counts), daemon=True)
    process.start()
    if not ready.wait(10):
        raise SystemExit("the sink did not start")
    return process, port, counts


# ---- the messages --------------------------------------------------------------------------


def recipient(number: int) -> Recipient:
    name, city, language = PEOPLE[number % len(PEOPLE)]
    return Recipient(
        delivery_id=number,
        email=f"contact{number}@city{number % 997}.example.org",
        name=name,
        language=language,
        organisation=city,
        country="ES",
        region="Europe",
        timezone="Europe/Madrid",
    )


def build_messages(contacts: int) -> list[OutgoingMessage]:
    services = Services(settings=Settings(templates_dir=str(TEMPLATES)))
    campaign = services.load_campaign(CAMPAIGN)
    signer = LinkSigner(
        secret=b"bench-secret", base_url="https://outreach.example.org", lifetime=timedelta(365)
    )
    build = message_factory(
        campaign=campaign,
        compiled=services.compile(campaign),
        signer=signer,
        now=lambda: datetime(2027, 6, 20, 9, tzinfo=UTC),
    )
    return [build(recipient(n)) for n in range(1, contacts + 1)]


def dsn(provider: str, port: int, *, batch: bool) -> str:
    credentials = f"{KEY}:{DOMAIN}" if provider == "mailgun" else KEY
    flag = "" if batch else "?batch=false"
    return f"{provider}+api://{credentials}@127.0.0.1:{port}{flag}"


# ---- batch ---------------------------------------------------------------------------------


async def _batch_run(messages: list[OutgoingMessage], url: str, workers: int) -> float:
    mailer = open_mailer(url, concurrency=workers)
    assert isinstance(mailer, BatchMailer)
    size = mailer.max_batch
    chunks = [messages[i : i + size] for i in range(0, len(messages), size)]
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while chunks:
            results = await mailer.send_batch(chunks.pop())
            failures += sum(not isinstance(r, str) for r in results)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - start
    await mailer.close()
    if failures:
        raise SystemExit(f"{failures} messages failed in a batch run")
    return elapsed


# ---- single --------------------------------------------------------------------------------


async def _single_share(messages: list[OutgoingMessage], url: str, concurrency: int) -> None:
    mailer = open_mailer(url, concurrency=concurrency)
    assert isinstance(mailer, HttpMailer) and mailer.max_batch == 1
    queue = list(reversed(messages))

    async def worker() -> None:
        while queue:
            await mailer.send(queue.pop())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await mailer.close()


def _single_process(
    messages: list[OutgoingMessage], url: str, concurrency: int, barrier: Any, times: Any, slot: int
) -> None:
    async def main() -> None:
        await _single_share(messages[:20], url, 2)  # warm up: imports, first connections
        barrier.wait()
        times[2 * slot] = time.monotonic()
        await _single_share(messages[20:], url, concurrency)
        times[2 * slot + 1] = time.monotonic()

    asyncio.run(main())


def single_run(
    messages: list[OutgoingMessage], url: str, concurrency: int, processes: int
) -> float:
    """Seconds from the first process starting to the last one finishing."""
    shares = [messages[i::processes] for i in range(processes)]
    barrier, times = mp.Barrier(processes), mp.Array("d", 2 * processes, lock=False)
    workers = [
        mp.Process(target=_single_process, args=(share, url, concurrency, barrier, times, n))
        for n, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        if worker.exitcode:
            raise SystemExit(f"a sending process failed ({worker.exitcode})")
    return max(times[1::2]) - min(times[0::2])


# ---- the whole send loop -------------------------------------------------------------------


async def _loop_run(contacts: int, url: str) -> tuple[float, int]:
    from outreach.domain.campaign import Campaign
    from outreach.pipeline.delivery import send_round
    from outreach.pipeline.sending import SendPolicy
    from outreach.ports import NewDelivery
    from outreach.store.campaigns import save_campaign
    from outreach.store.contacts import upsert_contacts

    folder = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    services = Services(
        settings=Settings(
            database_url=f"sqlite:///{folder / 'bench.db'}",
            secret_key="bench-secret",
            templates_dir=str(TEMPLATES),
        )
    )
    campaign: Campaign = services.load_campaign(CAMPAIGN)
    from outreach.domain.contacts import Contact, Organisation

    now = services.clock.now()
    people = (
        Contact(
            email=r.email.replace("@", f".{n}@"),
            name=r.name,
            language=r.language,
            tags=frozenset({"member"}),
            organisation=Organisation(
                name=f"{r.organisation} {n}",
                country="ES",
                region="Europe",
                timezone="Europe/Madrid",
            ),
        )
        for n, r in ((n, recipient(n)) for n in range(1, contacts + 1))
    )
    upsert_contacts(services.engine, people, now=now)
    save_campaign(services.engine, campaign, source_path=None, now=now)
    from sqlalchemy import select

    from outreach.store.tables import contacts as contact_rows

    with services.engine.connect() as connection:
        ids = list(connection.scalars(select(contact_rows.c.id)))
    services.ledger.enqueue(
        campaign_id=campaign.id,
        round=0,
        rows=(NewDelivery(contact_id=i, language="en", suppressed=False) for i in ids),
        now=now,
    )
    mailer = open_mailer(url, concurrency=4)
    build = message_factory(
        campaign=campaign,
        compiled=services.compile(campaign),
        signer=services.signer,
        now=services.clock.now,
    )
    start = time.perf_counter()
    summary = await send_round(
        campaign_id=campaign.id,
        build=build,
        ledger=services.ledger,
        mailer=mailer,
        clock=services.clock,
        policy=SendPolicy(batch_size=1000),
        worker="bench",
    )
    elapsed = time.perf_counter() - start
    await mailer.close()
    services.close()
    return elapsed, summary.sent


# ---- main ----------------------------------------------------------------------------------


def spread(name: str, unit: str, rates: list[float]) -> str:
    return (
        f"{name}: median {statistics.median(rates):,.0f} {unit}/s "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}, {len(rates)} runs)"
    )


def measure(label: str, runs: int, once: Callable[[], float], count: int) -> list[float]:
    once()  # warm-up, not counted: imports, first connections, caches
    rates = []
    for _ in range(runs):
        rates.append(count / once())
    print(spread(label, "recipients" if "batch" in label else "messages", rates), flush=True)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--provider", default="sendgrid", choices=["sendgrid", "mailgun", "brevo"])
    parser.add_argument("--single-provider", default="sendgrid")
    parser.add_argument("--workers", type=int, default=4, help="batch requests in flight")
    parser.add_argument("--concurrency", type=int, default=4, help="single requests in flight")
    parser.add_argument("--processes", type=int, default=2, help="single-message processes")
    parser.add_argument("--loop", action="store_true", help="also time the whole send loop")
    args = parser.parse_args()
    mp.set_start_method("fork")

    sink, port, counts = start_sink()
    try:
        started = time.perf_counter()
        messages = build_messages(args.contacts)
        size = sum(len(m.html) + len(m.text) for m in messages) / len(messages)
        print(
            f"{len(messages):,} messages built in {time.perf_counter() - started:.1f} s "
            f"(bodies {size / 1024:.1f} KB each); Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} cores",
            flush=True,
        )
        before = counts[0]
        batch_url = dsn(args.provider, port, batch=True)
        batch = measure(
            f"batch ({args.provider}, {args.workers} in flight)",
            args.runs,
            lambda: asyncio.run(_batch_run(messages, batch_url, args.workers)),
            len(messages),
        )
        print(f"  {(counts[0] - before) / (args.runs + 1):.0f} requests per run", flush=True)
        single_url = dsn(args.single_provider, port, batch=False)
        one = measure(
            f"single, 1 process x {args.concurrency} in flight",
            args.runs,
            lambda: single_run(messages, single_url, args.concurrency, 1),
            len(messages) - 20,
        )
        many = measure(
            f"single, {args.processes} processes x {args.concurrency} in flight",
            args.runs,
            lambda: single_run(messages, single_url, args.concurrency, args.processes),
            len(messages) - 20 * args.processes,
        )
        if args.loop:
            loops = []
            for _ in range(args.runs):
                elapsed, sent = asyncio.run(_loop_run(args.contacts, batch_url))
                assert sent == args.contacts, sent
                loops.append(sent / elapsed)
            print(spread("whole send loop (SQLite, batch API)", "recipients", loops), flush=True)
        print(f"sink: {counts[0]:,} requests, {counts[1] / 1e6:,.0f} MB received", flush=True)
    finally:
        sink.terminate()
    ok = (
        statistics.median(batch) >= 20_000
        and max(statistics.median(one), statistics.median(many)) >= 1_500
    )
    print("targets (batch >= 20,000 recipients/s, single >= 1,500 messages/s):",
          "met" if ok else "MISSED")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
