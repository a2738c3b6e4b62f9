"""How fast an HTTP provider may be called: the shared limiter and the ``Retry-After`` header.

After a 429 the mailer's one ``RateLimiter`` pauses *every* request for ``Retry-After``
(seconds or an HTTP date, read by ``retry_after_seconds``) or the provider's reset header. The
waits run on a ``Timer``: the system clock, or a fake one in tests.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

from outreach.errors import TemporaryDeliveryError


class Timer(Protocol):
    """Time as the mailer sees it; tests pass a fake one that records the waits."""

    def monotonic(self) -> float: ...

    def wall(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemTimer:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class RateLimiter:
    """One per mailer: after a 429 every request waits until the provider's window reopens.

    A wait longer than ``max_wait`` is not spent inside the mailer: the send fails at once as
    temporary, with ``retry_after``, and the send loop puts the delivery back for later.
    """

    def __init__(self, *, timer: Timer, max_wait: float) -> None:
        self._timer = timer
        self._max_wait = max_wait
        self._until = 0.0

    def remaining(self) -> float:
        return max(0.0, self._until - self._timer.monotonic())

    def pause(self, seconds: float) -> None:
        self._until = max(self._until, self._timer.monotonic() + max(0.0, seconds))

    async def wait(self, provider: str) -> None:
        remaining = self.remaining()
        if remaining <= 0:
            return
        if remaining > self._max_wait:
            raise TemporaryDeliveryError(
                f"{provider} asked to slow down for {remaining:.0f} s",
                provider=provider,
                code=429,
                retry_after=remaining,
            )
        await self._timer.sleep(remaining)


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """A ``Retry-After`` value, given in seconds or as an HTTP date, as seconds from ``now``."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
