"""Campaign files: the shipped campaign loads, and every kind of mistake staff make in a file is
reported as ``file:line: field: message``, all at once."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from outreach.errors import CampaignDefinitionError
from outreach.pipeline.campaigns import load_campaign, validate_file

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "campaigns"
TEMPLATES = frozenset({"newsletter", "reminder"})

# A small valid campaign; the tests below change one thing at a time. Line numbers matter.
BASE = """\
id: test-campaign
name: Test campaign
sender:
  name: Metropolis
  address: news@metropolis.example.org
default_language: en
messages:
  en:
    subject: Hello
  fr:
    subject: Bonjour
calls_to_action:
  - id: sign-statement
    kind: sign
    url: https://metropolis.example.org/sign
    label: {en: Sign, fr: Signer}
    statement:
      title: {en: Statement, fr: Déclaration}
      text: {en: We stand with refugees., fr: Nous sommes solidaires des réfugiés.}
"""


def write(tmp_path: Path, text: str, name: str = "campaign.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    return [str(p) for p in validate_file(path, templates=TEMPLATES)]


# --- files that load --------------------------------------------------------------------------


def test_the_shipped_campaign_loads_clean() -> None:
    path = REPO / "campaigns" / "world-refugee-day-2018.yaml"
    assert validate_file(path, templates=TEMPLATES) == []

    campaign = load_campaign(path, templates=TEMPLATES)

    assert campaign.id == "world-refugee-day-2018"
    assert campaign.languages == ["en", "es", "fr"]
    assert campaign.messages["fr"].subject.startswith("Journée mondiale des réfugiés")
    assert "São Paulo" in campaign.intro["en"]
    assert [cta.id for cta in campaign.calls_to_action] == [
        "sign-statement",
        "policy-transfer-platform",
    ]
    sign = campaign.cta("sign-statement")
    assert sign is not None and sign.statement is not None
    assert set(sign.statement.text) == {"en", "fr", "es"}
    assert "member" in campaign.audience.include.tags
    assert campaign.schedule is not None
    assert campaign.schedule.at == datetime(2027, 6, 20, 9, 0)
    assert campaign.schedule.timezone == "recipient"
    assert campaign.reminders[0].after == timedelta(days=7)
    assert campaign.reminders[0].template == "reminder"
    assert len(campaign.news) == 4
    for item in campaign.news:
        assert item.source is None
        assert set(item.title) == set(item.body) == {"en", "fr", "es"}
        assert all(body.strip() for body in item.body.values())
    assert "Neukölln" in campaign.news[1].title["en"]


def test_the_base_campaign_of_these_tests_is_valid(tmp_path: Path) -> None:
    assert problems(write(tmp_path, BASE)) == []


def test_news_sources_are_read_from_the_markdown_files(tmp_path: Path) -> None:
    news = tmp_path / "news"
    news.mkdir()
    (news / "amman.en.md").write_text(
        "---\ntitle: Amman\ndate: 2018-06-20\nlink: https://example.org/amman\n---\n\n"
        "Parks become **meeting places**.\n",
        encoding="utf-8",
    )
    (news / "amman.fr.md").write_text(
        "---\ntitle: Amman\nimage_alt: Un parc\n---\nDes parcs deviennent des lieux de rencontre.",
        encoding="utf-8",
    )
    path = write(tmp_path, BASE + "news:\n  - source: amman\n")

    item = load_campaign(path, templates=TEMPLATES).news[0]

    assert item.source is None
    assert item.body == {
        "en": "Parks become **meeting places**.",
        "fr": "Des parcs deviennent des lieux de rencontre.",
    }
    assert item.date is not None and item.date.isoformat() == "2018-06-20"
    assert str(item.link) == "https://example.org/amman"
    assert item.image_alt == {"fr": "Un parc"}


def test_yes_and_no_stay_language_codes(tmp_path: Path) -> None:
    # YAML 1.1 would read `no:` as false; Norwegian must stay a language.
    text = BASE.replace("  fr:\n    subject: Bonjour\n", "  no:\n    subject: Hei\n")
    text = text.replace("fr: Signer", "no: Signer").replace("fr: Déclaration", "no: Erklæring")
    text = text.replace("fr: Nous sommes solidaires des réfugiés.", "no: Vi står med dem.")
    campaign = load_campaign(write(tmp_path, text), templates=TEMPLATES)
    assert campaign.languages == ["en", "no"]


# --- one mistake at a time --------------------------------------------------------------------


def test_malformed_yaml_reports_its_line() -> None:
    path = FIXTURES / "malformed.yaml"
    assert problems(path) == [f"{path}:5: invalid YAML: mapping values are not allowed here"]


def test_a_duplicate_key_reports_the_second_occurrence(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("    subject: Hello\n", "    subject: Hello\n" * 2))
    assert problems(path) == [f"{path}:10: messages.en.subject: duplicate key (first on line 9)"]


def test_an_unknown_key_is_reported_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("      text:", "      txt:"))
    assert problems(path) == [
        f"{path}:17: calls_to_action[0].statement.text: required, but missing",
        f"{path}:19: calls_to_action[0].statement.txt: unknown key; did you mean 'text'?",
    ]


def test_an_unknown_template_lists_the_available_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path, BASE + "template: fancy\nreminders:\n  - after: 7d\n    subject: {en: R}\n"
    )
    assert problems(path) == [
        f"{path}:20: template: unknown template 'fancy'; available: newsletter, reminder",
    ]
    no_reminder_template = validate_file(path, templates={"fancy"})
    assert [str(p) for p in no_reminder_template] == [
        f"{path}:22: reminders[0].template: unknown template 'reminder'; available: fancy",
    ]


def test_a_call_to_action_without_url_says_what_is_missing(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("    url: https://metropolis.example.org/sign\n", ""))
    assert problems(path) == [
        f"{path}:13: calls_to_action[0].url: required, but missing: "
        "every call to action needs the url its button leads to"
    ]


def test_a_language_with_texts_needs_a_subject(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("fr: Signer}", "fr: Signer, de: Unterschreiben}"))
    assert problems(path) == [
        f"{path}:16: calls_to_action[0].label.de: language 'de' has texts but no subject in "
        "'messages'"
    ]


def test_the_default_language_needs_a_subject(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("  en:\n    subject: Hello\n", ""))
    assert problems(path) == [
        f"{path}:6: default_language: the default language 'en' has no subject in 'messages'"
    ]


def test_a_bad_sender_address_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("news@metropolis.example.org", "news-at-metropolis"))
    [problem] = problems(path)
    assert problem.startswith(
        f"{path}:5: sender.address: 'news-at-metropolis' is not a valid email address"
    )


def test_call_to_action_ids_are_unique_and_sign_needs_a_statement(tmp_path: Path) -> None:
    link = (
        "  - id: sign-statement\n    kind: sign\n    url: https://metropolis.example.org/2\n"
        "    label: {en: Again}\n"
    )
    path = write(tmp_path, BASE + link)
    assert problems(path) == [
        f"{path}:20: calls_to_action[1].id: duplicate call-to-action id (also calls_to_action[0])",
        f"{path}:20: calls_to_action[1].statement: a 'sign' call to action needs a statement "
        "(title and text to sign)",
    ]


def test_a_news_item_needs_a_title_in_the_default_language(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "news:\n  - title: {fr: Nouvelles}\n    body: {fr: Texte}\n")
    assert problems(path) == [
        f"{path}:21: news[0].title: a news item needs a title in the default language 'en'"
    ]


def test_a_non_utf8_file_reports_the_line_of_the_bad_byte() -> None:
    path = FIXTURES / "latin1.yaml"
    assert problems(path) == [f"{path}:2: not valid UTF-8 (byte 0xe9); save the file as UTF-8"]


NOT_A_MAPPING = "expected a mapping of campaign fields (id, name, sender, ...), found"


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("", None, "", f"{NOT_A_MAPPING} nothing"),
        ("- a\n- b\n", 1, "", f"{NOT_A_MAPPING} a list"),
        ("a: &x [1]\nb: *x\n", 2, "b", "anchors and aliases (&name, *name) are not supported"),
        ("a: 1\n---\nb: 2\n", 2, "", "invalid YAML: but found another document"),
        ("a: !!python/object/apply:os.system [echo hi]\n", 1, "", "invalid YAML: could not "),
    ],
)
def test_files_that_are_not_a_campaign_mapping(
    tmp_path: Path, text: str, line: int | None, field: str, message: str
) -> None:
    [problem] = validate_file(write(tmp_path, text), templates=TEMPLATES)
    assert (problem.line, problem.field) == (line, field)
    assert problem.message.startswith(message)


def test_a_missing_file_is_reported_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    assert problems(path) == [f"{path}: file not found"]


# --- many mistakes at once --------------------------------------------------------------------


def test_several_problems_are_all_reported_with_their_lines() -> None:
    path = FIXTURES / "several-problems.yaml"

    with pytest.raises(CampaignDefinitionError) as caught:
        load_campaign(path, templates=TEMPLATES)

    found = caught.value.problems
    assert [(p.line, p.field) for p in found] == [
        (5, "sender.address"),
        (11, "messages.en.preheader"),
        (14, "template"),
        (17, "intro.de"),
        (19, "calls_to_action[0].url"),
        (19, "calls_to_action[0].statement"),
        (22, "calls_to_action[1].id"),
        (24, "calls_to_action[1].url"),
        (26, "shedule"),
    ]
    assert {p.file for p in found} == {str(path)}
    messages = [str(p) for p in found]
    assert f"{path}:11: messages.en.preheader: duplicate key (first on line 10)" in messages
    assert f"{path}:17: intro.de: language 'de' has texts but no subject in 'messages'" in messages
    bad_url = "'not a url' is not a full URL such as https://example.org/page"
    assert f"{path}:24: calls_to_action[1].url: {bad_url}" in messages
    assert f"{path}:26: shedule: unknown key; did you mean 'schedule'?" in messages
    assert str(caught.value).splitlines() == messages


def test_news_file_problems_point_into_the_news_files() -> None:
    path = FIXTURES / "with-news.yaml"
    lisbon = FIXTURES / "news" / "lisbon.en.md"
    assert problems(path) == [
        f"{path}:12: news[1].source: news file {FIXTURES / 'news' / 'lisbon.fr.md'} not found",
        f"{lisbon}:3: news[1].image: 'lisbon.jpg' is not a full URL such as "
        "https://example.org/page",
        f"{lisbon}:4: caption: unknown key; expected title, date, image, image_alt, link",
    ]


def test_a_news_source_must_be_a_plain_name_and_stand_alone(tmp_path: Path) -> None:
    news = "news:\n  - source: ../../etc/passwd\n  - source: amman\n    title: {en: Amman}\n"
    path = write(tmp_path, BASE + news)
    missing = tmp_path / "news" / "amman.{}.md"
    assert problems(path) == [
        f"{path}:21: news[0].source: should name news files, such as 'amman' for news/amman.en.md",
        f"{path}:22: news[1].source: news file {str(missing).format('en')} not found",
        f"{path}:22: news[1].source: news file {str(missing).format('fr')} not found",
        f"{path}:23: news[1].title: not allowed beside 'source': news/amman.<lang>.md gives it",
    ]
