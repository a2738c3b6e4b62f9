"""Scale-out benchmark: one campaign delivered by 1 or 2 real ``outreach worker`` processes.

The send is the one of ``bench_delivery.py`` (the same synthetic contacts, the World Refugee Day
campaign, Postfix's ``smtp-sink`` on 127.0.0.1), but the messages are sent by ``outreach
worker`` processes, as in production with several workers, on PostgreSQL and on SQLite.

One run: a fresh database (a new PostgreSQL schema, dropped afterwards, or a new SQLite file),
the contacts imported, the campaign queued but left in ``draft``; then the workers are started
and left idle until each says it is running and has polled once (Python start-up, imports and
the first database connection are not timed). After a wait for the machine to be quiet (other
work on a shared machine is the main noise) and a random fraction of the workers' poll
interval, the campaign is flipped to ``sending`` and the clock starts; it stops at the
``sent_at`` of the last delivery recorded. Two figures per run:

- **end to end**: from the flip to the last ``sent_at``: what a user waits, including the
  worker's poll interval (on average half of it before a worker notices the campaign),
  compiling the campaign in each worker and opening its SMTP connections;
- **sending**: from the first ``sent_at`` to the last, counting the messages recorded after the
  first commit: the rate once the workers are sending.

Each run also reports the CPU time used during the send by the workers, by the PostgreSQL
backends serving them, by smtp-sink and by every other process on the machine (the noise), and
the rate that CPU cost would allow on an otherwise idle machine. Beside the runs, Postfix's own
C client ``smtp-source`` sends the same number of messages of the same size to the same sink:
the physical limit of this machine. The script exits 1 when the best configuration's median
end-to-end rate is below ``--target``.

    python bench/bench_workers.py [--contacts 10000] [--repeats 3] [--concurrency 8]
    python bench/bench_workers.py --backends postgres --workers 1 2 3 --batch-size 100

Needs /usr/sbin/smtp-sink and /usr/sbin/smtp-source (Debian package ``postfix``) and, for the
PostgreSQL runs, the server on 127.0.0.1:5432 (user postgres, database test, or
``--postgres URL``). See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, select, text

from outreach import operations
from outreach.bootstrap import Services
from outreach.domain.delivery import CampaignState, DeliveryStatus
from outreach.settings import Settings
from outreach.store.campaigns import campaign_state, set_campaign_state
from outreach.store.tables import deliveries
from outreach.workers import POLL_SECONDS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_delivery import (  # the sibling benchmark: same contacts, same sink
    CAMPAIGN,
    REPO,
    SINK,
    SOURCE,
    Sink,
    run_smtp_source,
    seed,
    spread,
)

CAMPAIGN_ID = "world-refugee-day-2018"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SENT = DeliveryStatus.SENT.value
SECRET = "benchmark-only-secret"


@dataclass(frozen=True)
class Run:
    backend: str
    workers: int
    end_to_end: float  # messages/s, from the flip to the last sent_at
    sending: float  # messages/s, first sent_at to last
    seconds: float  # flip to the last sent_at
    first_after: float  # flip to the first sent_at: poll wait, compile, connect, first commit
    shares: list[int]  # messages each worker says it sent
    worker_cpu: float  # CPU seconds the workers used, together
    sink_cpu: float  # CPU seconds smtp-sink used
    database_cpu: float  # CPU seconds of the PostgreSQL backends serving the workers
    others_cpu: float  # CPU seconds used by every other process on the machine (noise)
    machine_busy: float  # share of both cores busy during the send (every process)
    load: float  # 1-minute load average just before the flip
    others_top: str  # the other processes that used the most CPU during the send

    @property
    def quiet(self) -> bool:
        """Other processes used less than a fifth of one core during the send."""
        return self.others_cpu < 0.2 * self.seconds


# --- processes and the machine -----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def backends_cpu(engine: Engine, application: str | None) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving ``application`` (the workers)."""
    if application is None:
        return {}
    with engine.connect() as connection:
        pids = connection.scalars(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
            {"name": application},
        ).all()
    found = {}
    for pid in pids:
        try:
            found[int(pid)] = cpu_seconds(int(pid))
        except OSError:  # the backend has just ended
            continue
    return found


def all_cpu() -> dict[int, tuple[str, float]]:
    """(name, CPU seconds so far) of every process on the machine."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
                found[int(entry.name)] = (name, cpu_seconds(int(entry.name)))
            except (OSError, IndexError, ValueError):  # it ended meanwhile
                continue
    return found


def top_others(before: dict[int, tuple[str, float]], ours: set[int]) -> str:
    """The three other processes that used the most CPU since ``before``."""
    used = []
    for pid, (name, seconds) in all_cpu().items():
        if pid not in ours:
            used.append((seconds - before.get(pid, (name, 0.0))[1], name, pid))
    used.sort(reverse=True)
    return ", ".join(f"{name} {seconds:.1f}" for seconds, name, _pid in used[:3] if seconds >= 0.1)


def wait_for_quiet(limit: float, *, busy_below: float = 0.25) -> None:
    """Wait (at most ``limit`` seconds) until the cores are less than ``busy_below`` busy over
    half a second: other work on a shared machine is the main noise in these figures."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        busy_before, total_before = machine_ticks()
        time.sleep(0.5)
        busy_after, total_after = machine_ticks()
        if (busy_after - busy_before) / max(1, total_after - total_before) < busy_below:
            return


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(values[:8])
    return total - values[3] - values[4], total


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, every: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g}s waiting until {what}")
        time.sleep(every)


def worker_command() -> list[str]:
    script = Path(sys.executable).parent / "outreach"
    if script.exists():
        return [str(script), "worker"]
    return [sys.executable, "-c", "from outreach.cli import main; main()", "worker"]


def log_text(path: Path) -> str:
    """A worker's log, with the console's line wrapping undone."""
    return " ".join(path.read_text(encoding="utf-8", errors="replace").split())


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each worker we started, then wait; SIGKILL only one that does not stop."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print(f"  worker {worker.pid} ignored SIGTERM for 30 s: killed", flush=True)
            worker.kill()
            worker.wait(timeout=10)


# --- databases ---------------------------------------------------------------------------------


@contextmanager
def fresh_database(
    backend: str, folder: Path, postgres: str
) -> Iterator[tuple[str, str, str | None]]:
    """An empty database, removed afterwards: (the workers' URL, this process's URL, the
    application name the workers' PostgreSQL connections carry, or None for SQLite)."""
    if backend == "sqlite":
        path = folder / f"bench-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}", f"sqlite:///{path}", None
        finally:
            for leftover in folder.glob(f"{path.name}*"):
                leftover.unlink()
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{postgres}?options=-csearch_path%3D{schema}"
        try:
            yield f"{url}&application_name={schema}", f"{url}&application_name=bench", schema
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def sent_count(engine: Engine) -> int:
    with engine.connect() as connection:
        query = select(func.count()).where(
            deliveries.c.campaign_id == CAMPAIGN_ID, deliveries.c.status == SENT
        )
        return int(connection.scalar(query) or 0)


def sent_span(engine: Engine) -> tuple[datetime, datetime, int]:
    """(first sent_at, last sent_at, deliveries recorded at the first instant)."""
    with engine.connect() as connection:
        first, last = connection.execute(
            select(func.min(deliveries.c.sent_at), func.max(deliveries.c.sent_at)).where(
                deliveries.c.campaign_id == CAMPAIGN_ID, deliveries.c.status == SENT
            )
        ).one()
        at_first = connection.scalar(
            select(func.count()).where(
                deliveries.c.campaign_id == CAMPAIGN_ID, deliveries.c.sent_at == first
            )
        )
    return _utc(first), _utc(last), int(at_first or 0)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- one run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    contacts: int
    port: int
    concurrency: int
    folder: Path
    postgres: str
    sink_pid: int
    batch_size: int  # OUTREACH_BATCH_SIZE: deliveries one sender claims at once
    quiet_wait: float  # seconds to wait, at most, for a quiet machine before each send


def message_size(services: Services) -> int:
    campaign = services.load_campaign(CAMPAIGN)
    sample = operations.preview_recipient(services, campaign, email=None, language="en")
    return len(operations.preview_message(services, campaign, sample).data)


def run_workers(setup: Setup, *, backend: str, count: int) -> tuple[Run, int]:
    """One fresh send of the campaign by ``count`` workers; also returns the message size."""
    n = setup.contacts
    with fresh_database(backend, setup.folder, setup.postgres) as (url, own_url, application):
        seed(own_url, n)
        settings = Settings(
            database_url=own_url,
            mailer=f"smtp://127.0.0.1:{setup.port}?starttls=never",
            base_url="https://outreach.example.org",
            secret_key=SECRET,
            templates_dir=str(REPO / "templates"),
            send_concurrency=setup.concurrency,
            batch_size=setup.batch_size,
        )
        env = {
            **os.environ,
            "OUTREACH_DATABASE_URL": url,
            "OUTREACH_MAILER": settings.mailer,
            "OUTREACH_BASE_URL": settings.base_url,
            "OUTREACH_SECRET_KEY": SECRET,
            "OUTREACH_TEMPLATES_DIR": str(REPO / "templates"),
            "OUTREACH_SEND_CONCURRENCY": str(setup.concurrency),
            "OUTREACH_BATCH_SIZE": str(setup.batch_size),
        }
        services = Services(settings=settings)
        try:
            size = message_size(services)
            campaign = services.load_campaign(CAMPAIGN)
            operations.queue_campaign(services, campaign, source=CAMPAIGN)  # draft: not sent yet
            run = _timed_send(
                setup, services, env, backend=backend, count=count, application=application
            )
        finally:
            services.close()
    return run, size


def _timed_send(
    setup: Setup,
    services: Services,
    env: dict[str, str],
    *,
    backend: str,
    count: int,
    application: str | None,
) -> Run:
    engine = services.engine
    logs = [setup.folder / f"worker-{uuid.uuid4().hex[:8]}.log" for _ in range(count)]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for log in logs:
            with log.open("wb") as sink:
                workers.append(
                    subprocess.Popen(
                        worker_command(), env=env, cwd=setup.folder, stdout=sink,
                        stderr=subprocess.STDOUT,
                    )
                )  # fmt: skip
        wait_until(
            lambda: (
                all("running:" in log_text(log) for log in logs)
                or any(w.poll() is not None for w in workers)
            ),
            timeout=60,
            what="every worker is running",
            every=0.05,
        )
        if any(w.poll() is not None for w in workers):
            raise SystemExit("a worker stopped on start:\n" + log_text(logs[0])[-2000:])
        time.sleep(1.5)  # each worker has polled an empty queue at least once
        wait_for_quiet(setup.quiet_wait)
        # a worker looks for work every POLL_SECONDS: flip at a random point of that cycle, so
        # the end-to-end time includes the average wait a user sees, not always the same one
        time.sleep(random.uniform(0, POLL_SECONDS))
        load = os.getloadavg()[0]
        everyone = all_cpu()
        cpu_before = [cpu_seconds(w.pid) for w in workers]
        sink_before = cpu_seconds(setup.sink_pid)
        database_before = backends_cpu(engine, application)
        own_before = own_cpu()
        busy_before, total_before = machine_ticks()
        flipped = datetime.now(UTC)
        set_campaign_state(engine, CAMPAIGN_ID, CampaignState.SENDING, now=flipped)
        wait_until(
            lambda: sent_count(engine) >= setup.contacts,
            timeout=max(60.0, setup.contacts / 100),
            what=f"all {setup.contacts} deliveries are sent",
            every=0.1,
        )
        busy_after, total_after = machine_ticks()
        worker_cpu = sum(cpu_seconds(w.pid) for w in workers) - sum(cpu_before)
        sink_cpu = cpu_seconds(setup.sink_pid) - sink_before
        own = own_cpu() - own_before
        database_after = backends_cpu(engine, application)
        database_cpu = sum(t - database_before.get(p, 0.0) for p, t in database_after.items())
        busy = (busy_after - busy_before) / os.sysconf("SC_CLK_TCK")
        others_cpu = busy - worker_cpu - sink_cpu - database_cpu - own
        ours = {os.getpid(), setup.sink_pid, *(w.pid for w in workers), *database_after}
        others_top = top_others(everyone, ours)

        def settled() -> bool:
            state = campaign_state(engine, CAMPAIGN_ID)
            return state is not None and state[0] is CampaignState.SENT

        wait_until(settled, timeout=30, what="the campaign is marked sent", every=0.05)
    finally:
        stop_workers(workers)
    first, last, at_first = sent_span(engine)
    seconds = (last - flipped).total_seconds()
    shares = [sum(int(n) for n in re.findall(rf"{CAMPAIGN_ID} first send: (\d+) sent",
                                             log_text(log))) for log in logs]  # fmt: skip
    for log in logs:
        if "Traceback" in log_text(log):
            print(f"  a worker logged a traceback:\n{log_text(log)[-2000:]}", flush=True)
        log.unlink()
    if sum(shares) != setup.contacts:
        print(f"  note: the workers report {sum(shares)} sent, the ledger {setup.contacts}")
    return Run(
        backend=backend,
        workers=count,
        end_to_end=setup.contacts / seconds,
        sending=(setup.contacts - at_first) / max((last - first).total_seconds(), 1e-6),
        seconds=seconds,
        first_after=(first - flipped).total_seconds(),
        shares=shares,
        worker_cpu=worker_cpu,
        sink_cpu=sink_cpu,
        database_cpu=database_cpu,
        others_cpu=others_cpu,
        machine_busy=(busy_after - busy_before) / max(1, total_after - total_before),
        others_top=others_top,
        load=load,
    )


# --- the whole benchmark -----------------------------------------------------------------------


def ceiling(run: Run, contacts: int) -> float:
    """Messages/s this run's CPU cost would allow on an otherwise idle machine: all cores shared
    by the workers, their database backends and smtp-sink, each worker at most one core."""
    cores = os.cpu_count() or 1
    ours = run.worker_cpu + run.database_cpu + run.sink_cpu
    return contacts / max(ours / cores, run.worker_cpu / run.workers)


def describe(run: Run, contacts: int) -> str:
    return (
        f"{run.backend:<8} {run.workers} worker(s): end to end {run.end_to_end:,.0f} msg/s "
        f"({run.seconds:.2f} s, first result after {run.first_after:.2f} s), sending "
        f"{run.sending:,.0f} msg/s, shares {run.shares}; CPU s: workers {run.worker_cpu:.1f}, "
        f"database {run.database_cpu:.1f}, smtp-sink {run.sink_cpu:.1f}, others "
        f"{run.others_cpu:.1f} [{run.others_top}] (machine busy {run.machine_busy:.0%}, load "
        f"{run.load:.1f}); CPU-bound ceiling {ceiling(run, contacts):,.0f} msg/s"
    )


def summary(runs: list[Run], source: list[float], contacts: int) -> list[str]:
    lines = []
    for backend in dict.fromkeys(r.backend for r in runs):
        counts = sorted({r.workers for r in runs if r.backend == backend})
        medians: dict[tuple[int, bool], float] = {}
        for count in counts:
            mine = [r for r in runs if r.backend == backend and r.workers == count]
            per_message = statistics.median(
                (r.worker_cpu + r.database_cpu) / contacts * 1000 for r in mine
            )
            lines.append(
                f"{backend:<8} {count} worker(s): end to end {spread([r.end_to_end for r in mine])}"
                f" msg/s; sending {spread([r.sending for r in mine])} msg/s; workers + database "
                f"{per_message:.2f} ms CPU per message; CPU-bound ceiling "
                f"{spread([ceiling(r, contacts) for r in mine])} msg/s; others' CPU "
                f"{spread([r.others_cpu for r in mine])} s"
            )
            medians[count, False] = statistics.median(r.end_to_end for r in mine)
            quiet = [r for r in mine if r.quiet]
            if quiet:
                lines.append(
                    f"{'':<8} {count} worker(s), {len(quiet)} quiet run(s) only: end to end "
                    f"{spread([r.end_to_end for r in quiet])} msg/s; sending "
                    f"{spread([r.sending for r in quiet])} msg/s; first result after "
                    f"{statistics.median(r.first_after for r in quiet):.2f} s (median)"
                )
                medians[count, True] = statistics.median(r.end_to_end for r in quiet)
        for count in counts:
            for quiet_only in (False, True):
                one, more = medians.get((1, quiet_only)), medians.get((count, quiet_only))
                if count != 1 and one and more:
                    which = ", quiet runs only" if quiet_only else ""
                    lines.append(
                        f"{backend:<8} ratio {count} workers / 1 worker{which}: {more / one:.2f}"
                    )
    lines.append(f"smtp-source, 16 sessions, same sink: {spread(source)} msg/s")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8, help="OUTREACH_SEND_CONCURRENCY")
    default_batch = Settings.model_fields["batch_size"].default
    parser.add_argument("--batch-size", type=int, default=default_batch,
                        help="OUTREACH_BATCH_SIZE (deliveries claimed at once)")  # fmt: skip
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="before each send, wait at most this long for the cores to be "
                        "less than 25%% busy (0: do not wait)")  # fmt: skip
    parser.add_argument("--backends", nargs="+", default=["postgres", "sqlite"],
                        choices=["postgres", "sqlite"])  # fmt: skip
    parser.add_argument("--postgres", default=POSTGRES, help="PostgreSQL URL (a schema per run)")
    parser.add_argument("--sessions", type=int, default=16, help="smtp-source sessions")
    parser.add_argument("--target", type=float, default=2000.0,
                        help="messages/s the best configuration must reach end to end")  # fmt: skip
    args = parser.parse_args()
    for tool in (SINK, SOURCE):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install postfix (only its binaries run)")
    configs = [(backend, count) for backend in args.backends for count in args.workers]
    sink = Sink()
    runs: list[Run] = []
    source: list[float] = []
    size = 0
    try:
        with tempfile.TemporaryDirectory(prefix="outreach-bench-workers-") as tmp:
            setup = Setup(args.contacts, sink.port, args.concurrency, Path(tmp), args.postgres,
                          sink.process.pid, args.batch_size, args.quiet_wait)  # fmt: skip
            for repeat in range(args.repeats):
                shift = repeat % len(configs)  # the order rotates: no configuration always first
                for backend, count in configs[shift:] + configs[:shift]:
                    run, size = run_workers(setup, backend=backend, count=count)
                    runs.append(run)
                    print(f"  {describe(run, args.contacts)}", flush=True)
                wait_for_quiet(args.quiet_wait)
                source.append(run_smtp_source(args.contacts, sink.port, size, args.sessions))
                print(f"  smtp-source {source[-1]:,.0f} msg/s", flush=True)
    finally:
        sink.stop()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.contacts:,} contacts, "
          f"{size:,}-byte messages, concurrency {args.concurrency} per worker, "
          f"batch size {args.batch_size}, "
          f"{args.repeats} runs of each")  # fmt: skip
    for line in summary(runs, source, args.contacts):
        print(line)
    best = max(
        statistics.median(r.end_to_end for r in runs if (r.backend, r.workers) == config)
        for config in configs
    )
    if best < args.target:
        print(f"target missed: the best median end to end is {best:,.0f} msg/s, "
              f"below {args.target:,.0f}")  # fmt: skip
        raise SystemExit(1)


if __name__ == "__main__":
    main()
