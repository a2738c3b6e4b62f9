"""The httpx client behind an ``HttpMailer``: one ``Session`` per event loop.

A session is the client (keep-alive connections) and the slots that keep at most
``concurrency`` requests in flight. Every client shares one verifying TLS context per process;
a client left in another event loop (an earlier ``asyncio.run``) is closed from that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import ssl
import sys
from dataclasses import dataclass

import httpx


def skip_missing_sniffio() -> None:
    """httpcore imports the optional ``sniffio`` each time it sets up a lock; when it is not
    installed every failed import searches ``sys.path`` again, several times per request (a
    third of the client's time here). Remembering that it is missing keeps httpcore's own
    fallback (asyncio) and removes the search; an installed sniffio is left alone."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process (loading the CA bundle takes ~25 ms)."""
    return httpx.create_ssl_context()


@dataclass(slots=True)
class Session:
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    slots: asyncio.Semaphore


def close_elsewhere(session: Session) -> None:
    """Close a client that belongs to another event loop, from that loop, if it still runs."""
    if session.loop.is_closed() or not session.loop.is_running():
        return  # its sockets close when collected
    with contextlib.suppress(RuntimeError):
        asyncio.run_coroutine_threadsafe(session.client.aclose(), session.loop)
