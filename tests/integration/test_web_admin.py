"""The admin pages, through the real app (TestClient) over a real SQLite file: login, CSRF,
the campaign report (who responded, clicks, charts), exports and the delivery search.

``seed_world_refugee_day`` and ``admin_services`` are shared with the mailbox and browser tests.
"""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select

from outreach.bootstrap import Services
from outreach.domain.campaign import Campaign
from outreach.domain.contacts import Contact, Organisation
from outreach.ports import NewDelivery
from outreach.settings import Settings
from outreach.store.admin_users import (
    AdminUserError,
    AdminUserExistsError,
    create_user,
    set_password,
    verify_user,
)
from outreach.store.campaigns import save_campaign
from outreach.store.contacts import iter_contacts, upsert_contacts
from outreach.store.deliveries import SqlDeliveryLedger
from outreach.store.exports import iter_response_rows
from outreach.store.responses import response_summary, responses_report
from outreach.store.search import search_deliveries
from outreach.store.tables import deliveries, events, responses
from outreach.web.charts import Bar, Series, bar_chart, line_chart

CAMPAIGN = "world-refugee-day"
HOSTILE_CITY = '<script>alert("city")</script>'
HOSTILE_REGION = 'Evil & <Co> "region"'
HOSTILE_PERSON = "=1+2 <img src=x onerror=alert(1)>"
PASSWORD = "correct horse battery"
SENT_AT = datetime(2026, 6, 20, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class World:
    engine: Engine
    delivery: dict[str, int]  # contact email -> delivery id


def _campaign() -> Campaign:
    return Campaign.model_validate(
        {
            "id": CAMPAIGN,
            "name": "World Refugee Day 2026",
            "sender": {"name": "Metropolis", "address": "news@metropolis.example"},
            "default_language": "en",
            "messages": {"en": {"subject": "Stand #WithRefugees"}},
            "calls_to_action": [
                {
                    "id": "sign",
                    "kind": "sign",
                    "label": {"en": "Sign the statement"},
                    "url": "https://metropolis.example/sign",
                    "statement": {"title": {"en": "Solidarity"}, "text": {"en": "We stand."}},
                },
                {
                    "id": "platform",
                    "kind": "link",
                    "label": {"en": "Share your experience"},
                    "url": "https://policytransfer.metropolis.example/",
                },
            ],
        }
    )


PEOPLE = [
    # email, name, language, city, country, region, timezone
    (
        "ana@saopaulo.example",
        "Ana Souza",
        "pt",
        "São Paulo",
        "BR",
        "Latin America",
        "America/Sao_Paulo",
    ),
    (
        "joao@saopaulo.example",
        "João Lima",
        "pt",
        "São Paulo",
        "BR",
        "Latin America",
        "America/Sao_Paulo",
    ),
    ("marc@barcelona.example", "Marc Puig", "es", "Barcelona", "ES", "Europe", "Europe/Madrid"),
    ("ola@krakow.example", "Ola Nowak", "pl", "Kraków", "PL", "Europe", "Europe/Warsaw"),
    (
        "claire@montreal.example",
        "Claire Roy",
        "fr",
        "Montréal",
        "CA",
        "North America",
        "America/Toronto",
    ),
    ("evil@hostile.example", HOSTILE_PERSON, "en", HOSTILE_CITY, "XX", HOSTILE_REGION, "UTC"),
]


def seed_world_refugee_day(engine: Engine) -> World:
    """Six contacts in five cities, mailed on World Refugee Day; a few clicks and events, no
    response yet (``add_response`` records one)."""
    now = SENT_AT - timedelta(hours=1)
    upsert_contacts(
        engine,
        [
            Contact(email, name, lang, Organisation(city, country, region, tz), frozenset())
            for email, name, lang, city, country, region, tz in PEOPLE
        ],
        now=now,
    )
    save_campaign(engine, _campaign(), source_path=None, now=now)
    ids = {stored.contact.email: stored.id for stored in iter_contacts(engine)}
    ledger = SqlDeliveryLedger(engine)
    ledger.enqueue(
        campaign_id=CAMPAIGN,
        round=0,
        rows=[
            NewDelivery(ids[email], lang, suppressed=email.startswith("ola@"))
            for email, _, lang, *_ in PEOPLE
        ],
        now=now,
    )
    with engine.connect() as connection:
        by_contact = dict(
            connection.execute(
                select(deliveries.c.contact_id, deliveries.c.id).where(
                    deliveries.c.campaign_id == CAMPAIGN
                )
            ).all()
        )
    delivery = {email: by_contact[contact_id] for email, contact_id in ids.items()}
    for email, delivery_id in delivery.items():
        if email.startswith("claire@"):
            ledger.mark_failed(delivery_id, error="550 no such user", now=SENT_AT)
        elif not email.startswith("ola@"):
            ledger.mark_sent(delivery_id, reply="250 ok", now=SENT_AT)

    def event(
        email: str, kind: str, minutes: int, cta: str | None = None, bot: bool = False
    ) -> dict[str, object]:
        return {
            "delivery_id": delivery[email],
            "campaign_id": CAMPAIGN,
            "kind": kind,
            "occurred_at": SENT_AT + timedelta(minutes=minutes),
            "cta_id": cta,
            "user_agent": "Mozilla/5.0" if not bot else "Microsoft Safe Links",
            "suspected_bot": bot,
            "source": "outreach",
        }

    with engine.begin() as connection:
        connection.execute(
            insert(events),
            [
                event("ana@saopaulo.example", "clicked", 90, "platform"),
                event("marc@barcelona.example", "clicked", 30, "platform"),
                event("marc@barcelona.example", "clicked", 1, "platform", bot=True),
                event("marc@barcelona.example", "clicked", 1, "sign", bot=True),
                event("ana@saopaulo.example", "clicked", 0, "sign", bot=True),
                event("evil@hostile.example", "bounced", 5),
                event("joao@saopaulo.example", "unsubscribed", 200),
            ],
        )
    return World(engine, delivery)


def add_response(world: World, email: str = "ana@saopaulo.example", **extra: object) -> None:
    with world.engine.begin() as connection:
        org = connection.execute(
            select(deliveries.c.contact_id).where(deliveries.c.id == world.delivery[email])
        ).scalar_one()
        from outreach.store.tables import contacts

        organisation_id = connection.execute(
            select(contacts.c.organisation_id).where(contacts.c.id == org)
        ).scalar_one()
        connection.execute(
            insert(responses).values(
                campaign_id=CAMPAIGN,
                organisation_id=organisation_id,
                contact_id=org,
                delivery_id=world.delivery[email],
                cta_id="sign",
                signer_name=extra.get("signer_name", "Ana Souza"),
                signer_title=extra.get("signer_title", "Mayor's adviser"),
                created_at=SENT_AT + timedelta(hours=3),
            )
        )


def admin_services(
    database_url: str, outbox: Path, *, base_url: str = "http://testserver"
) -> Services:
    return Services(
        settings=Settings(
            database_url=database_url,
            mailer=f"file://{outbox}",
            base_url=base_url,
            secret_key="test-only-secret-for-admin-sessions",
        )
    )


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture
def services(sqlite_url: str, tmp_path: Path) -> Iterator[Services]:
    svc = admin_services(sqlite_url, tmp_path / "outbox")
    yield svc
    svc.close()


@pytest.fixture
def world(services: Services) -> World:
    world = seed_world_refugee_day(services.engine)
    create_user(services.engine, "admin", PASSWORD, now=SENT_AT)
    return world


@pytest.fixture
def client(services: Services, world: World) -> Iterator[TestClient]:
    from outreach.web.app import create_app

    with TestClient(create_app(services), follow_redirects=False) as client:
        yield client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def log_in(client: TestClient, password: str = PASSWORD, next: str = "/admin") -> object:
    page = client.get("/admin/login", params={"next": next})
    assert page.status_code == 200
    return client.post(
        "/admin/login",
        data={
            "username": "admin",
            "password": password,
            "next": next,
            "csrf_token": csrf_of(page.text),
        },
    )


def section(html: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', html, re.S)
    assert match, f"no section #{section_id}"
    return match.group(1)


# -- login and sessions -------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/admin",
        f"/admin/campaigns/{CAMPAIGN}",
        f"/admin/campaigns/{CAMPAIGN}/export/deliveries.csv",
        "/admin/search?q=ana",
    ],
)
def test_admin_pages_send_a_visitor_to_the_login_form(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/admin/login"
    assert parse_qs(location.query)["next"] == [path]
    assert "São Paulo" not in response.text


def test_a_wrong_password_is_refused_and_gives_no_session(client: TestClient) -> None:
    response = log_in(client, password="not the password")
    assert response.status_code == 401
    assert "Wrong username or password" in response.text
    assert client.get("/admin").status_code == 303


def test_logging_in_opens_the_admin_pages_and_logging_out_closes_them(
    client: TestClient,
) -> None:
    response = log_in(client, next=f"/admin/campaigns/{CAMPAIGN}")
    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/campaigns/{CAMPAIGN}"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/admin" in cookie
    listing = client.get("/admin")
    assert listing.status_code == 200
    assert "World Refugee Day 2026" in listing.text
    csp = listing.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    logout = client.post("/admin/logout", data={"csrf_token": csrf_of(listing.text)})
    assert logout.status_code == 303
    assert client.get("/admin").status_code == 303


def test_login_never_redirects_to_another_site(client: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example/admin", "/admin/../evil", "/adminx"):
        client.cookies.clear()
        response = log_in(client, next=target)
        assert response.headers["location"] == "/admin", target


def test_admin_posts_without_the_csrf_token_are_refused(client: TestClient) -> None:
    page = client.get("/admin/login")
    token = csrf_of(page.text)
    form = {"username": "admin", "password": PASSWORD}
    assert client.post("/admin/login", data=form).status_code == 403
    assert client.post("/admin/login", data={**form, "csrf_token": "x" + token}).status_code == 403
    assert client.get("/admin").status_code == 303  # none of them logged in

    log_in(client)
    assert client.post("/admin/logout").status_code == 403
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 403
    assert client.post("/admin/logout", json={"csrf_token": token}).status_code == 403
    assert client.get("/admin").status_code == 200  # still logged in


def test_a_forged_or_altered_session_cookie_is_worthless(client: TestClient) -> None:
    log_in(client)
    real = client.cookies["outreach_admin"]
    assert client.get("/admin").status_code == 200
    client.cookies.clear()
    body, tag = real.split(".")
    altered = body[:-2] + ("AA" if not body.endswith("AA") else "BB")
    for forged in (real, f"{altered}.{tag}", f"{body}.{tag[::-1]}", "x.y", "", "a.b.c"):
        response = client.get("/admin", headers={"Cookie": f"outreach_admin={forged}"})
        assert response.status_code == (200 if forged == real else 303), forged


def test_admin_accounts_refuse_duplicates_and_weak_passwords(services: Services) -> None:
    create_user(services.engine, "staff", "long enough", now=SENT_AT)
    with pytest.raises(AdminUserExistsError, match="exists already"):
        create_user(services.engine, "staff", "another long one", now=SENT_AT)
    with pytest.raises(AdminUserError, match="too short"):
        create_user(services.engine, "other", "short", now=SENT_AT)
    with pytest.raises(AdminUserError, match="cannot be used"):
        create_user(services.engine, "bad name\n", "long enough", now=SENT_AT)
    set_password(services.engine, "staff", "a brand new password")
    assert verify_user(services.engine, "staff", "a brand new password")
    assert not verify_user(services.engine, "staff", "long enough")
    assert not verify_user(services.engine, "nobody", "long enough")
    with pytest.raises(AdminUserError, match="no admin called"):
        set_password(services.engine, "nobody", "long enough")


# -- the report ---------------------------------------------------------------------------
def test_the_report_lists_who_responded_and_who_has_not_by_region(
    client: TestClient, world: World
) -> None:
    log_in(client)
    before = client.get(f"/admin/campaigns/{CAMPAIGN}").text
    assert "São Paulo" in section(before, "not-responded")
    assert "São Paulo" not in section(before, "responded")

    add_response(world)
    page = client.get(f"/admin/campaigns/{CAMPAIGN}")
    assert page.status_code == 200
    responded, waiting = section(page.text, "responded"), section(page.text, "not-responded")
    assert "São Paulo" in responded and "Ana Souza, Mayor&#39;s adviser" in responded
    assert "2026-06-20 11:00 UTC" in responded
    assert "Ana Souza, João Lima" in responded  # the contacts mailed there
    assert "São Paulo" not in waiting
    for city, person in (("Barcelona", "Marc Puig"), ("Kraków", "Ola Nowak")):
        assert city in waiting and person in waiting
    europe = waiting.index("<h3>Europe")
    assert europe < waiting.index("Barcelona") and europe < waiting.index("Kraków")
    assert "Responded (1)" in page.text and "Not responded yet (4)" in page.text
    numbers = re.sub(r"\s+", " ", page.text)
    for label, value in (
        ("Recipients", "6"),
        ("Sent", "4"),
        ("Failed", "1"),
        ("Bounced", "1"),
        ("Suppressed", "1"),
        ("Unsubscribed", "1"),
        ("Cities responded", "1 of 5"),
    ):
        assert f"<dt>{label}</dt><dd>{value}</dd>" in numbers, label


def test_the_report_separates_people_from_link_scanners(client: TestClient) -> None:
    log_in(client)
    page = client.get(f"/admin/campaigns/{CAMPAIGN}").text
    rows = re.findall(r"<tr><td>(.*?)</td><td>(\w*)</td><td class=\"n\">(\d+)</td>"
                      r"<td class=\"n\">(\d+)</td></tr>", page)  # fmt: skip
    found = {label.split(" <")[0]: (kind, int(h), int(s)) for label, kind, h, s in rows}
    assert found == {
        "Sign the statement": ("sign", 0, 2),
        "Share your experience": ("link", 2, 1),
    }


def test_the_report_draws_its_charts_as_svg(client: TestClient, world: World) -> None:
    add_response(world)
    log_in(client)
    page = client.get(f"/admin/campaigns/{CAMPAIGN}").text
    charts = re.findall(r"<svg .*?</svg>", page, re.S)
    assert len(charts) == 2
    timeline, regions = (ET.fromstring(svg) for svg in charts)
    assert timeline.get("id") == "timeline" and regions.get("id") == "regions"
    legend = " ".join(
        "".join(t.itertext()) for t in timeline.iter("{http://www.w3.org/2000/svg}text")
    )
    assert "sends (4)" in legend and "clicks (people) (2)" in legend and "signatures (1)" in legend
    assert len(list(timeline.iter("{http://www.w3.org/2000/svg}polyline"))) == 3
    bars = ["".join(g.find("{http://www.w3.org/2000/svg}title").itertext())  # type: ignore[union-attr]
            for g in regions.iter("{http://www.w3.org/2000/svg}g")]  # fmt: skip
    assert "Latin America: 1 of 1 (100%)" in bars
    assert "Europe: 0 of 2 (0%)" in bars
    assert f"{HOSTILE_REGION}: 0 of 1 (0%)" in bars  # escaped in the markup, intact as text


def test_hostile_names_are_escaped_everywhere(client: TestClient, world: World) -> None:
    add_response(world, "evil@hostile.example", signer_name="<b>Boss</b>", signer_title="<i>")
    log_in(client)
    pages = [
        client.get(f"/admin/campaigns/{CAMPAIGN}").text,
        client.get("/admin/search", params={"q": "hostile"}).text,
    ]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>Boss" not in html
        assert "&lt;script&gt;alert(&#34;city&#34;)&lt;/script&gt;" in html
        assert "=1+2 &lt;img src=x onerror=alert(1)&gt;" in html


def test_the_campaign_list_and_an_unknown_campaign(client: TestClient, world: World) -> None:
    add_response(world)
    log_in(client)
    listing = re.sub(r"\s+", " ", client.get("/admin").text)
    assert f'href="/admin/campaigns/{CAMPAIGN}"' in listing
    assert '<td class="n">1 of 5</td>' in listing
    missing = client.get("/admin/campaigns/no-such-campaign")
    assert missing.status_code == 404 and "no-such-campaign" in missing.text


# -- exports ------------------------------------------------------------------------------
def test_the_deliveries_export_says_who_clicked(client: TestClient, world: World) -> None:
    log_in(client)
    response = client.get(f"/admin/campaigns/{CAMPAIGN}/export/deliveries.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 6
    by_email = {row["email"]: row for row in rows}
    assert by_email["marc@barcelona.example"]["human_clicks"] == "1"
    assert by_email["marc@barcelona.example"]["suspected_scanner_clicks"] == "2"
    assert by_email["joao@saopaulo.example"]["unsubscribed"] == "true"
    assert by_email["claire@montreal.example"]["status"] == "failed"
    assert by_email["claire@montreal.example"]["last_error"] == "550 no such user"
    assert by_email["ana@saopaulo.example"]["sent_at"] == SENT_AT.isoformat()
    # a spreadsheet must not run a contact's name as a formula
    assert by_email["evil@hostile.example"]["name"] == "'" + HOSTILE_PERSON

    as_json = client.get(f"/admin/campaigns/{CAMPAIGN}/export/deliveries.json").json()
    assert {row["email"] for row in as_json} == set(by_email)
    marc = next(row for row in as_json if row["email"] == "marc@barcelona.example")
    assert marc["human_clicks"] == 1 and marc["unsubscribed"] is False
    assert next(r for r in as_json if r["email"].startswith("evil"))["name"] == HOSTILE_PERSON


def test_the_responses_export_lists_signatures_and_cities_still_waiting(
    client: TestClient, world: World
) -> None:
    add_response(world)
    log_in(client)
    rows = client.get(f"/admin/campaigns/{CAMPAIGN}/export/responses.json").json()
    assert [(r["organisation"], r["responded"]) for r in rows] == [
        ("Barcelona", False),  # by region, then by name
        ("Kraków", False),
        (HOSTILE_CITY, False),
        ("São Paulo", True),
        ("Montréal", False),
    ]
    signed = next(r for r in rows if r["responded"])
    assert signed["signer_name"] == "Ana Souza" and signed["signer_email"] == "ana@saopaulo.example"
    assert signed["signed_at"] == (SENT_AT + timedelta(hours=3)).isoformat()
    as_csv = client.get(f"/admin/campaigns/{CAMPAIGN}/export/responses.csv")
    parsed = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["organisation"] for r in parsed] == [r["organisation"] for r in rows]
    assert next(r for r in parsed if r["organisation"] == "São Paulo")["responded"] == "true"
    assert client.get(f"/admin/campaigns/{CAMPAIGN}/export/secrets.csv").status_code == 404


# -- delivery detail ----------------------------------------------------------------------
def test_search_finds_a_contacts_deliveries_and_events(client: TestClient, world: World) -> None:
    log_in(client)
    by_email = client.get("/admin/search", params={"q": "marc@barcelona"}).text
    delivery = world.delivery["marc@barcelona.example"]
    assert f'id="delivery-{delivery}"' in by_email
    assert by_email.count('class="event"') == 3
    assert "suspected scanner" in by_email and "Microsoft Safe Links" in by_email

    by_city = client.get("/admin/search", params={"q": "são paulo"}).text
    assert by_city.count('class="delivery"') == 2
    assert "unsubscribed" in by_city
    by_name = client.get("/admin/search", params={"q": "Puig", "campaign": CAMPAIGN}).text
    assert f'id="delivery-{delivery}"' in by_name
    assert client.get("/admin/search", params={"q": "%"}).text.count('class="delivery"') == 0
    assert client.get("/admin/search", params={"q": "nobody"}).text.count('class="delivery"') == 0


# -- the same queries on both databases ---------------------------------------------------
def test_the_response_queries_agree_on_sqlite_and_postgresql(database_url: str) -> None:
    from outreach.store.engine import open_engine

    engine = open_engine(database_url)
    try:
        world = seed_world_refugee_day(engine)
        add_response(world)
        summary = response_summary(engine, CAMPAIGN)
        assert summary == {
            "responded": ["São Paulo"],
            "not_responded": sorted(["Barcelona", "Kraków", "Montréal", HOSTILE_CITY]),
            "clicks": {
                "sign": {"human": 0, "suspected_scanner": 2},
                "platform": {"human": 2, "suspected_scanner": 1},
            },
            "unsubscribed": 1,
        }
        report = responses_report(engine, CAMPAIGN)
        timeline = report.timeline
        assert (sum(timeline.sends), sum(timeline.clicks), sum(timeline.signatures)) == (4, 2, 1)
        assert timeline.step == timedelta(minutes=5) and len(timeline.starts) == 37
        assert timeline.starts[0] == SENT_AT
        assert timeline.sends[0] == 4 and timeline.signatures[36] == 1
        assert timeline.clicks[6] == 1 and timeline.clicks[18] == 1
        assert report.bounced == 1 and report.unsubscribed == 1
        rows = list(iter_response_rows(engine, CAMPAIGN))
        assert sum(1 for r in rows if r["responded"]) == 1 and len(rows) == 5
        found, more = search_deliveries(engine, text="KRAKÓW")
        assert [d.email for d in found] == ["ola@krakow.example"] and not more
        assert found[0].status == "suppressed"
    finally:
        engine.dispose()


# -- charts, on their own -----------------------------------------------------------------
def test_charts_are_well_formed_svg_with_escaped_labels() -> None:
    hostile = '</text><script>alert(1)</script>&"'
    line = line_chart(
        chart_id="t<1>", title=hostile, labels=[hostile, "b"], series=[Series(hostile, [1, 5])]
    )
    bars = bar_chart(chart_id="r", title=hostile, bars=[Bar(hostile, 0.5, hostile)])
    empty = line_chart(chart_id="e", title="empty", labels=[], series=[])
    for svg in (line, bars, empty):
        root = ET.fromstring(str(svg))
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert "<script>" not in str(svg)
        assert not list(root.iter("{http://www.w3.org/2000/svg}script"))
    assert hostile in "".join(ET.fromstring(str(bars)).itertext())
    assert 'id="t-1-"' in str(line)
    assert "Nothing to show yet" in str(empty)


def test_the_report_renders_in_reasonable_time_with_many_events(
    services: Services, world: World
) -> None:
    """Not the benchmark (see bench/), only a guard: 20,000 events stay well under a second."""
    import time

    many = [
        {
            "delivery_id": world.delivery["marc@barcelona.example"],
            "campaign_id": CAMPAIGN,
            "kind": "clicked",
            "occurred_at": SENT_AT + timedelta(seconds=i),
            "cta_id": "platform",
            "suspected_bot": i % 3 == 0,
            "source": "outreach",
        }
        for i in range(20_000)
    ]
    with services.engine.begin() as connection:
        connection.execute(insert(events), many)
    started = time.perf_counter()
    report = responses_report(services.engine, CAMPAIGN)
    assert time.perf_counter() - started < 1.0
    platform = next(c for c in report.clicks if c.cta_id == "platform")
    assert (platform.human, platform.suspected_scanner) == (2 + 13_333, 1 + 6_667)
    assert json.dumps(response_summary(services.engine, CAMPAIGN))  # JSON-ready


# -- pause and resume ------------------------------------------------------------------------
def test_pause_and_resume_buttons_change_the_campaign_state(
    client: TestClient, services: Services
) -> None:
    from outreach.domain.delivery import CampaignState
    from outreach.store.campaigns import campaign_state, set_campaign_state

    set_campaign_state(services.engine, CAMPAIGN, CampaignState.SENDING, now=SENT_AT)
    log_in(client)
    page = client.get(f"/admin/campaigns/{CAMPAIGN}")
    assert 'id="pause"' in page.text and 'id="resume"' not in page.text
    refused = client.post(f"/admin/campaigns/{CAMPAIGN}/pause", data={})
    assert refused.status_code == 403  # no CSRF token: nothing changes
    assert campaign_state(services.engine, CAMPAIGN) == (CampaignState.SENDING, None)

    paused = client.post(
        f"/admin/campaigns/{CAMPAIGN}/pause", data={"csrf_token": csrf_of(page.text)}
    )
    assert paused.status_code == 303
    assert campaign_state(services.engine, CAMPAIGN)[0] is CampaignState.PAUSED  # type: ignore[index]
    page = client.get(paused.headers["location"])
    assert "paused" in section_text(page.text, "notice") and 'id="resume"' in page.text

    resumed = client.post(
        f"/admin/campaigns/{CAMPAIGN}/resume", data={"csrf_token": csrf_of(page.text)}
    )
    assert resumed.status_code == 303
    assert campaign_state(services.engine, CAMPAIGN)[0] is not CampaignState.PAUSED  # type: ignore[index]
    assert (
        client.post(
            f"/admin/campaigns/{CAMPAIGN}/delete", data={"csrf_token": csrf_of(page.text)}
        ).status_code
        == 404
    )


def section_text(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">(.*?)<', html, re.S)
    assert match, f"no #{element_id}"
    return match.group(1)
