"""``outreach bounces import FILE.eml|MAILDIR``: record bounces that came back by mail.

Registered on the main command by ``register(app)`` (``cli.py`` calls it). Reads every message
of a file, a Maildir (new/ and cur/, left untouched) or a folder of .eml files, records each
delivery status notification against the delivery it names (hard bounces go on the
suppression list), and says what could not be matched.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from outreach.pipeline.bounces import BounceImport, import_bounces
from outreach.store.events import record_provider_events

out = Console()


def import_command(
    path: Annotated[Path, typer.Argument(help="a bounce message (.eml) or a Maildir")],
) -> None:
    """Record returned bounces (RFC 3464 DSNs) against the deliveries they name."""
    from outreach.cli import services  # every user error becomes a clear message, exit 2

    with services() as svc:
        record = partial(record_provider_events, svc.engine, now=svc.clock.now())
        result = import_bounces(path, record=record, now=svc.clock.now())
    _print(result)


def _print(result: BounceImport) -> None:
    table = Table("", "count", title="Bounces imported")
    table.add_row("messages read", str(result.messages))
    table.add_row("bounce reports (one per recipient)", str(result.bounces))
    table.add_row("recorded", str(result.recorded))
    table.add_row("already recorded", str(result.duplicates))
    table.add_row("matching no delivery", str(len(result.unmatched)))
    table.add_row("not a bounce report", str(len(result.not_dsn)))
    table.add_row("addresses suppressed", str(len(result.suppressed)))
    out.print(table)
    for file, recipient in result.unmatched[:20]:
        typer.echo(f"no delivery found: {file}: {recipient}", err=True)
    for file in result.not_dsn[:20]:
        typer.echo(f"not a bounce report: {file}", err=True)
    for file, why in result.unreadable:
        typer.echo(f"unreadable: {file}: {why}", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``bounces`` command group to the main ``outreach`` command."""
    bounces = typer.Typer(help="Bounces that came back by mail.", no_args_is_help=True)
    bounces.command("import")(import_command)
    app.add_typer(bounces, name="bounces")
