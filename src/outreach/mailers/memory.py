"""The memory mailer (``memory://``): keeps every accepted message in a list.

For tests and dry runs. Failures can be scripted per recipient, to raise once, a few times or
always, so the delivery loop's handling of temporary and permanent errors can be exercised
without a mail server.
"""

from __future__ import annotations

from collections.abc import Mapping

from outreach.ports import OutgoingMessage


class MemoryMailer:
    """Accepts every message into ``sent``, except those scripted to fail."""

    name = "memory"

    def __init__(
        self, *, concurrency: int = 8, failures: Mapping[str, Exception] | None = None
    ) -> None:
        self.concurrency = concurrency
        self.sent: list[OutgoingMessage] = []
        self.closed = False
        self._failures: dict[str, tuple[Exception, int | None]] = {}
        for recipient, error in (failures or {}).items():
            self.fail(recipient, error)

    def fail(self, recipient: str, error: Exception, *, times: int | None = 1) -> None:
        """Raise ``error`` for the next ``times`` sends to ``recipient`` (``None``: always)."""
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for always")
        self._failures[recipient.lower()] = (error, times)

    def messages_to(self, recipient: str) -> list[OutgoingMessage]:
        wanted = recipient.lower()
        return [message for message in self.sent if message.recipient.lower() == wanted]

    async def send(self, message: OutgoingMessage) -> str:
        key = message.recipient.lower()
        scripted = self._failures.get(key)
        if scripted is not None:
            error, times = scripted
            if times is None:
                pass
            elif times > 1:
                self._failures[key] = (error, times - 1)
            else:
                del self._failures[key]
            raise error.with_traceback(None)
        self.sent.append(message)
        return f"250 accepted as memory message {len(self.sent)}"

    async def close(self) -> None:
        self.closed = True
