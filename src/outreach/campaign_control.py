"""Changing what is still to come, as staff use it: one function per use case over ``Services``.

``cancel_campaign``, ``pause_campaign`` and ``resume_campaign`` change what is still to come of
a campaign that ``scheduling`` scheduled (or that ``outreach send`` started): cancelling drops
the jobs of its groups from the ``JobBook``, pausing stops sending at once, resuming continues
from where it stopped. What cannot be done is refused with a ``SchedulingError``.
"""

from __future__ import annotations

from dataclasses import dataclass

from outreach.bootstrap import Services
from outreach.domain.delivery import CampaignState
from outreach.runs import settled_state
from outreach.scheduling import JobBook, SchedulingError
from outreach.store.campaigns import campaign_state
from outreach.store.schedules import (
    SendState,
    cancel_pending,
    change_state,
    round_counts,
    scheduled_sends_of,
)

OPEN = (SendState.PENDING, SendState.RUNNING)


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


__all__ = [
    "StateChange",
    "cancel_campaign",
    "pause_campaign",
    "resume_campaign",
]
