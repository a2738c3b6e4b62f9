"""The send loop: claim a few deliveries, hand each over, record each result as it comes.

Up to ``mailer.concurrency`` senders run at once. Each claims a small chunk of queued deliveries
(marking them ``sending``: the claim is what a restart recovers), builds each message, waits for
the pacer (rate limits, throttling), hands it over, and records the result. Results are
committed in small groups (``SendPolicy.commit_every``, or every ``commit_interval`` seconds):
progress is recorded when a message is accepted, never when a chunk is fetched. A batch mailer
takes a whole chunk in one call, each message keeping its own result.

A claim is leased (``SendPolicy.lease``); a sender kept waiting by the rate limits renews the
lease of what it still holds, and leaves alone what another process recovered meanwhile. A
message whose recipient domain's turn is not yet due goes back to the queue until then (its
turn kept), so one busy domain does not hold every sender up. With ``mark_hand_over`` each
hand-over is recorded (committed, several senders' at once) before it happens, so that a crash
leaves exactly those deliveries in doubt.

- temporary failure: back to the queue with exponential backoff and jitter (``Retry-After``
  honoured), failed after ``max_attempts``;
- throttling (SMTP 421/450/451/454, HTTP 429): every sender slows down; the delivery goes back
  to the queue without spending an attempt;
- permanent failure: recorded with the server's reply;
- lost answer (``UnknownDeliveryError``): recorded ``unknown``, never sent again here;
- too many failures in a row, a stop request, a paused campaign: claiming stops at once, the
  message in hand finishes, claimed messages not yet handed over go back to the queue;
- misconfiguration (``ConfigurationError``): the same, then the error is raised.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from outreach.domain.delivery import DeliveryStatus, Recipient
from outreach.errors import (
    ConfigurationError,
    DeliveryError,
    OutreachError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownDeliveryError,
)
from outreach.pipeline.ratelimit import Pacer, RateLimits, is_throttling
from outreach.ports import (
    BatchMailer,
    ClaimedDelivery,
    Clock,
    DeliveryLedger,
    Mailer,
    Outcome,
    OutgoingMessage,
)

log = logging.getLogger("outreach.delivery")

BuildMessage = Callable[[Recipient], OutgoingMessage]
OnResult = Callable[[str, Recipient, str], None]
# asked before claiming: a reason to stop (the campaign was paused elsewhere), or None
StopCheck = Callable[[], str | None]
Sleep = Callable[[float], Awaitable[None]]
Result = str | DeliveryError

SENT = DeliveryStatus.SENT.value
QUEUED = DeliveryStatus.QUEUED.value
FAILED = DeliveryStatus.FAILED.value
UNKNOWN = DeliveryStatus.UNKNOWN.value
SUPPRESSED = DeliveryStatus.SUPPRESSED.value


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


class _Recorder:
    """Buffers results and commits them in small groups; one log line per group."""

    def __init__(self, campaign_id: str, ledger: DeliveryLedger, clock: Clock, every: int) -> None:
        self.campaign_id = campaign_id
        self.ledger = ledger
        self.clock = clock
        self.every = max(1, every)
        self.buffer: list[Outcome] = []

    def add(self, outcome: Outcome) -> None:
        self.buffer.append(outcome)
        if len(self.buffer) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        outcomes, self.buffer = self.buffer, []
        self.ledger.record(outcomes, now=self.clock.now())
        tally = Counter(o.status for o in outcomes)
        log.info(
            "%s: recorded %d results (%s)",
            self.campaign_id,
            len(outcomes),
            ", ".join(f"{status} {n}" for status, n in sorted(tally.items())),
        )


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
        sleep: Sleep,
    ) -> None:
        self.campaign_id = campaign_id
        self.round = round
        self.build = build
        self.ledger = ledger
        self.mailer = mailer
        self.batch_mailer = mailer if isinstance(mailer, BatchMailer) else None
        self.clock = clock
        self.policy = policy
        self.worker = worker
        self.on_result = on_result
        self.stop = stop
        self.stop_check = stop_check
        self.sleep = sleep
        self.pacer = Pacer(policy.limits, sleep=sleep)
        self.recorder = _Recorder(campaign_id, ledger, clock, policy.commit_every)
        self.marks = _HandOverMarks(self)
        self.summary = SendSummary()
        self.fatal: ConfigurationError | None = None
        self.consecutive_failures = 0
        self.in_hand = 0  # senders holding a claimed chunk
        self.last_check = float("-inf")

    # -- running ------------------------------------------------------------------------
    async def run(self) -> None:
        senders = max(1, self.mailer.concurrency)
        flusher = asyncio.create_task(self._flush_regularly())
        try:
            await asyncio.gather(*(self._sender() for _ in range(senders)))
        finally:
            flusher.cancel()
            self.recorder.flush()

    async def _flush_regularly(self) -> None:
        while True:
            await asyncio.sleep(self.policy.commit_interval)
            self.recorder.flush()

    def _should_stop(self) -> bool:
        if self.stop.is_set():
            return True
        if self.stop_check is not None:
            now = time.monotonic()
            if now - self.last_check >= self.policy.stop_check_interval:
                self.last_check = now
                reason = self.stop_check()
                if reason is not None:
                    self._halt(reason)
                    return True
        return False

    def _halt(self, reason: str) -> None:
        if self.summary.stopped_reason is None:
            self.summary.stopped_reason = reason
        self.stop.set()

    async def _sender(self) -> None:
        limit = self.policy.batch_size
        if self.batch_mailer is not None:
            limit = max(1, self.batch_mailer.max_batch)
        while not self._should_stop():
            chunk = self.ledger.claim(
                campaign_id=self.campaign_id,
                round=self.round,
                worker=self.worker,
                limit=limit,
                now=self.clock.now(),
                lease=self.policy.lease,
            )
            if not chunk:
                if await self._wait_for_more():
                    continue
                return
            lease = _Lease(self)
            self.in_hand += 1
            try:
                await self._send_chunk(chunk, lease)
            finally:
                self.in_hand -= 1

    async def _wait_for_more(self) -> bool:
        """Nothing claimable now: wait while others may still produce retries, or for a retry
        due soon; False when the round is over."""
        if self.in_hand:
            await self.sleep(0.02)
            return True
        self.recorder.flush()  # the counts below must see every result
        now = self.clock.now()
        counts = self.ledger.counts(campaign_id=self.campaign_id, round=self.round, now=now)
        if counts.queued == 0:
            return False
        if counts.next_retry_at is None or counts.next_retry_at <= now:
            await self.sleep(0.01)  # claimable again (another sender released some)
            return True
        wait = (counts.next_retry_at - now).total_seconds()
        if wait > self.policy.max_retry_wait.total_seconds():
            self.summary.waiting = counts.queued
            self.summary.next_retry_at = counts.next_retry_at
            return False
        await self.sleep(min(wait, 1.0))
        return True

    # -- one chunk ------------------------------------------------------------------------
    async def _send_chunk(self, chunk: list[ClaimedDelivery], lease: _Lease) -> None:
        try:
            if self.batch_mailer is not None:
                ready = [(c, m) for c in chunk if (m := self._prepare(c)) is not None]
                await self._hand_over_batch(self.batch_mailer, ready, lease)
            else:
                await self._hand_over_each(chunk, lease)
        except ConfigurationError as err:
            self.fatal = err
            self._halt(str(err))

    def _prepare(self, claimed: ClaimedDelivery) -> OutgoingMessage | None:
        """The message for one claimed delivery, or None when it is settled without one."""
        if claimed.suppressed:
            self._record(claimed, SUPPRESSED, "on the suppression list")
            return None
        try:
            return self.build(claimed.recipient)
        except OutreachError as err:
            self._record(claimed, FAILED, f"could not build the message: {err}")
            return None

    async def _hand_over_each(self, chunk: list[ClaimedDelivery], lease: _Lease) -> None:
        """One message at a time, each built just before it goes (memory stays flat)."""
        for position, claimed in enumerate(chunk):
            if self.stop.is_set():
                self._release(chunk[position:])
                return
            if claimed.recipient.delivery_id in lease.lost:
                continue
            message = self._prepare(claimed)
            if message is None:
                continue
            turn = self.pacer.domain_turn(message.recipient, claimed.recipient.delivery_id)
            if turn > self.policy.max_domain_wait:
                self._wait_for_turn(claimed, message.recipient, turn)
                continue
            if turn > 0:
                await self.sleep(turn)
            await self.pacer.acquire(message.recipient, domain=False)
            lease.check(chunk[position:])
            if claimed.recipient.delivery_id in lease.lost:
                continue
            if self.policy.mark_hand_over and not await self.marks.mark(claimed):
                continue  # recovered by another process meanwhile: theirs now
            try:
                result: Result = await self.mailer.send(message)
            except DeliveryError as err:
                result = err
            except ConfigurationError:
                self._release(chunk[position:])
                raise
            self._settle(claimed, result)
            self._count([result])

    async def _hand_over_batch(
        self,
        mailer: BatchMailer,
        ready: list[tuple[ClaimedDelivery, OutgoingMessage]],
        lease: _Lease,
    ) -> None:
        if not ready:
            return
        if self.stop.is_set():
            self._release([claimed for claimed, _ in ready])
            return
        for _, message in ready:
            await self.pacer.acquire(message.recipient)
        lease.check([claimed for claimed, _ in ready])
        ready = [(c, m) for c, m in ready if c.recipient.delivery_id not in lease.lost]
        if ready and self.policy.mark_hand_over:
            held = self.ledger.handing_over(
                [c.recipient.delivery_id for c, _ in ready],
                worker=self.worker,
                now=self.clock.now(),
            )
            ready = [(c, m) for c, m in ready if c.recipient.delivery_id in held]
        if not ready:
            return
        try:
            results: Sequence[Result] = await mailer.send_batch([m for _, m in ready])
        except ConfigurationError:
            self._release([claimed for claimed, _ in ready])
            raise
        for (claimed, _), result in zip(ready, results, strict=True):
            self._settle(claimed, result)
        self._count(results)

    def _wait_for_turn(self, claimed: ClaimedDelivery, recipient: str, turn: float) -> None:
        """Its domain's rate holds this message back: back to the queue until its turn, so the
        sender goes on with other members' messages meanwhile."""
        delivery_id = claimed.recipient.delivery_id
        self.pacer.keep_turn(delivery_id, turn)
        self.summary.paced += 1
        due = self.clock.now() + timedelta(seconds=turn)
        domain = recipient.rpartition("@")[2]
        detail = f"waiting for its turn at the rate limit for {domain}"
        self._record(claimed, QUEUED, detail, due, spend_attempt=False, shown="held back")

    def _release(self, claimed: Sequence[ClaimedDelivery]) -> None:
        ids = [item.recipient.delivery_id for item in claimed]
        self.ledger.release(ids, worker=self.worker, now=self.clock.now())

    # -- results --------------------------------------------------------------------------
    def _settle(self, claimed: ClaimedDelivery, result: Result) -> None:
        if isinstance(result, str):
            self.pacer.accepted()
            self._record(claimed, SENT, result)
        elif isinstance(result, UnknownDeliveryError):
            self._record(claimed, UNKNOWN, result.reply)
        elif isinstance(result, TemporaryDeliveryError):
            self._retry(claimed, result)
        elif isinstance(result, PermanentDeliveryError):
            self._record(claimed, FAILED, result.reply)
        else:  # a DeliveryError of no known kind: treat it as temporary
            self._retry(claimed, TemporaryDeliveryError(result.reply, code=result.code))

    def _retry(self, claimed: ClaimedDelivery, err: TemporaryDeliveryError) -> None:
        now = self.clock.now()
        if is_throttling(err.code):
            pause = self.pacer.throttled(err.retry_after)
            self.summary.throttled += 1
            self._record(
                claimed, QUEUED, err.reply, now + timedelta(seconds=pause), spend_attempt=False
            )
            return
        attempts = claimed.attempts + 1
        if attempts >= self.policy.max_attempts:
            self._record(claimed, FAILED, f"gave up after {attempts} attempts: {err.reply}")
        else:
            due = now + self.policy.backoff(attempts, err.retry_after)
            self._record(claimed, QUEUED, err.reply, due)

    def _record(
        self,
        claimed: ClaimedDelivery,
        status: str,
        detail: str,
        next_attempt_at: datetime | None = None,
        *,
        spend_attempt: bool = True,
        shown: str | None = None,
    ) -> None:
        recipient = claimed.recipient
        self.recorder.add(
            Outcome(recipient.delivery_id, status, detail, next_attempt_at, spend_attempt)
        )
        if status == SENT:
            self.summary.sent += 1
        elif status == FAILED:
            self.summary.failed += 1
            self.summary.failures.append((recipient.email, detail))
        elif status == SUPPRESSED:
            self.summary.suppressed += 1
        elif status == UNKNOWN:
            self.summary.unknown += 1
        elif status == QUEUED and spend_attempt:
            self.summary.retried += 1
        if self.on_result is not None:
            shown = shown or ("retry" if status == QUEUED else status)
            self.on_result(shown, recipient, detail)

    def _count(self, results: Sequence[Result]) -> None:
        """Failures in a row, counted per hand-over: a whole failed request counts once."""
        if any(isinstance(r, str | PermanentDeliveryError) for r in results):
            self.consecutive_failures = 0
            return
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.policy.max_consecutive_failures:
            last = results[-1]
            reply = last.reply if isinstance(last, DeliveryError) else last
            self._halt(f"{self.consecutive_failures} temporary failures in a row; last: {reply}")


class _Lease:
    """A sender's claim on one chunk, renewed while its messages wait for the pacer.

    A claim is leased for ``SendPolicy.lease``; after that, any process may recover it. A
    chunk held back by rate limits or throttling can outlast its lease, so before a message is
    handed over after more than half the lease, the lease of what is left of the chunk is
    extended. Deliveries another process recovered in the meantime are not sent here.
    """

    def __init__(self, round: _Round) -> None:
        """Made when the chunk is claimed: the lease runs from then."""
        self.round = round
        self.renewed = time.monotonic()
        self.halfway = round.policy.lease.total_seconds() / 2
        self.lost: set[int] = set()  # recovered by another process: not to be sent here

    def check(self, pending: Sequence[ClaimedDelivery]) -> None:
        """Renew the lease of ``pending`` (the chunk's deliveries not handed over yet) when
        half of it has gone by."""
        if time.monotonic() - self.renewed >= self.halfway:
            self._renew([item.recipient.delivery_id for item in pending])

    def _renew(self, ids: list[int]) -> None:
        run = self.round
        now = run.clock.now()
        held = run.ledger.renew(ids, worker=run.worker, until=now + run.policy.lease, now=now)
        self.renewed = time.monotonic()
        lost = set(ids) - held
        if lost - self.lost:
            log.warning(
                "%s: %d claimed deliveries were recovered by another process while waiting; "
                "they are left to it",
                run.campaign_id,
                len(lost - self.lost),
            )
        self.lost |= lost


class _HandOverMarks:
    """Records that senders are about to hand messages over, committed before they do
    (``SendPolicy.mark_hand_over``). The senders that ask in the same turn of the event loop
    share one transaction; each waits for it, then hands its message over."""

    def __init__(self, round: _Round) -> None:
        self.round = round
        self.pending: list[tuple[int, asyncio.Future[bool]]] = []

    async def mark(self, claimed: ClaimedDelivery) -> bool:
        """Whether the mark is committed and the delivery still this sender's."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        if not self.pending:
            loop.call_soon(self._write)
        self.pending.append((claimed.recipient.delivery_id, future))
        return await future

    def _write(self) -> None:
        batch, self.pending = self.pending, []
        run = self.round
        try:
            held = run.ledger.handing_over(
                [delivery_id for delivery_id, _ in batch], worker=run.worker, now=run.clock.now()
            )
        except Exception as err:
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        for delivery_id, future in batch:
            if not future.done():
                future.set_result(delivery_id in held)


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
    claimed and recorded every result it had.
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
        sleep=sleep,
    )
    await run.run()
    if run.fatal is not None:
        raise run.fatal
    if run.stop.is_set() and run.summary.stopped_reason is None:
        run.summary.stopped_reason = "stopped"
    return run.summary
