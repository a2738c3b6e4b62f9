"""The small interfaces the pipeline needs from the outside world."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from outreach.domain.delivery import EventKind, Recipient
from outreach.errors import DeliveryError


@dataclass(frozen=True, slots=True)
class SharedBody:
    """The bodies many messages have in common: literal segments with a named slot between
    each pair (``len(segments) == len(slots) + 1``), as compiled once per campaign language.

    Batch APIs send the segments once per request and each recipient's slot values beside
    them. ``key`` is the same for every message made from the same segments.
    """

    key: str
    html_segments: tuple[str, ...]
    html_slots: tuple[str, ...]
    text_segments: tuple[str, ...]
    text_slots: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One personalised message, ready for any transport.

    ``data`` is the complete RFC 5322 message (CRLF line endings); HTTP providers that take
    structured fields use ``subject``/``html``/``text``/``headers`` instead (and read ``data``
    only when both bodies are empty). ``headers`` holds what a provider must pass on: the
    correlation headers ``X-Outreach-Campaign``/``X-Outreach-Delivery`` and List-Unsubscribe.
    ``shared`` with ``html_values``/``text_values`` (HTML-escaped and raw slot values) says how
    ``html`` and ``text`` were joined, so a batch API can send the shared part once.
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
    from_name: str = ""
    reply_to: str = ""
    recipient_name: str = ""
    shared: SharedBody | None = None
    html_values: Mapping[str, str] = field(default_factory=dict)
    text_values: Mapping[str, str] = field(default_factory=dict)


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


@runtime_checkable
class BatchMailer(Protocol):
    """A mailer whose provider takes many recipients in one request (each still gets their own
    links and name). ``send_batch`` returns one result per message, in order: the provider's
    message id, or the ``DeliveryError`` for that message alone (``UnknownDeliveryError`` when
    the request's answer was lost). It raises ``ConfigurationError`` when nothing can be sent.
    """

    name: str
    concurrency: int
    max_batch: int

    async def send(self, message: OutgoingMessage) -> str: ...

    async def send_batch(
        self, messages: Sequence[OutgoingMessage]
    ) -> list[str | DeliveryError]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One fact a provider (or a returned bounce) reports about a message, normalised.

    ``kind`` is from the closed vocabulary; ``raw_kind`` is the provider's own name for it and
    ``payload`` the provider's data for this one event, kept as received. ``permanent`` marks a
    hard bounce. ``event_id`` identifies the event at the provider, so a delivery of the same
    event twice is recorded once. The delivery is found from ``delivery_id`` (correlation
    metadata the message carried), else ``provider_message_id``, else campaign and recipient.
    """

    provider: str
    kind: EventKind
    raw_kind: str
    event_id: str
    occurred_at: datetime
    recipient: str
    campaign_id: str | None = None
    delivery_id: int | None = None
    provider_message_id: str | None = None
    permanent: bool = False
    reason: str = ""
    url: str | None = None
    user_agent: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecordedEvents:
    """What recording a set of provider events did."""

    recorded: int = 0
    duplicates: int = 0
    unmatched: list[ProviderEvent] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)


class EventRecorder(Protocol):
    """Records provider events once each (``keep_unmatched``: also those whose delivery is
    not found) and applies what they mean: suppressions and delivery statuses."""

    def __call__(
        self, events: Sequence[ProviderEvent], *, keep_unmatched: bool
    ) -> RecordedEvents: ...


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
class Outcome:
    """What became of one handed-over delivery, as the ledger records it.

    ``status`` is ``sent``, ``failed``, ``unknown``, ``suppressed``, or ``queued`` for a retry
    due at ``next_attempt_at`` (``spend_attempt`` is False when the server only throttled).
    """

    delivery_id: int
    status: str
    detail: str = ""
    next_attempt_at: datetime | None = None
    spend_attempt: bool = True


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

    def enqueue(
        self, *, campaign_id: str, round: int, rows: Iterable[NewDelivery], now: datetime
    ) -> int: ...

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

    def record(self, outcomes: Sequence[Outcome], *, now: datetime) -> None: ...

    def mark_sent(self, delivery_id: int, *, reply: str, now: datetime) -> None: ...

    def mark_retry(
        self, delivery_id: int, *, error: str, next_attempt_at: datetime, now: datetime
    ) -> None: ...

    def mark_failed(self, delivery_id: int, *, error: str, now: datetime) -> None: ...

    def mark_suppressed(self, delivery_id: int, *, now: datetime) -> None: ...

    def mark_unknown(self, delivery_id: int, *, error: str, now: datetime) -> None: ...

    def release(self, delivery_ids: list[int], *, worker: str, now: datetime) -> None: ...

    def renew(
        self, delivery_ids: Sequence[int], *, worker: str, until: datetime, now: datetime
    ) -> set[int]: ...

    def handing_over(
        self, delivery_ids: Sequence[int], *, worker: str, now: datetime
    ) -> set[int]: ...

    def recover(
        self,
        *,
        campaign_id: str,
        as_unknown: bool,
        now: datetime,
        dead_workers: Collection[str] = (),
    ) -> int: ...

    def claimants(self, *, campaign_id: str) -> set[str]: ...

    def counts(self, *, campaign_id: str, round: int, now: datetime) -> OutboxCounts: ...
