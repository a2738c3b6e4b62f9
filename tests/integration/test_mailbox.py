"""The mailbox viewer: messages written by the real file mailer, listed per recipient and shown
the way the recipient sees them, through the real app over a real SQLite file."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from outreach.bootstrap import Services
from outreach.mailers.file import FileMailer
from outreach.ports import OutgoingMessage
from outreach.web.app import create_app
from outreach.web.mailbox import with_top_target
from tests.integration.test_web_admin import (
    CAMPAIGN,
    HOSTILE_CITY,
    HOSTILE_PERSON,
    World,
    admin_services,
    seed_world_refugee_day,
)

SIGN_LINK = "http://testserver/s/SIGNED-TOKEN"
HERE = ("127.0.0.1", 50000)  # the demo's browser, on the machine that serves the app


def email_for(
    *, to: str, name: str, subject: str, delivery: int | None, html: str | None = None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Metropolis <news@metropolis.example>"
    message["To"] = f"{name} <{to}>" if name.isascii() else to
    message["Subject"] = subject
    message["Date"] = "Sat, 20 Jun 2026 08:00:00 +0000"
    message["X-Outreach-Campaign"] = CAMPAIGN
    if delivery is not None:
        message["X-Outreach-Delivery"] = str(delivery)
    message.set_content(f"Dear {name},\nSign here: {SIGN_LINK}\n")
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


def capture(outbox: Path, message: EmailMessage, *, delivery: int) -> str:
    mailer = FileMailer(outbox)
    outgoing = OutgoingMessage(
        delivery_id=delivery,
        campaign_id=CAMPAIGN,
        envelope_from="news@metropolis.example",
        recipient=message["To"].addresses[0].addr_spec,
        data=message.as_bytes(),
    )
    with ThreadPoolExecutor(1) as worker:  # its own event loop, even beside Playwright's
        return Path(worker.submit(asyncio.run, mailer.send(outgoing)).result()).name


HTML = (
    '<!doctype html><html lang="pt"><head><meta charset="utf-8"><title>Olá</title></head>'
    '<body><p style="color:#123456">Olá Ana</p><a href="' + SIGN_LINK + '">Assinar</a>'
    "<script>document.title='ran'</script></body></html>"
)


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def services(sqlite_url: str, outbox: Path) -> Iterator[Services]:
    svc = admin_services(sqlite_url, outbox)
    yield svc
    svc.close()


@pytest.fixture
def world(services: Services) -> World:
    return seed_world_refugee_day(services.engine)


@pytest.fixture
def client(services: Services, world: World) -> Iterator[TestClient]:
    with TestClient(create_app(services), follow_redirects=False, client=HERE) as client:
        yield client


@pytest.fixture
def ana(outbox: Path, world: World) -> str:
    delivery = world.delivery["ana@saopaulo.example"]
    message = email_for(
        to="ana@saopaulo.example",
        name="Ana Souza",
        subject="Assine a declaração #WithRefugees",
        delivery=delivery,
        html=HTML,
    )
    return capture(outbox, message, delivery=delivery)


def test_the_mailbox_lists_messages_per_recipient_with_city_and_language(
    client: TestClient, outbox: Path, world: World, ana: str
) -> None:
    marc = world.delivery["marc@barcelona.example"]
    capture(
        outbox,
        email_for(to="marc@barcelona.example", name="Marc Puig", subject="Firme", delivery=marc),
        delivery=marc,
    )
    capture(  # a message whose delivery is unknown here: the address still finds the city
        outbox,
        email_for(to="marc@barcelona.example", name="Marc Puig", subject="Preview", delivery=None),
        delivery=999,
    )
    page = client.get("/mailbox")
    assert page.status_code == 200
    inboxes = re.findall(r'<section class="inbox">(.*?)</section>', page.text, re.S)
    assert len(inboxes) == 2
    barcelona, sao_paulo = inboxes  # by city
    assert (
        "Barcelona" in barcelona
        and "ES · es" in barcelona
        and "marc@barcelona.example" in barcelona
    )
    assert (
        barcelona.count('class="message"') == 2 and "Firme" in barcelona and "Preview" in barcelona
    )
    assert "São Paulo" in sao_paulo and "BR · pt" in sao_paulo
    assert f'href="/mailbox/{ana}"' in sao_paulo
    assert "Assine a declaração #WithRefugees" in sao_paulo

    only = client.get("/mailbox", params={"q": "são"}).text
    assert "São Paulo" in only and "marc@barcelona.example" not in only


def test_a_message_shows_as_the_recipient_sees_it_with_working_links(
    client: TestClient, ana: str
) -> None:
    page = client.get(f"/mailbox/{ana}")
    assert page.status_code == 200
    frame = re.search(r"<iframe[^>]*>", page.text)
    assert frame, "no frame for the HTML part"
    sandbox = re.search(r'sandbox="([^"]*)"', frame.group(0))
    assert sandbox is not None
    allowed = set(sandbox.group(1).split())
    assert "allow-top-navigation-by-user-activation" in allowed
    assert not allowed & {"allow-scripts", "allow-same-origin", "allow-forms"}
    assert f'src="/mailbox/{ana}/html"' in frame.group(0)
    assert "frame-src 'self'" in page.headers["content-security-policy"]

    html = client.get(f"/mailbox/{ana}/html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    csp = html.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "sandbox" in csp
    assert "allow-scripts" not in csp
    assert '<head><base target="_top"><meta charset="utf-8">' in html.text
    assert f'href="{SIGN_LINK}"' in html.text and "Olá Ana" in html.text

    text = client.get(f"/mailbox/{ana}", params={"view": "text"}).text
    assert re.search(r'<pre id="message-text">Dear Ana Souza,\s+Sign here: ' + SIGN_LINK, text)
    headers = client.get(f"/mailbox/{ana}", params={"view": "headers"}).text
    assert "X-Outreach-Delivery" in headers and "X-Outreach-Campaign" in headers
    raw = client.get(f"/mailbox/{ana}/raw")
    assert raw.headers["content-type"].startswith("text/plain")
    assert "Subject:" in raw.text and "<iframe" not in raw.text


def test_only_captured_messages_can_be_opened(
    client: TestClient, outbox: Path, tmp_path: Path, ana: str
) -> None:
    secret = tmp_path / "secret.eml"
    secret.write_text("Subject: not in the outbox\n\nsecret body\n")
    (outbox / "link.eml").symlink_to(secret)
    (outbox / "notes.txt").write_text("not a message")
    for name in ("..%2Fsecret.eml", "link.eml", "notes.txt", ".hidden.eml", "nope.eml"):
        for suffix in ("", "/html", "/raw"):
            response = client.get(f"/mailbox/{name}{suffix}")
            assert response.status_code == 404, (name, suffix)
            assert "secret body" not in response.text
    listing = client.get("/mailbox").text
    assert "link.eml" not in listing and "not in the outbox" not in listing
    assert client.get(f"/mailbox/{ana}/raw").status_code == 200


def test_hostile_subjects_and_names_are_escaped(
    client: TestClient, outbox: Path, world: World
) -> None:
    delivery = world.delivery["evil@hostile.example"]
    name = capture(
        outbox,
        email_for(
            to="evil@hostile.example",
            name="Evil",
            subject='<img src=x onerror=alert("subject")>',
            delivery=delivery,
            html="<p>hi</p>",
        ),
        delivery=delivery,
    )
    for html in (client.get("/mailbox").text, client.get(f"/mailbox/{name}").text):
        assert "<img src=x" not in html and "<script>alert" not in html
        assert "&lt;img src=x onerror=alert(&#34;subject&#34;)&gt;" in html
    listing = client.get("/mailbox").text
    assert "&lt;script&gt;alert(&#34;city&#34;)&lt;/script&gt;" in listing
    assert HOSTILE_CITY not in listing and HOSTILE_PERSON not in listing


def test_a_message_without_html_or_with_an_unknown_charset_still_shows(
    client: TestClient, outbox: Path
) -> None:
    outbox.mkdir(parents=True, exist_ok=True)
    (outbox / "1-odd@example.org.eml").write_bytes(
        b"To: odd@example.org\r\nSubject: =?x-unknown?q?caf=E9?=\r\n"
        b"Content-Type: text/plain; charset=x-unknown\r\n\r\ncaf\xe9\r\n"
    )
    listing = client.get("/mailbox")
    assert listing.status_code == 200 and "odd@example.org" in listing.text
    page = client.get("/mailbox/1-odd@example.org.eml")
    assert page.status_code == 200 and "This message has no HTML part" in page.text
    assert client.get("/mailbox/1-odd@example.org.eml/html").status_code == 404
    text = client.get("/mailbox/1-odd@example.org.eml", params={"view": "text"})
    assert text.status_code == 200 and "caf" in text.text


def test_an_empty_outbox_says_how_to_fill_it(client: TestClient) -> None:
    page = client.get("/mailbox")
    assert page.status_code == 200 and "No message captured yet" in page.text


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("smtp://staff:hunter2-secret@mail.example.org:587", "smtp://"),
        ("not a dsn", "OUTREACH_MAILER"),
    ],
)
def test_the_mailbox_explains_itself_when_the_mailer_writes_no_files(
    sqlite_url: str, tmp_path: Path, dsn: str, expected: str
) -> None:
    svc = admin_services(sqlite_url, tmp_path)
    svc.settings.mailer = dsn
    try:
        with TestClient(create_app(svc), client=HERE) as client:
            page = client.get("/mailbox")
            assert page.status_code == 200 and expected in page.text
            assert "hunter2" not in page.text and "staff" not in page.text
            assert client.get("/mailbox/1-a@b.eml").status_code == 404
    finally:
        svc.close()


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (b"<html><head><title>t</title></head>", b'<html><head><base target="_top"><title>'),
        (b'<HTML><HEAD lang="x">', b'<HTML><HEAD lang="x"><base target="_top">'),
        (
            b"<html><body><header>h</header>",
            b'<html><head><base target="_top"></head><body><header>',
        ),
        (b"<p>bare</p>", b'<base target="_top"><p>bare</p>'),
    ],
)
def test_links_of_the_shown_message_open_in_the_whole_window(html: bytes, expected: bytes) -> None:
    assert with_top_target(html).startswith(expected)


def test_the_mailbox_is_closed_to_other_machines(services: Services, ana: str) -> None:
    elsewhere = ("203.0.113.7", 50000)
    with TestClient(create_app(services), follow_redirects=False, client=elsewhere) as client:
        for path in ("/mailbox", f"/mailbox/{ana}", f"/mailbox/{ana}/html", f"/mailbox/{ana}/raw"):
            refused = client.get(path)
            assert refused.status_code == 403, path
            assert "Ana" not in refused.text and "/s/" not in refused.text
    with TestClient(create_app(services), follow_redirects=False, client=HERE) as client:
        assert "Assine" in client.get(f"/mailbox/{ana}").text
