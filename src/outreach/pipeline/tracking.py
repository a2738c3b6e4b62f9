"""What a member's click means, and the words of the public pages members see.

Pure rules, no I/O:

* **Scanner suspicion.** Mail security gateways (Safe Links, Proofpoint, Mimecast, Apple Mail
  preloading...) open every link of a message, often within seconds of delivery. A click is
  recorded either way, but flagged as a suspected scanner when its user agent is a known scanner
  or an HTTP library, when it is a ``HEAD`` request, or when every link of one message was opened
  within seconds of delivery (a *burst*).
* **Page texts.** The sign, unsubscribe and signatories pages speak the contact's language
  (English, French, Spanish), falling back to English for any other language or missing text.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Protocol

from babel import Locale
from babel.dates import format_date

#: Lower-case fragments of user agents that belong to link scanners, previewers and scripts.
SCANNER_AGENTS: tuple[str, ...] = (
    # mail security gateways and link protection
    "safelinks",
    "microsoft office",
    "ms-office",
    "proofpoint",
    "mimecast",
    "barracuda",
    "messagelabs",
    "symantec",
    "forcepoint",
    "ironport",
    "cisco",
    "trend micro",
    "trendmicro",
    "sophos",
    "fortiguard",
    "zscaler",
    "bitdefender",
    "checkpoint",
    "urlscan",
    "linkcheck",
    "scanner",
    # crawlers and link previewers (a "+http" address in the agent is the crawlers' convention)
    "+http",
    "googlebot",
    "bingbot",
    "slackbot",
    "twitterbot",
    "linkedinbot",
    "applebot",
    "discordbot",
    "telegrambot",
    "facebookexternalhit",
    "crawler",
    "spider",
    "preview",
    # headless browsers and HTTP libraries
    "headlesschrome",
    "phantomjs",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "go-http-client",
    "okhttp",
    "java/",
    "apache-httpclient",
    "libwww-perl",
    "node-fetch",
    "axios/",
)

_SCANNER = re.compile("|".join(re.escape(fragment) for fragment in SCANNER_AGENTS))

#: How soon after delivery a click on every link of the message counts as a burst.
BURST_WINDOW = timedelta(seconds=30)


def suspected_scanner(*, user_agent: str | None, method: str) -> bool:
    """Whether one request looks automated from the request alone (agent and method)."""
    if method.upper() == "HEAD":
        return True
    agent = (user_agent or "").strip().lower()
    if not agent:
        return True
    return _SCANNER.search(agent) is not None


class Click(Protocol):
    """A recorded click, as the burst rule needs it."""

    @property
    def event_id(self) -> int: ...

    @property
    def cta_id(self) -> str | None: ...

    @property
    def occurred_at(self) -> datetime: ...


def burst_clicks(
    clicks: Iterable[Click],
    *,
    sent_at: datetime | None,
    link_ids: Collection[str],
    window: timedelta = BURST_WINDOW,
) -> set[int]:
    """Event ids of the clicks of ONE message that form a scanner burst.

    A burst is every tracked link of the message (at least two) opened within ``window`` of the
    message being sent. A message with a single link is never judged by this rule: a person
    may well click it at once; its user agent and method still are.
    """
    wanted = set(link_ids)
    if sent_at is None or len(wanted) < 2:
        return set()
    early = [c for c in clicks if sent_at <= c.occurred_at <= sent_at + window]
    if not wanted <= {c.cta_id for c in early}:
        return set()
    return {c.event_id for c in early}


def may_be_in_burst(
    *, issued_at: datetime, now: datetime, window: timedelta = BURST_WINDOW
) -> bool:
    """Whether a click at ``now`` on a link signed at ``issued_at`` can belong to a burst.

    Links are signed when the message is built, just before it is handed to the mail server, so
    a click long after the signing time cannot fall within seconds of delivery; only early
    clicks are worth checking against the others of the same message. A minute of slack covers
    a slow hand-over.
    """
    return now - issued_at <= window + timedelta(minutes=1)


# --- the words of the public pages ---------------------------------------------------------

PAGE_LANGUAGES = ("en", "fr", "es")

_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "invalid_title": "This link is not valid",
        "invalid_body": (
            "This link is not valid: it may have been copied incompletely, or it has expired. "
            "Nothing was recorded. Please use the link exactly as it appears in your email."
        ),
        "sign_heading": "Sign on behalf of {organisation}",
        "sign_intro": (
            "You are about to sign the statement below on behalf of {organisation}. "
            "Please confirm your name and title, then press Sign."
        ),
        "name_label": "Your name",
        "title_label": "Your title or position",
        "sign_button": "Sign",
        "required": "Please fill in your name and your title.",
        "too_long": "Please keep your name and title under 200 characters each.",
        "thanks_title": "Thank you",
        "thanks_body": "{organisation} has signed. Thank you, {name}.",
        "already_signed": "{organisation} signed on {date} (by {name}).",
        "already_signed_note": "Your city's signature counts once; there is nothing more to do.",
        "see_signatories": "See every city that has signed",
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_intro": (
            "Pressing the button below stops emails to {email}. Choose what you no longer want:"
        ),
        "scope_campaign": "Only the reminders about this campaign ({campaign})",
        "scope_all": "All mailings from us",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed_all": "{email} will receive no more mailings from us.",
        "unsubscribed_campaign": (
            "{email} will receive no more reminders about this campaign ({campaign})."
        ),
        "signatories_title": "Cities that have signed",
        "signatories_count_one": "1 member city has signed.",
        "signatories_count_many": "{count} member cities have signed.",
        "signatories_none": "No city has signed yet.",
        "form_expired": (
            "This form has expired or did not come from this site. Please open the link in your "
            "email again."
        ),
    },
    "fr": {
        "invalid_title": "Ce lien n'est pas valide",
        "invalid_body": (
            "Ce lien n'est pas valide : il a peut-être été copié de manière incomplète, ou il a "
            "expiré. Rien n'a été enregistré. Utilisez le lien tel qu'il figure dans votre "
            "courriel."
        ),
        "sign_heading": "Signer au nom de {organisation}",
        "sign_intro": (
            "Vous allez signer la déclaration ci-dessous au nom de {organisation}. "
            "Confirmez votre nom et votre fonction, puis appuyez sur Signer."
        ),
        "name_label": "Votre nom",
        "title_label": "Votre fonction",
        "sign_button": "Signer",
        "required": "Veuillez indiquer votre nom et votre fonction.",
        "too_long": "Le nom et la fonction doivent compter moins de 200 caractères chacun.",
        "thanks_title": "Merci",
        "thanks_body": "{organisation} a signé. Merci, {name}.",
        "already_signed": "{organisation} a signé le {date} (par {name}).",
        "already_signed_note": (
            "La signature de votre ville compte une fois ; vous n'avez rien d'autre à faire."
        ),
        "see_signatories": "Voir toutes les villes signataires",
        "unsubscribe_title": "Se désabonner",
        "unsubscribe_intro": (
            "Le bouton ci-dessous arrête les envois à {email}. Choisissez ce que vous ne "
            "souhaitez plus recevoir :"
        ),
        "scope_campaign": "Seulement les rappels de cette campagne ({campaign})",
        "scope_all": "Tous nos envois",
        "unsubscribe_button": "Se désabonner",
        "unsubscribed_title": "Vous êtes désabonné",
        "unsubscribed_all": "{email} ne recevra plus aucun de nos envois.",
        "unsubscribed_campaign": (
            "{email} ne recevra plus de rappels de cette campagne ({campaign})."
        ),
        "signatories_title": "Villes signataires",
        "signatories_count_one": "1 ville membre a signé.",
        "signatories_count_many": "{count} villes membres ont signé.",
        "signatories_none": "Aucune ville n'a encore signé.",
        "form_expired": (
            "Ce formulaire a expiré ou ne provient pas de ce site. Ouvrez à nouveau le lien de "
            "votre courriel."
        ),
    },
    "es": {
        "invalid_title": "Este enlace no es válido",
        "invalid_body": (
            "Este enlace no es válido: quizá se copió de forma incompleta o ha caducado. No se "
            "ha registrado nada. Utilice el enlace tal como aparece en su correo."
        ),
        "sign_heading": "Firmar en nombre de {organisation}",
        "sign_intro": (
            "Va a firmar la declaración siguiente en nombre de {organisation}. "
            "Confirme su nombre y su cargo y pulse Firmar."
        ),
        "name_label": "Su nombre",
        "title_label": "Su cargo",
        "sign_button": "Firmar",
        "required": "Indique su nombre y su cargo.",
        "too_long": "El nombre y el cargo deben tener menos de 200 caracteres cada uno.",
        "thanks_title": "Gracias",
        "thanks_body": "{organisation} ha firmado. Gracias, {name}.",
        "already_signed": "{organisation} firmó el {date} (por {name}).",
        "already_signed_note": "La firma de su ciudad cuenta una vez; no tiene que hacer nada más.",
        "see_signatories": "Ver todas las ciudades firmantes",
        "unsubscribe_title": "Darse de baja",
        "unsubscribe_intro": (
            "El botón siguiente detiene los envíos a {email}. Elija lo que ya no desea recibir:"
        ),
        "scope_campaign": "Solo los recordatorios de esta campaña ({campaign})",
        "scope_all": "Todos nuestros envíos",
        "unsubscribe_button": "Darse de baja",
        "unsubscribed_title": "Se ha dado de baja",
        "unsubscribed_all": "{email} ya no recibirá ninguno de nuestros envíos.",
        "unsubscribed_campaign": (
            "{email} ya no recibirá recordatorios de esta campaña ({campaign})."
        ),
        "signatories_title": "Ciudades firmantes",
        "signatories_count_one": "1 ciudad miembro ha firmado.",
        "signatories_count_many": "{count} ciudades miembros han firmado.",
        "signatories_none": "Ninguna ciudad ha firmado todavía.",
        "form_expired": (
            "Este formulario ha caducado o no procede de este sitio. Abra de nuevo el enlace de "
            "su correo."
        ),
    },
}


def page_language(language: str | None) -> str:
    """The page language for a contact's language: ``fr-CA`` reads French, ``de`` English."""
    base = (language or "").split("-")[0].split("_")[0].lower()
    return base if base in _TEXTS else "en"


def page_texts(language: str | None) -> Mapping[str, str]:
    """Every text of the public pages in ``language``, English for any text it lacks."""
    return {**_TEXTS["en"], **_TEXTS[page_language(language)]}


def best_page_language(accept_language: str | None) -> str:
    """The page language an ``Accept-Language`` header prefers most (English if none fits)."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and quality > 0:
            ranked.append((-quality, position, tag))
    for _, _, tag in sorted(ranked):
        if page_language(tag) != "en" or tag.lower().startswith("en"):
            return page_language(tag)
    return "en"


def format_day(day: date, language: str | None) -> str:
    """A date written out in full for ``language`` (``20 juin 2025``, ``June 20, 2025``)."""
    return format_date(day, format="long", locale=Locale.parse(page_language(language)))
