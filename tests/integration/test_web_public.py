"""The member-facing web pages against real databases (a SQLite file, and PostgreSQL when it is
running): tracked links, the sign page, the unsubscribe page and RFC 8058 one-click, the open
pixel and the public signatories page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select

from outreach.bootstrap import Services, SystemClock
from outreach.domain.campaign import Campaign
from outreach.domain.contacts import Contact, Organisation
from outreach.pipeline.tokens import LinkPurpose, LinkSigner
from outreach.settings import Settings
from outreach.store.campaigns import save_campaign
from outreach.store.clicks import click_counts
from outreach.store.contacts import iter_contacts, upsert_contacts
from outreach.store.signatures import signatories
from outreach.store.tables import deliveries, events, responses, suppressions
from outreach.store.unsubscribes import unsubscribed_contacts
from outreach.web.app import create_app

SECRET = "test-secret-for-the-web-pages"
BASE_URL = "http://testserver"
START = datetime(2027, 6, 20, 9, 0, tzinfo=UTC)
BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)
PTP_URL = "https://policytransfer.metropolis.example.org/experiences/new?topic=refugees"
HOSTILE_CITY = '<script>alert("city")</script> & Co'
HOSTILE_NAME = "<img src=x onerror=alert(1)>Eve"

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
    "open_tracking": True,
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
                    "es": "Cities #WithRefugees: declaración de solidaridad",
                },
                "text": {
                    "en": "Our city stands with refugees.\n\nWe will speak up for inclusion.",
                    "fr": "Notre ville se tient aux côtés des réfugiés.",
                    "es": "Nuestra ciudad está con las personas refugiadas.",
                },
            },
        },
        {"id": "ptp", "kind": "link", "url": PTP_URL, "label": {"en": "Share"}},
        {
            "id": "paper",
            "kind": "link",
            "url": "https://www.metropolis.example.org/paper",
            "label": {"en": "Read"},
        },
    ],
}

PEOPLE = [
    ("anne@paris.example.org", "Anne Dupont", "fr", "Paris", "FR", "Europe"),
    ("luc@paris.example.org", "Luc Martin", "fr", "Paris", "FR", "Europe"),
    ("marta@barcelona.example.org", "Marta Puig", "es", "Barcelona", "ES", "Europe"),
    ("ana@montevideo.example.org", "Ana Pérez", "es", "Montevideo", "UY", "Latin America"),
    ("eve@hostile.example.org", HOSTILE_NAME, "en", HOSTILE_CITY, "ZZ", "Africa"),
]


class Clock(SystemClock):
    """The services' clock, moved by hand."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


@dataclass
class World:
    services: Services
    client: TestClient
    clock: Clock
    delivery: dict[str, int]  # email -> delivery id

    @property
    def engine(self) -> Engine:
        return self.services.engine

    @property
    def signer(self) -> LinkSigner:
        return self.services.signer

    def link(self, purpose: LinkPurpose, email: str, cta: str | None = None) -> str:
        token = self.signer.token(
            purpose,
            campaign_id=CAMPAIGN["id"],
            delivery_id=self.delivery[email],
            cta_id=cta,
            now=self.clock.moment,
        )
        return f"/{purpose.value}/{token}"

    def sign_link(self, email: str) -> str:
        return self.link(LinkPurpose.SIGN, email, "sign-statement")

    def count(self, table: Any, *where: Any) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.scalar(select(func.count()).select_from(table).where(*where)) or 0
            )

    def recorded(self) -> tuple[int, int, int]:
        return (self.count(events), self.count(responses), self.count(suppressions))


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    settings = Settings(database_url=database_url, secret_key=SECRET, base_url=BASE_URL)
    clock = Clock(START)
    services = Services(settings=settings, clock=clock)
    engine = services.engine
    upsert_contacts(
        engine,
        [
            Contact(email, name, lang, Organisation(city, country, region, "UTC"))
            for email, name, lang, city, country, region in PEOPLE
        ],
        now=START,
    )
    campaign = Campaign.model_validate(CAMPAIGN)
    save_campaign(engine, campaign, source_path=None, now=START)
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
                    queued_at=START,
                    sent_at=START,
                    updated_at=START,
                )
                .returning(deliveries.c.id)
            ).scalar_one()
    clock.moment = START + timedelta(hours=2)
    with TestClient(create_app(services), base_url=BASE_URL, follow_redirects=False) as client:
        yield World(services, client, clock, delivery)
    services.close()


def nonce_of(page: str) -> str:
    match = re.search(r'name="nonce" value="([^"]+)"', page)
    assert match, "the page has no form nonce"
    return match.group(1)


def text_of(page: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def sign(world: World, email: str, name: str, title: str, *, nonce: str | None = None) -> Any:
    """Open the sign page (unless its nonce is given: the form was opened earlier), submit it."""
    link = world.sign_link(email)
    if nonce is None:
        nonce = nonce_of(world.client.get(link).text)
    return world.client.post(
        link, data={"name": name, "title": title, "nonce": nonce}, headers={"Origin": BASE_URL}
    )


# --- tracked links ---------------------------------------------------------------------------


def test_a_link_click_redirects_to_the_stored_url_and_is_recorded(world: World) -> None:
    link = world.link(LinkPurpose.CLICK, "anne@paris.example.org", "ptp")
    answer = world.client.get(link, headers={"User-Agent": BROWSER})
    assert answer.status_code == 302
    assert answer.headers["location"] == PTP_URL
    assert answer.headers["cache-control"] == "no-store"
    with world.engine.connect() as connection:
        row = connection.execute(select(events)).one()
    assert (row.kind, row.cta_id, row.user_agent, row.suspected_bot) == (
        "clicked",
        "ptp",
        BROWSER,
        False,
    )
    assert row.occurred_at == world.clock.moment
    assert row.delivery_id == world.delivery["anne@paris.example.org"]
    assert click_counts(world.engine, campaign_id=CAMPAIGN["id"])["ptp"].human == 1


@pytest.mark.parametrize(
    ("method", "agent"),
    [
        ("HEAD", BROWSER),
        ("GET", "Mozilla/5.0 (compatible; Microsoft Office SafeLinks)"),
        ("GET", "python-requests/2.32"),
        ("GET", ""),
    ],
)
def test_clicks_that_look_automated_are_recorded_but_flagged(
    world: World, method: str, agent: str
) -> None:
    link = world.link(LinkPurpose.CLICK, "marta@barcelona.example.org", "paper")
    answer = world.client.request(method, link, headers={"User-Agent": agent})
    assert answer.status_code == 302
    counts = click_counts(world.engine, campaign_id=CAMPAIGN["id"])["paper"]
    assert (counts.human, counts.suspected) == (0, 1)


def test_every_link_opened_within_seconds_of_delivery_is_a_scanner_burst(world: World) -> None:
    scanned, person = "luc@paris.example.org", "ana@montevideo.example.org"
    world.clock.moment = START + timedelta(seconds=4)
    for cta in ("ptp", "paper"):
        link = world.link(LinkPurpose.CLICK, scanned, cta)
        assert world.client.get(link, headers={"User-Agent": BROWSER}).status_code == 302
        world.clock.moment += timedelta(seconds=1)
    # a person opening one link early, and every link at leisure, is not a burst
    world.client.get(world.link(LinkPurpose.CLICK, person, "ptp"), headers={"User-Agent": BROWSER})
    world.clock.moment = START + timedelta(hours=3)
    world.client.get(
        world.link(LinkPurpose.CLICK, person, "paper"), headers={"User-Agent": BROWSER}
    )
    counts = click_counts(world.engine, campaign_id=CAMPAIGN["id"])
    assert (counts["ptp"].human, counts["ptp"].suspected) == (1, 1)
    assert (counts["paper"].human, counts["paper"].suspected) == (1, 1)


@pytest.mark.parametrize(
    "suffix",
    [
        "?url=https://evil.example",
        "?next=//evil.example&redirect=https%3A%2F%2Fevil.example",
        "?to=https://evil.example#https://evil.example",
    ],
)
def test_query_parameters_cannot_change_where_a_link_goes(world: World, suffix: str) -> None:
    link = world.link(LinkPurpose.CLICK, "anne@paris.example.org", "ptp")
    answer = world.client.get(link + suffix, headers={"User-Agent": BROWSER})
    assert answer.status_code == 302
    assert answer.headers["location"] == PTP_URL


@pytest.mark.parametrize(
    "suffix", ["/https://evil.example", "//evil.example", "/..%2F..%2Fevil", "%2F%2Fevil.example"]
)
def test_extra_path_on_a_link_is_not_a_valid_link(world: World, suffix: str) -> None:
    link = world.link(LinkPurpose.CLICK, "anne@paris.example.org", "ptp")
    answer = world.client.get(link + suffix)
    assert answer.status_code == 404
    assert "location" not in answer.headers
    assert world.recorded() == (0, 0, 0)


def test_the_open_pixel_records_an_open(world: World) -> None:
    answer = world.client.get(
        world.link(LinkPurpose.OPEN, "anne@paris.example.org"), headers={"User-Agent": BROWSER}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/gif"
    assert answer.content.startswith(b"GIF89a")
    assert world.count(events, events.c.kind == "opened") == 1


# --- tokens ----------------------------------------------------------------------------------


def _flips(token: str) -> Iterator[str]:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for position, char in enumerate(token):
        other = alphabet[(alphabet.index(char) + 1 + position % 63) % 64]  # never itself
        yield token[:position] + other + token[position + 1 :]


def test_every_altered_character_of_a_token_is_rejected(world: World) -> None:
    email = "anne@paris.example.org"
    click = world.link(LinkPurpose.CLICK, email, "ptp").split("/")[-1]
    signing = world.sign_link(email).split("/")[-1]
    leaving = world.link(LinkPurpose.UNSUBSCRIBE, email).split("/")[-1]
    for altered in _flips(click):
        assert world.client.get(f"/c/{altered}").status_code == 404
    for altered in _flips(signing):
        assert world.client.get(f"/s/{altered}").status_code == 404
        answer = world.client.post(f"/s/{altered}", data={"name": "A", "title": "B"})
        assert answer.status_code == 404
    for altered in _flips(leaving):
        answer = world.client.post(f"/u/{altered}", data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 404
    assert world.recorded() == (0, 0, 0)


def test_forged_expired_and_wrong_purpose_tokens_get_the_plain_404_page(world: World) -> None:
    email = "anne@paris.example.org"
    forger = LinkSigner(secret=b"not-our-secret", base_url=BASE_URL, lifetime=timedelta(days=9))
    forged = forger.token(
        LinkPurpose.SIGN, campaign_id=CAMPAIGN["id"], delivery_id=1, cta_id="sign-statement"
    )
    expired = world.signer.token(
        LinkPurpose.UNSUBSCRIBE,
        campaign_id=CAMPAIGN["id"],
        delivery_id=world.delivery[email],
        now=START - timedelta(days=400),
    )
    sign_token = world.sign_link(email).split("/")[-1]
    attempts = [
        ("GET", f"/s/{forged}"),
        ("POST", f"/u/{expired}"),
        ("GET", f"/u/{expired}"),
        ("GET", f"/c/{sign_token}"),  # a sign token used as a click
        ("POST", f"/u/{sign_token}"),  # ... and as an unsubscribe
        ("GET", "/s/not-a-token"),
        ("GET", "/o/" + "A" * 600),
    ]
    for method, path in attempts:
        answer = world.client.request(
            method, path, data={"List-Unsubscribe": "One-Click"} if method == "POST" else None
        )
        assert answer.status_code == 404, path
        assert "This link is not valid" in answer.text
        assert "Traceback" not in answer.text
    assert world.recorded() == (0, 0, 0)


def test_the_invalid_link_page_speaks_the_browsers_language(world: World) -> None:
    answer = world.client.get("/u/forged", headers={"Accept-Language": "de-DE,es;q=0.8,en;q=0.5"})
    assert answer.status_code == 404
    assert "Este enlace no es válido" in text_of(answer.text)
    assert '<html lang="es">' in answer.text


def test_a_link_to_a_call_to_action_of_another_kind_is_not_valid(world: World) -> None:
    # a click token naming the sign CTA cannot open the sign page, nor the reverse
    assert (
        world.client.get(world.link(LinkPurpose.SIGN, "anne@paris.example.org", "ptp")).status_code
        == 404
    )
    missing = world.link(LinkPurpose.CLICK, "anne@paris.example.org", "no-such-cta")
    assert world.client.get(missing).status_code == 404
    assert world.recorded() == (0, 0, 0)


# --- signing ---------------------------------------------------------------------------------


def test_the_sign_page_speaks_the_contacts_language_and_is_prefilled(world: World) -> None:
    page = world.client.get(world.sign_link("anne@paris.example.org"))
    assert page.status_code == 200
    assert '<html lang="fr">' in page.text
    text = text_of(page.text)
    assert "Cities #WithRefugees : déclaration de solidarité" in text
    assert "Notre ville se tient aux côtés des réfugiés." in text
    assert "Signer au nom de Paris" in text
    assert 'value="Anne Dupont"' in page.text
    assert world.recorded() == (0, 0, 0)


def test_a_thousand_gets_on_sign_and_unsubscribe_links_record_nothing(world: World) -> None:
    email = "marta@barcelona.example.org"
    signing, leaving = world.sign_link(email), world.link(LinkPurpose.UNSUBSCRIBE, email)
    for _ in range(500):
        assert world.client.get(signing).status_code == 200
        assert world.client.get(leaving).status_code == 200
    assert world.recorded() == (0, 0, 0)


def test_signing_is_committed_before_the_thank_you_page(world: World) -> None:
    answer = sign(world, "anne@paris.example.org", " Anne  Dupont ", "Maire adjointe")
    assert answer.status_code == 200
    assert "Paris a signé. Merci, Anne Dupont." in text_of(answer.text)
    # read back through a separate engine: the row is committed, not only visible in-session
    other = Services(settings=world.services.settings)
    with other.engine.connect() as connection:
        row = connection.execute(select(responses)).one()
    other.close()
    assert (row.signer_name, row.signer_title, row.cta_id) == (
        "Anne Dupont",
        "Maire adjointe",
        "sign-statement",
    )
    assert world.count(events, events.c.kind == "signed") == 1


def test_the_organisation_signs_once_and_others_see_who_signed(world: World) -> None:
    luc = "luc@paris.example.org"
    luc_link = world.sign_link(luc)
    open_form = nonce_of(world.client.get(luc_link).text)
    assert sign(world, "anne@paris.example.org", "Anne Dupont", "Maire").status_code == 200
    world.clock.moment += timedelta(days=1)
    page = world.client.get(world.sign_link(luc))
    text = text_of(page.text)
    assert "Paris a signé le 20 juin 2027 (par Anne Dupont)." in text
    assert 'name="title"' not in page.text  # no form any more
    # a colleague who had the form open and submits it does not sign a second time
    second = world.client.post(
        luc_link, data={"name": "Luc Martin", "title": "Conseiller", "nonce": open_form}
    )
    assert second.status_code == 200
    assert "(par Anne Dupont)" in text_of(second.text)
    assert world.count(responses) == 1
    assert signatories(world.engine, campaign_id=CAMPAIGN["id"]).count == 1


@pytest.mark.parametrize(
    ("headers", "use_nonce"),
    [
        ({"Origin": "https://evil.example"}, True),
        ({"Referer": "https://evil.example/page"}, True),
        ({"Origin": "null"}, True),
        ({"Origin": BASE_URL}, False),
    ],
)
def test_a_sign_post_from_another_site_or_without_the_form_nonce_is_refused(
    world: World, headers: dict[str, str], use_nonce: bool
) -> None:
    link = world.sign_link("marta@barcelona.example.org")
    nonce = nonce_of(world.client.get(link).text) if use_nonce else ""
    answer = world.client.post(
        link, data={"name": "Marta", "title": "Alcaldesa", "nonce": nonce}, headers=headers
    )
    assert answer.status_code == 403
    assert 'name="nonce"' in answer.text  # the page offers the form again
    assert world.recorded() == (0, 0, 0)


def test_a_forged_or_stale_nonce_is_refused(world: World) -> None:
    link = world.sign_link("marta@barcelona.example.org")
    nonce = nonce_of(world.client.get(link).text)
    stamp, _, mac = nonce.partition(".")
    flipped = ("B" if mac[0] == "A" else "A") + mac[1:]
    for bad in (f"{int(stamp) + 1}.{mac}", f"{stamp}.{flipped}", f"{stamp}.", "garbage", ""):
        answer = world.client.post(link, data={"name": "M", "title": "A", "nonce": bad})
        assert answer.status_code == 403
    world.clock.moment += timedelta(days=3)
    answer = world.client.post(link, data={"name": "M", "title": "A", "nonce": nonce})
    assert answer.status_code == 403
    assert world.recorded() == (0, 0, 0)


def test_a_sign_post_without_name_or_title_asks_again(world: World) -> None:
    answer = sign(world, "marta@barcelona.example.org", "Marta Puig", "   ")
    assert answer.status_code == 422
    assert "Indique su nombre y su cargo." in text_of(answer.text)
    assert 'value="Marta Puig"' in answer.text
    too_long = sign(world, "marta@barcelona.example.org", "M" * 201, "Alcaldesa")
    assert too_long.status_code == 422
    assert world.recorded() == (0, 0, 0)


def test_hostile_city_and_contact_names_are_escaped(world: World) -> None:
    email = "eve@hostile.example.org"
    page = world.client.get(world.sign_link(email))
    assert "<script>" not in page.text and "<img" not in page.text
    assert "&lt;script&gt;alert(" in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;Eve" in page.text
    signed = sign(world, email, HOSTILE_NAME, "<b>Mayor</b>")
    assert signed.status_code == 200
    assert "<script>" not in signed.text and "<img" not in signed.text and "<b>" not in signed.text
    listing = world.client.get(f"/campaigns/{CAMPAIGN['id']}/signatories")
    assert "<script>" not in listing.text
    assert HOSTILE_CITY in text_of(listing.text)


# --- unsubscribing ---------------------------------------------------------------------------


def test_rfc8058_one_click_unsubscribes_without_cookie_or_page(world: World) -> None:
    email = "ana@montevideo.example.org"
    link = world.link(LinkPurpose.UNSUBSCRIBE, email)
    world.client.cookies.clear()
    for _ in range(2):  # repeating is harmless
        answer = world.client.post(
            link,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 200
        assert "set-cookie" not in answer.headers
    assert world.count(suppressions, suppressions.c.email == email) == 1
    assert world.count(events, events.c.kind == "unsubscribed") == 1
    with world.engine.connect() as connection:
        reason = connection.scalar(select(suppressions.c.reason))
    assert reason == "unsubscribed"


def test_the_unsubscribe_page_offers_a_choice_and_a_button(world: World) -> None:
    page = world.client.get(world.link(LinkPurpose.UNSUBSCRIBE, "marta@barcelona.example.org"))
    assert page.status_code == 200
    text = text_of(page.text)
    assert "marta@barcelona.example.org" in text
    assert "Solo los recordatorios de esta campaña (World Refugee Day 2027)" in text
    assert "Todos nuestros envíos" in text
    assert re.search(r'<button type="submit"[^>]*>Darse de baja</button>', page.text)


def test_choosing_this_campaigns_reminders_only_keeps_other_mailings(world: World) -> None:
    email = "marta@barcelona.example.org"
    link = world.link(LinkPurpose.UNSUBSCRIBE, email)
    nonce = nonce_of(world.client.get(link).text)
    for _ in range(2):
        answer = world.client.post(
            link, data={"scope": "campaign", "nonce": nonce}, headers={"Origin": BASE_URL}
        )
        assert answer.status_code == 200
        assert "ya no recibirá recordatorios de esta campaña" in text_of(answer.text)
    assert world.count(suppressions) == 0
    assert world.count(events, events.c.kind == "unsubscribed") == 1
    contact_ids = unsubscribed_contacts(world.engine, campaign_id=CAMPAIGN["id"])
    assert len(contact_ids) == 1


def test_choosing_all_mailings_suppresses_the_address(world: World) -> None:
    email = "luc@paris.example.org"
    link = world.link(LinkPurpose.UNSUBSCRIBE, email)
    nonce = nonce_of(world.client.get(link).text)
    answer = world.client.post(link, data={"scope": "all", "nonce": nonce})
    assert answer.status_code == 200
    assert f"{email} ne recevra plus aucun de nos envois." in text_of(answer.text)
    assert world.count(suppressions, suppressions.c.email == email) == 1


def test_the_unsubscribe_form_without_its_nonce_changes_nothing(world: World) -> None:
    link = world.link(LinkPurpose.UNSUBSCRIBE, "luc@paris.example.org")
    answer = world.client.post(link, data={"scope": "all"})
    assert answer.status_code == 403
    assert world.recorded() == (0, 0, 0)


# --- signatories, headers --------------------------------------------------------------------


def test_the_signatories_page_lists_cities_by_region_with_the_count(world: World) -> None:
    luc = nonce_of(world.client.get(world.sign_link("luc@paris.example.org")).text)
    sign(world, "anne@paris.example.org", "Anne Dupont", "Maire")
    sign(world, "luc@paris.example.org", "Luc Martin", "Conseiller", nonce=luc)  # Paris again
    sign(world, "ana@montevideo.example.org", "Ana Pérez", "Intendenta")
    page = world.client.get(
        f"/campaigns/{CAMPAIGN['id']}/signatories", headers={"Accept-Language": "en-GB,en;q=0.8"}
    )
    assert page.status_code == 200
    text = text_of(page.text)
    assert "2 member cities have signed." in text
    assert re.search(r"Europe 1 Paris FR", text)
    assert re.search(r"Latin America 1 Montevideo UY", text)
    assert "Barcelona" not in text
    french = world.client.get(f"/campaigns/{CAMPAIGN['id']}/signatories?lang=fr")
    assert "2 villes membres ont signé." in text_of(french.text)
    found = signatories(world.engine, campaign_id=CAMPAIGN["id"])
    assert found.template_context() == {
        "signatories": ["Montevideo", "Paris"],
        "signatory_count": 2,
    }
    assert world.client.get("/campaigns/no-such-campaign/signatories").status_code == 404


def test_every_response_carries_the_security_headers(world: World) -> None:
    answers = [
        world.client.get(world.sign_link("anne@paris.example.org")),
        world.client.get(world.link(LinkPurpose.CLICK, "anne@paris.example.org", "ptp")),
        world.client.get("/s/forged"),
        world.client.get("/static/style.css"),
        world.client.get(f"/campaigns/{CAMPAIGN['id']}/signatories"),
    ]
    for answer in answers:
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors" in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
    assert answers[3].status_code == 200
    assert "text/css" in answers[3].headers["content-type"]
