"""What a sender records about the deliveries it holds: results, lease renewals, hand-over marks.

The send loop (``pipeline.delivery``) claims deliveries in the ledger; these helpers keep the
ledger's side of those claims. ``ResultRecorder`` commits results in small groups, one log line
per group. ``ClaimLease`` renews the lease of a chunk the pacer holds back and notes what another
process recovered meanwhile, which is then not sent here. ``HandOverMarks`` commits "about to
hand over" marks before each hand-over (``SendPolicy.mark_hand_over``), several senders' in one
transaction. Each is given the ledger, clock, worker and campaign through a ``Claimant``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from outreach.ports import ClaimedDelivery, Clock, DeliveryLedger, Outcome

log = logging.getLogger("outreach.delivery")


@dataclass(frozen=True, slots=True)
class Claimant:
    """Who holds the claims, for which campaign, where they are recorded, and for how long."""

    campaign_id: str
    worker: str
    ledger: DeliveryLedger
    clock: Clock
    lease: timedelta  # ``SendPolicy.lease``


class ResultRecorder:
    """Buffers results and commits them in small groups; one log line per group."""

    def __init__(self, claimant: Claimant, every: int) -> None:
        self.campaign_id = claimant.campaign_id
        self.ledger = claimant.ledger
        self.clock = claimant.clock
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


class ClaimLease:
    """A sender's claim on one chunk, renewed while its messages wait for the pacer.

    A claim is leased for ``SendPolicy.lease``; after that, any process may recover it. A
    chunk held back by rate limits or throttling can outlast its lease, so before a message is
    handed over after more than half the lease, the lease of what is left of the chunk is
    extended. Deliveries another process recovered in the meantime are not sent here.
    """

    def __init__(self, claimant: Claimant) -> None:
        """Made when the chunk is claimed: the lease runs from then."""
        self.claimant = claimant
        self.renewed = time.monotonic()
        self.halfway = claimant.lease.total_seconds() / 2
        self.lost: set[int] = set()  # recovered by another process: not to be sent here

    def check(self, pending: Sequence[ClaimedDelivery]) -> None:
        """Renew the lease of ``pending`` (the chunk's deliveries not handed over yet) when
        half of it has gone by."""
        if time.monotonic() - self.renewed >= self.halfway:
            self._renew([item.recipient.delivery_id for item in pending])

    def _renew(self, ids: list[int]) -> None:
        holder = self.claimant
        now = holder.clock.now()
        held = holder.ledger.renew(ids, worker=holder.worker, until=now + holder.lease, now=now)
        self.renewed = time.monotonic()
        lost = set(ids) - held
        if lost - self.lost:
            log.warning(
                "%s: %d claimed deliveries were recovered by another process while waiting; "
                "they are left to it",
                holder.campaign_id,
                len(lost - self.lost),
            )
        self.lost |= lost


class HandOverMarks:
    """Records that senders are about to hand messages over, committed before they do
    (``SendPolicy.mark_hand_over``). The senders that ask in the same turn of the event loop
    share one transaction; each waits for it, then hands its message over."""

    def __init__(self, claimant: Claimant) -> None:
        self.claimant = claimant
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
        holder = self.claimant
        try:
            held = holder.ledger.handing_over(
                [delivery_id for delivery_id, _ in batch],
                worker=holder.worker,
                now=holder.clock.now(),
            )
        except Exception as err:
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        for delivery_id, future in batch:
            if not future.done():
                future.set_result(delivery_id in held)
