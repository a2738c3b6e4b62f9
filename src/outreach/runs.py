"""What happens when a scheduled send is due: the scheduler's use cases over ``Services``.

``run_due_group`` is called by the job of one timezone group (``jobs.send_group``):

1. a group that is not ``pending`` any more (sent, missed, cancelled) does nothing, so a job
   that fires twice sends once; a job of an older schedule that fires early does nothing;
2. later than the campaign's ``max_lateness`` (the scheduler was down): nothing is sent, the
   group and every other group overdue as much are marked ``missed``, the campaign ``missed``,
   and the admins are told once;
3. otherwise the group's contacts are queued (the first send: the audience in that timezone;
   a reminder: contacts whose first message was sent and whose organisation has not signed,
   read now, so a city that signed a minute ago is left out), then every queued delivery of
   the campaign is sent, unless the campaign is paused (resume sends them).

``send_waiting`` sends what is queued for a scheduled campaign in state ``sending`` (after a
resume, a restart or a wait for retries); the heartbeat calls it through ``jobs.drain``, and
every ``outreach worker`` through ``jobs.deliver``, also for a campaign that ``outreach send``
left queued (a worker finishes it).

Sending checks the campaign's state before every batch and watches it while sending: a pause
or a cancellation stops at once (messages already handed to the server finish, nothing else
is sent). ``settle`` then derives the campaign's state from its groups and its ledger, and
tells the admins when a round has completed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from outreach.bootstrap import Services
from outreach.domain.campaign import Campaign, CtaKind
from outreach.domain.delivery import CampaignState
from outreach.errors import ConfigurationError, OutreachError
from outreach.notify import RoundFigures, report_link, summary_text, tell_admins
from outreach.pipeline.delivery import BuildMessage, send_round
from outreach.pipeline.outbox import enqueue, plan
from outreach.pipeline.personalise import message_factory
from outreach.pipeline.render import compile_campaign
from outreach.pipeline.schedule import due_instant, duration_text, group_key
from outreach.pipeline.sending import SendSummary
from outreach.ports import NewDelivery
from outreach.recovery import recover_claims
from outreach.store.campaigns import HELD, campaign_state, held_reason
from outreach.store.contacts import iter_contacts
from outreach.store.schedules import (
    ScheduledSend,
    SendState,
    audience_organisations,
    change_state,
    load_definition,
    mark_reported,
    move_send,
    reminder_candidates,
    round_counts,
    scheduled_send,
    scheduled_sends_of,
)
from outreach.store.signatures import signatories
from outreach.store.suppressions import suppressed_addresses

log = logging.getLogger("outreach.runs")

ShouldStop = Callable[[], bool]
# a job never acts before its group is due; this much clock difference is tolerated
EARLY_TOLERANCE = timedelta(seconds=1)
DEFAULT_MAX_LATENESS = timedelta(hours=1)
# how often a running send looks at the campaign's state, besides before every batch
WATCH_INTERVAL = 0.2
SENDABLE = (
    CampaignState.SCHEDULED,
    CampaignState.SENDING,
    CampaignState.SENT,
    CampaignState.MISSED,
)
PENDING = [SendState.PENDING]  # a group moves on only from pending


def _never() -> bool:
    return False


def round_label(round: int) -> str:
    return "first send" if round == 0 else f"reminder {round}"


def _offset(campaign: Campaign, round: int) -> timedelta | None:
    """How far after the first send round ``round`` is due; None for an unknown reminder."""
    if round == 0:
        return timedelta(0)
    if 0 < round <= len(campaign.reminders):
        return campaign.reminders[round - 1].after
    return None


# --- a group is due ----------------------------------------------------------------------------


def run_due_group(
    services: Services,
    *,
    campaign_id: str,
    round: int,
    timezone: str,
    should_stop: ShouldStop = _never,
) -> str:
    """Queue and send one timezone group of a campaign round; returns what was done."""
    engine = services.engine
    now = services.clock.now()
    group = scheduled_send(engine, campaign_id=campaign_id, round=round, timezone=timezone)
    if group is None or group.state is not SendState.PENDING:
        return "nothing to do: the group is not pending"
    if now + EARLY_TOLERANCE < group.due_at:
        return f"nothing to do: the group is due at {group.due_at:%Y-%m-%d %H:%M:%S} UTC"
    campaign = load_definition(engine, campaign_id)
    stored = campaign_state(engine, campaign_id)
    offset = None if campaign is None else _offset(campaign, round)
    if campaign is None or stored is None or offset is None or campaign.schedule is None:
        gone = "the campaign or this reminder no longer exists"
        move_send(engine, group.id, to=SendState.CANCELLED, only_from=PENDING, now=now, detail=gone)
        return f"cancelled: {gone}"
    if stored[0] is CampaignState.CANCELLED:
        detail = "the campaign was cancelled"
        move_send(
            engine, group.id, to=SendState.CANCELLED, only_from=PENDING, now=now, detail=detail
        )
        return "cancelled with the campaign"
    if now - group.due_at > campaign.schedule.max_lateness:
        return _missed(services, campaign, group, now=now)
    if not move_send(engine, group.id, to=SendState.RUNNING, only_from=PENDING, now=now):
        return "nothing to do: another run took the group"
    added = queue_group(services, campaign, group, now=now)
    move_send(
        engine,
        group.id,
        to=SendState.DONE,
        only_from=[SendState.RUNNING],
        now=services.clock.now(),
        detail=f"{added} queued",
    )
    log.info("%s %s %s: %d queued", campaign_id, round_label(round), timezone, added)
    send_waiting(services, campaign_id, should_stop=should_stop, campaign=campaign)
    return f"{added} queued"


def queue_group(
    services: Services, campaign: Campaign, group: ScheduledSend, *, now: datetime
) -> int:
    """Queue the deliveries of one group; returns how many were added (none twice).

    The group takes the contacts of its timezone, and contacts of a timezone that has no group
    of its own (imported after scheduling) whose own moment has come.
    """
    schedule = campaign.schedule
    offset = _offset(campaign, group.round)
    assert schedule is not None and offset is not None
    covered = {
        send.timezone
        for send in scheduled_sends_of(services.engine, campaign.id)
        if send.round == group.round
    }

    def belongs(zone: str) -> bool:
        key = group_key(schedule.timezone, zone)
        if key == group.timezone:
            return True
        if key in covered:
            return False
        due = due_instant(
            at=schedule.at, timezone=schedule.timezone, contact_timezone=zone, after=offset
        )
        return due <= now

    for attempt in range(2):  # another process may queue the same rows at the same moment
        try:
            if group.round == 0:
                return _queue_first(services, campaign, belongs, now=now)
            return _queue_reminder(services, campaign, group.round, belongs, now=now)
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _queue_first(
    services: Services, campaign: Campaign, belongs: Callable[[str], bool], *, now: datetime
) -> int:
    contacts = (
        (stored.id, stored.contact)
        for stored in iter_contacts(services.engine)
        if belongs(stored.contact.organisation.timezone)
    )
    planned = plan(campaign, contacts, suppressed=suppressed_addresses(services.engine))
    return enqueue(campaign, planned, ledger=services.ledger, now=now).added


def _queue_reminder(
    services: Services,
    campaign: Campaign,
    round: int,
    belongs: Callable[[str], bool],
    *,
    now: datetime,
) -> int:
    sign = [cta.id for cta in campaign.calls_to_action if cta.kind is CtaKind.SIGN]
    suppressed = suppressed_addresses(services.engine)
    rows = [
        NewDelivery(contact_id=c.contact_id, language=c.language, suppressed=c.email in suppressed)
        for c in reminder_candidates(services.engine, campaign.id, sign_cta_ids=sign)
        if belongs(c.timezone)
    ]
    return services.ledger.enqueue(campaign_id=campaign.id, round=round, rows=rows, now=now)


def _missed(services: Services, campaign: Campaign, group: ScheduledSend, *, now: datetime) -> str:
    """Mark every group of the round overdue beyond ``max_lateness`` missed; tell the admins."""
    assert campaign.schedule is not None
    lateness = campaign.schedule.max_lateness
    engine = services.engine
    missed = []
    for send in scheduled_sends_of(engine, campaign.id, states=[SendState.PENDING]):
        if send.round == group.round and now - send.due_at > lateness:
            late = now - send.due_at
            detail = f"not sent: due {send.due_at:%Y-%m-%d %H:%M} UTC, {duration_text(late)} late"
            if move_send(
                engine,
                send.id,
                to=SendState.MISSED,
                only_from=PENDING,
                now=now,
                detail=detail,
            ):
                missed.append(send)
    if not missed:
        return "nothing to do: the group is not pending"
    names = ", ".join(f"{s.timezone} ({s.contacts} contacts)" for s in missed)
    reason = (
        f"{round_label(group.round)} missed for {names}: the scheduler was not running when it "
        f"was due, and it is later than max_lateness ({duration_text(lateness)})"
    )
    if group.round == 0:
        change_state(engine, campaign.id, CampaignState.MISSED, now=now, reason=reason, unless=HELD)
    log.warning("%s: %s", campaign.id, reason)
    if mark_reported(engine, campaign.id, group.round, kind="missed", now=now):
        text = (
            f'"{campaign.name}" ({campaign.id}): {reason}.\n\nNothing was sent to these groups. '
            f"To send it anyway, schedule it again with a new time (outreach schedule FILE); "
            f"nobody who already received it gets it twice.\n\n"
            f"Report: {report_link(services, campaign.id)}\n"
        )
        subject = f"[outreach] {campaign.name}: {round_label(group.round)} missed"
        tell_admins(services, campaign, subject=subject, text=text)
    settle(services, campaign)
    return f"missed: {names}"


# --- sending what is queued --------------------------------------------------------------------


def send_waiting(
    services: Services,
    campaign_id: str,
    *,
    should_stop: ShouldStop = _never,
    campaign: Campaign | None = None,
) -> list[SendSummary]:
    """Send every queued delivery of the campaign (its scheduled rounds, or what ``outreach
    send`` left queued), unless it is paused or cancelled; then settle its state. Returns one
    summary per round sent. Deliveries a dead sender left ``sending`` are recovered first."""
    engine = services.engine
    campaign = campaign or load_definition(engine, campaign_id)
    if campaign is None:
        return []
    summaries: list[SendSummary] = []
    scheduled = {send.round for send in scheduled_sends_of(engine, campaign_id)}
    for round in sorted(scheduled | set(round_counts(engine, campaign_id))):
        if should_stop():
            break
        now = services.clock.now()
        recover_claims(services, campaign_id)
        counts = services.ledger.counts(campaign_id=campaign_id, round=round, now=now)
        due = counts.queued and (counts.next_retry_at is None or counts.next_retry_at <= now)
        if not due and not counts.get("sending"):
            continue
        if not change_state(
            engine, campaign_id, CampaignState.SENDING, now=now, only_from=SENDABLE
        ):
            break  # paused or cancelled
        summary = _send_round(services, campaign, round, should_stop=should_stop)
        if summary is None:
            break
        summaries.append(summary)
        if summary.stopped_reason:
            break
    settle(services, campaign)
    return summaries


def _builder(services: Services, campaign: Campaign, round: int) -> BuildMessage:
    if round == 0:
        compiled = services.compile(campaign)
    else:
        compiled = compile_campaign(
            campaign,
            templates_dir=services.templates_dir,
            reminder=campaign.reminders[round - 1],
            extra_context=signatories(services.engine, campaign_id=campaign.id).template_context(),
        )
    return message_factory(
        campaign=campaign, compiled=compiled, signer=services.signer, now=services.clock.now
    )


def _held(services: Services, campaign_id: str, should_stop: ShouldStop) -> str | None:
    """Why sending must stop now, or None."""
    if should_stop():
        return "the scheduler is stopping"
    return held_reason(services.engine, campaign_id)


async def _watched(
    services: Services,
    campaign: Campaign,
    round: int,
    build: BuildMessage,
    should_stop: ShouldStop,
) -> SendSummary:
    mailer = services.mailer()
    stop = asyncio.Event()

    def check() -> str | None:
        return _held(services, campaign.id, should_stop)

    async def watch() -> None:
        while not stop.is_set():
            await asyncio.sleep(WATCH_INTERVAL)
            if check() is not None:
                stop.set()

    watcher = asyncio.create_task(watch())
    try:
        return await send_round(
            campaign_id=campaign.id,
            build=build,
            ledger=services.ledger,
            mailer=mailer,
            clock=services.clock,
            policy=services.policy,
            worker=services.worker_name,
            round=round,
            stop=stop,
            stop_check=check,
        )
    finally:
        watcher.cancel()
        await mailer.close()


def _send_round(
    services: Services, campaign: Campaign, round: int, *, should_stop: ShouldStop
) -> SendSummary | None:
    try:
        build = _builder(services, campaign, round)
        summary = asyncio.run(_watched(services, campaign, round, build, should_stop))
    except (ConfigurationError, OutreachError) as err:
        _stopped(services, campaign, round, f"sending stopped: {err}")
        return None
    log.info(
        "%s %s: %d sent, %d failed, %d retried%s",
        campaign.id,
        round_label(round),
        summary.sent,
        summary.failed,
        summary.retried,
        f"; stopped: {summary.stopped_reason}" if summary.stopped_reason else "",
    )
    if summary.stopped_reason and _held(services, campaign.id, should_stop) is None:
        # stopped on its own (too many failures in a row): pause, say why, tell the admins
        _stopped(services, campaign, round, summary.stopped_reason)
    return summary


def _stopped(services: Services, campaign: Campaign, round: int, reason: str) -> None:
    now = services.clock.now()
    change_state(
        services.engine, campaign.id, CampaignState.PAUSED, now=now, reason=reason, unless=HELD
    )
    log.error("%s %s paused: %s", campaign.id, round_label(round), reason)
    text = (
        f'Sending "{campaign.name}" ({campaign.id}), {round_label(round)}, was paused: '
        f"{reason}\n\nFix the cause, then resume it: outreach resume {campaign.id}\n\n"
        f"Report: {report_link(services, campaign.id)}\n"
    )
    tell_admins(services, campaign, subject=f"[outreach] {campaign.name}: paused", text=text)


# --- the campaign's state ----------------------------------------------------------------------


def settled_state(
    sends: list[ScheduledSend], counts: dict[int, dict[str, int]]
) -> tuple[CampaignState, str | None]:
    """The state a scheduled campaign is in, from its groups and its ledger."""
    rounds = {send.round for send in sends}
    first = [send for send in sends if send.round == 0]
    missed = [send.timezone for send in first if send.state is SendState.MISSED]
    reason = f"first send missed for {', '.join(missed)}" if missed else None
    busy = any(counts.get(r, {}).get("queued", 0) + counts.get(r, {}).get("sending", 0)
               for r in rounds)  # fmt: skip
    open_first = any(send.state in (SendState.PENDING, SendState.RUNNING) for send in first)
    if busy:
        return CampaignState.SENDING, reason
    if open_first:
        started = any(send.state in (SendState.DONE, SendState.MISSED) for send in first)
        return (CampaignState.SENDING if started else CampaignState.SCHEDULED), reason
    if missed:
        return CampaignState.MISSED, reason
    return CampaignState.SENT, None


def settle(services: Services, campaign: Campaign) -> CampaignState | None:
    """Bring the campaign's state up to date (never over a pause or a cancellation) and send
    the summary of every round that has just completed."""
    engine = services.engine
    sends = scheduled_sends_of(engine, campaign.id)
    if not sends:  # sent with `outreach send` (and continued by a worker): done when drained
        left = round_counts(engine, campaign.id).values()
        if left and not any(c.get("queued", 0) + c.get("sending", 0) for c in left):
            now = services.clock.now()
            change_state(
                engine, campaign.id, CampaignState.SENT, now=now, only_from=[CampaignState.SENDING]
            )
        return None
    counts = round_counts(engine, campaign.id)
    state, reason = settled_state(sends, counts)
    now = services.clock.now()
    change_state(engine, campaign.id, state, now=now, reason=reason, unless=HELD)
    for round in sorted({send.round for send in sends}):
        groups = [send for send in sends if send.round == round]
        waiting = counts.get(round, {}).get("queued", 0) + counts.get(round, {}).get("sending", 0)
        finished = all(s.state in (SendState.DONE, SendState.MISSED, SendState.CANCELLED)
                       for s in groups)  # fmt: skip
        if waiting or not finished or not any(s.state is SendState.DONE for s in groups):
            continue
        if mark_reported(engine, campaign.id, round, kind="summary", now=now):
            figures = RoundFigures(
                label=round_label(round),
                counts=counts.get(round, {}),
                responded=signatories(engine, campaign_id=campaign.id).count,
                organisations=audience_organisations(engine, campaign.id),
                missed=[s.timezone for s in groups if s.state is SendState.MISSED],
            )
            subject, text = summary_text(campaign, figures, link=report_link(services, campaign.id))
            tell_admins(services, campaign, subject=subject, text=text)
    stored = campaign_state(engine, campaign.id)
    return None if stored is None else stored[0]


def finish_interrupted(services: Services) -> list[str]:
    """Groups left ``running`` by a scheduler that died: queue them (they started on time)
    and mark them done; the heartbeat then sends what is queued. Returns what was done."""
    done = []
    engine = services.engine
    for group in scheduled_sends_of(engine, states=[SendState.RUNNING]):
        campaign = load_definition(engine, group.campaign_id)
        if campaign is None or campaign.schedule is None or _offset(campaign, group.round) is None:
            continue
        added = queue_group(services, campaign, group, now=services.clock.now())
        move_send(
            engine,
            group.id,
            to=SendState.DONE,
            only_from=[SendState.RUNNING],
            now=services.clock.now(),
            detail=f"{added} queued (after a restart)",
        )
        settle(services, campaign)
        done.append(f"{group.campaign_id} {round_label(group.round)} {group.timezone}")
    return done
