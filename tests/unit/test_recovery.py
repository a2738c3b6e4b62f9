"""Which senders are dead: only processes of this machine can be seen, and only gone ones count."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from outreach.identity import this_host, worker_name
from outreach.recovery import dead_claimants, holder_gone

HOST = this_host()


def finished_process(*, reap: bool) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    if reap:
        process.wait()
    else:  # ended, but nobody waited for it yet: a zombie
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    return process


def test_a_sender_of_this_machine_that_is_gone_is_dead() -> None:
    gone = finished_process(reap=True)
    zombie = finished_process(reap=False)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        names = {
            f"{HOST}:{gone.pid}",
            f"{HOST}:{zombie.pid}",
            f"{HOST}:{alive.pid}",
            f"{HOST}:{os.getpid()}",  # this very process
            f"elsewhere.example.org:{gone.pid}",  # another machine: wait for its lease
            # the same hostname, another machine or container (another boot or PID namespace)
            f"{socket.gethostname()}~0a1b2c:{gone.pid}",
            f"{socket.gethostname()}:{gone.pid}",
            "not a worker name",
            f"{HOST}:",
        }
        assert dead_claimants(names) == {f"{HOST}:{gone.pid}", f"{HOST}:{zombie.pid}"}
    finally:
        alive.kill()
        alive.wait()
        zombie.wait()


def test_a_scheduler_lease_holder_of_this_machine_that_is_gone() -> None:
    gone = finished_process(reap=True)
    assert holder_gone(f"pid {gone.pid} on {HOST} (a1b2c3)")
    assert not holder_gone(f"pid {os.getpid()} on {HOST} (a1b2c3)")
    assert not holder_gone(f"pid {gone.pid} on elsewhere.example.org (a1b2c3)")
    assert not holder_gone("somebody else")


def test_this_process_is_named_by_its_host_and_pid() -> None:
    host, _, pid = worker_name().rpartition(":")
    assert host == HOST and pid == str(os.getpid())
    assert host.startswith(socket.gethostname() + "~")  # on Linux, the tag is there
    assert not dead_claimants({worker_name()})
