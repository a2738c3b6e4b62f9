"""Recovering the deliveries of a sender that died: at once when it ran on this machine.

Every sender marks the deliveries it claims ``sending`` under its worker name,
``host:pid`` (``identity.worker_name``; the host is ``identity.this_host``, which tells apart
machines and containers that share a hostname). When a process is killed (``kill -9``, a crash, a
power cut), its claims stay ``sending`` until their lease runs out, ten minutes later. A sender
that starts on the same machine need not wait: when the claimant's host is this host and its
process no longer exists, its claims are recovered now. Claimants on other machines (their
processes cannot be seen from here) are recovered when their lease runs out.

Recovered deliveries go back to the queue (``recover_as = "queue"``: a message the dead
process had handed over but not yet recorded may go out a second time). With ``recover_as =
"unknown"`` the sender records each hand-over before it happens, and recovery marks those
``unknown`` (never twice, but a person must look at them) and queues the rest.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from outreach.bootstrap import Services
from outreach.identity import this_host

log = logging.getLogger("outreach.recovery")

RECOVER_AS = ("queue", "unknown")
# the scheduler lease's holder name (``scheduler.holder_name``): "pid 123 on host (a1b2c3)"
_HOLDER = re.compile(r"^pid (?P<pid>\d+) on (?P<host>\S+) \(")


def process_gone(pid: int) -> bool:
    """Whether no live process has this id on this machine (a zombie counts as gone)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # a process of another user: alive
    try:  # Linux: a killed child nobody has waited for yet is a zombie, dead all the same
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _local_pid(host: str, pid: str, hostname: str) -> int | None:
    if host != hostname or not pid.isdigit():
        return None
    return int(pid)


def dead_claimants(claimants: Iterable[str], *, hostname: str | None = None) -> set[str]:
    """The worker names (``host:pid``) among ``claimants`` whose process ran on this machine
    and is gone. Names of other machines, and names that are not ``host:pid``, are left out:
    their claims wait for their lease."""
    here = hostname if hostname is not None else this_host()
    dead = set()
    for name in claimants:
        host, _, pid = name.rpartition(":")
        local = _local_pid(host, pid, here)
        if local is not None and process_gone(local):
            dead.add(name)
    return dead


def holder_gone(holder: str, *, hostname: str | None = None) -> bool:
    """Whether the scheduler lease's holder (``pid N on HOST (token)``) ran on this machine and
    its process is gone."""
    match = _HOLDER.match(holder)
    if match is None:
        return False
    here = hostname if hostname is not None else this_host()
    local = _local_pid(match["host"], match["pid"], here)
    return local is not None and process_gone(local)


def recover_claims(services: Services, campaign_id: str) -> int:
    """Recover the campaign's deliveries left ``sending`` by a dead sender (its lease ran
    out, or it ran on this machine and is gone), as ``recover_as`` says; returns how many."""
    ledger = services.ledger
    dead = dead_claimants(ledger.claimants(campaign_id=campaign_id))
    recovered = ledger.recover(
        campaign_id=campaign_id,
        as_unknown=services.settings.recover_as == "unknown",
        now=services.clock.now(),
        dead_workers=dead,
    )
    if recovered:
        log.info(
            "%s: %d deliveries left `sending` by a stopped sender%s %s",
            campaign_id,
            recovered,
            f" ({', '.join(sorted(dead))}, no longer running)" if dead else "",
            (
                "recovered: those it had begun to hand over marked unknown, the rest queued again"
                if services.settings.recover_as == "unknown"
                else "queued again"
            ),
        )
    return recovered
