"""The scheduler's job targets: module-level functions with plain arguments.

APScheduler's SQLAlchemy job store keeps a job as a reference to its function
(``outreach.jobs:send_group``) and its pickled arguments, so the targets live here, at module
level, and take only strings and numbers. They act on the ``Services`` that the running
scheduler installs (``install``); a job that fires without them fails with a clear error.

Jobs of one campaign run one at a time (a lock per campaign): two timezone groups due at the
same moment queue and send one after the other, and a drain never runs beside a send of the
same campaign (it simply leaves the work to the send that is running).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from outreach.bootstrap import Services
from outreach.errors import ConfigurationError
from outreach.runs import run_due_group, send_waiting

log = logging.getLogger("outreach.jobs")

_services: Services | None = None
_stopping = threading.Event()
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def install(services: Services) -> None:
    """Make ``services`` the ones job targets act on (the scheduler does this on start)."""
    global _services
    _stopping.clear()
    _services = services


def uninstall() -> None:
    global _services
    _services = None
    _stopping.clear()


def stop_sending() -> None:
    """Ask running sends to stop after the messages in flight (the scheduler is stopping)."""
    _stopping.set()


def stopping() -> bool:
    return _stopping.is_set()


def _installed() -> Services:
    if _services is None:
        raise ConfigurationError(
            "a scheduled job ran without a running scheduler (start `outreach worker` or "
            "`outreach serve`)"
        )
    return _services


def _lock(campaign_id: str) -> threading.Lock:
    with _guard:
        return _locks.setdefault(campaign_id, threading.Lock())


def busy(campaign_id: str) -> bool:
    """Whether a job of this campaign is running in this process."""
    return _lock(campaign_id).locked()


def send_group(campaign_id: str, round: int, timezone: str) -> None:
    """A timezone group of a campaign round is due: queue it and send."""
    services = _installed()
    with _lock(campaign_id):
        done = run_due_group(
            services,
            campaign_id=campaign_id,
            round=round,
            timezone=timezone,
            should_stop=stopping,
        )
    log.info("%s round %d %s: %s", campaign_id, round, timezone, done)


def drain(campaign_id: str) -> None:
    """Send what is queued for a scheduled campaign that is sending (after a resume, a restart
    or a wait for retries), then settle its state."""
    deliver(_installed(), campaign_id, should_stop=stopping)


def deliver(services: Services, campaign_id: str, *, should_stop: Callable[[], bool]) -> bool:
    """Send what is queued for a campaign that is sending, unless a job of this process is
    sending it already (then False). ``outreach worker`` calls it whether it schedules or not."""
    lock = _lock(campaign_id)
    if not lock.acquire(blocking=False):
        return False
    try:
        send_waiting(services, campaign_id, should_stop=should_stop)
    finally:
        lock.release()
    return True
