"""The file mailer: each message becomes one ``.eml`` file in a directory (``file://DIR``).

Staff use it to look at exactly what would be sent, and it is the default mailer so a fresh
install never mails anyone by accident. The file is named ``<delivery_id>-<recipient>.eml`` and
written to a temporary file first, then moved into place with ``os.replace``: a crash never
leaves half a message, and sending the same delivery again replaces its file instead of adding
a second one. The reply is the file's path.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path

from outreach.errors import ConfigurationError, TemporaryDeliveryError
from outreach.ports import OutgoingMessage

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")


class FileMailer:
    """Writes messages as ``.eml`` files into ``directory`` (created on the first send)."""

    name = "file"
    concurrency = 4

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).absolute()

    def __repr__(self) -> str:
        return f"FileMailer({str(self.directory)!r})"

    def path_for(self, message: OutgoingMessage) -> Path:
        """Where ``message`` is (or would be) written."""
        recipient = _UNSAFE.sub("_", message.recipient)[:120] or "unknown"
        return self.directory / f"{message.delivery_id}-{recipient}.eml"

    async def send(self, message: OutgoingMessage) -> str:
        return await asyncio.to_thread(self._write, message)

    async def close(self) -> None:
        return None

    def _write(self, message: OutgoingMessage) -> str:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigurationError(
                f"the outbox directory {self.directory} cannot be created: {err.strerror or err}"
            ) from err
        target = self.path_for(message)
        try:
            descriptor, temporary = tempfile.mkstemp(
                dir=self.directory, prefix=f".{target.name}.", suffix=".tmp"
            )
            try:
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(message.data)
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except PermissionError as err:
            raise ConfigurationError(
                f"the outbox directory {self.directory} is not writable: {err.strerror or err}"
            ) from err
        except OSError as err:
            raise TemporaryDeliveryError(
                f"cannot write {target}: {err.strerror or err}",
                provider=self.name,
                campaign=message.campaign_id,
                recipient=message.recipient,
            ) from err
        return str(target)
