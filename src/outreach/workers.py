"""The ``outreach worker`` process: it always delivers, and it schedules when it can.

Delivering: every ``poll`` seconds a worker looks for campaigns in state ``sending`` with
deliveries due (any round; scheduled, or left queued by an ``outreach send`` that was stopped
or killed; or left ``sending`` by a sender that died) and sends them (``runs.send_waiting``),
up to ``parallel`` campaigns at once. Any number of workers, on one machine or many, share a
campaign: every claim of a few deliveries is atomic (``FOR UPDATE SKIP LOCKED`` on PostgreSQL;
on SQLite one writer at a time), so no delivery is sent by two of them.

Scheduling: only one process schedules for a database (the scheduler lease, ``store.leases``).
A worker takes the lease when it is free. When another process holds it, the worker says who
schedules, only delivers, and tries again every heartbeat: scheduling goes on here when that
process stops (at once when it ran on this machine and is gone, otherwise when its lease runs
out). A worker that loses the lease (it was frozen longer than the lease) stops scheduling and
goes on delivering.

SIGINT or SIGTERM stops the worker: nothing more is claimed, the messages in hand finish, the
rest stays queued for the other workers or the next start, and the lease is given back.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import FrameType

from sqlalchemy.exc import SQLAlchemyError

from outreach import jobs
from outreach.bootstrap import Services
from outreach.errors import ConfigurationError
from outreach.recovery import dead_claimants, holder_gone
from outreach.scheduler import HEARTBEAT_SECONDS, LEASE_SECONDS, SchedulerHandle, start_scheduler
from outreach.store.leases import LeaseHeld, release
from outreach.store.workload import campaigns_with_work, sending_claimants

log = logging.getLogger("outreach.worker")

Say = Callable[[str], None]

POLL_SECONDS = 1.0
PARALLEL = 4


class _Scheduling:
    """This worker's part in scheduling: take the lease when it is free, let it go when lost."""

    def __init__(self, services: Services, say: Say, *, heartbeat: float, lease: float) -> None:
        self.services = services
        self.say = say
        self.heartbeat = heartbeat
        self.lease = lease
        self.handle: SchedulerHandle | None = None
        self.other: str | None = None  # the process that schedules, as last said

    def try_to_schedule(self) -> None:
        if self.handle is not None:
            return
        for _attempt in range(2):
            try:
                self.handle = start_scheduler(
                    self.services, heartbeat=self.heartbeat, lease=self.lease
                )
            except LeaseHeld as held:
                holder = held.lease.holder
                if holder_gone(holder):  # it ran here and was killed: no need to wait
                    log.warning("the scheduler %s is gone; taking its lease over", holder)
                    release(self.services.engine, holder=holder)
                    continue
                if holder != self.other:
                    self.other = holder
                    self.say(
                        f"not scheduling here: {holder} schedules for this database; this "
                        "worker only delivers, and takes over scheduling if that process stops"
                    )
                return
            break
        if self.handle is not None:
            before, self.other = self.other, None
            taken = f", taken over from {before}" if before else ""
            self.say(f"scheduling here ({self.handle.holder}{taken})")

    def check(self) -> None:
        """Stop scheduling if the lease was lost; delivering goes on."""
        handle = self.handle
        if handle is not None and handle.failed:
            self.handle = None
            handle.shutdown()
            self.say(f"scheduler stopped: {handle.failed}; this worker goes on delivering")

    def close(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.shutdown()
            self.say("scheduler stopped")


class _Deliveries:
    """Campaigns being sent by this worker, one thread each."""

    def __init__(self, services: Services, stop: threading.Event, *, parallel: int) -> None:
        self.services = services
        self.stop = stop
        self.parallel = max(1, parallel)
        self.pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="outreach-deliver")
        self.running: dict[str, Future[bool]] = {}

    def step(self) -> None:
        for campaign_id, future in list(self.running.items()):
            if future.done():
                del self.running[campaign_id]
                error = future.exception()
                if error is not None:
                    log.error("%s: sending stopped: %s", campaign_id, error, exc_info=error)
        if self.stop.is_set():
            return
        engine = self.services.engine
        dead = dead_claimants(sending_claimants(engine))
        for campaign_id in campaigns_with_work(
            engine, now=self.services.clock.now(), dead_workers=dead
        ):
            if campaign_id in self.running or len(self.running) >= self.parallel:
                continue
            self.running[campaign_id] = self.pool.submit(
                jobs.deliver, self.services, campaign_id, should_stop=self.stop.is_set
            )

    def close(self) -> None:
        self.pool.shutdown(wait=True)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (only in the main thread, where handlers can be set)."""
    previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request_stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_worker(
    services: Services,
    *,
    say: Say,
    stop: threading.Event | None = None,
    heartbeat: float = HEARTBEAT_SECONDS,
    lease: float = LEASE_SECONDS,
    poll: float = POLL_SECONDS,
    parallel: int = PARALLEL,
) -> None:
    """Deliver, and schedule when this process can, until SIGINT or SIGTERM (or ``stop``).

    ``say`` receives the lines a person running the worker should see: who schedules, when
    that changes, and the stop.
    """
    if heartbeat <= 0 or lease < 2 * heartbeat:
        raise ConfigurationError(
            f"the scheduler lease ({lease:g}s) must last at least two heartbeats "
            f"({heartbeat:g}s each)"
        )
    stop = stop or threading.Event()
    with _stop_on_signals(stop):
        _ = services.ledger, services.signer  # made once, before threads share them
        scheduling = _Scheduling(services, say, heartbeat=heartbeat, lease=lease)
        deliveries = _Deliveries(services, stop, parallel=parallel)
        say(
            f"worker {services.worker_name} running: it sends every campaign that is sending; "
            "Ctrl+C or SIGTERM stops it"
        )
        next_try = 0.0
        try:
            while not stop.is_set():
                try:
                    scheduling.check()
                    if time.monotonic() >= next_try:
                        next_try = time.monotonic() + heartbeat
                        scheduling.try_to_schedule()
                    deliveries.step()
                except SQLAlchemyError as err:
                    log.warning("the database did not answer (%s); trying again", err)
                stop.wait(poll)
        finally:
            stop.set()
            deliveries.close()
            scheduling.close()
    say("worker stopped")
