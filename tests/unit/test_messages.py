"""MIME messages: the skeleton-built bytes mean exactly what the stdlib EmailMessage would send,
List-Unsubscribe stays readable by mail providers, and no value can inject a header."""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from outreach.domain.campaign import Campaign
from outreach.domain.delivery import Recipient
from outreach.errors import RenderError
from outreach.pipeline.messages import (
    MessageSkeleton,
    ascii_address,
    build_with_email_message,
)
from outreach.pipeline.render import (
    CompiledCampaign,
    Personalised,
    compile_campaign,
    links_for,
    personalise,
)
from outreach.pipeline.tokens import LinkPurpose, LinkSigner
from tests.unit.test_render import TEMPLATES, make_campaign, make_recipient, make_signer

NOW = datetime(2018, 6, 20, 9, 0, tzinfo=UTC)
ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")

RECIPIENTS = [
    ("Ana Souza", "São Paulo", "ana@saopaulo.example"),
    ("Jean-François Tremblay", "Montréal", "jf@montreal.example"),
    ("Zofia Wójcik", "Kraków", "zofia@krakow.example"),
    ("東京都 国際部 山田花子 さま", "東京", "yamada@tokyo.example"),
    ("أحمد محمد عبد الرحمن", "القاهرة", "ahmed@cairo.example"),
    ("<script>alert('x')</script>", "<b>Bogotá</b>", "alcaldia@bogotá.example"),
    ('J. "Jim" Smith, Jr.', "Johannesburg", "jim@joburg.example"),
    ("=?utf-8?q?not_an_encoded_word?=", "Lyon", "lyon@lyon.example"),
    (
        "María José de la Santísima Trinidad Fernández de Córdoba y Montenegro",
        "Córdoba",
        "m@x.example",
    ),
    ("北京市人民政府外事办公室国际交流处处长", "北京", "beijing@beijing.example"),
    ("", "Berlin", "info@berlin.example"),
    ("Ana Souza", "Rio de Janeiro", "Ana.Souza@Rio.RJ.Example"),
    ("Plain Name", "Berlin\nNeukölln", "neukoelln@berlin.example"),
]

# Names the stdlib itself gets wrong: it decodes a look-alike encoded-word in a plain name, and
# its folder splits long non-ASCII names inside a word ("Ferná ndez"); its parser also reads
# the whitespace between two encoded-words as a space. outreach's To header is checked with an
# RFC 2047 decoder instead (``_display_name_as_sent``).
STDLIB_MANGLES = {
    "=?utf-8?q?not_an_encoded_word?=",
    "María José de la Santísima Trinidad Fernández de Córdoba y Montenegro",
    "北京市人民政府外事办公室国际交流处处长",
}


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return make_campaign()


@pytest.fixture(scope="module")
def signer() -> LinkSigner:
    return make_signer()


@pytest.fixture(scope="module")
def compiled(campaign: Campaign) -> CompiledCampaign:
    return compile_campaign(campaign, templates_dir=TEMPLATES)


def _both(
    campaign: Campaign,
    compiled: CompiledCampaign,
    signer: LinkSigner,
    recipient: Recipient,
    *,
    now: datetime = NOW,
    personalised: Personalised | None = None,
) -> tuple[bytes, bytes]:
    variant = compiled.variant_for(recipient.language)
    links = links_for(signer, campaign, recipient, now=now)
    message = personalised or personalise(variant, recipient, links)
    skeleton = MessageSkeleton.for_variant(variant=variant, campaign=campaign)
    fast = skeleton.build(recipient=recipient, personalised=message, links=links, now=now)
    reference = build_with_email_message(
        variant=variant,
        campaign=campaign,
        recipient=recipient,
        personalised=message,
        links=links,
        now=now,
    )
    return fast, reference


def _parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def _assert_same_meaning(fast: bytes, reference: bytes) -> EmailMessage:
    a, b = _parse(fast), _parse(reference)
    assert sorted(a.keys()) == sorted(b.keys())
    for name in a:
        if name == "To":  # compared below: the stdlib mangles some long names (see RECIPIENTS)
            assert a[name].addresses[0].addr_spec == b[name].addresses[0].addr_spec
        elif name != "Content-Type":
            assert str(a[name]) == str(b[name]), name
    assert a.get_content_type() == b.get_content_type() == "multipart/alternative"
    parts_a, parts_b = list(a.iter_parts()), list(b.iter_parts())
    assert [p.get_content_type() for p in parts_a] == ["text/plain", "text/html"]
    assert [p.get_content_type() for p in parts_b] == ["text/plain", "text/html"]
    for part_a, part_b in zip(parts_a, parts_b, strict=True):
        assert part_a.get_content_charset() == part_b.get_content_charset() == "utf-8"
        assert part_a.get_content() == part_b.get_content()
    assert not a.defects and not any(p.defects for p in parts_a)
    return a


def _assert_well_formed(data: bytes, *, quoted_printable_limit: bool = True) -> None:
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    assert b"\r" not in data.replace(b"\r\n", b"")
    lines = data.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    head, _, body = data.partition(b"\r\n\r\n")
    for word in ENCODED_WORD.findall(head):
        assert len(word) <= 75, word
    if quoted_printable_limit:  # RFC 2045; the stdlib's own encoder writes 77-character lines
        assert max(len(line) for line in body.split(b"\r\n")) <= 76


@pytest.mark.parametrize("language", ["en", "fr", "es"])
@pytest.mark.parametrize(("name", "city", "email"), RECIPIENTS)
def test_skeleton_and_email_message_build_the_same_message(
    campaign: Campaign,
    compiled: CompiledCampaign,
    signer: LinkSigner,
    language: str,
    name: str,
    city: str,
    email: str,
) -> None:
    recipient = make_recipient(42, name=name, organisation=city, language=language, email=email)
    fast, reference = _both(campaign, compiled, signer, recipient)
    message = _assert_same_meaning(fast, reference)
    _assert_well_formed(fast)
    _assert_well_formed(reference, quoted_printable_limit=False)
    assert _display_name_as_sent(fast) == name
    if name not in STDLIB_MANGLES:
        assert message["To"].addresses[0].display_name == name
        assert str(message["To"]) == str(_parse(reference)["To"])
    assert message["Subject"] == compiled.variants[language].subject
    text, page = (part.get_content().replace("\r\n", "\n") for part in message.iter_parts())
    assert city in text
    assert name in text and html.escape(name) in page


def _display_name_as_sent(data: bytes) -> str:
    """The To display name as an RFC 2047 decoder reads it (whitespace between adjacent
    encoded-words dropped; Python's address parser keeps it, so it cannot judge long names)."""
    match = re.search(rb"(?:^|\r\n)To: (.*?)\r\n(?! )", data, re.S)
    assert match
    raw = match.group(1).replace(b"\r\n ", b" ").decode("ascii")
    phrase = raw.rpartition(" <")[0] if raw.endswith(">") else ""
    decoded = str(make_header(decode_header(phrase)))
    if decoded.startswith('"') and decoded.endswith('"'):
        decoded = re.sub(r"\\(.)", r"\1", decoded[1:-1])
    return decoded


def test_both_builders_keep_list_unsubscribe_on_one_line(
    campaign: Campaign, compiled: CompiledCampaign, signer: LinkSigner
) -> None:
    recipient = make_recipient(10**12)
    links = links_for(signer, campaign, recipient, now=NOW)
    assert len(links.unsubscribe) > 76  # long enough that the stock policy would fold it
    for data in _both(campaign, compiled, signer, recipient):
        assert f"\r\nList-Unsubscribe: <{links.unsubscribe}>\r\n".encode() in data
        assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in data
        assert not re.search(rb"List-Unsubscribe: =\?", data)


def test_the_stock_policy_would_have_broken_list_unsubscribe(
    campaign: Campaign, signer: LinkSigner
) -> None:
    """Why OutreachPolicy exists: the stdlib folds a long List-Unsubscribe into encoded-words."""
    links = links_for(signer, campaign, make_recipient(10**12), now=NOW)
    message = EmailMessage(policy=policy.SMTP)
    message["List-Unsubscribe"] = f"<{links.unsubscribe}>"
    assert f"List-Unsubscribe: <{links.unsubscribe}>".encode() not in message.as_bytes()


def test_headers_identify_campaign_delivery_and_list(
    campaign: Campaign, compiled: CompiledCampaign, signer: LinkSigner
) -> None:
    fast, _ = _both(campaign, compiled, signer, make_recipient(31337))
    message = _parse(fast)
    assert message["X-Outreach-Campaign"] == "world-refugee-day-2018"
    assert message["X-Outreach-Delivery"] == "31337"
    assert message["Message-ID"] == "<world-refugee-day-2018.31337@metropolis.example>"
    assert message["List-Id"] == (
        "World Refugee Day 2018: Cities #WithRefugees <world-refugee-day-2018.metropolis.example>"
    )
    assert message["From"].addresses[0].display_name == "Metropolis \u2013 World Association"
    assert message["Reply-To"] == "secretariat@metropolis.example"
    assert message["MIME-Version"] == "1.0"
    assert message["Date"].datetime == NOW


def test_a_retry_carries_the_same_message_id(
    campaign: Campaign, compiled: CompiledCampaign, signer: LinkSigner
) -> None:
    recipient = make_recipient(99)
    first, _ = _both(campaign, compiled, signer, recipient, now=NOW)
    retry, _ = _both(campaign, compiled, signer, recipient, now=NOW + timedelta(hours=2))
    other, _ = _both(campaign, compiled, signer, make_recipient(100), now=NOW)
    assert _parse(first)["Message-ID"] == _parse(retry)["Message-ID"]
    assert _parse(first)["Message-ID"] != _parse(other)["Message-ID"]
    assert _parse(first)["Date"] != _parse(retry)["Date"]


def test_dates_keep_their_offset_and_naive_times_are_utc(
    campaign: Campaign, compiled: CompiledCampaign, signer: LinkSigner
) -> None:
    paris = datetime(2018, 6, 20, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    fast, _ = _both(campaign, compiled, signer, make_recipient(), now=paris)
    assert str(_parse(fast)["Date"]) == "Wed, 20 Jun 2018 11:00:00 +0200"
    naive, _ = _both(campaign, compiled, signer, make_recipient(), now=NOW.replace(tzinfo=None))
    assert _parse(naive)["Date"].datetime == NOW


def test_an_idn_domain_goes_out_as_idna(
    campaign: Campaign, compiled: CompiledCampaign, signer: LinkSigner
) -> None:
    recipient = make_recipient(name="Alcaldía", email="alcaldia@Bogotá.example")
    fast, _ = _both(campaign, compiled, signer, recipient)
    to_line = re.search(rb"(?:^|\r\n)To: (.*?)\r\n(?! )", fast, re.S)
    assert to_line and b"<alcaldia@xn--bogot-1qa.example>" in to_line.group(1)
    assert _parse(fast)["To"].addresses[0].domain == "xn--bogot-1qa.example"
    assert ascii_address("x@bogotá.example") == "x@xn--bogot-1qa.example"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Ana\r\nBcc: everyone@example.org"),
        ("name", "Ana\nSouza"),
        ("name", "Ana\rSouza"),
        ("name", "Ana\x00Souza"),
        ("email", "ana@example.org\r\nBcc: everyone@example.org"),
        ("email", "not-an-address"),
        ("email", "jöhn@example.org"),
    ],
)
def test_header_injection_and_bad_addresses_are_refused(
    campaign: Campaign, compiled: CompiledCampaign, signer: LinkSigner, field: str, value: str
) -> None:
    recipient = make_recipient(name=value) if field == "name" else make_recipient(email=value)
    variant = compiled.variants["en"]
    links = links_for(signer, campaign, recipient)
    message = personalise(variant, recipient, links)
    skeleton = MessageSkeleton.for_variant(variant=variant, campaign=campaign)
    with pytest.raises(RenderError):
        skeleton.build(recipient=recipient, personalised=message, links=links, now=NOW)
    with pytest.raises(RenderError):
        build_with_email_message(
            variant=variant,
            campaign=campaign,
            recipient=recipient,
            personalised=message,
            links=links,
            now=NOW,
        )


def test_a_subject_with_a_line_break_is_refused(
    campaign: Campaign, compiled: CompiledCampaign
) -> None:
    variant = dataclasses.replace(compiled.variants["en"], subject="Hello\r\nBcc: x@example.org")
    with pytest.raises(RenderError, match="subject"):
        MessageSkeleton.for_variant(variant=variant, campaign=campaign)


def test_an_unsubscribe_link_that_cannot_be_a_header_is_refused(
    campaign: Campaign, compiled: CompiledCampaign, signer: LinkSigner
) -> None:
    recipient = make_recipient()
    variant = compiled.variants["en"]
    links = links_for(signer, campaign, recipient)
    message = personalise(variant, recipient, links)
    skeleton = MessageSkeleton.for_variant(variant=variant, campaign=campaign)
    for bad in ("https://x.example/u/a>b", "https://x.example/u/a b", "javascript:alert(1)"):
        with pytest.raises(RenderError, match="List-Unsubscribe"):
            skeleton.build(
                recipient=recipient,
                personalised=message,
                links=dataclasses.replace(links, unsubscribe=bad),
                now=NOW,
            )


def test_every_link_in_the_message_verifies(
    campaign: Campaign, compiled: CompiledCampaign, signer: LinkSigner
) -> None:
    recipient = make_recipient(2024, language="fr")
    fast, _ = _both(campaign, compiled, signer, recipient)
    text, page = (part.get_content() for part in _parse(fast).iter_parts())
    purposes = {"c": LinkPurpose.CLICK, "s": LinkPurpose.SIGN, "u": LinkPurpose.UNSUBSCRIBE}
    purposes["o"] = LinkPurpose.OPEN
    found = re.findall(r"https://outreach\.example\.org/([csuo])/([A-Za-z0-9_-]+)", page)
    assert {kind for kind, _ in found} == {"c", "s", "u", "o"}
    for kind, token in found:
        claims = signer.verify(token, purposes[kind], now=NOW)
        assert (claims.campaign_id, claims.delivery_id) == (campaign.id, 2024)
    assert re.findall(r"https://outreach\.example\.org/[csu]/[A-Za-z0-9_-]+", text)


def test_bodies_not_made_by_personalise_are_encoded_whole(
    campaign: Campaign, compiled: CompiledCampaign, signer: LinkSigner
) -> None:
    """A hand-made or altered Personalised is encoded from its text, never from stale parts."""
    recipient = make_recipient()
    links = links_for(signer, campaign, recipient, now=NOW)
    original = personalise(compiled.variants["en"], recipient, links)
    for message in (
        Personalised(html="<p>Héllo = 1\tend \n</p>", text="Línea 1\r\nLínea 2 \t"),
        dataclasses.replace(original, html=original.html.replace("Dear", "Hello")),
        personalise(compiled.variants["fr"], recipient, links),  # another variant's values
    ):
        fast, reference = _both(campaign, compiled, signer, recipient, personalised=message)
        parsed = _assert_same_meaning(fast, reference)
        _assert_well_formed(fast)
        html_part = list(parsed.iter_parts())[1].get_content()
        sent = html_part.replace("\r\n", "\n")
        assert sent.rstrip("\n") == message.html.replace("\r\n", "\n").rstrip("\n")


def test_awkward_text_survives_quoted_printable(signer: LinkSigner) -> None:
    """Tabs, trailing spaces, '=' signs, emoji and very long lines, around and inside the
    recipient's values, decode to exactly what was rendered."""
    intro = (
        "a = b =\t\n\n"
        + "x" * 300
        + " \t \n\n"
        + "é" * 120
        + "\n\n=3D =?utf-8?q?x?= 🏙️ end with spaces   "
    )
    campaign = make_campaign(intro={"en": intro})
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    awkward = [
        ("= =3D ==", "City = Town "),
        ("x" * 90, "é" * 80),
        ("Tab\tName", "\tLeading tab"),
        ("🏙️ Urban", "Ürban 🏙️ "),
    ]
    for index, (name, city) in enumerate(awkward):
        recipient = make_recipient(index, name=name, organisation=city)
        fast, reference = _both(campaign, compiled, signer, recipient)
        _assert_same_meaning(fast, reference)
        _assert_well_formed(fast)
