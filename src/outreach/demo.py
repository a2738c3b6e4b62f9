"""``outreach demo``: the shipped contacts and the World Refugee Day campaign, sent into a file
outbox on a SQLite file, with a demo admin account — everything a newcomer needs to click
through the product. Running it again sends nothing twice and gives the admin a new password."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from pathlib import Path

from outreach import operations
from outreach.bootstrap import Services
from outreach.errors import ConfigurationError
from outreach.store.admin_users import AdminUserExistsError, create_user, set_password

CONTACTS = Path("campaigns/audiences/metropolis-members.csv")
CAMPAIGN = Path("campaigns/world-refugee-day-2018.yaml")
ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class DemoInfo:
    campaign_id: str
    contacts: int
    messages: int
    username: str
    password: str


def prepare_demo(services: Services, *, folder: Path) -> DemoInfo:
    for needed in (CONTACTS, CAMPAIGN):
        if not needed.exists():
            raise ConfigurationError(
                f"{needed} not found: run the demo from the outreach folder (where README.md is)"
            )
    folder.mkdir(parents=True, exist_ok=True)
    imported = operations.import_contacts(services, CONTACTS, encoding=None)
    campaign = services.load_campaign(CAMPAIGN)
    asyncio.run(operations.send_campaign(services, campaign, source=CAMPAIGN))
    password = secrets.token_urlsafe(9)
    now = services.clock.now()
    try:
        create_user(services.engine, ADMIN, password, now=now)
    except AdminUserExistsError:
        set_password(services.engine, ADMIN, password)
    outbox = folder / "outbox"
    return DemoInfo(
        campaign_id=campaign.id,
        contacts=imported.rows,
        messages=len(list(outbox.glob("*.eml"))),
        username=ADMIN,
        password=password,
    )
