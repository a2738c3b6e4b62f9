"""Audience rules: who a campaign reaches, and why a city is left out."""

from __future__ import annotations

from typing import Any

import pytest

from outreach.domain.campaign import Audience
from outreach.domain.contacts import Contact, Organisation
from outreach.pipeline.audience import included, select

BARCELONA = Organisation("Barcelona", "ES", "Europe", "Europe/Madrid")
CAIRO = Organisation("Cairo", "EG", "Africa", "Africa/Cairo")
SAO_PAULO = Organisation("São Paulo", "BR", "Latin America", "America/Sao_Paulo")
BERLIN = Organisation("Berlin", "DE", "Europe", "Europe/Berlin")

MARTA = Contact("marta@barcelona.example.org", "Marta", "es", BARCELONA, frozenset({"member"}))
LAILA = Contact("laila@cairo.example.org", "Laila", "ar", CAIRO, frozenset({"member", "board"}))
ANA = Contact("ana@saopaulo.example.org", "Ana", "pt-BR", SAO_PAULO, frozenset({"member"}))
TESTER = Contact("qa@berlin.example.org", "QA", "de", BERLIN, frozenset({"member", "test"}))


def audience(**rules: Any) -> Audience:
    return Audience.model_validate(rules)


def test_an_empty_audience_includes_everyone() -> None:
    assert [select(Audience(), c) for c in (MARTA, LAILA, ANA, TESTER)] == [None] * 4


@pytest.mark.parametrize(
    ("rules", "contact", "reason"),
    [
        ({"include": {"tags": ["board", "staff"]}}, LAILA, None),
        ({"include": {"tags": ["board", "staff"]}}, MARTA, "not tagged any of: board, staff"),
        ({"include": {"tags": ["BOARD"]}}, LAILA, None),
        ({"include": {"regions": ["Europe", "Africa"]}}, LAILA, None),
        ({"include": {"regions": ["europe"]}}, MARTA, None),
        (
            {"include": {"regions": ["Europe", "Africa"]}},
            ANA,
            "not in regions: Europe, Africa",
        ),
        ({"include": {"countries": ["es", "FR"]}}, MARTA, None),
        ({"include": {"countries": ["FR", "DE"]}}, MARTA, "country 'ES' not in: FR, DE"),
        ({"include": {"languages": ["en", "fr"]}}, TESTER, "language 'de' not in: en, fr"),
        ({"include": {"languages": ["pt"]}}, ANA, None),
        ({"include": {"languages": ["pt-BR"]}}, ANA, None),
        ({"exclude": {"tags": ["test"]}}, TESTER, "excluded: tag 'test'"),
        ({"exclude": {"tags": ["test"]}}, MARTA, None),
        ({"exclude": {"regions": ["africa"]}}, LAILA, "excluded: region 'Africa'"),
        ({"exclude": {"countries": ["br"]}}, ANA, "excluded: country 'BR'"),
        ({"exclude": {"languages": ["pt"]}}, ANA, "excluded: language 'pt-BR'"),
        ({"exclude": {"languages": ["pt"]}}, MARTA, None),
    ],
)
def test_include_and_exclude_rules(
    rules: dict[str, Any], contact: Contact, reason: str | None
) -> None:
    assert select(audience(**rules), contact) == reason


def test_every_non_empty_include_list_must_match() -> None:
    rules = audience(include={"tags": ["member"], "regions": ["Europe"], "languages": ["es"]})
    assert select(rules, MARTA) is None
    assert select(rules, TESTER) == "language 'de' not in: es"
    assert select(rules, LAILA) == "not in regions: Europe"


def test_an_exclusion_wins_over_an_inclusion() -> None:
    rules = audience(include={"regions": ["Europe"]}, exclude={"tags": ["test"]})
    assert select(rules, MARTA) is None
    assert select(rules, TESTER) == "excluded: tag 'test'"


def test_included_streams_the_contacts_in_the_audience_in_order() -> None:
    rules = audience(include={"tags": ["member"]}, exclude={"regions": ["Africa"]})
    rows = [(1, MARTA), (2, LAILA), (3, ANA), (4, TESTER)]
    assert [row_id for row_id, _ in included(rules, rows, contact=lambda row: row[1])] == [1, 3, 4]
