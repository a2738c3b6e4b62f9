"""What a member does, in a real browser against the real server: sign on behalf of a city, see
a colleague's signature from another link, unsubscribe with the page's button."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from outreach.bootstrap import Services
from outreach.domain.campaign import Campaign
from outreach.domain.contacts import Contact, Organisation
from outreach.pipeline.tokens import LinkPurpose
from outreach.settings import Settings
from outreach.store.campaigns import save_campaign
from outreach.store.contacts import iter_contacts, upsert_contacts
from outreach.store.tables import deliveries, responses, suppressions
from outreach.web.app import create_app
from tests.support.browser import launch_chromium, needs_chromium, served
from tests.support.smtp import free_port

pytestmark = needs_chromium
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing from the environment"
)

CAMPAIGN: dict[str, Any] = {
    "id": "refugees-2027",
    "name": "World Refugee Day 2027",
    "sender": {"name": "Metropolis", "address": "news@metropolis.example.org"},
    "default_language": "en",
    "messages": {
        "en": {"subject": "Stand with refugees"},
        "fr": {"subject": "Aux côtés des réfugiés"},
        "es": {"subject": "Con las personas refugiadas"},
    },
    "calls_to_action": [
        {
            "id": "sign-statement",
            "kind": "sign",
            "url": "https://www.metropolis.example.org/statement",
            "label": {"en": "Sign the statement"},
            "statement": {
                "title": {
                    "en": "Cities #WithRefugees: statement of solidarity",
                    "fr": "Cities #WithRefugees : déclaration de solidarité",
                },
                "text": {
                    "en": "Our city stands with refugees.",
                    "fr": "Notre ville se tient aux côtés des réfugiés.",
                },
            },
        }
    ],
}
PEOPLE = [
    ("anne@paris.example.org", "Anne Dupont", "fr", "Paris", "FR", "Europe"),
    ("luc@paris.example.org", "Luc Martin", "fr", "Paris", "FR", "Europe"),
    ("marta@barcelona.example.org", "Marta Puig", "es", "Barcelona", "ES", "Europe"),
]


@dataclass
class Site:
    services: Services
    base_url: str
    delivery: dict[str, int]

    def link(self, purpose: LinkPurpose, email: str, cta: str | None = None) -> str:
        return self.services.signer.url(
            purpose, campaign_id=CAMPAIGN["id"], delivery_id=self.delivery[email], cta_id=cta
        )

    def count(self, table: Any) -> int:
        with self.services.engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(table)) or 0)


def _seed(services: Services) -> dict[str, int]:
    now = datetime.now(UTC)
    engine = services.engine
    contacts = [
        Contact(email, name, lang, Organisation(city, country, region, "UTC"))
        for email, name, lang, city, country, region in PEOPLE
    ]
    upsert_contacts(engine, contacts, now=now)
    campaign = Campaign.model_validate(CAMPAIGN)
    save_campaign(engine, campaign, source_path=None, now=now)
    delivery: dict[str, int] = {}
    with engine.begin() as connection:
        for stored in iter_contacts(engine):
            delivery[stored.contact.email] = connection.execute(
                insert(deliveries)
                .values(
                    campaign_id=campaign.id,
                    contact_id=stored.id,
                    round=0,
                    language=campaign.language_for(stored.contact.language),
                    status="sent",
                    attempts=1,
                    queued_at=now,
                    sent_at=now,
                    updated_at=now,
                )
                .returning(deliveries.c.id)
            ).scalar_one()
    return delivery


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'outreach.db'}",
        secret_key="test-secret-for-the-browser",
        base_url=base_url,
    )
    services = Services(settings=settings)
    delivery = _seed(services)
    try:
        with served(create_app(services), port, lifespan="off"):
            yield Site(services, base_url, delivery)
    finally:
        services.close()


@pytest.fixture
def page(site: Site) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(locale="en-GB")
        tab = context.new_page()
        problems: list[str] = []
        tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda error: problems.append(str(error)))
        yield tab
        browser.close()
    # a Content-Security-Policy violation (a blocked style or script) shows up here
    assert problems == []


def test_a_member_signs_and_a_colleague_sees_the_signature(site: Site, page: Any) -> None:
    expect = sync_api.expect
    page.goto(site.link(LinkPurpose.SIGN, "anne@paris.example.org", "sign-statement"))
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Cities #WithRefugees : déclaration de solidarité"
    )
    expect(page.get_by_label("Votre nom")).to_have_value("Anne Dupont")
    assert site.count(responses) == 0  # opening the page signed nothing

    page.get_by_label("Votre fonction").fill("Maire adjointe")
    page.get_by_role("button", name="Signer").click()
    expect(page.locator("#outcome")).to_contain_text("Paris a signé. Merci, Anne Dupont.")
    assert site.count(responses) == 1

    page.goto(site.link(LinkPurpose.SIGN, "luc@paris.example.org", "sign-statement"))
    year = str(datetime.now(UTC).year)
    expect(page.locator(".signed-line")).to_have_text(
        re.compile(rf"^Paris a signé le \d{{1,2}} \w+ {year} \(par Anne Dupont\)\.$")
    )
    expect(page.get_by_role("button", name="Signer")).to_have_count(0)

    page.get_by_role("link", name="Voir toutes les villes signataires").click()
    expect(page.locator("#count")).to_have_text("1 ville membre a signé.")
    expect(page.locator(".cities")).to_contain_text("Paris")


def test_a_member_unsubscribes_with_the_pages_button(site: Site, page: Any) -> None:
    expect = sync_api.expect
    page.goto(site.link(LinkPurpose.UNSUBSCRIBE, "marta@barcelona.example.org"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Darse de baja")
    expect(page.get_by_label("Todos nuestros envíos")).to_be_checked()
    assert site.count(suppressions) == 0  # the page alone changes nothing

    page.get_by_role("button", name="Darse de baja").click()
    expect(page.locator("#outcome")).to_have_text(
        "marta@barcelona.example.org ya no recibirá ninguno de nuestros envíos."
    )
    assert site.count(suppressions) == 1
