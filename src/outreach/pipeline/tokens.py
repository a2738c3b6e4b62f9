"""Signed link tokens: what makes a tracked click, a signature or an unsubscribe trustworthy.

A token binds a purpose (click, sign, unsubscribe, open), a campaign, a delivery, an optional
call to action and an expiry time under one HMAC-SHA256 tag, and travels as a single
URL-safe base64 string (no padding) in the path of a link::

    {base_url}/{purpose}/{token}

Layout of the signed bytes (all integers big-endian)::

    version (1) | purpose (1, ASCII) | delivery id (8) | expires, Unix seconds (5)
    | campaign id length (1) | campaign id (UTF-8) | call-to-action id (UTF-8, may be empty)

followed by the first 16 bytes of the HMAC-SHA256 tag (RFC 2104 section 5 allows truncating to
half the hash length). Verification accepts only the exact string the signer produced: anything
malformed, forged, altered, expired or presented for another purpose raises ``TokenError`` and
never any other exception.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from outreach.errors import TokenError

_VERSION = 1
_TAG_BYTES = 16
_FIXED = 1 + 1 + 8 + 5 + 1
_ALPHABET = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_TOKEN_CHARS = 512


class LinkPurpose(StrEnum):
    """What a link does; the value is the first path segment of the link."""

    CLICK = "c"
    SIGN = "s"
    UNSUBSCRIBE = "u"
    OPEN = "o"


_PURPOSE_BY_BYTE = {ord(p.value): p for p in LinkPurpose}


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a verified token says."""

    purpose: LinkPurpose
    campaign_id: str
    delivery_id: int
    cta_id: str | None
    expires_at: datetime


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class LinkSigner:
    """Signs and verifies the tokens in every tracked link of outreach's mail."""

    __slots__ = ("_base_url", "_lifetime", "_mac")

    def __init__(self, *, secret: bytes, base_url: str, lifetime: timedelta) -> None:
        if not secret:
            raise ValueError("the link signing secret must not be empty")
        if lifetime <= timedelta(0):
            raise ValueError("the link lifetime must be positive")
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)
        self._base_url = base_url.rstrip("/")
        self._lifetime = lifetime

    @property
    def base_url(self) -> str:
        return self._base_url

    def _tag(self, body: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(body)
        return mac.digest()[:_TAG_BYTES]

    def token(
        self,
        purpose: LinkPurpose,
        *,
        campaign_id: str,
        delivery_id: int,
        cta_id: str | None = None,
        now: datetime | None = None,
    ) -> str:
        """A token for one link of one delivery, valid for the signer's lifetime from ``now``."""
        campaign = campaign_id.encode("utf-8")
        cta = (cta_id or "").encode("utf-8")
        if not campaign or len(campaign) > 255:
            raise ValueError("a campaign id must be 1 to 255 bytes long")
        if cta_id is not None and not cta:
            raise ValueError("a call-to-action id must not be empty; pass None for no CTA")
        if not 0 <= delivery_id < 2**64:
            raise ValueError("a delivery id must be a non-negative 64-bit integer")
        expires = int((_utc(now) + self._lifetime).timestamp())
        body = b"".join(
            (
                bytes((_VERSION, ord(LinkPurpose(purpose).value))),
                delivery_id.to_bytes(8, "big"),
                expires.to_bytes(5, "big"),
                bytes((len(campaign),)),
                campaign,
                cta,
            )
        )
        return _b64encode(body + self._tag(body))

    def url(
        self,
        purpose: LinkPurpose,
        *,
        campaign_id: str,
        delivery_id: int,
        cta_id: str | None = None,
        now: datetime | None = None,
    ) -> str:
        """The public link ``{base_url}/{purpose}/{token}``."""
        token = self.token(
            purpose, campaign_id=campaign_id, delivery_id=delivery_id, cta_id=cta_id, now=now
        )
        return f"{self._base_url}/{purpose.value}/{token}"

    def verify(
        self, token: str, purpose: LinkPurpose, *, now: datetime | None = None
    ) -> LinkClaims:
        """The claims of a genuine, unexpired token of ``purpose``; ``TokenError`` otherwise."""
        data = _decode(token)
        body, tag = data[:-_TAG_BYTES], data[-_TAG_BYTES:]
        if not hmac.compare_digest(self._tag(body), tag):
            raise TokenError("this link is not genuine: it was altered or signed with another key")
        claims = _parse(body)
        if claims.purpose is not purpose:
            raise TokenError(
                f"this link is meant for another purpose ({claims.purpose.name.lower()}, "
                f"not {purpose.name.lower()})"
            )
        if _utc(now) > claims.expires_at:
            raise TokenError(f"this link expired on {claims.expires_at:%Y-%m-%d}")
        return claims


def _decode(token: object) -> bytes:
    if (
        not isinstance(token, str)
        or len(token) > _MAX_TOKEN_CHARS
        or not _ALPHABET.match(token)
        or len(token) % 4 == 1
    ):
        raise TokenError("this link is malformed")
    try:
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as err:
        raise TokenError("this link is malformed") from err
    # Base64 leaves spare bits in the last character: only the canonical spelling is accepted,
    # so a token has exactly one valid form.
    if _b64encode(data) != token or len(data) < _FIXED + 1 + _TAG_BYTES:
        raise TokenError("this link is malformed")
    return data


def _parse(body: bytes) -> LinkClaims:
    """Read signed bytes; after a good tag only a signer of another version could fail here."""
    if body[0] != _VERSION or body[1] not in _PURPOSE_BY_BYTE:
        raise TokenError("this link was made by an incompatible version of outreach")
    campaign_len = body[15]
    campaign_end = _FIXED + campaign_len
    if campaign_len == 0 or len(body) < campaign_end:
        raise TokenError("this link is malformed")
    try:
        campaign_id = body[_FIXED:campaign_end].decode("utf-8")
        cta_id = body[campaign_end:].decode("utf-8") or None
    except UnicodeDecodeError as err:
        raise TokenError("this link is malformed") from err
    try:
        expires_at = datetime.fromtimestamp(int.from_bytes(body[10:15], "big"), UTC)
    except (OverflowError, OSError, ValueError) as err:
        raise TokenError("this link carries an impossible expiry date") from err
    return LinkClaims(
        purpose=_PURPOSE_BY_BYTE[body[1]],
        campaign_id=campaign_id,
        delivery_id=int.from_bytes(body[2:10], "big"),
        cta_id=cta_id,
        expires_at=expires_at,
    )
