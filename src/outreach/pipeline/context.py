"""The template context: everything the message templates see for one language.

The shared texts are made here: the intro and news rendered from Markdown
(``pipeline.markdown``), dates and numbers formatted for the language, localised labels, the line
"Athens, Barcelona and 12 other cities have already signed", and the UI strings (``STRINGS``:
English, French, Spanish; any other language falls back to its base language, then English).
Per-recipient values (contact name, city, every link) are taken as given, so ``render`` can pass
markers in their place. ``extra_context`` adds template variables but never replaces these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_decimal

from outreach.domain.campaign import Campaign, CtaKind, NewsItem, Reminder, localise
from outreach.errors import RenderError
from outreach.pipeline.markdown import markdown_html, markdown_text

if TYPE_CHECKING:
    from outreach.pipeline.render import Links

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "greeting": "Dear {name},",
        "anonymous_name": "colleague",
        "anonymous_city": "your city",
        "news_for": "News for {city}",
        "news_heading": "News",
        "cta_heading": "Take action",
        "read_more": "Read more",
        "unsubscribe": "Unsubscribe",
        "unsubscribe_prompt": "No longer wish to receive these emails?",
        "footer_reason": "You receive this email as a contact of {city}.",
        "sent_by": "Sent by {sender}",
        "reminder_lead": "A short reminder: we have not yet received an answer from {city}.",
        "reminder_ask": "It takes less than a minute, and every city that joins counts.",
        "signed_one": "{cities} has already signed.",
        "signed_many": "{cities} have already signed.",
        "other_cities_one": "{count} other city",
        "other_cities_many": "{count} other cities",
        "and": "and",
        "colon": ":",
    },
    "fr": {
        "greeting": "Bonjour {name},",
        "anonymous_name": "à vous",
        "anonymous_city": "votre ville",
        "news_for": "Actualités pour {city}",
        "news_heading": "Actualités",
        "cta_heading": "Passez à l'action",
        "read_more": "Lire la suite",
        "unsubscribe": "Se désabonner",
        "unsubscribe_prompt": "Vous ne souhaitez plus recevoir ces courriels ?",
        "footer_reason": "Vous recevez ce courriel en tant que contact de {city}.",
        "sent_by": "Envoyé par {sender}",
        "reminder_lead": "Petit rappel : nous n'avons pas encore reçu de réponse de {city}.",
        "reminder_ask": (
            "Cela prend moins d'une minute, et chaque ville qui se joint à nous compte."
        ),
        "signed_one": "{cities} a déjà signé.",
        "signed_many": "{cities} ont déjà signé.",
        "other_cities_one": "{count} autre ville",
        "other_cities_many": "{count} autres villes",
        "and": "et",
        "colon": " :",
    },
    "es": {
        "greeting": "Estimado/a {name}:",
        "anonymous_name": "colega",
        "anonymous_city": "su ciudad",
        "news_for": "Noticias para {city}",
        "news_heading": "Noticias",
        "cta_heading": "Pase a la acción",
        "read_more": "Leer más",
        "unsubscribe": "Darse de baja",
        "unsubscribe_prompt": "¿Ya no desea recibir estos correos?",
        "footer_reason": "Recibe este correo como contacto de {city}.",
        "sent_by": "Enviado por {sender}",
        "reminder_lead": "Un breve recordatorio: aún no hemos recibido respuesta de {city}.",
        "reminder_ask": "Le llevará menos de un minuto, y cada ciudad que se suma cuenta.",
        "signed_one": "{cities} ya ha firmado.",
        "signed_many": "{cities} ya han firmado.",
        "other_cities_one": "otra ciudad",
        "other_cities_many": "otras {count} ciudades",
        "and": "y",
        "colon": ":",
    },
}
MAX_NAMED_SIGNATORIES = 5
_RESERVED = frozenset(
    {"campaign", "sender", "lang", "t", "subject", "preheader", "contact", "intro_html",
     "intro_text", "news", "ctas", "sign_ctas", "unsubscribe_url", "open_pixel_url",
     "signatories_line"}
)  # fmt: skip


def strings_for(language: str) -> dict[str, str]:
    """The template UI strings of ``language``, falling back to its base language, then English."""
    return STRINGS.get(language) or STRINGS.get(language.split("-")[0]) or STRINGS["en"]


def template_context(
    campaign: Campaign,
    *,
    language: str,
    personal: Mapping[str, str],
    links: Links,
    extra_context: Mapping[str, object] | None,
    reminder: Reminder | None,
) -> dict[str, object]:
    default = campaign.default_language
    strings = strings_for(language)
    texts = campaign.messages.get(language) or campaign.messages[default]
    subject, preheader = texts.subject, texts.preheader
    if reminder is not None:
        subject = localise(reminder.subject, language, default)
        preheader = localise(reminder.preheader, language, default)
    ctas = [
        {
            "id": cta.id,
            "kind": str(cta.kind),
            "label": localise(cta.label, language, default),
            "url": _cta_url(links, cta.id),
            "statement_title": (
                localise(cta.statement.title, language, default) if cta.statement else ""
            ),
        }
        for cta in campaign.calls_to_action
    ]
    extra = dict(extra_context or {})
    clashes = sorted(_RESERVED & extra.keys())
    if clashes:
        raise RenderError(f"extra template values may not replace {', '.join(clashes)}")
    intro = localise(campaign.intro, language, default)
    return {
        **extra,
        "campaign": {"id": campaign.id, "name": campaign.name},
        "sender": {"name": campaign.sender.name, "address": str(campaign.sender.address)},
        "lang": language,
        "t": strings,
        "subject": subject,
        "preheader": preheader,
        "contact": personal,
        "intro_html": markdown_html(intro),
        "intro_text": markdown_text(intro),
        "news": [_news_card(item, language, default) for item in campaign.news],
        "ctas": ctas,
        "sign_ctas": [c for c in ctas if c["kind"] == CtaKind.SIGN],
        "unsubscribe_url": links.unsubscribe,
        "open_pixel_url": links.open_pixel,
        "signatories_line": _signatories_line(extra, language, strings),
    }


def _cta_url(links: Links, cta_id: str) -> str:
    url = links.cta.get(cta_id)
    if url is None:
        raise RenderError(f"no link for the call to action {cta_id!r}")
    return url


def _news_card(item: NewsItem, language: str, default: str) -> dict[str, object]:
    body = localise(item.body, language, default)
    return {
        "title": localise(item.title, language, default),
        "date": format_day(item.date, language) if item.date else "",
        "image": str(item.image) if item.image else "",
        "image_alt": localise(item.image_alt, language, default),
        "link": str(item.link) if item.link else "",
        "body_html": markdown_html(body),
        "body_text": markdown_text(body),
    }


@lru_cache(maxsize=64)
def _locale(language: str) -> Locale:
    try:
        return Locale.parse(language, sep="-")
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en")


def format_day(day: date, language: str) -> str:
    """A date written out for ``language``, e.g. ``20 June 2018`` / ``20 de junio de 2018``."""
    return format_date(day, format="long", locale=_locale(language))


def _signatories_line(extra: Mapping[str, object], language: str, strings: dict[str, str]) -> str:
    names = extra.get("signatories")
    if not names:
        return ""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise RenderError("'signatories' must be a list of city names")
    shown = [str(n) for n in names[:MAX_NAMED_SIGNATORIES]]
    count = extra.get("signatory_count", len(names))
    if not isinstance(count, int) or count < len(shown):
        raise RenderError("'signatory_count' must be a whole number at least the names given")
    locale = _locale(language)
    others = count - len(shown)
    items = list(shown)
    if others:
        key = "other_cities_one" if others == 1 else "other_cities_many"
        items.append(strings[key].format(count=format_decimal(others, locale=locale)))
    phrase = (
        items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {strings['and']} {items[-1]}"
    )
    return strings["signed_one" if len(items) == 1 else "signed_many"].format(cities=phrase)
