"""Scheduling a campaign, as staff use it: one function per use case over ``Services``.

``schedule_campaign`` turns a campaign file's ``schedule`` and ``reminders`` into timezone
groups (``pipeline.schedule``), stores them (``store.schedules``) and books one job per group
(a ``JobBook``, which ``scheduler.job_book`` provides over APScheduler's job store). Running the
same file again updates the schedule; a time that has passed anywhere is refused.
``restore_jobs`` books the job of every pending group again when the scheduler starts.
``SchedulingError`` and ``JobBook`` are shared with ``campaign_control`` (cancel, pause and
resume: what is still to come) and ``status`` (what is scheduled, and how it went).

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
)
from outreach.store.campaigns import campaign_state, save_campaign
from outreach.store.schedules import (
    NewScheduledSend,
    SendState,
    change_state,
    replace_schedule,
    scheduled_sends_of,
)


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


# --- when the scheduler starts -----------------------------------------------------------------


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
    "JobBook",
    "RoundPlan",
    "ScheduleResult",
    "SchedulingError",
    "finish_interrupted",
    "plan_schedule",
    "restore_jobs",
    "run_due_group",
    "schedule_campaign",
    "send_job_id",
    "send_waiting",
    "settle",
]
