"""Reading contacts CSV files: what staff see when a file is good, odd or broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach.errors import AudienceError
from outreach.pipeline.contacts import read_contacts_csv

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "campaigns" / "audiences" / "metropolis-members.csv"
HEADER = "city,country,region,timezone,name,email,language,tags"


def write(tmp_path: Path, text: str, *, encoding: str = "utf-8", name: str = "c.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def found(path: Path) -> list[tuple[int | None, str, str]]:
    return [(p.line, p.field, p.message) for p in read_contacts_csv(path).problems]


def test_a_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\ufeff" + HEADER + "\r\nMontréal,CA,North America,America/Toronto,"
        "Geneviève Tremblay,international@montreal.example.org,fr,member|board\r\n",
    )
    result = read_contacts_csv(path)
    assert result.problems == []
    [imported] = result.contacts
    assert imported.line == 2
    assert imported.contact.organisation.name == "Montréal"
    assert imported.contact.name == "Geneviève Tremblay"
    assert imported.contact.tags == {"member", "board"}


def test_semicolons_separate_values_when_the_header_uses_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER.replace(",", ";") + "\n"
        "Madrid;ES;Europe;Europe/Madrid;Lucía Hernández, PhD;internacional@madrid.example.org;"
        "es;member\n",
    )
    result = read_contacts_csv(path)
    assert result.problems == []
    [imported] = result.contacts
    assert imported.contact.name == "Lucía Hernández, PhD"
    assert imported.contact.organisation.timezone == "Europe/Madrid"


def test_bad_rows_are_reported_by_line_and_skipped_while_good_rows_are_kept(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "\n".join(
            [
                HEADER,
                "Athens,GR,Europe,Europe/Athens,Eleni,intl@athens.example.org,en,member",  # 2
                "Berlin,DE,Europe,Europe/Berlin,Katrin,katrin@@berlin.example.org,de,member",  # 3
                "Cairo,EG,Africa,Africa/Cairo_City,Laila,intl@cairo.example.org,ar,member",  # 4
                'Dakar,SN,Africa,Africa/Dakar,"Mamadou',  # 5: a name over two lines
                'Diallo",intl@dakar.example.org,fr,member',  # 6
                "Lagos,NG,Africa,Africa/Lagos,Chinedu,intl@lagos.example.org,en,member",  # 7
                "Athens,GR,Europe,Europe/Athens,Nikos, intl@ATHENS.Example.org ,en,member",  # 8
                "Amman,JO,Middle East,Asia/Amman,Rania,intl@amman.example.org,,member",  # 9
                "Seoul,KR,Asia-Pacific,Asia/Seoul,Minji,intl@seoul.example.org,ko",  # 10
                "Quito,EC,Latin America,America/Guayaquil,Andrea,intl@quito.example.org,es,",  # 11
            ]
        )
        + "\n",
    )
    result = read_contacts_csv(path)
    problems = [(p.line, p.field) for p in result.problems]
    assert problems == [
        (3, "email"),
        (4, "timezone"),
        (5, "name"),
        (8, "email"),
        (9, "language"),
        (10, ""),
    ]
    messages = {p.line: str(p) for p in result.problems}
    assert messages[3].startswith(f"{path}:3: email: 'katrin@@berlin.example.org'")
    assert "unknown IANA timezone 'Africa/Cairo_City'" in messages[4]
    assert "line break" in messages[5]
    assert messages[8].endswith("duplicate of line 2")
    assert messages[9].endswith("language: is required")
    assert "has 7 values, the header has 8" in messages[10]
    kept = [(c.line, c.contact.email) for c in result.contacts]
    assert kept == [
        (2, "intl@athens.example.org"),
        (7, "intl@lagos.example.org"),
        (11, "intl@quito.example.org"),
    ]
    assert result.contacts[2].contact.tags == frozenset()


def test_a_carriage_return_inside_a_quoted_value_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER + "\r\n"
        'Lima,PE,Latin America,America/Lima,"Ana\rBcc: x@evil.example",a@lima.example.org,es,\r\n'
        "Rabat,MA,Africa,Africa/Casablanca,Yasmine,intl@rabat.example.org,fr,member\r\n",
    )
    result = read_contacts_csv(path)
    assert [(p.line, p.field) for p in result.problems] == [(2, "name")]
    assert [c.contact.organisation.name for c in result.contacts] == ["Rabat"]


def test_values_are_normalised(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER + "\n"
        " São Paulo , br ,Latin America, America/Sao_Paulo ,Ana Souza,"
        "Ana.Souza@SaoPaulo.Example.ORG,PT_br, Member | BOARD ||\n"
        "Bogotá,CO,Latin America,America/Bogota,Camila,relaciones@Bogotá.example.org,ES,member\n",
    )
    result = read_contacts_csv(path)
    assert result.problems == []
    sao_paulo, bogota = (c.contact for c in result.contacts)
    assert sao_paulo.organisation.name == "São Paulo"
    assert sao_paulo.organisation.country == "BR"
    assert sao_paulo.organisation.timezone == "America/Sao_Paulo"
    assert sao_paulo.email == "Ana.Souza@saopaulo.example.org"
    assert sao_paulo.language == "pt-BR"
    assert sao_paulo.tags == {"member", "board"}
    assert bogota.email == "relaciones@bogotá.example.org"
    assert bogota.language == "es"


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("country", "UK", "not an ISO 3166 two-letter country code (did you mean 'GB'?)"),
        ("country", "Spain", "not an ISO 3166 two-letter country code"),
        ("timezone", "europe/madrid", "(did you mean 'Europe/Madrid'?)"),
        ("timezone", "../../etc/passwd", "unknown IANA timezone"),
        ("language", "spanish", "not a language code such as en, fr or pt-BR"),
        ("email", "alcalde@localhost", "not a usable address"),
        ("email", "市长@tokyo.example.org", "not a usable address"),
        ("name", "Ana\x00Souza", "must not contain control characters (found U+0000)"),
        ("city", "x" * 201, "is longer than 200 characters"),
    ],
)
def test_unusable_values_are_explained(
    tmp_path: Path, column: str, value: str, expected: str
) -> None:
    row = {
        "city": "Madrid",
        "country": "ES",
        "region": "Europe",
        "timezone": "Europe/Madrid",
        "name": "Lucía",
        "email": "intl@madrid.example.org",
        "language": "es",
        "tags": "member",
    }
    row[column] = value
    path = write(tmp_path, HEADER + "\n" + ",".join(row.values()) + "\n")
    [problem] = read_contacts_csv(path).problems
    assert (problem.line, problem.field) == (2, column)
    assert expected in problem.message


def test_a_city_described_differently_on_two_rows_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER + "\n"
        "Tokyo,JP,Asia-Pacific,Asia/Tokyo,Haruka,intl@tokyo.example.org,ja,member\n"
        "Tokyo,JP,Asia,Asia/Tokyo,Yui,exchange@tokyo.example.org,en,member\n",
    )
    result = read_contacts_csv(path)
    [problem] = result.problems
    assert (problem.line, problem.field) == (3, "region")
    assert "'Asia-Pacific' on line 2" in problem.message
    assert len(result.contacts) == 1


def test_unknown_and_missing_columns_make_the_whole_file_unusable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "city,country,region,timezone,name,e-mail,language,tags,phone\n"
        "Athens,GR,Europe,Europe/Athens,Eleni,intl@athens.example.org,en,member,+30\n",
    )
    result = read_contacts_csv(path)
    assert result.contacts == []
    assert [(p.line, p.field) for p in result.problems] == [
        (1, "e-mail"),
        (1, "phone"),
        (1, "email"),
    ]
    assert "unknown column" in result.problems[0].message
    assert "missing column" in result.problems[2].message


def test_columns_may_come_in_any_order_and_any_case(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Email,Name,City,Country,Region,Timezone,Language,Tags\n"
        "intl@nairobi.example.org,Wanjiru,Nairobi,KE,Africa,Africa/Nairobi,en,member\n",
    )
    result = read_contacts_csv(path)
    assert result.problems == []
    assert result.contacts[0].contact.organisation.name == "Nairobi"


def test_an_empty_file_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    [problem] = read_contacts_csv(path).problems
    assert "no header row" in problem.message


def test_a_latin1_file_is_refused_with_a_hint_and_read_when_its_encoding_is_named(
    tmp_path: Path,
) -> None:
    text = (
        HEADER + "\n"
        "Athens,GR,Europe,Europe/Athens,Eleni,intl@athens.example.org,en,member\n"
        "São Paulo,BR,Latin America,America/Sao_Paulo,Ana,intl@saopaulo.example.org,pt,member\n"
    )
    path = write(tmp_path, text, encoding="latin-1", name="export.csv")
    with pytest.raises(AudienceError) as caught:
        read_contacts_csv(path)
    message = str(caught.value)
    position = text.encode("latin-1").index(b"\xe3")
    assert str(path) in message
    assert f"byte 0xe3 at position {position} (line 3)" in message
    assert "--encoding latin-1" in message

    result = read_contacts_csv(path, encoding="latin-1")
    assert result.problems == []
    assert [c.contact.organisation.name for c in result.contacts] == ["Athens", "São Paulo"]


def test_an_unknown_encoding_or_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "\n")
    with pytest.raises(AudienceError, match="unknown encoding 'klingon'"):
        read_contacts_csv(path, encoding="klingon")
    with pytest.raises(AudienceError, match="cannot read the contacts file"):
        read_contacts_csv(tmp_path / "nowhere.csv")


def test_the_shipped_member_list_is_clean_and_covers_every_continent() -> None:
    result = read_contacts_csv(SHIPPED)
    assert result.problems == []
    contacts = [c.contact for c in result.contacts]
    cities = {c.organisation.name for c in contacts}
    assert len({(c.organisation.name, c.organisation.country) for c in contacts}) >= 38
    assert {
        "Athens",
        "Barcelona",
        "Berlin",
        "Brussels",
        "Mexico City",
        "Montevideo",
        "São Paulo",
        "Amman",
        "Madrid",
        "Montréal",
        "Auckland",
        "Kraków",
        "Tokyo",
    } <= cities
    assert {c.organisation.region for c in contacts} >= {
        "Europe",
        "Africa",
        "Asia-Pacific",
        "Latin America",
        "North America",
        "Middle East",
    }
    assert all("member" in c.tags for c in contacts)
    assert any("board" in c.tags for c in contacts)
    assert any("東京" in c.name or "東京" in c.organisation.name for c in contacts)
    assert {c.language for c in contacts} >= {"en", "fr", "es"}
