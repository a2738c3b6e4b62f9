"""Deliveries, their states and the events that happen to them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DeliveryStatus(StrEnum):
    """``queued -> sending -> sent | failed | suppressed``; ``unknown`` when the transport may
    have accepted a message whose reply was lost; ``bounced``/``complained`` come from events."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    UNKNOWN = "unknown"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class EventKind(StrEnum):
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    OPENED = "opened"
    CLICKED = "clicked"
    SIGNED = "signed"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


class CampaignState(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"
    MISSED = "missed"


@dataclass(frozen=True, slots=True)
class Recipient:
    """Everything personalisation needs about one delivery."""

    delivery_id: int
    email: str
    name: str
    language: str
    organisation: str
    country: str
    region: str
    timezone: str
