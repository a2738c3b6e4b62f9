"""The campaign definition: what staff write in ``campaigns/*.yaml``.

Every model forbids unknown keys, so a typo in a campaign file is an error, not a silent default.
Texts that differ per language are ``Localised`` mappings (language code -> text); a contact's
language picks the text, falling back to the campaign's default language.
"""

from __future__ import annotations

import re
from datetime import date as Date
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    HttpUrl,
    model_validator,
)

LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _no_newlines(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("must not contain a line break")
    return value


def _parse_duration(value: Any) -> Any:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match and value.startswith("P"):
            return value  # ISO 8601, as stored: pydantic reads it
        if not match:
            raise ValueError("expected a duration such as 30m, 12h, 7d or 2w")
        return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    return value


def _check_language(value: str) -> str:
    if not LANGUAGE_CODE.match(value):
        raise ValueError(f"{value!r} is not a language code such as en, fr or pt-BR")
    return value


def _check_timezone(value: str) -> str:
    if value == "recipient":
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown IANA timezone {value!r}") from err
    return value


HeaderText = Annotated[str, AfterValidator(_no_newlines), Field(min_length=1)]
Language = Annotated[str, AfterValidator(_check_language)]
Localised = dict[Language, str]
HeaderLocalised = dict[Language, HeaderText]
Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sender(Strict):
    name: HeaderText
    address: EmailStr


class MessageTexts(Strict):
    """Subject and preheader of one language."""

    subject: HeaderText
    preheader: str = ""


class NewsItem(Strict):
    """A news card. Either inline texts, or ``source`` naming Markdown files under
    ``campaigns/news/`` (``source: amman`` reads ``news/amman.<lang>.md``; each file starts with
    a YAML front matter giving title, and optionally date, image and link)."""

    source: str | None = None
    title: Localised = Field(default_factory=dict)
    body: Localised = Field(default_factory=dict)
    date: Date | None = None
    image: HttpUrl | None = None
    image_alt: Localised = Field(default_factory=dict)
    link: HttpUrl | None = None


class CtaKind(StrEnum):
    SIGN = "sign"
    LINK = "link"


class Statement(Strict):
    """What a ``sign`` call to action asks the organisation to sign."""

    title: Localised
    text: Localised


class CallToAction(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")]
    kind: CtaKind
    label: Localised
    url: HttpUrl
    statement: Statement | None = None


class AudienceRule(Strict):
    tags: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    countries: list[str] = Field(default_factory=list)
    languages: list[Language] = Field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.tags or self.regions or self.countries or self.languages)


class Audience(Strict):
    """Who receives the campaign. An empty ``include`` means every contact."""

    include: AudienceRule = Field(default_factory=AudienceRule)
    exclude: AudienceRule = Field(default_factory=AudienceRule)


class Schedule(Strict):
    at: datetime
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "recipient"
    max_lateness: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _naive_local_time(self) -> Schedule:
        if self.at.tzinfo is not None:
            raise ValueError("give 'at' as a local time without offset; 'timezone' places it")
        return self


class Reminder(Strict):
    after: Duration
    to: Literal["non-responders"] = "non-responders"
    subject: HeaderLocalised
    preheader: Localised = Field(default_factory=dict)
    template: str = "reminder"


class Campaign(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    name: HeaderText
    sender: Sender
    reply_to: EmailStr | None = None
    default_language: Language
    messages: dict[Language, MessageTexts]
    template: str = "newsletter"
    intro: Localised = Field(default_factory=dict)
    news: list[NewsItem] = Field(default_factory=list)
    calls_to_action: list[CallToAction] = Field(default_factory=list)
    audience: Audience = Field(default_factory=Audience)
    schedule: Schedule | None = None
    reminders: list[Reminder] = Field(default_factory=list)
    open_tracking: bool = False

    @property
    def languages(self) -> list[str]:
        """Languages that have their own subject, default language first."""
        rest = sorted(lang for lang in self.messages if lang != self.default_language)
        return [self.default_language, *rest]

    def language_for(self, wanted: str | None) -> str:
        """The variant a contact who reads ``wanted`` receives."""
        if wanted in self.messages:
            return wanted
        if wanted and "-" in wanted and wanted.split("-")[0] in self.messages:
            return wanted.split("-")[0]
        return self.default_language

    def cta(self, cta_id: str) -> CallToAction | None:
        return next((c for c in self.calls_to_action if c.id == cta_id), None)


def localise(texts: dict[str, str], language: str, default_language: str) -> str:
    """The text for ``language``, falling back to the default language, then to any text."""
    if language in texts:
        return texts[language]
    if default_language in texts:
        return texts[default_language]
    return next(iter(texts.values()), "")
