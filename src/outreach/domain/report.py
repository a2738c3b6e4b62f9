"""What a send report says about one campaign."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("queued", "sending", "sent", "failed", "suppressed", "unknown", "bounced", "complained")


@dataclass(frozen=True, slots=True)
class StatusCounts:
    counts: dict[str, int]

    def __getitem__(self, status: str) -> int:
        return self.counts.get(status, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class CampaignReport:
    campaign: str
    name: str
    state: str
    recipients: int
    by_status: dict[str, int]
    by_region: dict[str, dict[str, int]]
    by_language: dict[str, dict[str, int]]
    extra: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return self.by_status.get(status, 0)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        for status in STATUSES:
            data[status] = self.count(status)
        data.update(extra)
        return data
