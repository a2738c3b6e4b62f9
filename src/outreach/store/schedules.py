"""Scheduled sends: one row per campaign x round x timezone group, and the queries around them.

A row is written when staff schedule a campaign (``replace_schedule``) and moves
``pending -> running -> done``, or to ``missed`` (due while no scheduler ran, later than the
campaign's ``max_lateness``) or ``cancelled``. Every move is a conditional ``UPDATE`` from the
states it may leave, so a group that fires twice is sent once. ``round_reports`` remembers
which rounds' summaries went to the admins. Also here: the reads the scheduler needs from the
ledger and the responses (who is due a reminder, which campaigns have mail waiting), and
conditional campaign state changes that never overwrite a pause or a cancellation.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine, and_, delete, distinct, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from outreach.domain.campaign import Campaign
from outreach.domain.delivery import CampaignState, DeliveryStatus
from outreach.errors import StoreError
from outreach.store.tables import (
    campaigns,
    contacts,
    deliveries,
    delivery_recipients,
    organisations,
    responses,
    round_reports,
    scheduled_sends,
)
from outreach.store.unsubscribes import unsubscribed_contacts


class SendState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    MISSED = "missed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class NewScheduledSend:
    round: int
    timezone: str
    local_time: str  # the wall-clock time in ``timezone``, ISO 8601 without offset
    due_at: datetime
    contacts: int
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduledSend:
    id: int
    campaign_id: str
    round: int
    timezone: str
    local_time: str
    due_at: datetime
    contacts: int
    state: SendState
    note: str | None
    detail: str | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class ReminderCandidate:
    """A contact who received the first send, whose organisation has not responded."""

    contact_id: int
    email: str
    language: str
    timezone: str


def _send(row: Any) -> ScheduledSend:
    return ScheduledSend(
        id=row.id,
        campaign_id=row.campaign_id,
        round=row.round,
        timezone=row.timezone,
        local_time=row.local_time,
        due_at=row.due_at,
        contacts=row.contacts,
        state=SendState(row.state),
        note=row.note,
        detail=row.detail,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


# --- the schedule ------------------------------------------------------------------------------


def replace_schedule(
    engine: Engine, campaign_id: str, sends: list[NewScheduledSend], *, now: datetime
) -> list[ScheduledSend]:
    """Make ``sends`` the campaign's schedule; returns the rows it replaced."""
    with engine.begin() as connection:
        old = [
            _send(row)
            for row in connection.execute(
                select(scheduled_sends).where(scheduled_sends.c.campaign_id == campaign_id)
            )
        ]
        connection.execute(
            delete(scheduled_sends).where(scheduled_sends.c.campaign_id == campaign_id)
        )
        connection.execute(delete(round_reports).where(round_reports.c.campaign_id == campaign_id))
        if sends:
            connection.execute(
                insert(scheduled_sends),
                [
                    {
                        "campaign_id": campaign_id,
                        "round": send.round,
                        "timezone": send.timezone,
                        "local_time": send.local_time,
                        "due_at": send.due_at,
                        "contacts": send.contacts,
                        "state": SendState.PENDING.value,
                        "note": send.note,
                        "created_at": now,
                    }
                    for send in sends
                ],
            )
    return old


def scheduled_sends_of(
    engine: Engine,
    campaign_id: str | None = None,
    *,
    states: Collection[SendState] | None = None,
) -> list[ScheduledSend]:
    """Rows by due time; of one campaign and in some states when asked."""
    query = select(scheduled_sends).order_by(
        scheduled_sends.c.due_at, scheduled_sends.c.round, scheduled_sends.c.timezone
    )
    if campaign_id is not None:
        query = query.where(scheduled_sends.c.campaign_id == campaign_id)
    if states is not None:
        query = query.where(scheduled_sends.c.state.in_([s.value for s in states]))
    with engine.connect() as connection:
        return [_send(row) for row in connection.execute(query)]


def overdue_sends(engine: Engine, *, before: datetime) -> list[ScheduledSend]:
    """Pending rows that were due before ``before``."""
    query = select(scheduled_sends).where(
        scheduled_sends.c.state == SendState.PENDING.value, scheduled_sends.c.due_at < before
    )
    with engine.connect() as connection:
        return [_send(row) for row in connection.execute(query)]


def scheduled_send(
    engine: Engine, *, campaign_id: str, round: int, timezone: str
) -> ScheduledSend | None:
    with engine.connect() as connection:
        row = connection.execute(
            select(scheduled_sends).where(
                scheduled_sends.c.campaign_id == campaign_id,
                scheduled_sends.c.round == round,
                scheduled_sends.c.timezone == timezone,
            )
        ).first()
    return None if row is None else _send(row)


def move_send(
    engine: Engine,
    send_id: int,
    *,
    to: SendState,
    only_from: Collection[SendState],
    now: datetime,
    detail: str | None = None,
) -> bool:
    """Move one row to ``to`` if it is in one of ``only_from``; True when it moved."""
    values: dict[str, Any] = {"state": to.value}
    if to is SendState.RUNNING:
        values["started_at"] = now
    else:
        values["finished_at"] = now
    if detail is not None:
        values["detail"] = detail
    with engine.begin() as connection:
        result = connection.execute(
            update(scheduled_sends)
            .where(
                scheduled_sends.c.id == send_id,
                scheduled_sends.c.state.in_([s.value for s in only_from]),
            )
            .values(**values)
        )
    return bool(result.rowcount)


def cancel_pending(engine: Engine, campaign_id: str, *, now: datetime) -> list[ScheduledSend]:
    """Cancel every pending row of the campaign; returns the rows cancelled."""
    pending = scheduled_sends_of(engine, campaign_id, states=[SendState.PENDING])
    for send in pending:
        move_send(
            engine,
            send.id,
            to=SendState.CANCELLED,
            only_from=[SendState.PENDING],
            now=now,
            detail="cancelled by staff",
        )
    return pending


def mark_reported(
    engine: Engine, campaign_id: str, round: int, *, kind: str, now: datetime
) -> bool:
    """Remember that the admins were told ``kind`` about the round; False when they had been."""
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(round_reports).values(
                    campaign_id=campaign_id, round=round, kind=kind, reported_at=now
                )
            )
    except IntegrityError:
        return False
    return True


# --- campaigns ---------------------------------------------------------------------------------

_DURATION = TypeAdapter(timedelta)


def load_definition(engine: Engine, campaign_id: str) -> Campaign | None:
    """The campaign as last stored.

    ``Campaign.model_dump(mode="json")`` writes durations as ISO 8601 (``P7D``), which the
    campaign file's duration syntax (``7d``) does not read back; they are turned back into
    ``timedelta`` values here before validating.
    """
    with engine.connect() as connection:
        definition = connection.scalar(
            select(campaigns.c.definition).where(campaigns.c.id == campaign_id)
        )
    if definition is None:
        return None
    data = dict(definition)
    try:
        if isinstance(data.get("schedule"), dict):
            schedule = dict(data["schedule"])
            if isinstance(schedule.get("max_lateness"), str):
                schedule["max_lateness"] = _iso_duration(schedule["max_lateness"])
            data["schedule"] = schedule
        reminders = []
        for reminder in data.get("reminders") or []:
            reminder = dict(reminder)
            if isinstance(reminder.get("after"), str):
                reminder["after"] = _iso_duration(reminder["after"])
            reminders.append(reminder)
        data["reminders"] = reminders
        return Campaign.model_validate(data)
    except (ValidationError, ValueError) as err:
        raise StoreError(
            f"the stored definition of campaign {campaign_id!r} is unreadable: {err}"
        ) from err


def _iso_duration(value: str) -> Any:
    return _DURATION.validate_python(value) if value.upper().startswith(("P", "-P")) else value


def change_state(
    engine: Engine,
    campaign_id: str,
    state: CampaignState,
    *,
    now: datetime,
    reason: str | None = None,
    only_from: Collection[CampaignState] | None = None,
    unless: Collection[CampaignState] = (),
) -> bool:
    """Set the campaign's state, only from ``only_from`` (any when None) and never from
    ``unless``; True when it changed."""
    query = update(campaigns).where(campaigns.c.id == campaign_id)
    if only_from is not None:
        query = query.where(campaigns.c.state.in_([s.value for s in only_from]))
    if unless:
        query = query.where(campaigns.c.state.not_in([s.value for s in unless]))
    with engine.begin() as connection:
        result = connection.execute(
            query.values(state=state.value, state_reason=reason, updated_at=now)
        )
    return bool(result.rowcount)


# --- the ledger, as the scheduler reads it -----------------------------------------------------


def round_counts(engine: Engine, campaign_id: str) -> dict[int, dict[str, int]]:
    """Deliveries of the campaign by round and status."""
    counts: dict[int, dict[str, int]] = {}
    with engine.connect() as connection:
        for round, status, number in connection.execute(
            select(deliveries.c.round, deliveries.c.status, func.count())
            .where(deliveries.c.campaign_id == campaign_id)
            .group_by(deliveries.c.round, deliveries.c.status)
        ):
            counts.setdefault(round, {})[status] = int(number)
    return counts


def campaigns_to_drain(engine: Engine, *, now: datetime) -> list[str]:
    """Scheduled campaigns in state ``sending`` that need a run: deliveries due (queued and
    due, or left ``sending`` by a process whose claim ran out), or nothing left to do at all
    (a run then settles their state and sends the round summary)."""
    waiting = or_(
        and_(
            deliveries.c.status == DeliveryStatus.QUEUED.value,
            or_(deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now),
        ),
        and_(
            deliveries.c.status == DeliveryStatus.SENDING.value,
            or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
        ),
    )
    scheduled_round = exists().where(
        scheduled_sends.c.campaign_id == deliveries.c.campaign_id,
        scheduled_sends.c.round == deliveries.c.round,
    )
    open_groups = exists().where(
        scheduled_sends.c.campaign_id == campaigns.c.id,
        scheduled_sends.c.state.in_([SendState.PENDING.value, SendState.RUNNING.value]),
    )
    unfinished = exists().where(
        deliveries.c.campaign_id == campaigns.c.id,
        deliveries.c.status.in_([DeliveryStatus.QUEUED.value, DeliveryStatus.SENDING.value]),
        scheduled_round,
    )
    has_schedule = exists().where(scheduled_sends.c.campaign_id == campaigns.c.id)
    sending = campaigns.c.state == CampaignState.SENDING.value
    with_mail = (
        select(campaigns.c.id)
        .join(deliveries, deliveries.c.campaign_id == campaigns.c.id)
        .where(sending, waiting, scheduled_round)
    )
    idle = select(campaigns.c.id).where(sending, has_schedule, ~open_groups, ~unfinished)
    with engine.connect() as connection:
        return sorted(set(connection.scalars(with_mail)) | set(connection.scalars(idle)))


def responded_organisations(
    engine: Engine, campaign_id: str, *, cta_ids: Collection[str]
) -> set[int]:
    """Organisations that signed one of ``cta_ids`` (any of their contacts counts)."""
    if not cta_ids:
        return set()
    with engine.connect() as connection:
        return set(
            connection.scalars(
                select(responses.c.organisation_id).where(
                    responses.c.campaign_id == campaign_id, responses.c.cta_id.in_(list(cta_ids))
                )
            )
        )


def reminder_candidates(
    engine: Engine, campaign_id: str, *, sign_cta_ids: Collection[str]
) -> list[ReminderCandidate]:
    """Contacts whose first message was sent, whose organisation has not signed any of
    ``sign_cta_ids``, and who did not unsubscribe from the campaign; read when the reminder is
    due, so a city that signed a minute before is left out."""
    responded = responded_organisations(engine, campaign_id, cta_ids=sign_cta_ids)
    unsubscribed = unsubscribed_contacts(engine, campaign_id=campaign_id)
    query = (
        select(
            contacts.c.id,
            contacts.c.email,
            deliveries.c.language,
            organisations.c.id.label("organisation_id"),
            organisations.c.timezone,
        )
        .select_from(deliveries)
        .select_from(delivery_recipients)
        .where(
            deliveries.c.campaign_id == campaign_id,
            deliveries.c.round == 0,
            deliveries.c.status == DeliveryStatus.SENT.value,
        )
        .order_by(contacts.c.id)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        ReminderCandidate(row.id, row.email, row.language, row.timezone)
        for row in rows
        if row.organisation_id not in responded and row.id not in unsubscribed
    ]


def audience_organisations(engine: Engine, campaign_id: str) -> int:
    """How many organisations the first send went to (queued or further)."""
    with engine.connect() as connection:
        return int(
            connection.scalar(
                select(func.count(distinct(contacts.c.organisation_id)))
                .select_from(deliveries)
                .join(contacts, contacts.c.id == deliveries.c.contact_id)
                .where(deliveries.c.campaign_id == campaign_id, deliveries.c.round == 0)
            )
            or 0
        )
