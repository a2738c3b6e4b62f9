"""Scheduling, as staff use it: one function per use case over ``Services``.

``schedule_campaign`` turns a campaign file's ``schedule`` and ``reminders`` into timezone
groups (``pipeline.schedule``), stores them (``store.schedules``) and books one job per group
(a ``JobBook``, which ``scheduler.job_book`` provides over APScheduler's job store). Running the
same file again updates the schedule; a time that has passed anywhere is refused.
``cancel_campaign``, ``pause_campaign`` and ``resume_campaign`` change what is still to come;
``campaign_statuses`` is what ``outreach status`` and ``outreach schedule --list`` show.

What the scheduler itself does when something is due (``run_due_group``, ``send_waiting``,
missed sends, admin summaries) lives in ``outreach.runs`` and is re-exported here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from outreach.bootstrap import Services
from outreach.domain.campaign import Campaign
from outreach.domain.delivery import CampaignState
from outreach.errors import CampaignDefinitionError, OutreachError, Problem
from outreach.operations import plan_campaign
from outreach.pipeline.render import compile_campaign
from outreach.pipeline.schedule import SendGroup, send_groups
from outreach.runs import (
    finish_interrupted,
    round_label,
    run_due_group,
    send_waiting,
    settle,
    settled_state,
)
from outreach.store.campaigns import campaign_state, list_campaigns, save_campaign
from outreach.store.leases import Lease, current
from outreach.store.reports import sent_since
from outreach.store.schedules import (
    NewScheduledSend,
    ScheduledSend,
    SendState,
    audience_organisations,
    cancel_pending,
    change_state,
    replace_schedule,
    round_counts,
    scheduled_sends_of,
)
from outreach.store.signatures import signatories

OPEN = (SendState.PENDING, SendState.RUNNING)


class SchedulingError(OutreachError):
    """A schedule cannot be made or changed as asked (the message says why)."""


class JobBook(Protocol):
    """Where scheduled groups become jobs; ``scheduler.job_book`` gives one."""

    def add_send(self, *, campaign_id: str, round: int, timezone: str, run_at: datetime) -> None:
        """Book (or re-book) the job of one group."""

    def remove_send(self, *, campaign_id: str, round: int, timezone: str) -> None:
        """Drop the job of one group, if it is still booked."""


def send_job_id(campaign_id: str, round: int, timezone: str) -> str:
    return f"send:{campaign_id}:{round}:{timezone}"


# --- scheduling a campaign ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoundPlan:
    round: int
    label: str
    after: timedelta
    groups: list[SendGroup]

    @property
    def contacts(self) -> int:
        return sum(group.contacts for group in self.groups)


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    campaign_id: str
    name: str
    updated: bool  # True when an earlier schedule was replaced
    rounds: list[RoundPlan]

    @property
    def first(self) -> RoundPlan:
        return self.rounds[0]


def plan_schedule(services: Services, campaign: Campaign) -> list[RoundPlan]:
    """The groups of the first send and of each reminder, for the contacts who receive it."""
    schedule = campaign.schedule
    if schedule is None:
        return []
    zones = [
        item.contact.organisation.timezone
        for item in plan_campaign(services, campaign)
        if item.receives
    ]
    offsets = [timedelta(0), *(reminder.after for reminder in campaign.reminders)]
    return [
        RoundPlan(
            round=round,
            label=round_label(round),
            after=after,
            groups=send_groups(
                at=schedule.at, timezone=schedule.timezone, contact_timezones=zones, after=after
            ),
        )
        for round, after in enumerate(offsets)
    ]


def schedule_campaign(
    services: Services, campaign: Campaign, *, source: Path | None, book: JobBook
) -> ScheduleResult:
    """Register (or update) the campaign's schedule and book its jobs.

    Refused when the campaign has no schedule, when its time has passed in any timezone of
    the audience, when nobody would receive it, and while it is being sent, paused or sent.
    """
    engine = services.engine
    where = str(source) if source is not None else campaign.id
    if campaign.schedule is None:
        raise CampaignDefinitionError(
            [
                Problem(
                    where,
                    None,
                    "schedule",
                    "the campaign has no schedule; add e.g. "
                    "`schedule: {at: 2027-06-20T09:00, timezone: recipient}` "
                    "(or send it now with `outreach send`)",
                )
            ]
        )
    stored = campaign_state(engine, campaign.id)
    if stored is not None and stored[0] in (
        CampaignState.SENDING,
        CampaignState.PAUSED,
        CampaignState.SENT,
    ):
        raise SchedulingError(_busy(campaign.id, stored[0]))
    rounds = plan_schedule(services, campaign)
    if not rounds[0].groups:
        raise SchedulingError(
            f"nobody would receive {campaign.id}: import contacts first "
            "(`outreach contacts import FILE`) or check the campaign's audience"
        )
    now = services.clock.now()
    past = [group for group in rounds[0].groups if group.utc <= now]
    if past:
        raise CampaignDefinitionError([_past_problem(source, where, past, now)])
    services.compile(campaign)  # template errors show now, not when the first city is due
    for reminder in campaign.reminders:
        compile_campaign(campaign, templates_dir=services.templates_dir, reminder=reminder)
    save_campaign(engine, campaign, source_path=str(source) if source else None, now=now)
    rows = [
        NewScheduledSend(
            round=plan.round,
            timezone=group.timezone,
            local_time=group.wall.isoformat(),
            due_at=group.utc,
            contacts=group.contacts,
            note=group.note,
        )
        for plan in rounds
        for group in plan.groups
    ]
    old = replace_schedule(engine, campaign.id, rows, now=now)
    for send in old:
        book.remove_send(campaign_id=campaign.id, round=send.round, timezone=send.timezone)
    for row in rows:
        book.add_send(
            campaign_id=campaign.id, round=row.round, timezone=row.timezone, run_at=row.due_at
        )
    change_state(engine, campaign.id, CampaignState.SCHEDULED, now=now)
    return ScheduleResult(campaign.id, campaign.name, updated=bool(old), rounds=rounds)


def _busy(campaign_id: str, state: CampaignState) -> str:
    if state is CampaignState.SENT:
        return f"{campaign_id} has already been sent; there is nothing left to schedule"
    if state is CampaignState.PAUSED:
        return (
            f"{campaign_id} is paused part-way: `outreach resume {campaign_id}` continues it, "
            f"`outreach schedule --cancel {campaign_id}` cancels what is left (then it can be "
            "scheduled again; nobody who received it gets it twice)"
        )
    return (
        f"{campaign_id} is being sent: pause it (`outreach pause {campaign_id}`) or cancel it "
        f"(`outreach schedule --cancel {campaign_id}`) before scheduling it again"
    )


def _past_problem(source: Path | None, where: str, past: list[SendGroup], now: datetime) -> Problem:
    first = past[0]
    others = len(past) - 1
    more = f" (and in {others} other timezone{'s' if others > 1 else ''})" if others else ""
    return Problem(
        where,
        _schedule_line(source),
        "schedule.at",
        f"{first.wall:%Y-%m-%d %H:%M} is in the past in {first.timezone}{more}: it was "
        f"{first.utc:%Y-%m-%d %H:%M} UTC, and it is now {now:%Y-%m-%d %H:%M} UTC; "
        "give a later time",
    )


def _schedule_line(source: Path | None) -> int | None:
    """The line of ``schedule``'s ``at`` in the campaign file, when it can be found."""
    if source is None:
        return None
    try:
        lines = source.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    inside = False
    for number, line in enumerate(lines, 1):
        if re.match(r"^schedule\s*:", line):
            if re.search(r"\bat\s*:", line):
                return number
            inside = True
        elif inside and re.match(r"^\s+at\s*:", line):
            return number
        elif inside and re.match(r"^\S", line):
            inside = False
    return None


# --- changing what is still to come ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateChange:
    campaign_id: str
    before: CampaignState
    after: CampaignState
    message: str


def _state(services: Services, campaign_id: str) -> CampaignState:
    stored = campaign_state(services.engine, campaign_id)
    if stored is None:
        raise SchedulingError(f"no campaign {campaign_id!r} (`outreach status` lists them)")
    return stored[0]


def cancel_campaign(services: Services, campaign_id: str, *, book: JobBook) -> StateChange:
    """Cancel every send still to come; a running send stops at once."""
    engine = services.engine
    state = _state(services, campaign_id)
    if state is CampaignState.CANCELLED:
        return StateChange(campaign_id, state, state, f"{campaign_id} was already cancelled")
    sends = scheduled_sends_of(engine, campaign_id)
    counts = round_counts(engine, campaign_id)
    queued = sum(counts.get(r, {}).get("queued", 0) for r in {send.round for send in sends})
    pending = [send for send in sends if send.state in OPEN]
    if state in (CampaignState.DRAFT, CampaignState.SENT, CampaignState.MISSED) and not pending:
        raise SchedulingError(f"{campaign_id} is {state.value}; nothing is scheduled to cancel")
    now = services.clock.now()
    cancelled = cancel_pending(engine, campaign_id, now=now)
    for send in cancelled:
        book.remove_send(campaign_id=campaign_id, round=send.round, timezone=send.timezone)
    first_open = any(send.round == 0 for send in pending)
    if state in (CampaignState.SENT, CampaignState.MISSED) and not first_open and not queued:
        return StateChange(
            campaign_id,
            state,
            state,
            f"{len(cancelled)} reminder group(s) of {campaign_id} cancelled; "
            f"the campaign stays {state.value}",
        )
    change_state(
        engine,
        campaign_id,
        CampaignState.CANCELLED,
        now=now,
        reason=f"cancelled by staff at {now:%Y-%m-%d %H:%M} UTC",
    )
    return StateChange(
        campaign_id,
        state,
        CampaignState.CANCELLED,
        f"{campaign_id} cancelled: {len(cancelled)} scheduled group(s) will not be sent"
        + (f"; {queued} queued message(s) stay unsent" if queued else ""),
    )


def pause_campaign(services: Services, campaign_id: str) -> StateChange:
    """Stop sending at once: messages already handed to the mail server finish, nothing else
    goes out (scheduled groups that come due are queued, not sent) until it is resumed."""
    engine = services.engine
    state = _state(services, campaign_id)
    if state is CampaignState.PAUSED:
        return StateChange(campaign_id, state, state, f"{campaign_id} is already paused")
    pending = [send for send in scheduled_sends_of(engine, campaign_id) if send.state in OPEN]
    if not (
        state in (CampaignState.SCHEDULED, CampaignState.SENDING)
        or (state in (CampaignState.SENT, CampaignState.MISSED) and pending)
    ):
        raise SchedulingError(f"{campaign_id} is {state.value}; there is nothing to pause")
    now = services.clock.now()
    if not change_state(
        engine,
        campaign_id,
        CampaignState.PAUSED,
        now=now,
        reason=f"paused by staff at {now:%Y-%m-%d %H:%M} UTC",
        only_from=[state],
    ):
        raise SchedulingError(f"{campaign_id} changed state meanwhile; try again")
    return StateChange(
        campaign_id,
        state,
        CampaignState.PAUSED,
        f"{campaign_id} paused: nothing more is sent until `outreach resume {campaign_id}` "
        "(messages already handed to the mail server finish)",
    )


def resume_campaign(services: Services, campaign_id: str) -> StateChange:
    """Continue a paused campaign from where it stopped; nobody receives it twice. The
    scheduler sends what is queued within a heartbeat."""
    engine = services.engine
    state = _state(services, campaign_id)
    if state in (CampaignState.SCHEDULED, CampaignState.SENDING):
        return StateChange(campaign_id, state, state, f"{campaign_id} is not paused")
    if state is not CampaignState.PAUSED:
        raise SchedulingError(f"{campaign_id} is {state.value}, not paused; nothing to resume")
    sends = scheduled_sends_of(engine, campaign_id)
    counts = round_counts(engine, campaign_id)
    if not sends:  # started with `outreach send`: the workers (or that command) continue it
        if not change_state(
            engine,
            campaign_id,
            CampaignState.SENDING,
            now=services.clock.now(),
            only_from=[CampaignState.PAUSED],
        ):
            raise SchedulingError(f"{campaign_id} changed state meanwhile; try again")
        queued = sum(c.get("queued", 0) for c in counts.values())
        return StateChange(
            campaign_id,
            CampaignState.PAUSED,
            CampaignState.SENDING,
            f"{campaign_id} resumed: {queued} queued message(s) go out with the next worker "
            f"pass (`outreach worker` or `outreach serve`), or run `outreach send FILE`",
        )
    settled, reason = settled_state(sends, counts)
    started = any(s.round == 0 and s.state in (SendState.DONE, SendState.MISSED) for s in sends)
    # a started campaign goes back to sending: the scheduler sends what is queued, then
    # settles it (and sends any summary that came due while it was paused)
    target = CampaignState.SENDING if started else settled
    if not change_state(
        engine,
        campaign_id,
        target,
        now=services.clock.now(),
        reason=reason,
        only_from=[CampaignState.PAUSED],
    ):
        raise SchedulingError(f"{campaign_id} changed state meanwhile; try again")
    queued = sum(counts.get(r, {}).get("queued", 0) for r in {s.round for s in sends})
    upcoming = [s for s in sends if s.state is SendState.PENDING]
    message = f"{campaign_id} resumed"
    if queued:
        message += f": {queued} queued message(s) go out with the scheduler's next heartbeat"
    if upcoming:
        message += f"; next group due {upcoming[0].due_at:%Y-%m-%d %H:%M} UTC"
    return StateChange(campaign_id, state, target, message)


# --- what is scheduled, and how it went ------------------------------------------------------


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


def restore_jobs(services: Services, *, book: JobBook) -> int:
    """Book the job of every pending group again (on scheduler start: a job lost with a crash
    comes back; booking is idempotent). Returns how many groups are pending."""
    pending = scheduled_sends_of(services.engine, states=[SendState.PENDING])
    for send in pending:
        book.add_send(
            campaign_id=send.campaign_id,
            round=send.round,
            timezone=send.timezone,
            run_at=send.due_at,
        )
    return len(pending)


__all__ = [
    "CampaignStatus",
    "JobBook",
    "RoundPlan",
    "RoundStatus",
    "ScheduleResult",
    "SchedulingError",
    "StateChange",
    "campaign_statuses",
    "cancel_campaign",
    "finish_interrupted",
    "pause_campaign",
    "plan_schedule",
    "restore_jobs",
    "resume_campaign",
    "run_due_group",
    "schedule_campaign",
    "scheduler_lease",
    "send_job_id",
    "send_waiting",
    "settle",
]
