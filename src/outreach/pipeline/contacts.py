"""Reading a contacts CSV file into contacts, with every problem reported by line.

The file staff import has a header row naming these columns, in any order::

    city,country,region,timezone,name,email,language,tags

``tags`` is optional per row and separated by ``|`` (``member|board``); every other value is
required. Separators may be ``,`` or ``;`` (spreadsheets in many locales write ``;``), and the
file is UTF-8 with or without a byte-order mark unless another encoding is named. A row with a
problem is reported with the physical line it starts on and skipped; the other rows are kept.
This module only reads: storing contacts is the store's job.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email

from outreach.domain.campaign import LANGUAGE_CODE
from outreach.domain.contacts import Contact, Organisation, normalise_email
from outreach.errors import AudienceError, Problem

if TYPE_CHECKING:
    from _csv import Reader

COLUMNS = ("city", "country", "region", "timezone", "name", "email", "language", "tags")
OPTIONAL = frozenset({"tags"})
TAG_SEPARATOR = "|"
# Column widths of the store: a longer value is a problem at import, not a database error.
MAX_LENGTH = {"city": 200, "region": 100, "name": 200, "email": 320}

# ISO 3166-1 alpha-2, plus XK (Kosovo), the user-assigned code in common use.
_ISO_3166 = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN
    BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL
    GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM
    JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME
    MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP
    NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD
    SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW
"""
COUNTRIES = frozenset(_ISO_3166.split())
COUNTRY_HINTS = {"UK": "GB", "EL": "GR"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class ImportedContact:
    """A contact read from the file, and the line its row starts on."""

    contact: Contact
    line: int


@dataclass(slots=True)
class ContactsFile:
    """What a contacts file yielded: the usable contacts and every problem found."""

    contacts: list[ImportedContact] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class _RowProblem(ValueError):
    """One value of a row is not usable; carries the column it belongs to."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def read_contacts_csv(path: Path, *, encoding: str | None = None) -> ContactsFile:
    """Every contact of ``path`` that can be used, and a problem for each row that cannot.

    Raises ``AudienceError`` when the file cannot be read or decoded at all.
    """
    text = _read_text(path, encoding=encoding)
    result = ContactsFile()
    header_line = re.split(r"[\r\n]", text, maxsplit=1)[0]
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    name = str(path)
    try:
        header = next(reader, None)
    except csv.Error as err:
        result.problems.append(Problem(name, 1, "", f"cannot read the header row: {err}"))
        return result
    if header is None or not any(cell.strip() for cell in header):
        expected = delimiter.join(COLUMNS)
        result.problems.append(Problem(name, 1, "", f"no header row; expected: {expected}"))
        return result
    columns = [cell.strip().lower() for cell in header]
    result.problems.extend(_header_problems(name, columns))
    if result.problems:
        return result
    _read_rows(name, reader, columns, result)
    return result


def _read_text(path: Path, *, encoding: str | None) -> str:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise AudienceError(f"{path}: cannot read the contacts file: {err.strerror}") from err
    if encoding is None:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            raise AudienceError(
                f"{path}: not valid UTF-8: byte 0x{data[err.start]:02x} at position {err.start}"
                f" (line {line}) cannot be decoded. If the file was saved in another encoding,"
                " name it, for example --encoding latin-1"
            ) from err
    try:
        text = data.decode(encoding)
    except LookupError as err:
        raise AudienceError(f"{path}: unknown encoding {encoding!r}") from err
    except UnicodeDecodeError as err:
        raise AudienceError(
            f"{path}: not valid {encoding}: byte 0x{data[err.start]:02x} at position {err.start}"
            " cannot be decoded"
        ) from err
    return text.removeprefix("\ufeff")


def _header_problems(name: str, columns: list[str]) -> list[Problem]:
    problems: list[Problem] = []
    expected = ", ".join(COLUMNS)
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            problems.append(Problem(name, 1, column, "column given twice"))
        elif column not in COLUMNS:
            shown = column or "(empty)"
            problems.append(Problem(name, 1, shown, f"unknown column; expected: {expected}"))
        seen.add(column)
    for column in COLUMNS:
        if column not in seen:
            problems.append(Problem(name, 1, column, f"missing column; expected: {expected}"))
    return problems


def _read_rows(name: str, reader: Reader, columns: list[str], result: ContactsFile) -> None:
    first_line_of: dict[str, int] = {}
    organisations: dict[tuple[str, str], tuple[Organisation, int]] = {}
    line_end = reader.line_num
    while True:
        start = line_end + 1
        try:
            cells = next(reader, None)
        except csv.Error as err:
            result.problems.append(Problem(name, start, "", f"cannot read this row: {err}"))
            return
        line_end = reader.line_num
        if cells is None:
            return
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(columns):
            message = f"has {len(cells)} values, the header has {len(columns)}"
            result.problems.append(Problem(name, start, "", message))
            continue
        contact, problems = _parse_row(dict(zip(columns, cells, strict=True)))
        if contact is None:
            result.problems.extend(Problem(name, start, p.column, p.message) for p in problems)
            continue
        if contact.email in first_line_of:
            message = f"duplicate of line {first_line_of[contact.email]}"
            result.problems.append(Problem(name, start, "email", message))
            continue
        clash = _organisation_clash(contact.organisation, organisations)
        if clash:
            result.problems.append(Problem(name, start, clash[0], clash[1]))
            continue
        key = (contact.organisation.name, contact.organisation.country)
        organisations.setdefault(key, (contact.organisation, start))
        first_line_of[contact.email] = start
        result.contacts.append(ImportedContact(contact=contact, line=start))


def _parse_row(row: dict[str, str]) -> tuple[Contact | None, list[_RowProblem]]:
    """The row as a contact, or every problem of the row."""
    value: dict[str, str] = {}
    problems: list[_RowProblem] = []
    for column in COLUMNS:
        try:
            value[column] = _value(column, row[column])
        except _RowProblem as problem:
            problems.append(problem)
    if problems:
        return None, problems
    organisation = Organisation(
        name=value["city"],
        country=value["country"],
        region=value["region"],
        timezone=value["timezone"],
    )
    contact = Contact(
        email=value["email"],
        name=value["name"],
        language=value["language"],
        organisation=organisation,
        tags=frozenset(t.strip().lower() for t in value["tags"].split(TAG_SEPARATOR) if t.strip()),
    )
    return contact, []


def _value(column: str, raw: str) -> str:
    """The checked, normalised value of one cell."""
    if "\r" in raw or "\n" in raw:
        raise _RowProblem(column, "must not contain a line break")
    control = _CONTROL.search(raw.strip())
    if control:
        found = f"U+{ord(control.group()):04X}"
        raise _RowProblem(column, f"must not contain control characters (found {found})")
    value = raw.strip()
    if not value:
        if column in OPTIONAL:
            return value
        raise _RowProblem(column, "is required")
    limit = MAX_LENGTH.get(column)
    if limit is not None and len(value) > limit:
        raise _RowProblem(column, f"is longer than {limit} characters")
    convert = _CONVERTERS.get(column)
    return convert(value) if convert else value


def _email(value: str) -> str:
    try:
        checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as err:
        raise _RowProblem("email", f"{value!r} is not a usable address: {err}") from err
    return normalise_email(checked.normalized)


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as err:
        hint = _timezones_by_lower_name().get(value.lower())
        suggestion = f" (did you mean {hint!r}?)" if hint else ""
        message = f"unknown IANA timezone {value!r}{suggestion}; use names like Europe/Madrid"
        raise _RowProblem("timezone", message) from err
    return value


@cache
def _timezones_by_lower_name() -> dict[str, str]:
    return {zone.lower(): zone for zone in available_timezones()}


def _country(value: str) -> str:
    code = value.upper()
    if code not in COUNTRIES:
        hint = COUNTRY_HINTS.get(code)
        suggestion = f" (did you mean {hint!r}?)" if hint else ""
        message = f"{value!r} is not an ISO 3166 two-letter country code{suggestion}"
        raise _RowProblem("country", message)
    return code


def _language(value: str) -> str:
    base, _, territory = value.replace("_", "-").partition("-")
    code = f"{base.lower()}-{territory.upper()}" if territory else base.lower()
    if not LANGUAGE_CODE.match(code):
        message = f"{value!r} is not a language code such as en, fr or pt-BR"
        raise _RowProblem("language", message)
    return code


_CONVERTERS: dict[str, Callable[[str], str]] = {
    "email": _email,
    "timezone": _timezone,
    "country": _country,
    "language": _language,
}


def _organisation_clash(
    organisation: Organisation, seen: dict[tuple[str, str], tuple[Organisation, int]]
) -> tuple[str, str] | None:
    """The column and message when a city was described differently on an earlier row."""
    earlier = seen.get((organisation.name, organisation.country))
    if earlier is None:
        return None
    first, line = earlier
    for column, then, now in (
        ("region", first.region, organisation.region),
        ("timezone", first.timezone, organisation.timezone),
    ):
        if then != now:
            where = f"{organisation.name} ({organisation.country})"
            return column, f"{where} has {column} {then!r} on line {line}, not {now!r}"
    return None
