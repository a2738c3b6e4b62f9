"""APScheduler wiring: the one process that schedules for a database.

A ``BackgroundScheduler`` keeps the jobs of scheduled sends in APScheduler's
``SQLAlchemyJobStore`` in the application database (table ``apscheduler_jobs``), so they
survive restarts. The job store cannot be shared, so the scheduler first takes the database's
scheduler lease (``store.leases``): a second scheduler on the same database refuses to start
and says which process holds it. ``outreach serve`` runs the scheduler beside the web app
(``start_scheduler``), ``outreach worker`` beside its delivery loop when it can take the lease
(``workers.run_worker``).

Every job runs however late it is (``misfire_grace_time=None``), once (``coalesce``): the job
itself decides whether it is too late (``runs.run_due_group`` and the campaign's
``max_lateness``). A heartbeat job, kept in memory and run every few seconds, renews the lease,
starts sending what is queued for campaigns that are sending (after a resume, a restart or a
wait for retries), and wakes the scheduler, which then also picks up the jobs that
``outreach schedule`` booked from another process.

Other processes book and remove jobs through ``job_book``: a scheduler started paused, which
writes to the job store and never runs a job.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from outreach import jobs
from outreach.bootstrap import Services
from outreach.identity import this_host
from outreach.runs import finish_interrupted, round_label
from outreach.scheduling import JobBook, restore_jobs, send_job_id
from outreach.store.leases import acquire, release, renew
from outreach.store.schedules import campaigns_to_drain, overdue_sends

log = logging.getLogger("outreach.scheduler")

HEARTBEAT_SECONDS = 5.0
LEASE_SECONDS = 30.0
WORKERS = 8
# a pending group this overdue without a job gets one again (a job lost in a crash or a race)
REBOOK_AFTER = timedelta(seconds=30)
STORE = "default"  # SQLAlchemyJobStore in the application database
LOCAL = "local"  # this process's heartbeat and drains
HEARTBEAT = "heartbeat"

_running: dict[str, SchedulerHandle] = {}
_running_guard = threading.Lock()


def holder_name() -> str:
    """Who holds the lease: process, host, and a token telling two schedulers of one apart."""
    return f"pid {os.getpid()} on {this_host()} ({secrets.token_hex(3)})"


def _new_scheduler(services: Services, *, workers: int) -> BackgroundScheduler:
    return BackgroundScheduler(
        jobstores={
            STORE: SQLAlchemyJobStore(engine=services.engine, tablename="apscheduler_jobs"),
            LOCAL: MemoryJobStore(),
        },
        # the heartbeat has a thread of its own: busy sends never keep it from renewing the lease
        executors={"default": ThreadPoolExecutor(workers), HEARTBEAT: ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone=UTC,
        daemon=True,
    )


class _Book:
    """``JobBook`` over a started (or paused) scheduler."""

    def __init__(self, scheduler: BackgroundScheduler) -> None:
        self.scheduler = scheduler

    def add_send(self, *, campaign_id: str, round: int, timezone: str, run_at: datetime) -> None:
        self.scheduler.add_job(
            jobs.send_group,
            trigger=DateTrigger(run_date=run_at, timezone=UTC),
            kwargs={"campaign_id": campaign_id, "round": round, "timezone": timezone},
            id=send_job_id(campaign_id, round, timezone),
            name=f"{campaign_id}: {round_label(round)}, {timezone}",
            jobstore=STORE,
            replace_existing=True,
        )

    def remove_send(self, *, campaign_id: str, round: int, timezone: str) -> None:
        with suppress(JobLookupError):
            self.scheduler.remove_job(send_job_id(campaign_id, round, timezone), jobstore=STORE)


@contextmanager
def job_book(services: Services) -> Iterator[JobBook]:
    """Book or remove jobs: through this process's running scheduler if it has one, else
    straight into the job store (the running scheduler picks them up at its next heartbeat)."""
    with _running_guard:
        handle = _running.get(services.settings.database_url)
    if handle is not None and handle.running:
        yield _Book(handle.scheduler)
        handle.scheduler.wakeup()
        return
    scheduler = _new_scheduler(services, workers=1)
    scheduler.start(paused=True)
    try:
        yield _Book(scheduler)
    finally:
        scheduler.shutdown(wait=False)


class SchedulerHandle:
    """A running scheduler; ``shutdown()`` stops it and gives the lease back."""

    def __init__(
        self,
        *,
        services: Services,
        scheduler: BackgroundScheduler,
        holder: str,
        lease: timedelta,
    ) -> None:
        self.services = services
        self.scheduler = scheduler
        self.holder = holder
        self.lease = lease
        self.failed: str | None = None  # why it stopped scheduling on its own
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return not self._stopped and self.failed is None

    def beat(self) -> None:
        """The heartbeat: renew the lease; start sending what is waiting; book a job again
        for any group long overdue without one."""
        services = self.services
        if not self.running:  # a beat queued before the lease was lost, or the stop
            return
        now = services.clock.now()
        if not renew(services.engine, holder=self.holder, now=now, ttl=self.lease):
            failed = (
                "the scheduler lease was taken over by another process (this one did not renew "
                "it in time); this scheduler stopped scheduling"
            )
            log.error(failed)
            jobs.stop_sending()
            with suppress(SchedulerNotRunningError):  # shut down meanwhile
                self.scheduler.pause()
            self.failed = failed
            return
        for campaign_id in campaigns_to_drain(services.engine, now=now):
            if not jobs.busy(campaign_id):
                self.scheduler.add_job(
                    jobs.drain,
                    kwargs={"campaign_id": campaign_id},
                    id=f"drain:{campaign_id}",
                    name=f"{campaign_id}: send what is queued",
                    jobstore=LOCAL,
                    replace_existing=True,
                )
        for send in overdue_sends(services.engine, before=now - REBOOK_AFTER):
            job_id = send_job_id(send.campaign_id, send.round, send.timezone)
            if not jobs.busy(send.campaign_id) and self.scheduler.get_job(job_id) is None:
                log.warning("%s was overdue without a job; booked again", job_id)
                _Book(self.scheduler).add_send(
                    campaign_id=send.campaign_id,
                    round=send.round,
                    timezone=send.timezone,
                    run_at=send.due_at,
                )

    def shutdown(self) -> None:
        """Stop: running sends stop after the messages in flight (what is left stays queued
        for the next start), then the lease is released. Safe to call twice."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        jobs.stop_sending()
        try:
            self.scheduler.shutdown(wait=True)
        finally:
            release(self.services.engine, holder=self.holder)
            jobs.uninstall()
            with _running_guard:
                if _running.get(self.services.settings.database_url) is self:
                    del _running[self.services.settings.database_url]
            log.info("scheduler stopped (%s)", self.holder)


def start_scheduler(
    services: Services,
    *,
    heartbeat: float = HEARTBEAT_SECONDS,
    lease: float = LEASE_SECONDS,
    workers: int = WORKERS,
) -> SchedulerHandle:
    """Take the lease and start scheduling in background threads.

    Raises ``store.leases.LeaseHeld`` (an ``OutreachError``) when another scheduler runs on
    the same database. Groups a previous scheduler left half-done are finished, and the job of
    every pending group is booked again, before the first job runs.
    """
    engine = services.engine
    _ = services.signer  # the link secret is read (or made) once, before threads need it
    holder = holder_name()
    ttl = timedelta(seconds=lease)
    acquire(engine, holder=holder, now=services.clock.now(), ttl=ttl)
    try:
        jobs.install(services)
        for done in finish_interrupted(services):
            log.info("finished after a restart: %s", done)
        scheduler = _new_scheduler(services, workers=workers)
        scheduler.start(paused=True)
        handle = SchedulerHandle(services=services, scheduler=scheduler, holder=holder, lease=ttl)
        try:
            pending = restore_jobs(services, book=_Book(scheduler))
            scheduler.add_job(
                handle.beat,
                trigger="interval",
                seconds=heartbeat,
                id=HEARTBEAT,
                name="heartbeat",
                jobstore=LOCAL,
                executor=HEARTBEAT,
                next_run_time=datetime.now(UTC),
            )
            scheduler.resume()
        except BaseException:
            scheduler.shutdown(wait=False)
            raise
    except BaseException:
        jobs.uninstall()
        release(engine, holder=holder)
        raise
    with _running_guard:
        _running[services.settings.database_url] = handle
    log.info("scheduler started (%s); %d group(s) pending", holder, pending)
    return handle
