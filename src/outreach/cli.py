"""The ``outreach`` command (Typer + Rich). Thin: parse, call ``operations``, present."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from outreach import operations
from outreach.bootstrap import Services
from outreach.demo import prepare_demo
from outreach.domain.delivery import Recipient
from outreach.domain.report import STATUSES
from outreach.errors import CampaignDefinitionError, ConfigurationError, OutreachError
from outreach.scheduler import start_scheduler
from outreach.settings import Settings
from outreach.store.admin_users import create_user
from outreach.store.exports import csv_cell
from outreach.store.leases import LeaseHeld
from outreach.web.server import serve as run_web

app = typer.Typer(
    help="outreach: campaigns to member cities, sent once, in their language, and followed up.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
contacts_app = typer.Typer(help="Import and list contacts.", no_args_is_help=True)
app.add_typer(contacts_app, name="contacts")
admin_app = typer.Typer(help="Admin accounts for the web app.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")

out = Console()
err = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def _settings() -> Settings:
    """The settings, or a clear message naming each bad one (exit status 2)."""
    try:
        return Settings()
    except ValidationError as error:
        for problem in error.errors():
            name = "OUTREACH_" + "_".join(str(part) for part in problem["loc"]).upper()
            err.print(f"[red]configuration error:[/red] {name}: {problem['msg']}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


@contextmanager
def services(**overrides: str | None) -> Iterator[Services]:
    """Services for one command; every error a user can cause becomes a clear message."""
    settings = _settings().model_copy(update={k: v for k, v in overrides.items() if v is not None})
    svc = Services(settings=settings)
    try:
        yield svc
    except CampaignDefinitionError as error:
        for problem in error.problems:  # plain lines: editors and grep read file:line
            typer.echo(str(problem), err=True)
        err.print(f"[red]{len(error.problems)} problem(s); nothing was done.[/red]")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except ConfigurationError as error:
        err.print(f"[red]configuration error:[/red] {error}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except OutreachError as error:
        err.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    finally:
        svc.close()


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="campaign file (YAML)")]) -> None:
    """Check a campaign file; list every problem as file:line: field: message."""
    with services() as svc:
        campaign = svc.load_campaign(file)
        svc.compile(campaign)
    out.print(
        f"[green]ok[/green] {file}: campaign [bold]{campaign.id}[/bold], languages "
        f"{', '.join(campaign.languages)}, {len(campaign.news)} news items, "
        f"{len(campaign.calls_to_action)} calls to action"
    )


@contacts_app.command("import")
def contacts_import(
    file: Annotated[
        Path, typer.Argument(help="CSV: city,country,region,timezone,name,email,language,tags")
    ],
    encoding: Annotated[
        str | None, typer.Option(help="file encoding when not UTF-8, e.g. latin-1")
    ] = None,
) -> None:
    """Load organisations and contacts from a CSV file (upsert by email)."""
    with services() as svc:
        result = operations.import_contacts(svc, file, encoding=encoding)
    for problem in result.problems:
        typer.echo(f"skipped {problem}", err=True)
    counts = result.counts
    out.print(
        f"{result.rows} contacts read: {counts.created} new, {counts.updated} updated, "
        f"{counts.unchanged} unchanged; {len(result.problems)} row(s) skipped."
    )


@contacts_app.command("list")
def contacts_list() -> None:
    """List stored contacts with their organisation."""
    with services() as svc:
        table = Table("email", "name", "city", "country", "region", "language", "tags")
        for stored in operations.iter_contacts(svc.engine):
            c = stored.contact
            org = c.organisation
            table.add_row(
                c.email,
                c.name,
                org.name,
                org.country,
                org.region,
                c.language,
                " ".join(sorted(c.tags)),
            )
    out.print(table)


@app.command()
def preview(
    file: Annotated[Path, typer.Argument(help="campaign file (YAML)")],
    contact: Annotated[str | None, typer.Option(help="render for this contact's email")] = None,
    language: Annotated[str | None, typer.Option(help="language variant to render")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="write the HTML here")] = None,
    text: Annotated[bool, typer.Option("--text", help="print the plain-text part")] = False,
) -> None:
    """Render the email as one contact (or a sample recipient) would receive it."""
    with services() as svc:
        campaign = svc.load_campaign(file)
        recipient = operations.preview_recipient(svc, campaign, email=contact, language=language)
        message = operations.preview_message(svc, campaign, recipient)
    if out_file is not None:
        out_file.write_text(message.html, encoding="utf-8")
        out.print(
            f"wrote {out_file} ({recipient.language}, to {recipient.name} <{recipient.email}>)"
        )
    if text or out_file is None:
        out.print(f"Subject: {message.subject}", markup=False, highlight=False)
        out.print(message.text, markup=False, highlight=False)


class RateColumn(ProgressColumn):
    """Messages per second, as Rich measures the bar's recent progress."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} msg/s" if task.speed else "", style="cyan")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


@app.command()
def send(
    file: Annotated[Path, typer.Argument(help="campaign file (YAML)")],
    mailer: Annotated[str | None, typer.Option(help="mailer DSN, e.g. smtp://host:25")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show who would get what; send nothing")
    ] = False,
) -> None:
    """Send a campaign now: every contact of its audience once, never twice."""
    with services(mailer=mailer) as svc:
        campaign = svc.load_campaign(file)
        if dry_run:
            _dry_run(svc, campaign)
            return
        tally: Counter[str] = Counter()
        with _progress() as progress:
            task = progress.add_task(campaign.id, total=None, status="")

            def on_queued(queued: int) -> None:
                progress.update(task, total=queued)

            def on_result(status: str, recipient: Recipient, detail: str) -> None:
                tally[status] += 1
                if status not in ("retry", "held back"):
                    progress.advance(task)
                progress.update(
                    task, status=", ".join(f"{k} {v}" for k, v in sorted(tally.items()))
                )

            outcome = asyncio.run(
                operations.send_campaign(
                    svc,
                    campaign,
                    source=file,
                    on_result=on_result,
                    on_queued=on_queued,
                    interruptible=True,
                )
            )
        _print_summary(svc, campaign.id, outcome)
        if outcome.interrupted is not None:
            err.print("interrupted; run the same command again to continue", highlight=False)
            raise typer.Exit(128 + outcome.interrupted)
        if outcome.summary.stopped_reason:
            raise typer.Exit(EXIT_FAILED)


def _dry_run(svc: Services, campaign: operations.Campaign) -> None:
    table = Table("email", "city", "language", "outcome", title=f"Dry run: {campaign.id}")
    languages: Counter[str] = Counter()
    left_out = 0
    for item in operations.plan_campaign(svc, campaign):
        if item.excluded:
            outcome, left_out = f"[yellow]excluded[/yellow] ({item.excluded})", left_out + 1
        elif item.suppressed:
            outcome, left_out = (
                "[yellow]suppressed[/yellow] (on the suppression list)",
                left_out + 1,
            )
        else:
            outcome = "would receive"
            languages[item.language] += 1
        table.add_row(item.contact.email, item.contact.organisation.name, item.language, outcome)
    out.print(table)
    out.print(
        f"Would send {sum(languages.values())} message(s) "
        f"({', '.join(f'{lang}: {n}' for lang, n in sorted(languages.items())) or 'none'}); "
        f"{left_out} contact(s) left out. Nothing was sent.",
        soft_wrap=True,
    )


def _print_summary(svc: Services, campaign_id: str, outcome: operations.SendOutcome) -> None:
    s = outcome.summary
    table = Table("", "count", title=f"Sent: {campaign_id}")
    table.add_row("newly queued", str(outcome.enqueued.added))
    if outcome.recovered:
        table.add_row("recovered from an interrupted run", str(outcome.recovered))
    table.add_row("sent now", str(s.sent))
    table.add_row("failed", str(s.failed))
    table.add_row("suppressed", str(s.suppressed + outcome.enqueued.suppressed))
    table.add_row("retries", str(s.retried))
    if s.throttled:
        table.add_row("slowed down by the server (re-queued)", str(s.throttled))
    if s.paced:
        table.add_row("held back for a domain's rate limit (re-queued)", str(s.paced))
    if s.unknown:
        table.add_row("unknown (answer lost; not re-sent)", str(s.unknown))
    if s.waiting:
        table.add_row("waiting to retry", f"{s.waiting} (next at {s.next_retry_at:%H:%M:%S} UTC)")
    out.print(table)
    for email, error in s.failures[:20]:
        typer.echo(f"failed: {email}: {error}", err=True)
    if s.stopped_reason:
        err.print(f"[red]stopped:[/red] {s.stopped_reason}", highlight=False)


@app.command()
def report(
    campaign_id: Annotated[str, typer.Argument(help="campaign id")],
    format: Annotated[str, typer.Option(help="table, json or csv")] = "table",
    deliveries: Annotated[
        bool, typer.Option("--deliveries", help="with csv: export deliveries, not responses")
    ] = False,
) -> None:
    """Deliveries by status, region and language; which cities responded and which have not.

    ``--format csv`` exports the responses (one row per city); add ``--deliveries`` to export
    every delivery instead."""
    if format not in {"table", "json", "csv"}:
        err.print(f"[red]unknown format {format!r}[/red]; use table, json or csv")
        raise typer.Exit(EXIT_BAD_INPUT)
    with services() as svc:
        result = operations.report(svc, campaign_id)
        if result is None:
            err.print(f"[red]no campaign {campaign_id!r}[/red] (send or schedule it first)")
            raise typer.Exit(EXIT_BAD_INPUT)
        if format == "json":
            sys.stdout.write(json.dumps(result.as_dict(), ensure_ascii=False, indent=2) + "\n")
        elif format == "csv":
            columns, rows = operations.export_rows(svc, campaign_id, deliveries=deliveries)
            writer = csv.writer(sys.stdout)
            writer.writerow(columns)
            writer.writerows([csv_cell(row[c]) for c in columns] for row in rows)
        else:
            _print_report(result)


def _print_report(result: operations.CampaignReport) -> None:
    out.print(f"[bold]{result.name}[/bold] ({result.campaign}) — {result.state}")
    statuses = [s for s in STATUSES if result.count(s) or s in ("sent", "failed")]
    totals = Table("recipients", *statuses)
    totals.add_row(str(result.recipients), *(str(result.count(s)) for s in statuses))
    out.print(totals)
    for title, groups in (("region", result.by_region), ("language", result.by_language)):
        table = Table(title, "recipients", *statuses)
        for key, counts in groups.items():
            table.add_row(
                key, str(sum(counts.values())), *(str(counts.get(s, 0)) for s in statuses)
            )
        out.print(table)
    responded, waiting = result.extra.get("responded", []), result.extra.get("not_responded", [])
    out.print(f"[green]responded ({len(responded)}):[/green] {', '.join(responded) or '—'}")
    out.print(f"[yellow]not yet ({len(waiting)}):[/yellow] {', '.join(waiting) or '—'}")
    for cta, clicks in result.extra.get("clicks", {}).items():
        out.print(
            f"clicks on {cta}: {clicks['human']} by people, "
            f"{clicks['suspected_scanner']} suspected scanners"
        )


@admin_app.command("create-user")
def admin_create_user(
    username: Annotated[str, typer.Argument(help="login name")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="at least 8 characters (asked for when not given)",
        ),
    ],
) -> None:
    """Create an admin account (password hashed with argon2)."""
    with services() as svc:
        create_user(svc.engine, username, password, now=svc.clock.now())
    out.print(f"admin [bold]{username}[/bold] created; log in at {svc.settings.base_url}/admin")


def _serve_with_scheduler(
    svc: Services,
    *,
    host: str,
    port: int,
    scheduler: bool,
    access_log: bool = False,
    workers: int = 1,
) -> None:
    """The web app, with the scheduler inside unless another process already schedules."""
    handle = None
    if scheduler:
        try:
            handle = start_scheduler(svc)
        except LeaseHeld as held:
            err.print(f"[yellow]not scheduling here:[/yellow] {held}", highlight=False)
    try:
        run_web(svc, host=host, port=port, access_log=access_log, workers=workers)
    finally:
        if handle is not None:
            handle.shutdown()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    scheduler: Annotated[
        bool, typer.Option("--scheduler/--no-scheduler", help="run the scheduler inside")
    ] = True,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="log every request")
    ] = False,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="server processes sharing the port")
    ] = 1,
) -> None:
    """Run the web app (tracked links, sign and unsubscribe pages, admin reports) and, unless
    another process already does, the scheduler."""
    with services() as svc:
        _serve_with_scheduler(
            svc,
            host=host,
            port=port,
            scheduler=scheduler,
            access_log=access_log,
            workers=workers,
        )


@app.command()
def demo(
    folder: Annotated[Path, typer.Option("--dir", help="where the demo keeps its files")] = Path(
        "demo"
    ),
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    serve_app: Annotated[bool, typer.Option("--serve/--no-serve", help="start the web app")] = True,
) -> None:
    """Try outreach with nothing installed: send World Refugee Day into a file outbox, then
    open the mailbox viewer, press Sign, and watch the admin report change."""
    base_url = f"http://{host}:{port}"
    with services(
        database_url=f"sqlite:///{folder / 'outreach.db'}",
        mailer=f"file://{folder / 'outbox'}",
        base_url=base_url,
    ) as svc:
        info = prepare_demo(svc, folder=folder)
        lines = [
            ("contacts imported", str(info.contacts)),
            ("emails in the outbox", f"{info.messages} (in {folder / 'outbox'})"),
            ("mailbox viewer", f"{base_url}/mailbox"),
            ("admin report", f"{base_url}/admin/campaigns/{info.campaign_id}"),
            ("admin login", f"{info.username} / {info.password}"),
            ("signatories", f"{base_url}/campaigns/{info.campaign_id}/signatories"),
        ]
        out.print("[bold]outreach demo[/bold]")
        for label, value in lines:
            out.print(f"  {label + ':':22} {value}", soft_wrap=True, highlight=False)
        if serve_app:
            out.print("Open the mailbox, pick São Paulo, press Sign. Ctrl+C stops the demo.")
            _serve_with_scheduler(svc, host=host, port=port, scheduler=True)


def main() -> None:
    app()


from outreach import cli_schedule  # noqa: E402

cli_schedule.register(app)


from outreach import cli_bounces  # noqa: E402

cli_bounces.register(app)
