"""Pacing the sender: a global rate, a rate per recipient domain, and slowing down when the
server says it is busy.

Each limit is a token bucket; ``acquire`` waits until a token is free. The rate per recipient
domain is asked separately (``domain_turn``): a sender does not wait long for one domain's turn
while other members' messages could go, it puts the delivery back in the queue until its turn
(the send loop does that), and the turn is kept for it. A throttling reply (SMTP
421/450/451/454, HTTP 429) calls ``throttled``: every sender then waits out the server's
``Retry-After`` (or a growing pause when it gives none), and the pause shrinks again with each
message the server accepts. Deliveries are never failed for throttling: they go back to the
queue without spending an attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

THROTTLE_CODES = frozenset({421, 429, 450, 451, 454})

Monotonic = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per ``per`` seconds, at most ``burst`` saved up."""

    rate: float
    per: float = 1.0
    burst: float = 1.0
    tokens: float = 0.0  # below zero: tokens promised to waiting senders
    stamp: float | None = None  # when ``tokens`` was last brought up to date; None: never used

    def delay(self, now: float) -> float:
        """Take a token; how long to wait before using it (0 when one was free)."""
        if self.stamp is None:  # first use: start full
            self.tokens, self.stamp = self.burst, now
        refill = (now - self.stamp) * self.rate / self.per
        self.tokens = min(self.burst, self.tokens + refill)
        self.stamp = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens * self.per / self.rate


@dataclass(frozen=True, slots=True)
class RateLimits:
    per_second: float | None = None
    per_hour: float | None = None
    per_domain_per_second: float | None = None


class Pacer:
    """Shared by every sender of one process."""

    def __init__(
        self,
        limits: RateLimits,
        *,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_pause: float = 300.0,
    ) -> None:
        self.limits = limits
        self.monotonic = monotonic
        self.sleep = sleep
        self.max_pause = max_pause
        self.buckets: list[TokenBucket] = []
        if limits.per_second:
            self.buckets.append(TokenBucket(limits.per_second, burst=max(1.0, limits.per_second)))
        if limits.per_hour:
            self.buckets.append(TokenBucket(limits.per_hour, per=3600.0, burst=1.0))
        self.domains: dict[str, TokenBucket] = {}
        self.turns: dict[int, float] = {}  # a delivery's turn at its domain's rate, once taken
        self.paused_until = 0.0
        self.backoff = 0.0  # seconds; grows with each throttling reply given without Retry-After

    async def acquire(self, recipient: str, *, domain: bool = True) -> None:
        """Wait out a throttling pause and the global rates (and, with ``domain``, the
        recipient domain's rate as well)."""
        while True:
            wait = self.paused_until - self.monotonic()
            if wait <= 0:
                break
            await self.sleep(wait)
        now = self.monotonic()
        buckets = self.buckets
        if domain and (bucket := self._domain_bucket(recipient)) is not None:
            buckets = [*buckets, bucket]
        wait = max((bucket.delay(now) for bucket in buckets), default=0.0)
        if wait > 0:
            await self.sleep(wait)

    def domain_turn(self, recipient: str, key: int) -> float:
        """Seconds until the message ``key`` (a delivery id) may go to its recipient's domain;
        0 when it may go now. A turn kept with ``keep_turn`` is not taken again: asking for
        the same key when the delivery comes back from the queue returns what is left of it."""
        bucket = self._domain_bucket(recipient)
        if bucket is None:
            return 0.0
        now = self.monotonic()
        turn = self.turns.pop(key, None)
        if turn is None:
            turn = now + bucket.delay(now)
        return max(0.0, turn - now)

    def keep_turn(self, key: int, wait: float) -> None:
        """The message ``key`` goes back to the queue for ``wait`` seconds: keep its turn."""
        self.turns[key] = self.monotonic() + wait

    def _domain_bucket(self, recipient: str) -> TokenBucket | None:
        per_domain = self.limits.per_domain_per_second
        if not per_domain:
            return None
        domain = recipient.rpartition("@")[2].lower()
        bucket = self.domains.get(domain)
        if bucket is None:
            bucket = self.domains[domain] = TokenBucket(per_domain, burst=max(1.0, per_domain))
        return bucket

    def throttled(self, retry_after: float | None) -> float:
        """The server asked to slow down: pause every sender; returns the pause in seconds."""
        if retry_after is not None and retry_after > 0:
            pause = retry_after
        else:
            self.backoff = min(self.max_pause, max(0.5, self.backoff * 2))
            pause = self.backoff
        self.paused_until = max(self.paused_until, self.monotonic() + pause)
        return pause

    def accepted(self) -> None:
        if self.backoff:
            self.backoff = self.backoff / 2 if self.backoff > 0.5 else 0.0


def is_throttling(code: int | None) -> bool:
    return code in THROTTLE_CODES
