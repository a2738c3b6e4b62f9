"""The one exception tree of outreach.

    OutreachError
    ├── CampaignDefinitionError   a campaign file is malformed (carries every problem)
    ├── AudienceError             a contacts file or an audience cannot be used
    ├── RenderError               a template cannot be compiled or rendered
    ├── StoreError                the database refused an operation
    ├── TokenError                a link token is forged, altered, expired or of another purpose
    ├── WebhookVerificationError  a provider webhook failed its signature check
    └── DeliveryError             a message could not be handed to the mail server
        ├── TemporaryDeliveryError    try again later (4xx, dropped connection, throttling)
        ├── PermanentDeliveryError    do not try again (5xx, rejected address)
        └── UnknownDeliveryError      the request went out but no answer came back: the
                                      message may have been accepted; never re-sent blindly

    ConfigurationError            stands outside the tree on purpose: a wrong DSN or a
                                  wrong password must stop the run, never be swallowed by
                                  the delivery loop's handling of DeliveryError.

Library exceptions are translated once, at the adapter boundary, with ``raise ... from err``.
"""

from __future__ import annotations

from dataclasses import dataclass


class OutreachError(Exception):
    """Base of every error outreach raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in an input file, reported as ``file:line: field: message``."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class CampaignDefinitionError(OutreachError):
    """A campaign file has one or more problems; ``problems`` lists every one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class AudienceError(OutreachError):
    """A contacts file or an audience definition cannot be used."""


class RenderError(OutreachError):
    """A template could not be compiled or rendered."""


class StoreError(OutreachError):
    """The database refused an operation."""


class TokenError(OutreachError):
    """A link token is not valid: forged, altered, expired or meant for another purpose."""


class WebhookVerificationError(OutreachError):
    """A provider webhook request failed its signature or credential check."""


class DeliveryError(OutreachError):
    """A message could not be handed over to the mail server or provider."""

    def __init__(
        self,
        reply: str,
        *,
        provider: str = "",
        campaign: str = "",
        recipient: str = "",
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.reply = reply
        self.provider = provider
        self.campaign = campaign
        self.recipient = recipient
        self.code = code
        self.retry_after = retry_after
        where = " ".join(
            part
            for part in (
                f"provider={provider}" if provider else "",
                f"campaign={campaign}" if campaign else "",
                f"recipient={recipient}" if recipient else "",
            )
            if part
        )
        super().__init__(f"{reply} ({where})" if where else reply)


class TemporaryDeliveryError(DeliveryError):
    """The server asked to try again later."""


class PermanentDeliveryError(DeliveryError):
    """The server refused the message for good."""


class UnknownDeliveryError(DeliveryError):
    """The request reached the provider but its answer was lost (a read timeout, a connection
    dropped after sending): the message may or may not have been accepted. The delivery is
    recorded ``unknown`` and settled by the provider's events, never sent a second time."""


class ConfigurationError(Exception):
    """Outreach is misconfigured (bad DSN, wrong credentials, missing setting)."""
