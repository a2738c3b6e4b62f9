"""An admin in a real browser (Playwright driving Debian's chromium) against the real app served
by uvicorn on 127.0.0.1: log in, open the campaign report, see a city move to "responded",
see the charts; and a captured email whose Sign link opens the sign page in the whole window."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from outreach.bootstrap import Services
from outreach.pipeline.tokens import LinkPurpose
from outreach.store.admin_users import create_user
from outreach.web.app import create_app
from tests.integration.test_mailbox import capture, email_for
from tests.integration.test_web_admin import (
    CAMPAIGN,
    PASSWORD,
    SENT_AT,
    World,
    add_response,
    admin_services,
    seed_world_refugee_day,
)
from tests.support.browser import launch_chromium, needs_chromium, served
from tests.support.smtp import free_port

pytestmark = needs_chromium
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")


@dataclass
class Site:
    base: str
    services: Services
    world: World
    outbox: Path


@pytest.fixture
def site(sqlite_url: str, tmp_path: Path) -> Iterator[Site]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    outbox = tmp_path / "outbox"
    services = admin_services(sqlite_url, outbox, base_url=base)
    world = seed_world_refugee_day(services.engine)
    create_user(services.engine, "admin", PASSWORD, now=SENT_AT)
    try:
        with served(create_app(services), port):
            yield Site(base, services, world, outbox)
    finally:
        services.close()


@pytest.fixture
def page(site: Site) -> Iterator[sync_api.Page]:
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.set_default_timeout(10_000)
            yield page
        finally:
            browser.close()


def test_an_admin_logs_in_and_sees_a_city_respond(site: Site, page: sync_api.Page) -> None:
    expect = sync_api.expect
    blocked: list[str] = []
    page.on(
        "console",
        lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.goto(f"{site.base}/admin/campaigns/{CAMPAIGN}")
    expect(page).to_have_url(f"{site.base}/admin/login?next=%2Fadmin%2Fcampaigns%2F{CAMPAIGN}")

    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{site.base}/admin/campaigns/{CAMPAIGN}")
    expect(page.locator("#not-responded")).to_contain_text("São Paulo")
    expect(page.locator("#responded")).not_to_contain_text("São Paulo")

    add_response(site.world)  # Ana signs for São Paulo
    page.reload()
    responded = page.locator("#responded")
    expect(responded).to_contain_text("São Paulo")
    expect(responded).to_contain_text("Ana Souza, Mayor's adviser")
    expect(page.locator("#not-responded")).not_to_contain_text("São Paulo")
    expect(page.locator("#not-responded")).to_contain_text("Barcelona")

    timeline = page.locator("svg#timeline")
    expect(timeline).to_be_visible()
    expect(timeline.locator("polyline")).to_have_count(3)
    expect(page.locator("svg#regions g.bar")).to_have_count(4)
    assert timeline.bounding_box()["width"] > 200  # type: ignore[index]

    page.get_by_role("link", name="Campaigns").click()
    expect(page.get_by_role("link", name="World Refugee Day 2026")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{site.base}/admin/login")
    page.goto(f"{site.base}/admin")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert blocked == [], blocked


def test_the_sign_link_of_a_captured_email_opens_in_the_whole_window(
    site: Site, page: sync_api.Page
) -> None:
    expect = sync_api.expect
    delivery = site.world.delivery["ana@saopaulo.example"]
    sign = site.services.signer.url(
        LinkPurpose.SIGN, campaign_id=CAMPAIGN, delivery_id=delivery, cta_id="sign"
    )
    html = (
        '<html><head><meta charset="utf-8"></head><body>'
        f'<p>Olá Ana</p><a href="{sign}">Assinar a declaração</a>'
        "<script>document.body.dataset.ran = 'yes'</script></body></html>"
    )
    capture(
        site.outbox,
        email_for(
            to="ana@saopaulo.example",
            name="Ana Souza",
            subject="Assine #WithRefugees",
            delivery=delivery,
            html=html,
        ),
        delivery=delivery,
    )
    page.goto(f"{site.base}/mailbox")
    page.get_by_role("link", name="Assine #WithRefugees").click()
    frame = page.frame_locator("#message-html")
    expect(frame.get_by_text("Olá Ana")).to_be_visible()
    expect(frame.locator("body")).not_to_have_attribute("data-ran", "yes")  # no script runs
    frame.get_by_role("link", name="Assinar a declaração").click()
    expect(page).to_have_url(sign)  # the whole window, not the frame, went to the link
    assert page.main_frame.url == sign
