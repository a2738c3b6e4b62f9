"""The small interfaces the pipeline needs from the outside world."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


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
