"""The README's main job, as a newcomer does it: ``outreach demo`` sends World Refugee Day into the
file outbox; in a real browser they open São Paulo's email in the mailbox viewer, press Sign,
sign, then log in as the demo admin and find São Paulo among the cities that responded."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from outreach.bootstrap import Services
from outreach.demo import DemoInfo, prepare_demo
from outreach.settings import Settings
from outreach.web.app import create_app
from tests.conftest import REPO
from tests.support.browser import launch_chromium, needs_chromium, served
from tests.support.smtp import free_port

pytestmark = needs_chromium
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")


@dataclass
class Demo:
    base: str
    info: DemoInfo
    folder: Path


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    folder = tmp_path / "demo"
    settings = Settings(
        database_url=f"sqlite:///{folder / 'outreach.db'}",
        mailer=f"file://{folder / 'outbox'}",
        base_url=base,
        templates_dir=str(REPO / "templates"),
    )
    services = Services(settings=settings)
    cwd = os.getcwd()
    os.chdir(REPO)  # the demo reads the shipped campaign and contacts, as from a clone
    try:
        info = prepare_demo(services, folder=folder)
    finally:
        os.chdir(cwd)
    try:
        with served(create_app(services), port):
            yield Demo(base, info, folder)
    finally:
        services.close()


def test_a_newcomer_signs_for_sao_paulo_and_sees_the_report_change(demo: Demo) -> None:
    expect = sync_api.expect
    assert demo.info.messages == demo.info.contacts == len(list((demo.folder / "outbox").iterdir()))
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{demo.base}/mailbox?q=S%C3%A3o+Paulo")
        page.locator("table a").first.click()
        frame = page.frame_locator("iframe").first
        expect(frame.get_by_text("Dear Ana Beatriz Souza")).to_be_visible()
        frame.get_by_role("link", name=re.compile("Sign the Cities")).click()
        expect(page.get_by_text("Sign on behalf of São Paulo")).to_be_visible()
        expect(page.locator("#name")).to_have_value("Ana Beatriz Souza")
        page.fill("#title", "Secretária de Relações Internacionais")
        page.get_by_role("button", name="Sign").click()
        expect(page.get_by_text("São Paulo").first).to_be_visible()
        assert "/s/" in page.url

        page.goto(f"{demo.base}/campaigns/{demo.info.campaign_id}/signatories")
        expect(page.get_by_text("São Paulo")).to_be_visible()

        page.goto(f"{demo.base}/admin/campaigns/{demo.info.campaign_id}")
        page.fill("input[name=username]", demo.info.username)
        page.fill("input[name=password]", demo.info.password)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#responded h2")).to_have_text("Responded (1)")
        expect(page.locator("#responded")).to_contain_text("São Paulo")
        expect(page.locator("#responded")).to_contain_text("Secretária de Relações Internacionais")
        expect(page.locator("#not-responded")).not_to_contain_text("São Paulo")
        expect(page.locator("#not-responded")).to_contain_text("Barcelona")
        assert page.locator("svg").count() >= 2  # timeline and response-rate charts
        assert not errors
        browser.close()
