"""The send loop's settings and its account of a round: ``SendPolicy`` and ``SendSummary``.

``SendPolicy`` says how much a sender claims at once, how long a claim is leased, how retries
back off, when the round gives up, how results are grouped into commits, and the rate limits.
``SendSummary`` is what ``pipeline.delivery.send_round`` returns: the count of each result, what
is left waiting for a later retry, why the round stopped, and each failed recipient with the reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from outreach.pipeline.ratelimit import RateLimits


@dataclass(frozen=True, slots=True)
class SendPolicy:
    # deliveries one sender claims at once (a batch mailer takes up to its own max_batch)
    batch_size: int = 20
    max_attempts: int = 5
    retry_base: timedelta = timedelta(seconds=30)
    retry_cap: timedelta = timedelta(hours=1)
    lease: timedelta = timedelta(minutes=10)
    # a retry due later than this is left in the queue for a later run (or the worker)
    max_retry_wait: timedelta = timedelta(minutes=5)
    # this many temporary failures in a row stop the round: the server is not well
    max_consecutive_failures: int = 50
    # results are committed in groups of this many, or after this many seconds
    commit_every: int = 32
    commit_interval: float = 0.05
    # a message whose domain's turn is further away than this (seconds) goes back to the queue
    # until then, so senders are not all kept waiting by one busy domain
    max_domain_wait: float = 0.05
    # record each hand-over before it happens, so that recovery can mark exactly those
    # deliveries `unknown` (OUTREACH_RECOVER_AS=unknown); senders ready at once share a commit
    mark_hand_over: bool = False
    # how often a sender asks whether the campaign was paused elsewhere
    stop_check_interval: float = 0.25
    limits: RateLimits = field(default_factory=RateLimits)

    def backoff(self, attempts: int, retry_after: float | None) -> timedelta:
        base = self.retry_base.total_seconds() * 2 ** max(0, attempts - 1)
        delay = min(self.retry_cap.total_seconds(), base) * random.uniform(0.8, 1.2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return timedelta(seconds=delay)


@dataclass(slots=True)
class SendSummary:
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    retried: int = 0
    throttled: int = 0
    paced: int = 0  # put back in the queue until their domain's turn (each time it happened)
    waiting: int = 0
    unknown: int = 0
    next_retry_at: datetime | None = None
    stopped_reason: str | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
