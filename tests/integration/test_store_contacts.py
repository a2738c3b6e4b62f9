"""The contacts repository against real SQLite and PostgreSQL databases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from outreach.domain.contacts import Contact, Organisation
from outreach.pipeline.contacts import read_contacts_csv
from outreach.store.contacts import count_contacts, iter_contacts, upsert_contacts
from outreach.store.engine import open_engine
from outreach.store.tables import contacts as contacts_table
from outreach.store.tables import organisations as organisations_table

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "campaigns" / "audiences" / "metropolis-members.csv"
NOW = datetime(2018, 6, 19, 9, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = open_engine(database_url)
    yield engine
    engine.dispose()


def members() -> list[Contact]:
    result = read_contacts_csv(SHIPPED)
    assert result.problems == []
    return [imported.contact for imported in result.contacts]


def test_the_shipped_member_list_imports_and_reads_back_intact(engine: Engine) -> None:
    people = members()
    counts = upsert_contacts(engine, people, now=NOW)
    organisations = {(c.organisation.name, c.organisation.country) for c in people}
    assert (counts.created, counts.updated, counts.unchanged) == (len(people), 0, 0)
    assert counts.organisations_created == len(organisations) >= 38
    assert count_contacts(engine) == len(people)
    stored = list(iter_contacts(engine))
    assert {s.contact for s in stored} == set(people)
    by_email = {s.contact.email: s for s in stored}
    assert by_email["relaciones@bogotá.example.org"].contact.organisation.name == "Bogotá"
    assert any("東京" in s.contact.name for s in stored)
    two_in_barcelona = [s for s in stored if s.contact.organisation.name == "Barcelona"]
    assert len(two_in_barcelona) == 2
    assert len({s.organisation_id for s in two_in_barcelona}) == 1


def test_importing_twice_creates_no_duplicates_and_updates_what_changed(engine: Engine) -> None:
    people = members()
    upsert_contacts(engine, people, now=NOW)
    again = upsert_contacts(engine, people, now=NOW + timedelta(days=1))
    assert (again.created, again.updated, again.unchanged) == (0, 0, len(people))
    assert (again.organisations_created, again.organisations_updated) == (0, 0)

    marta = next(c for c in people if c.email == "international@barcelona.example.org")
    renamed = replace(marta, name="Marta Puig i Ferrer", tags=frozenset({"member"}))
    moved_city = replace(marta.organisation, timezone="Atlantic/Canary")
    later = NOW + timedelta(days=2)
    counts = upsert_contacts(
        engine,
        [replace(renamed, email="international@BARCELONA.example.org", organisation=moved_city)],
        now=later,
    )
    assert (counts.created, counts.updated, counts.unchanged) == (0, 1, 0)
    assert (counts.organisations_created, counts.organisations_updated) == (0, 1)
    assert count_contacts(engine) == len(people)
    stored = {s.contact.email: s.contact for s in iter_contacts(engine)}
    assert stored[marta.email].name == "Marta Puig i Ferrer"
    assert stored[marta.email].tags == {"member"}
    assert stored["refugees@barcelona.example.org"].organisation.timezone == "Atlantic/Canary"
    with engine.connect() as connection:
        row = connection.execute(
            select(contacts_table.c.created_at, contacts_table.c.updated_at).where(
                contacts_table.c.email == marta.email
            )
        ).one()
    assert (row.created_at, row.updated_at) == (NOW, later)


def test_a_contact_can_move_to_another_organisation(engine: Engine) -> None:
    berlin = Organisation("Berlin", "DE", "Europe", "Europe/Berlin")
    potsdam = Organisation("Potsdam", "DE", "Europe", "Europe/Berlin")
    katrin = Contact("katrin@example.org", "Katrin", "de", berlin, frozenset({"member"}))
    upsert_contacts(engine, [katrin], now=NOW)
    counts = upsert_contacts(engine, [replace(katrin, organisation=potsdam)], now=NOW)
    assert (counts.updated, counts.organisations_created) == (1, 1)
    [stored] = iter_contacts(engine)
    assert stored.contact.organisation == potsdam
    with engine.connect() as connection:
        names = set(connection.scalars(select(organisations_table.c.name)))
    assert names == {"Berlin", "Potsdam"}


def test_the_later_of_two_contacts_with_one_address_wins(engine: Engine) -> None:
    lagos = Organisation("Lagos", "NG", "Africa", "Africa/Lagos")
    first = Contact("intl@lagos.example.org", "Chinedu", "en", lagos)
    second = Contact("intl@LAGOS.example.org", "Chinedu Okafor", "en", lagos)
    counts = upsert_contacts(engine, [first, second], now=NOW)
    assert counts.created == 1
    [stored] = iter_contacts(engine)
    assert stored.contact.name == "Chinedu Okafor"
    assert stored.contact.email == "intl@lagos.example.org"


def test_thousands_of_contacts_import_and_stream_in_chunks(engine: Engine) -> None:
    cities = [
        Organisation(f"City {n}", "BR", "Latin America", "America/Sao_Paulo") for n in range(60)
    ]
    people = [
        Contact(f"person{n}@city{n % 60}.example.org", f"Person {n}", "pt", cities[n % 60])
        for n in range(6_000)
    ]
    assert upsert_contacts(engine, people, now=NOW).created == 6_000
    changed = [replace(p, language="en") if n % 3 == 0 else p for n, p in enumerate(people)]
    counts = upsert_contacts(engine, changed, now=NOW)
    assert (counts.created, counts.updated, counts.unchanged) == (0, 2_000, 4_000)
    assert count_contacts(engine) == 6_000

    streamed = list(iter_contacts(engine, chunk_size=700))
    assert [s.id for s in streamed] == sorted({s.id for s in streamed})
    assert {s.contact for s in streamed} == set(changed)


def test_an_empty_store_streams_nothing(engine: Engine) -> None:
    assert count_contacts(engine) == 0
    assert list(iter_contacts(engine)) == []
    assert upsert_contacts(engine, [], now=NOW).total == 0
