"""Rendering: every member gets the same inlined page as the slow path would make, in their
language, with their name and city and their own signed links, and nothing they could inject."""

from __future__ import annotations

import html
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from premailer import Premailer

from outreach.domain.campaign import Campaign
from outreach.domain.delivery import Recipient
from outreach.errors import RenderError
from outreach.pipeline.render import (
    Links,
    available_templates,
    compile_campaign,
    links_for,
    personalise,
    render_reference,
)
from outreach.pipeline.tokens import LinkPurpose, LinkSigner

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
CAMPAIGN_FILE = REPO / "campaigns" / "world-refugee-day-2018.yaml"
NOW = datetime(2018, 6, 20, 9, 0, tzinfo=UTC)


def make_campaign(**overrides: Any) -> Campaign:
    """A campaign like the World Refugee Day one, built in code."""
    data: dict[str, Any] = {
        "id": "world-refugee-day-2018",
        "name": "World Refugee Day 2018: Cities #WithRefugees",
        "sender": {
            "name": "Metropolis \u2013 World Association",
            "address": "news@metropolis.example",
        },
        "reply_to": "secretariat@metropolis.example",
        "default_language": "en",
        "messages": {
            "en": {"subject": "World Refugee Day: add your city", "preheader": "55 mayors ask"},
            "fr": {
                "subject": "Journée mondiale des réfugiés : votre ville",
                "preheader": "55 maires",
            },
            "es": {"subject": "Día Mundial del Refugiado: su ciudad", "preheader": "55 alcaldes"},
        },
        "intro": {
            "en": "Seven members have **already signed** the statement.",
            "fr": "Sept membres ont **déjà signé** la déclaration.",
            "es": "Siete miembros **ya han firmado** la declaración.",
        },
        "news": [
            {
                "title": {"en": "Amman: public spaces", "fr": "Amman : des espaces publics"},
                "date": "2018-06-20",
                "image": "https://media.metropolis.example/amman.jpg",
                "image_alt": {"en": "A park in Amman"},
                "link": "https://policytransfer.metropolis.example/amman",
                "body": {
                    "en": "Residents and refugees **meet** in parks.\n\n- squares\n- streets\n\n"
                    "Read [the paper](https://metropolis.example/paper).",
                },
            }
        ],
        "calls_to_action": [
            {
                "id": "sign-statement",
                "kind": "sign",
                "url": "https://metropolis.example/statement",
                "label": {"en": "Sign the statement", "fr": "Signer la déclaration"},
                "statement": {"title": {"en": "Statement of solidarity"}, "text": {"en": "We…"}},
            },
            {
                "id": "share",
                "kind": "link",
                "url": "https://policytransfer.metropolis.example/new",
                "label": {"en": "Share your experience", "es": "Compartir su experiencia"},
            },
        ],
        "reminders": [
            {
                "after": "7d",
                "subject": {"en": "Reminder: has your city joined?", "fr": "Rappel : et vous ?"},
                "preheader": {"en": "One click and one confirmation."},
            }
        ],
        "open_tracking": True,
    }
    data.update(overrides)
    return Campaign.model_validate(data)


def make_recipient(
    delivery_id: int = 1,
    *,
    name: str = "Ana Souza",
    organisation: str = "São Paulo",
    language: str = "en",
    email: str = "ana@saopaulo.example",
) -> Recipient:
    return Recipient(
        delivery_id=delivery_id,
        email=email,
        name=name,
        language=language,
        organisation=organisation,
        country="BR",
        region="Latin America",
        timezone="America/Sao_Paulo",
    )


def make_signer() -> LinkSigner:
    return LinkSigner(
        secret=secrets.token_bytes(32),
        base_url="https://outreach.example.org",
        lifetime=timedelta(days=365),
    )


HOSTILE = [
    ("Ana Souza", "São Paulo"),
    ("Jean-François Tremblay", "Montréal"),
    ("Zofia Wójcik", "Kraków"),
    ("山田 花子", "東京"),
    ("أحمد", "القاهرة"),
    ("<script>alert('x')</script> & \"Co\"", "<b>Bogotá</b>"),
    ("", ""),
]


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return make_campaign()


@pytest.fixture(scope="module")
def signer() -> LinkSigner:
    return make_signer()


def test_available_templates_lists_message_templates_only() -> None:
    assert available_templates(TEMPLATES) == {"newsletter", "reminder"}


def test_one_variant_per_language_with_its_own_subject(campaign: Campaign) -> None:
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    assert list(compiled.variants) == ["en", "es", "fr"]
    assert compiled.default == "en"
    assert compiled.variants["fr"].subject == "Journée mondiale des réfugiés : votre ville"
    assert compiled.variants["es"].preheader == "55 alcaldes"
    assert compiled.variant_for("fr-CA").language == "fr"
    assert compiled.variant_for("de").language == "en"
    assert compiled.variant_for(None).language == "en"


@pytest.mark.parametrize("language", ["en", "fr", "es"])
@pytest.mark.parametrize("reminder", [False, True])
def test_personalised_messages_match_the_direct_render(
    campaign: Campaign, signer: LinkSigner, language: str, reminder: bool
) -> None:
    """The precompiled path and Jinja2+premailer per recipient give the same page."""
    options: dict[str, Any] = {"templates_dir": TEMPLATES}
    if reminder:
        options |= {
            "reminder": campaign.reminders[0],
            "extra_context": {"signatories": ["Athens", "Barcelona"], "signatory_count": 9},
        }
    compiled = compile_campaign(campaign, **options)
    for index, (name, city) in enumerate(HOSTILE):
        recipient = make_recipient(index, name=name, organisation=city, language=language)
        links = links_for(signer, campaign, recipient, now=NOW)
        fast = personalise(compiled.variant_for(language), recipient, links)
        slow = render_reference(campaign, recipient=recipient, links=links, **options)
        assert html.unescape(fast.html) == html.unescape(slow.html)
        assert fast.text == slow.text


def test_values_are_escaped_in_html_and_plain_in_text(
    campaign: Campaign, signer: LinkSigner
) -> None:
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    recipient = make_recipient(name="<script>alert(1)</script>", organisation="Tom & Jerry's")
    message = personalise(
        compiled.variants["en"], recipient, links_for(signer, campaign, recipient)
    )
    assert "<script>alert(1)" not in message.html
    assert "Dear &lt;script&gt;alert(1)&lt;/script&gt;," in message.html
    assert "Tom &amp; Jerry&#x27;s" in message.html
    assert "Dear <script>alert(1)</script>," in message.text
    assert "contact of Tom & Jerry's." in message.text


def test_a_contact_without_a_name_is_greeted_politely(
    campaign: Campaign, signer: LinkSigner
) -> None:
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    for language, greeting in [("en", "Dear colleague,"), ("es", "Estimado/a colega:")]:
        recipient = make_recipient(name="  ", organisation="", language=language)
        text = personalise(
            compiled.variants[language], recipient, links_for(signer, campaign, recipient)
        ).text
        assert greeting in text


def test_each_recipient_gets_links_that_verify_for_their_purpose(
    campaign: Campaign, signer: LinkSigner
) -> None:
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    recipient = make_recipient(777)
    links = links_for(signer, campaign, recipient, now=NOW)
    message = personalise(compiled.variants["en"], recipient, links)
    expected = {
        "sign-statement": LinkPurpose.SIGN,
        "share": LinkPurpose.CLICK,
    }
    for cta_id, purpose in expected.items():
        url = links.cta[cta_id]
        assert f'href="{url}"' in message.html
        assert url in message.text
        claims = signer.verify(url.rsplit("/", 1)[1], purpose, now=NOW)
        assert (claims.delivery_id, claims.cta_id, claims.campaign_id) == (777, cta_id, campaign.id)
    for url, purpose in [(links.unsubscribe, LinkPurpose.UNSUBSCRIBE)]:
        assert f'href="{url}"' in message.html
        assert signer.verify(url.rsplit("/", 1)[1], purpose, now=NOW).delivery_id == 777
    assert links.open_pixel is not None
    assert f'src="{links.open_pixel}"' in message.html


def test_no_open_pixel_without_open_tracking(signer: LinkSigner) -> None:
    campaign = make_campaign(open_tracking=False)
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    recipient = make_recipient()
    links = links_for(signer, campaign, recipient)
    assert links.open_pixel is None
    assert "/o/" not in personalise(compiled.variants["en"], recipient, links).html


def test_css_is_inlined_once_per_language_and_never_per_recipient(
    campaign: Campaign, signer: LinkSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    transform = Premailer.transform

    def counting(self: Premailer, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return transform(self, *args, **kwargs)

    monkeypatch.setattr(Premailer, "transform", counting)
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    assert len(calls) == 3
    for index in range(50):
        recipient = make_recipient(index, language=["en", "fr", "es"][index % 3])
        personalise(
            compiled.variant_for(recipient.language),
            recipient,
            links_for(signer, campaign, recipient),
        )
    assert len(calls) == 3


def test_inlined_page_keeps_responsive_rules_and_stays_valid(
    campaign: Campaign, signer: LinkSigner
) -> None:
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    recipient = make_recipient()
    page = personalise(
        compiled.variants["en"], recipient, links_for(signer, campaign, recipient)
    ).html
    assert "@media only screen and (max-width: 620px)" in page
    assert "width: 100% !important" in page
    assert ".card-title {" not in page  # ordinary rules were inlined, not left in <style>
    assert re.search(r'class="button-cell"[^>]*style="[^"]*background-color:#c8102e', page)
    assert re.search(r'class="card-title"[^>]*style="[^"]*font-size:20px', page)
    assert "bgcolor" not in page
    assert 'height="auto"' not in page
    assert "{{" not in page and "{%" not in page
    assert 'class="preheader"' in page and "55 mayors ask" in page
    assert 'width="600"' in page


def test_markdown_news_is_sanitised(signer: LinkSigner) -> None:
    body = (
        "Hello <script>alert(1)</script> <img src=x onerror=alert(2)>\n\n"
        "[bad](javascript:alert(3)) and [good](https://metropolis.example/ok)"
    )
    campaign = make_campaign(news=[{"title": {"en": "T"}, "body": {"en": body}}])
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    recipient = make_recipient()
    message = personalise(
        compiled.variants["en"], recipient, links_for(signer, campaign, recipient)
    )
    assert "<script>" not in message.html and '<img src="x"' not in message.html
    assert 'href="javascript' not in message.html
    assert 'href="https://metropolis.example/ok"' in message.html
    assert "good <https://metropolis.example/ok>" in message.text


@pytest.mark.parametrize(
    ("language", "date", "read_more", "unsubscribe"),
    [
        ("en", "June 20, 2018", "Read more", "Unsubscribe"),
        ("fr", "20 juin 2018", "Lire la suite", "Se désabonner"),
        ("es", "20 de junio de 2018", "Leer más", "Darse de baja"),
    ],
)
def test_dates_and_labels_are_in_the_readers_language(
    campaign: Campaign,
    signer: LinkSigner,
    language: str,
    date: str,
    read_more: str,
    unsubscribe: str,
) -> None:
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    recipient = make_recipient(language=language)
    message = personalise(
        compiled.variants[language], recipient, links_for(signer, campaign, recipient)
    )
    for part in (html.unescape(message.html), message.text):
        assert date in part
        assert read_more in part
        assert unsubscribe in part


def test_a_language_without_ui_strings_falls_back_to_english(signer: LinkSigner) -> None:
    campaign = make_campaign(
        messages={"en": {"subject": "Hello"}, "de": {"subject": "Hallo"}},
    )
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    recipient = make_recipient(language="de")
    message = personalise(
        compiled.variants["de"], recipient, links_for(signer, campaign, recipient)
    )
    assert compiled.variants["de"].subject == "Hallo"
    assert "Read more" in message.text
    assert "20. Juni 2018" in message.text  # dates still follow the language


@pytest.mark.parametrize(
    ("language", "names", "count", "line"),
    [
        (
            "en",
            ["Athens", "Barcelona"],
            9,
            "Athens, Barcelona and 7 other cities have already signed.",
        ),
        (
            "en",
            ["Athens", "Barcelona"],
            3,
            "Athens, Barcelona and 1 other city have already signed.",
        ),
        ("en", ["Athens", "Barcelona"], 2, "Athens and Barcelona have already signed."),
        ("en", ["Athens"], 1, "Athens has already signed."),
        (
            "fr",
            ["Athènes", "Barcelone"],
            1002,
            "Athènes, Barcelone et 1\u202f000 autres villes ont déjà signé.",
        ),
        ("es", ["Atenas"], 2, "Atenas y otra ciudad ya han firmado."),
    ],
)
def test_the_reminder_names_the_cities_that_signed(
    campaign: Campaign, signer: LinkSigner, language: str, names: list[str], count: int, line: str
) -> None:
    compiled = compile_campaign(
        campaign,
        templates_dir=TEMPLATES,
        reminder=campaign.reminders[0],
        extra_context={"signatories": names, "signatory_count": count},
    )
    recipient = make_recipient(language=language)
    links = links_for(signer, campaign, recipient)
    message = personalise(compiled.variants[language], recipient, links)
    assert line in message.text
    assert line.replace("'", "&#39;") in html.unescape(message.html).replace("'", "&#39;")
    assert links.cta["sign-statement"] in message.text
    assert links.cta["share"] not in message.text  # a reminder asks for the signature only


def test_a_reminder_uses_its_own_subject_and_says_nothing_of_signatories_unless_told(
    campaign: Campaign, signer: LinkSigner
) -> None:
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES, reminder=campaign.reminders[0])
    assert compiled.variants["fr"].subject == "Rappel : et vous ?"
    assert compiled.variants["es"].subject == "Reminder: has your city joined?"
    recipient = make_recipient()
    message = personalise(
        compiled.variants["en"], recipient, links_for(signer, campaign, recipient)
    )
    assert "already signed" not in message.text
    assert "we have not yet received an answer from São Paulo" in message.text


def test_links_that_do_not_match_the_campaign_are_refused(campaign: Campaign) -> None:
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    links = Links(cta={}, unsubscribe="https://outreach.example.org/u/x", open_pixel=None)
    with pytest.raises(RenderError, match="do not match"):
        personalise(compiled.variants["en"], make_recipient(), links)


def _templates(tmp_path: Path, html_source: str, text_source: str = "x") -> Path:
    (tmp_path / "custom.html.j2").write_text(html_source)
    (tmp_path / "custom.txt.j2").write_text(text_source)
    return tmp_path


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("<p>\n{{ nothing_here }}</p>", r"custom\.html\.j2:2: .*nothing_here"),
        ("<p>\n\n{% if %}</p>", r"custom\.html\.j2:3: "),
        ("<p>{{ contact.name | lower }}</p>", "went through a filter"),
        ("<p>{{ 1 / 0 }}</p>", r"custom\.html\.j2:1: division by zero"),
    ],
)
def test_template_errors_name_the_file_and_line(
    campaign: Campaign, tmp_path: Path, source: str, message: str
) -> None:
    templates = _templates(tmp_path, source)
    with pytest.raises(RenderError, match=message):
        compile_campaign(campaign, templates_dir=templates, template="custom")


def test_an_unknown_template_lists_the_ones_there_are(campaign: Campaign) -> None:
    with pytest.raises(RenderError, match=r"'nope\.html\.j2' not found.*newsletter, reminder"):
        compile_campaign(campaign, templates_dir=TEMPLATES, template="nope")


def test_a_missing_templates_directory_is_explained(campaign: Campaign, tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="does not exist"):
        compile_campaign(campaign, templates_dir=tmp_path / "absent")


def test_extra_context_cannot_replace_what_the_renderer_provides(campaign: Campaign) -> None:
    with pytest.raises(RenderError, match="may not replace contact"):
        compile_campaign(campaign, templates_dir=TEMPLATES, extra_context={"contact": "x"})


def test_the_real_campaign_file_renders_in_every_language(signer: LinkSigner) -> None:
    if not CAMPAIGN_FILE.exists():
        pytest.skip("campaigns/world-refugee-day-2018.yaml is not there yet")
    from outreach.pipeline.campaigns import load_campaign

    campaign = load_campaign(CAMPAIGN_FILE, templates=available_templates(TEMPLATES))
    compiled = compile_campaign(campaign, templates_dir=TEMPLATES)
    assert set(compiled.variants) == set(campaign.messages)
    for language, variant in compiled.variants.items():
        recipient = make_recipient(language=language, organisation="Montréal")
        links = links_for(signer, campaign, recipient)
        message = personalise(variant, recipient, links)
        assert "Montréal" in message.text
        assert all(url in message.text for url in links.cta.values())
        assert len(campaign.news) == message.html.count('class="card-title"')
