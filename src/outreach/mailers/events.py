"""What the providers' webhook parsers share: the ``Webhook`` port and small readers.

Each provider module has one webhook class: ``verify`` checks the request the way the provider
signs it (``WebhookVerificationError`` when it does not pass) and ``parse`` turns the verified
body into ``ProviderEvent`` values through the class's ``EVENTS`` table, keeping each event's
raw payload. A body that passes the check but cannot be read raises ``WebhookPayloadError``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from outreach.errors import WebhookVerificationError
from outreach.ports import ProviderEvent


class WebhookPayloadError(ValueError):
    """A verified webhook body that is not what the provider sends."""


class Webhook(Protocol):
    provider: str

    def verify(self, *, headers: Mapping[str, str], body: bytes) -> None: ...

    def parse(self, body: bytes) -> list[ProviderEvent]: ...


def require_secret(secret: str | None, *, provider: str, setting: str) -> str:
    if not secret:
        raise WebhookVerificationError(
            f"{provider} webhooks are not accepted: {setting} is not set"
        )
    return secret


def same(expected: str, given: str | None) -> bool:
    """Constant-time comparison of two secrets or signatures (False when one is missing)."""
    if given is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise WebhookPayloadError(f"the body is not JSON: {err}") from None


def as_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WebhookPayloadError(f"{what} is not a JSON object")
    return value


def member(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``data[key]`` when it is an object, else an empty one."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def from_epoch(value: Any) -> datetime | None:
    """A Unix timestamp in seconds (or milliseconds, when it is that large)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if number > 1e11:
        number /= 1000.0
    try:
        return datetime.fromtimestamp(number, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def from_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def delivery_id(value: Any) -> int | None:
    """The ``X-Outreach-Delivery`` value a message carried, if it is one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
        return number if number > 0 else None
    return None


def text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def payload_id(provider: str, payload: Mapping[str, Any]) -> str:
    """An event id for providers that send none: a digest of the event as received."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return f"sha256:{hashlib.sha256((provider + canonical).encode()).hexdigest()}"
