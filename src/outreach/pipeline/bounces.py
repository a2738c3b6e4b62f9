"""Returned mail: RFC 3464 delivery status notifications (DSNs) from an .eml file or a Maildir.

A bounce that comes back by mail after an SMTP server accepted the message is read like a
provider event: ``parse_bounce`` finds the ``message/delivery-status`` part, one event per
recipient block (``Action`` failed with a 5.x.x ``Status``: a hard bounce; failed with 4.x.x:
a soft one; delayed: deferred; delivered/relayed/expanded: delivered) and the returned original
(``message/rfc822`` or ``text/rfc822-headers``), whose ``X-Outreach-Campaign`` and
``X-Outreach-Delivery`` headers, or else its ``Message-ID`` (``<campaign.delivery@domain>``),
say which delivery it was. ``import_bounces`` reads every message of a file or Maildir and
hands the events to a recorder (``store.events``), which records each once and only when the
delivery is found: a message that is not a DSN, or names no delivery, is reported, not guessed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from outreach.domain.delivery import EventKind
from outreach.errors import OutreachError
from outreach.ports import EventRecorder, ProviderEvent

PROVIDER = "dsn"
_MESSAGE_ID = re.compile(r"<([^<>@\s]+)\.(\d+)@[^<>\s]+>")
_STATUS = re.compile(r"^([245])\.\d{1,3}\.\d{1,3}")
MAX_FILE = 20 * 1024 * 1024


class BounceReadError(OutreachError):
    """A path that is neither a message file nor a Maildir."""


@dataclass(frozen=True, slots=True)
class Correlation:
    campaign_id: str | None
    delivery_id: int | None
    message_id: str | None


@dataclass(slots=True)
class BounceImport:
    """What ``import_bounces`` read and did."""

    messages: int = 0
    bounces: int = 0  # DSN recipient blocks found
    recorded: int = 0
    duplicates: int = 0
    not_dsn: list[str] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (file, recipient)
    suppressed: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, why)


def _one_line(value: object) -> str:
    return " ".join(str(value or "").split())


def _address(field_value: object) -> str:
    """``rfc822; user@example.org`` -> ``user@example.org``."""
    text = _one_line(field_value)
    _, semicolon, address = text.partition(";")
    return (address if semicolon else text).strip().strip("<>")


def _when(*values: object) -> datetime | None:
    for value in values:
        if not value:
            continue
        try:
            parsed = parsedate_to_datetime(_one_line(value))
        except (TypeError, ValueError, IndexError):
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _original_headers(report: Message) -> Message | None:
    for part in report.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return HeaderParser().parsestr(raw.decode("utf-8", "replace"))
    return None


def correlation(original: Message | None) -> Correlation:
    """Which delivery the returned original was: its outreach headers, else its Message-ID."""
    if original is None:
        return Correlation(None, None, None)
    campaign = _one_line(original.get("X-Outreach-Campaign")) or None
    delivery_text = _one_line(original.get("X-Outreach-Delivery"))
    delivery = int(delivery_text) if delivery_text.isdigit() else None
    message_id = _one_line(original.get("Message-ID")) or None
    if message_id and (campaign is None or delivery is None):
        match = _MESSAGE_ID.fullmatch(message_id)
        if match:
            campaign = campaign or match.group(1)
            delivery = delivery if delivery is not None else int(match.group(2))
    return Correlation(campaign, delivery, message_id)


def _status_blocks(report: Message) -> list[Message] | None:
    for part in report.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            if isinstance(blocks, list):
                return [block for block in blocks if isinstance(block, Message)]
    return None


def _kind(action: str, status: str) -> tuple[EventKind, bool]:
    klass = _STATUS.match(status)
    if action == "failed":
        return EventKind.BOUNCED, klass is not None and klass.group(1) == "5"
    if action == "delayed":
        return EventKind.DEFERRED, False
    if action in ("delivered", "relayed", "expanded"):
        return EventKind.DELIVERED, False
    return EventKind.UNKNOWN, False


def parse_bounce(raw: bytes, *, source: str, now: datetime) -> list[ProviderEvent] | None:
    """The events a DSN reports, one per recipient block; ``None`` when ``raw`` is not a DSN."""
    report = BytesParser(policy=policy.compat32).parsebytes(raw)
    if report.get_content_type() != "multipart/report":
        return None
    blocks = _status_blocks(report)
    if not blocks:
        return None
    per_message, recipients = blocks[0], blocks[1:]
    if per_message.get("Final-Recipient") is not None:  # no per-message block was given
        per_message, recipients = Message(), blocks
    found = correlation(_original_headers(report))
    dsn_id = _one_line(report.get("Message-ID")) or hashlib.sha256(raw).hexdigest()
    events = []
    for block in recipients:
        recipient = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
        if not recipient:
            continue
        action = _one_line(block.get("Action")).lower()
        status = _one_line(block.get("Status"))
        kind, permanent = _kind(action, status)
        diagnostic = _one_line(block.get("Diagnostic-Code")).partition(";")[2].strip()
        payload: dict[str, Any] = {
            "file": source,
            "dsn_message_id": _one_line(report.get("Message-ID")),
            "reporting_mta": _address(per_message.get("Reporting-MTA")),
            "final_recipient": recipient,
            "action": action,
            "status": status,
            "diagnostic_code": diagnostic,
            "remote_mta": _address(block.get("Remote-MTA")),
            "original_message_id": found.message_id,
        }
        events.append(
            ProviderEvent(
                provider=PROVIDER,
                kind=kind,
                raw_kind=f"{action or '(no action)'} {status}".strip(),
                event_id=f"{dsn_id}:{recipient.lower()}:{action}",
                occurred_at=_when(
                    block.get("Last-Attempt-Date"),
                    per_message.get("Arrival-Date"),
                    report.get("Date"),
                )
                or now,
                recipient=recipient,
                campaign_id=found.campaign_id,
                delivery_id=found.delivery_id,
                provider_message_id=found.message_id,
                permanent=permanent,
                reason=" ".join(part for part in (status, diagnostic) if part),
                payload=payload,
            )
        )
    return events


def message_files(path: Path) -> Iterator[Path]:
    """The message files of ``path``: the file itself, a Maildir's new/ and cur/, or the
    files of a plain directory."""
    if path.is_file():
        yield path
        return
    if not path.is_dir():
        raise BounceReadError(f"{path}: no such file or Maildir")
    folders = [path / "new", path / "cur"]
    if not any(folder.is_dir() for folder in folders):
        folders = [path]
    for folder in folders:
        if folder.is_dir():
            yield from sorted(
                p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
            )


def import_bounces(path: Path, *, record: EventRecorder, now: datetime) -> BounceImport:
    """Read every message under ``path``, record the bounces that name a delivery."""
    result = BounceImport()
    for file in message_files(path):
        result.messages += 1
        try:
            if file.stat().st_size > MAX_FILE:
                raise OSError("larger than 20 MB")
            raw = file.read_bytes()
        except OSError as err:
            result.unreadable.append((str(file), err.strerror or str(err)))
            continue
        events = parse_bounce(raw, source=file.name, now=now)
        if events is None:
            result.not_dsn.append(str(file))
            continue
        result.bounces += len(events)
        recorded = record(events, keep_unmatched=False)
        result.recorded += recorded.recorded
        result.duplicates += recorded.duplicates
        result.unmatched += [(str(file), event.recipient) for event in recorded.unmatched]
        result.suppressed += recorded.suppressed
    return result
