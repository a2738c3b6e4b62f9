"""The scheduling commands of ``outreach``: schedule, worker, status, pause, resume.

Thin, like ``cli``: parse, call ``scheduling``, ``campaign_control``, ``status`` or
``scheduler``, present. ``register(app)`` adds them to the main Typer app; ``cli`` calls it
last, so the helpers it shares (the ``services`` context that turns every user error into a
clear message and exit code 2, the consoles) are taken from it when the commands are
registered, never at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from outreach.bootstrap import Services
from outreach.campaign_control import cancel_campaign, pause_campaign, resume_campaign
from outreach.pipeline.schedule import duration_text
from outreach.scheduler import HEARTBEAT_SECONDS, LEASE_SECONDS, job_book
from outreach.scheduling import ScheduleResult, schedule_campaign
from outreach.status import CampaignStatus, campaign_statuses, scheduler_lease
from outreach.store.schedules import SendState
from outreach.workers import run_worker

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1

ServicesContext = Callable[..., AbstractContextManager[Services]]


def _time(moment: datetime) -> str:
    """``2027-06-20 09:00``, with seconds only when there are some."""
    return f"{moment:%Y-%m-%d %H:%M}" + (f":{moment:%S}" if moment.second else "")


def _utc(moment: datetime | None) -> str:
    return f"{_time(moment)} UTC" if moment is not None else "-"


def _print_schedule(result: ScheduleResult) -> None:
    first = result.first
    verb = "Updated the schedule of" if result.updated else "Scheduled"
    typer.echo(
        f"{verb} {result.campaign_id} ({result.name}): {first.label} to {first.contacts} "
        f"contact(s) in {len(first.groups)} timezone group(s)."
    )
    typer.echo("")
    typer.echo(f"{'timezone':<32} {'local send time':<24} {'UTC send time':<24} contacts")
    for group in first.groups:
        local = f"{_time(group.local)} {group.local:%Z}"
        typer.echo(f"{group.timezone:<32} {local:<24} {_utc(group.utc):<24} {group.contacts:>8}")
    for group in first.groups:
        if group.note:
            typer.echo(f"note: {group.note}")
    for plan in result.rounds[1:]:
        if not plan.groups:
            continue
        typer.echo(
            f"{plan.label}: {_time(plan.groups[0].wall)} local time "
            f"({duration_text(plan.after)} after the first send), "
            f"from {_utc(plan.groups[0].utc)} to {_utc(plan.groups[-1].utc)}, "
            "to contacts whose organisation has not responded by then"
        )
        for group in plan.groups:
            if group.note:
                typer.echo(f"note ({plan.label}): {group.note}")


def _counts_line(status: CampaignStatus) -> str:
    line = (
        f"sent {status.count('sent')}, failed {status.count('failed')}, "
        f"queued {status.count('queued') + status.count('sending')}, "
        f"bounced {status.count('bounced')}"
    )
    if status.organisations:
        line += f", responded {status.responded} of {status.organisations} organisations"
    if status.sent_last_minute:
        line += f"; {status.sent_last_minute}/min over the last minute"
    if status.eta is not None:
        line += f", about {_duration(status.eta)} to go"
    return line


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _print_list(statuses: list[CampaignStatus]) -> None:
    scheduled = [s for s in statuses if s.scheduled]
    if not scheduled:
        typer.echo("Nothing is scheduled.")
        return
    for status in scheduled:
        typer.echo(f"{status.id}  [{status.state.value}]  {status.name}")
        for r in status.rounds:
            if not r.groups:
                continue
            parts = [
                f"{r.in_state(state)} {state.value}" for state in SendState if r.in_state(state)
            ]
            typer.echo(
                f"  {r.label:<12} {len(r.groups)} group(s): {', '.join(parts)}; "
                f"next {_utc(r.next_due)}"
            )


def _print_status(status: CampaignStatus, *, detail: bool) -> None:
    reason = f" ({status.reason})" if status.reason else ""
    typer.echo(f"{status.id}  [{status.state.value}]{reason}")
    typer.echo(f"  {status.name}")
    typer.echo(f"  {_counts_line(status)}; next send {_utc(status.next_due)}")
    if not detail:
        return
    for r in status.rounds:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items())) or "nothing queued"
        typer.echo(f"  {r.label}: {counts}")
        for group in r.groups:
            extra = f"  {group.detail}" if group.detail else ""
            typer.echo(
                f"    {group.timezone:<32} {_utc(group.due_at):<24} {group.contacts:>5} "
                f"{group.state.value}{extra}"
            )


def _print_scheduler(svc: Services) -> None:
    lease = scheduler_lease(svc)
    if lease is None:
        typer.echo(
            "scheduler: not running (scheduled sends wait for `outreach worker` or "
            "`outreach serve`)"
        )
        return
    age = (svc.clock.now() - lease.heartbeat_at).total_seconds()
    typer.echo(f"scheduler: running, {lease.holder}, last heartbeat {age:.0f}s ago")


def _configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def register(app: typer.Typer) -> None:
    """Add the scheduling commands to ``app`` (the ``outreach`` command)."""
    from outreach.cli import err, services

    console: Console = err
    context: ServicesContext = services

    @app.command()
    def schedule(
        file: Annotated[Path | None, typer.Argument(help="campaign file (YAML)")] = None,
        list_: Annotated[
            bool, typer.Option("--list", help="list what is scheduled, and how far it got")
        ] = False,
        cancel: Annotated[
            str | None,
            typer.Option("--cancel", metavar="ID", help="cancel what is left of a campaign"),
        ] = None,
    ) -> None:
        """Schedule a campaign (or update its schedule): 09:00 in each contact's timezone, or
        one instant; prints each timezone group's local and UTC send time."""
        if sum((file is not None, list_, cancel is not None)) != 1:
            console.print("[red]give a campaign FILE, or --list, or --cancel ID[/red]")
            raise typer.Exit(EXIT_BAD_INPUT)
        with context() as svc:
            if list_:
                _print_list(campaign_statuses(svc))
                _print_scheduler(svc)
                return
            if cancel is not None:
                with job_book(svc) as book:
                    change = cancel_campaign(svc, cancel, book=book)
                typer.echo(change.message)
                return
            assert file is not None
            campaign = svc.load_campaign(file)
            with job_book(svc) as book:
                result = schedule_campaign(svc, campaign, source=file, book=book)
            _print_schedule(result)
            if scheduler_lease(svc) is None:
                typer.echo(
                    "No scheduler is running for this database: start `outreach worker` "
                    "(or `outreach serve`) before the first send time."
                )

    @app.command()
    def worker(
        heartbeat: Annotated[
            float,
            typer.Option(
                help="seconds between renewals of the scheduler lease (and, while another "
                "process schedules, between tries to take it over)"
            ),
        ] = HEARTBEAT_SECONDS,
        lease: Annotated[
            float,
            typer.Option(help="seconds the scheduler lease lasts when its holder stops renewing"),
        ] = LEASE_SECONDS,
    ) -> None:
        """Send every campaign that is sending and, unless another process does, schedule;
        until Ctrl+C or SIGTERM. Run one on each machine: they share the sending."""
        _configure_logging()

        def say(line: str) -> None:
            console.print(line, highlight=False, markup=False, soft_wrap=True)

        with context() as svc:
            run_worker(svc, say=say, heartbeat=heartbeat, lease=lease)

    @app.command()
    def status(
        campaign_id: Annotated[
            str | None, typer.Argument(help="one campaign, with its timezone groups")
        ] = None,
    ) -> None:
        """Each campaign's state (draft, scheduled, sending, paused, sent, cancelled,
        missed) and its counts."""
        with context() as svc:
            found = campaign_statuses(svc, campaign_id)
            if not found:
                typer.echo("No campaigns yet.")
            for item in found:
                _print_status(item, detail=campaign_id is not None)
            _print_scheduler(svc)

    @app.command()
    def pause(campaign_id: Annotated[str, typer.Argument(help="campaign id")]) -> None:
        """Stop sending a campaign at once; messages in flight finish."""
        with context() as svc:
            typer.echo(pause_campaign(svc, campaign_id).message)

    @app.command()
    def resume(campaign_id: Annotated[str, typer.Argument(help="campaign id")]) -> None:
        """Continue a paused campaign from where it stopped; nobody receives it twice."""
        with context() as svc:
            typer.echo(resume_campaign(svc, campaign_id).message)


__all__ = ["register"]
