"""Who this process is, as senders and the scheduler lease record it.

A sender claims deliveries under its worker name, ``HOST:PID``; the scheduler lease names its
holder ``pid PID on HOST (token)``. Recovery (``outreach.recovery``) reads them back: a claim
whose HOST is this host and whose process is gone is recovered at once. A process id means
something only within one PID namespace of one boot of one kernel, so HOST is the hostname and
a short tag of both: two machines, or two containers, that share a hostname are told apart.
"""

from __future__ import annotations

import hashlib
import os
import socket
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def this_host() -> str:
    """``hostname~tag``, the tag a hash of the kernel's boot id and this process's PID
    namespace; the hostname alone where /proc does not say (not Linux)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return socket.gethostname()[:48]
    tag = hashlib.sha256(f"{boot} {namespace}".encode()).hexdigest()[:6]
    # the tag tells machines apart; the hostname, shortened so that a worker name fits the
    # 64 characters the store keeps for it, is for people
    return f"{socket.gethostname()[:48]}~{tag}"


def worker_name() -> str:
    """``HOST:PID``: the name this process claims deliveries under."""
    return f"{this_host()}:{os.getpid()}"
