"""The send loop: claim a batch, hand each message over, record each result as it comes.

A producer claims batches of queued deliveries (marking them ``sending``); a bounded number of
consumers build and send messages, recording every result with its own commit. Temporary
failures go back to the queue with exponential backoff and jitter (``Retry-After`` honoured);
permanent ones are recorded with the server's reply; a misconfiguration stops the round at once
and gives back every claimed message that was not handed over. A message whose fate is unknown
(the request went out, the answer was lost) is recorded ``unknown`` and never sent again here.

With a ``BatchMailer`` each consumer hands over up to ``max_batch`` claimed deliveries in one
call and records every message's own result.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from outreach.domain.delivery import Recipient
from outreach.errors import (
    ConfigurationError,
    DeliveryError,
    OutreachError,
    PermanentDeliveryError,
    RenderError,
    TemporaryDeliveryError,
    UnknownDeliveryError,
)
from outreach.ports import (
    BatchMailer,
    ClaimedDelivery,
    Clock,
    DeliveryLedger,
    Mailer,
    OutgoingMessage,
)

BuildMessage = Callable[[Recipient], OutgoingMessage]
OnResult = Callable[[str, Recipient, str], None]
# asked before every claim: a reason to stop (the campaign was paused elsewhere), or None
StopCheck = Callable[[], str | None]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SendPolicy:
    batch_size: int = 200
    max_attempts: int = 5
    retry_base: timedelta = timedelta(seconds=30)
    retry_cap: timedelta = timedelta(hours=1)
    lease: timedelta = timedelta(minutes=10)
    # a retry due later than this is left in the queue for a later run (or the worker)
    max_retry_wait: timedelta = timedelta(minutes=5)
    # this many temporary failures in a row stop the round: the server is not well
    max_consecutive_failures: int = 50

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
    waiting: int = 0
    unknown: int = 0
    next_retry_at: datetime | None = None
    stopped_reason: str | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)


class _Round:
    def __init__(
        self,
        *,
        campaign_id: str,
        round: int,
        build: BuildMessage,
        ledger: DeliveryLedger,
        mailer: Mailer,
        clock: Clock,
        policy: SendPolicy,
        worker: str,
        on_result: OnResult | None,
        stop: asyncio.Event,
        stop_check: StopCheck | None,
    ) -> None:
        self.campaign_id = campaign_id
        self.round = round
        self.build = build
        self.ledger = ledger
        self.mailer = mailer
        self.clock = clock
        self.policy = policy
        self.worker = worker
        self.on_result = on_result
        self.stop = stop
        self.stop_check = stop_check
        self.summary = SendSummary()
        self.fatal: ConfigurationError | None = None
        self.consecutive_failures = 0
        self.queue: asyncio.Queue[ClaimedDelivery | None] = asyncio.Queue(
            maxsize=max(policy.batch_size, mailer.concurrency * 2)
        )

    def _report(self, status: str, recipient: Recipient, detail: str = "") -> None:
        if self.on_result is not None:
            self.on_result(status, recipient, detail)

    def _halt(self, reason: str) -> None:
        if self.summary.stopped_reason is None:
            self.summary.stopped_reason = reason
        self.stop.set()

    async def produce(self, consumers: int, sleep: Sleep) -> None:
        try:
            while not self.stop.is_set():
                reason = self.stop_check() if self.stop_check is not None else None
                if reason is not None:
                    self._halt(reason)
                    break
                now = self.clock.now()
                batch = self.ledger.claim(
                    campaign_id=self.campaign_id,
                    round=self.round,
                    worker=self.worker,
                    limit=self.policy.batch_size,
                    now=now,
                    lease=self.policy.lease,
                )
                if not batch:
                    if not await self._wait_for_retries(sleep):
                        break
                    continue
                for claimed in batch:
                    await self.queue.put(claimed)
        finally:
            for _ in range(consumers):
                await self.queue.put(None)

    async def _wait_for_retries(self, sleep: Sleep) -> bool:
        """Wait for the next retry when one is due soon; False when the round is over."""
        await self.queue.join()  # results of the last batch decide what is left
        now = self.clock.now()
        counts = self.ledger.counts(campaign_id=self.campaign_id, round=self.round, now=now)
        if counts.queued == 0 or counts.next_retry_at is None:
            return False
        wait = (counts.next_retry_at - now).total_seconds()
        if wait > self.policy.max_retry_wait.total_seconds():
            self.summary.waiting = counts.queued
            self.summary.next_retry_at = counts.next_retry_at
            return False
        await sleep(max(0.0, min(wait, 1.0)))
        return True

    async def consume(self) -> None:
        released: list[int] = []
        while True:
            claimed = await self.queue.get()
            try:
                if claimed is None:
                    break
                if self.stop.is_set():
                    released.append(claimed.recipient.delivery_id)
                    continue
                await self._deliver(claimed)
            finally:
                self.queue.task_done()
        self.ledger.release(released, now=self.clock.now())

    async def _deliver(self, claimed: ClaimedDelivery) -> None:
        recipient = claimed.recipient
        now = self.clock.now
        if claimed.suppressed:
            self.ledger.mark_suppressed(recipient.delivery_id, now=now())
            self.summary.suppressed += 1
            self._report("suppressed", recipient)
            return
        try:
            message = self.build(recipient)
        except (RenderError, OutreachError) as err:
            self._fail(recipient, f"could not build the message: {err}")
            return
        try:
            reply = await self.mailer.send(message)
        except TemporaryDeliveryError as err:
            self._retry(claimed, err)
        except UnknownDeliveryError as err:
            self._unknown(recipient, err)
        except PermanentDeliveryError as err:
            self.consecutive_failures = 0
            self._fail(recipient, err.reply)
        except ConfigurationError as err:
            self.ledger.release([recipient.delivery_id], now=now())
            self.fatal = err
            self._halt(str(err))
        else:
            self.consecutive_failures = 0
            self.ledger.mark_sent(recipient.delivery_id, reply=reply, now=now())
            self.summary.sent += 1
            self._report("sent", recipient, reply)

    async def consume_batches(self, mailer: BatchMailer) -> None:
        """Like ``consume``, taking up to ``max_batch`` waiting deliveries per call."""
        released: list[int] = []
        done = False
        while not done:
            items = [await self.queue.get()]
            while items[-1] is not None and len(items) < mailer.max_batch:
                if self.queue.empty():
                    break
                items.append(self.queue.get_nowait())
            done = items[-1] is None
            batch = [claimed for claimed in items if claimed is not None]
            try:
                if self.stop.is_set():
                    released += [claimed.recipient.delivery_id for claimed in batch]
                elif batch:
                    await self._deliver_batch(mailer, batch)
            finally:
                for _ in items:
                    self.queue.task_done()
        self.ledger.release(released, now=self.clock.now())

    async def _deliver_batch(self, mailer: BatchMailer, batch: list[ClaimedDelivery]) -> None:
        now = self.clock.now
        pending: list[ClaimedDelivery] = []
        messages: list[OutgoingMessage] = []
        for claimed in batch:
            recipient = claimed.recipient
            if claimed.suppressed:
                self.ledger.mark_suppressed(recipient.delivery_id, now=now())
                self.summary.suppressed += 1
                self._report("suppressed", recipient)
                continue
            try:
                messages.append(self.build(recipient))
            except (RenderError, OutreachError) as err:
                self._fail(recipient, f"could not build the message: {err}")
                continue
            pending.append(claimed)
        if not messages:
            return
        try:
            results = await mailer.send_batch(messages)
        except ConfigurationError as err:
            self.ledger.release([c.recipient.delivery_id for c in pending], now=now())
            self.fatal = err
            self._halt(str(err))
            return
        temporary = 0
        for claimed, result in zip(pending, results, strict=True):
            recipient = claimed.recipient
            if isinstance(result, str):
                self.consecutive_failures = 0
                self.ledger.mark_sent(recipient.delivery_id, reply=result, now=now())
                self.summary.sent += 1
                self._report("sent", recipient, result)
            elif isinstance(result, UnknownDeliveryError):
                self._unknown(recipient, result, count=False)
                temporary += 1
            elif isinstance(result, TemporaryDeliveryError):
                self._retry(claimed, result, count=False)
                temporary += 1
            else:
                self.consecutive_failures = 0
                self._fail(recipient, result.reply)
        if temporary == len(pending):  # the whole request failed: one failure in a row
            self._count_failure(results[-1])

    def _unknown(self, recipient: Recipient, err: UnknownDeliveryError, count: bool = True) -> None:
        self.ledger.mark_unknown(recipient.delivery_id, error=err.reply, now=self.clock.now())
        self.summary.unknown += 1
        self._report("unknown", recipient, err.reply)
        if count:
            self._count_failure(err)

    def _count_failure(self, err: str | DeliveryError) -> None:
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.policy.max_consecutive_failures:
            reply = err.reply if isinstance(err, DeliveryError) else err
            self._halt(f"{self.consecutive_failures} temporary failures in a row; last: {reply}")

    def _fail(self, recipient: Recipient, error: str) -> None:
        self.ledger.mark_failed(recipient.delivery_id, error=error, now=self.clock.now())
        self.summary.failed += 1
        self.summary.failures.append((recipient.email, error))
        self._report("failed", recipient, error)

    def _retry(
        self, claimed: ClaimedDelivery, err: TemporaryDeliveryError, count: bool = True
    ) -> None:
        recipient = claimed.recipient
        attempts = claimed.attempts + 1
        if attempts >= self.policy.max_attempts:
            self._fail(recipient, f"gave up after {attempts} attempts: {err.reply}")
        else:
            now = self.clock.now()
            self.ledger.mark_retry(
                recipient.delivery_id,
                error=err.reply,
                next_attempt_at=now + self.policy.backoff(attempts, err.retry_after),
                now=now,
            )
            self.summary.retried += 1
            self._report("retry", recipient, err.reply)
        if count:
            self._count_failure(err)


async def send_round(
    *,
    campaign_id: str,
    build: BuildMessage,
    ledger: DeliveryLedger,
    mailer: Mailer,
    clock: Clock,
    policy: SendPolicy,
    worker: str,
    round: int = 0,
    on_result: OnResult | None = None,
    stop: asyncio.Event | None = None,
    stop_check: StopCheck | None = None,
    sleep: Sleep = asyncio.sleep,
) -> SendSummary:
    """Send every queued delivery of one campaign round; returns what happened.

    Setting ``stop`` (or ``stop_check`` returning a reason) stops claiming at once: messages
    already handed over finish, the rest go back to the queue untouched. A
    ``ConfigurationError`` from the mailer is raised after the round has given back what it
    claimed.
    """
    run = _Round(
        campaign_id=campaign_id,
        round=round,
        build=build,
        ledger=ledger,
        mailer=mailer,
        clock=clock,
        policy=policy,
        worker=worker,
        on_result=on_result,
        stop=stop or asyncio.Event(),
        stop_check=stop_check,
    )
    consumers = max(1, mailer.concurrency)
    if isinstance(mailer, BatchMailer) and mailer.max_batch > 1:
        work = [run.consume_batches(mailer) for _ in range(consumers)]
    else:
        work = [run.consume() for _ in range(consumers)]
    await asyncio.gather(run.produce(consumers, sleep), *work)
    if run.fatal is not None:
        raise run.fatal
    if run.stop.is_set() and run.summary.stopped_reason is None:
        run.summary.stopped_reason = "stopped"
    return run.summary
