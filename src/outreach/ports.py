"""The small interfaces the pipeline needs from the outside world."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from outreach.domain.delivery import Recipient


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One personalised message, ready for any transport.

    ``data`` is the complete RFC 5322 message (CRLF line endings); HTTP providers that take
    structured fields use ``subject``/``html``/``text``/``headers`` instead.
    """

    delivery_id: int
    campaign_id: str
    envelope_from: str
    recipient: str
    data: bytes
    subject: str = ""
    html: str = ""
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class Mailer(Protocol):
    """Hands messages to a mail server or provider.

    ``send`` returns the provider's message id (or the server's reply) once the message is
    accepted; it raises ``TemporaryDeliveryError`` or ``PermanentDeliveryError`` for that one
    message, and ``ConfigurationError`` when nothing can be sent (bad credentials, bad DSN).
    ``concurrency`` is how many ``send`` calls may usefully run at once.
    """

    name: str
    concurrency: int

    async def send(self, message: OutgoingMessage) -> str: ...

    async def close(self) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery claimed for sending: who it goes to, and how often it was tried."""

    recipient: Recipient
    attempts: int
    suppressed: bool = False


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """Deliveries of one campaign round by status, and when the next retry is due."""

    by_status: dict[str, int]
    next_retry_at: datetime | None

    @property
    def queued(self) -> int:
        return self.by_status.get("queued", 0)

    def get(self, status: str) -> int:
        return self.by_status.get(status, 0)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to put in the outbox (``suppressed`` ones are recorded, never sent)."""

    contact_id: int
    language: str
    suppressed: bool


class DeliveryLedger(Protocol):
    """The outbox and ledger of deliveries, as the send loop sees it.

    Every ``mark_*`` call is durable (committed) when it returns: progress is recorded when a
    message is accepted, never when a batch is fetched.
    """

    def claim(
        self,
        *,
        campaign_id: str,
        round: int,
        worker: str,
        limit: int,
        now: datetime,
        lease: timedelta,
    ) -> list[ClaimedDelivery]: ...

    def mark_sent(self, delivery_id: int, *, reply: str, now: datetime) -> None: ...

    def mark_retry(
        self, delivery_id: int, *, error: str, next_attempt_at: datetime, now: datetime
    ) -> None: ...

    def mark_failed(self, delivery_id: int, *, error: str, now: datetime) -> None: ...

    def mark_suppressed(self, delivery_id: int, *, now: datetime) -> None: ...

    def release(self, delivery_ids: list[int], *, now: datetime) -> None: ...

    def recover(self, *, campaign_id: str, as_unknown: bool, now: datetime) -> int: ...

    def counts(self, *, campaign_id: str, round: int, now: datetime) -> OutboxCounts: ...
