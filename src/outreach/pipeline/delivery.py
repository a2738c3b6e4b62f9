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
leaves exactly those deliveries in doubt. These records of what a sender holds (results, lease
renewals, hand-over marks) are kept by ``pipeline.claims``; ``SendPolicy`` and the round's
``SendSummary`` are in ``pipeline.sending``.

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
import time
from collections.abc import Awaitable, Callable, Sequence
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
from outreach.pipeline.claims import Claimant, ClaimLease, HandOverMarks, ResultRecorder
from outreach.pipeline.ratelimit import Pacer, is_throttling
from outreach.pipeline.sending import SendPolicy, SendSummary
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
        self.claimant = Claimant(campaign_id, worker, ledger, clock, policy.lease)
        self.recorder = ResultRecorder(self.claimant, policy.commit_every)
        self.marks = HandOverMarks(self.claimant)
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
            lease = ClaimLease(self.claimant)
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
    async def _send_chunk(self, chunk: list[ClaimedDelivery], lease: ClaimLease) -> None:
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

    async def _hand_over_each(self, chunk: list[ClaimedDelivery], lease: ClaimLease) -> None:
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
        lease: ClaimLease,
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
