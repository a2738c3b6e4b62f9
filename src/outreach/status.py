"""What is scheduled, and how it went: campaign by campaign, round by round.

``campaign_statuses`` is what ``outreach status`` and ``outreach schedule --list`` show: each
campaign's state, its timezone groups and deliveries per round (the first send, then each
reminder), who responded and the current sending pace. ``scheduler_lease`` says which process
schedules for this database, if any.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from outreach.bootstrap import Services
from outreach.domain.delivery import CampaignState
from outreach.runs import round_label
from outreach.scheduling import SchedulingError
from outreach.store.campaigns import campaign_state, list_campaigns
from outreach.store.leases import Lease, current
from outreach.store.reports import sent_since
from outreach.store.schedules import (
    ScheduledSend,
    SendState,
    audience_organisations,
    round_counts,
    scheduled_sends_of,
)
from outreach.store.signatures import signatories


@dataclass(frozen=True, slots=True)
class RoundStatus:
    round: int
    label: str
    groups: list[ScheduledSend]
    counts: dict[str, int]

    def in_state(self, state: SendState) -> int:
        return sum(1 for group in self.groups if group.state is state)

    @property
    def next_due(self) -> datetime | None:
        due = [group.due_at for group in self.groups if group.state is SendState.PENDING]
        return min(due, default=None)


@dataclass(frozen=True, slots=True)
class CampaignStatus:
    id: str
    name: str
    state: CampaignState
    reason: str | None
    rounds: list[RoundStatus]
    responded: int
    organisations: int
    sent_last_minute: int = 0

    @property
    def eta(self) -> timedelta | None:
        """At the last minute's pace, when the queued deliveries will have gone out."""
        waiting = self.count("queued") + self.count("sending")
        if not waiting or not self.sent_last_minute:
            return None
        return timedelta(minutes=waiting / self.sent_last_minute)

    @property
    def scheduled(self) -> bool:
        return any(r.groups for r in self.rounds)

    @property
    def next_due(self) -> datetime | None:
        return min((r.next_due for r in self.rounds if r.next_due), default=None)

    def count(self, status: str) -> int:
        return sum(r.counts.get(status, 0) for r in self.rounds)


def campaign_statuses(services: Services, campaign_id: str | None = None) -> list[CampaignStatus]:
    """Every campaign (newest first), or one: state, groups and deliveries per round."""
    engine = services.engine
    found = []
    for cid, name, state in list_campaigns(engine):
        if campaign_id is not None and cid != campaign_id:
            continue
        stored = campaign_state(engine, cid)
        sends = scheduled_sends_of(engine, cid)
        counts = round_counts(engine, cid)
        rounds = sorted({s.round for s in sends} | set(counts) | {0})
        found.append(
            CampaignStatus(
                id=cid,
                name=name,
                state=state,
                reason=stored[1] if stored else None,
                rounds=[
                    RoundStatus(
                        round=r,
                        label=round_label(r),
                        groups=[s for s in sends if s.round == r],
                        counts=counts.get(r, {}),
                    )
                    for r in rounds
                ],
                responded=signatories(engine, campaign_id=cid).count,
                organisations=audience_organisations(engine, cid),
                sent_last_minute=sent_since(
                    engine, cid, services.clock.now() - timedelta(minutes=1)
                ),
            )
        )
    if campaign_id is not None and not found:
        raise SchedulingError(f"no campaign {campaign_id!r} (`outreach status` lists them)")
    return found


def scheduler_lease(services: Services) -> Lease | None:
    """The live scheduler lease (who schedules for this database), or None."""
    lease = current(services.engine)
    return lease if lease is not None and lease.alive(services.clock.now()) else None


__all__ = [
    "CampaignStatus",
    "RoundStatus",
    "campaign_statuses",
    "scheduler_lease",
]
