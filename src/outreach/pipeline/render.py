"""Rendering: a campaign and its templates become one precompiled ``Variant`` per language.

The expensive work happens once per campaign and language in ``compile_campaign``: Jinja2 renders
the templates with every shared text of the template context (``pipeline.context``: news
rendered from Markdown and sanitised, dates and numbers formatted for the language, localised
labels), while each per-recipient value (contact name, city, every link) is rendered as a unique
alphanumeric marker. premailer then inlines the CSS of that page once, and the result is cut at
the markers into literal segments and slots. ``personalise`` is then a plain join of segments and
escaped values: no template engine, no CSS inliner and no HTML-to-text conversion runs per
recipient.

``render_reference`` is the slow, direct path (Jinja2 with the real values, then premailer) that
tests compare ``personalise`` against and the benchmark uses as its baseline.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from premailer import Premailer

from outreach.domain.campaign import Campaign, CtaKind, Reminder
from outreach.domain.delivery import Recipient
from outreach.errors import RenderError
from outreach.pipeline.context import strings_for, template_context
from outreach.pipeline.tokens import LinkPurpose, LinkSigner

_PREMAILER_OPTIONS: dict[str, object] = {
    "allow_network": False,
    "strip_important": False,
    # premailer would copy CSS into presentational attributes: bgcolor on <a>, height="auto"
    # on <img>, width on <body>, all rejected by validators; the templates set the widths
    # Outlook needs themselves.
    "disable_basic_attributes": ["bgcolor", "width", "height"],
    "keep_style_tags": False,
    "cssutils_logging_level": logging.CRITICAL,
}


@dataclass(frozen=True, slots=True)
class Links:
    """The signed URLs of one recipient's message."""

    cta: Mapping[str, str]
    unsubscribe: str
    open_pixel: str | None = None


@dataclass(frozen=True, slots=True)
class SlotValues:
    """The per-recipient values a ``Personalised`` was joined from (raw for text, escaped for
    HTML); lets ``messages`` encode only these values instead of the whole body."""

    variant: Variant
    raw: Mapping[str, str]
    escaped: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Personalised:
    """One recipient's bodies. ``values`` is set only by ``personalise`` (``init=False``, so a
    ``dataclasses.replace`` that changes a body also drops it)."""

    html: str
    text: str
    values: SlotValues | None = field(default=None, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Slotted:
    """Literal ``segments`` with a named slot between each pair: ``len(segments) == len(slots)+1``.

    Slot names: ``name``, ``organisation``, ``unsubscribe``, ``open_pixel``, ``cta:<id>``.
    """

    segments: tuple[str, ...]
    slots: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Variant:
    """One language of a compiled campaign: constant texts plus the slotted bodies."""

    language: str
    subject: str
    preheader: str
    html: Slotted
    text: Slotted
    anonymous_name: str
    anonymous_city: str


@dataclass(frozen=True, slots=True)
class CompiledCampaign:
    campaign_id: str
    template: str
    default: str
    variants: dict[str, Variant]

    def variant_for(self, language: str | None) -> Variant:
        """The variant a contact reading ``language`` receives (``pt-BR`` falls back to ``pt``)."""
        if language in self.variants:
            return self.variants[language]
        base = (language or "").split("-")[0]
        return self.variants.get(base, self.variants[self.default])


def available_templates(templates_dir: Path) -> set[str]:
    """Names of the message templates in ``templates_dir`` (layouts and partials excluded)."""
    return {
        path.name.removesuffix(".html.j2")
        for path in Path(templates_dir).glob("*.html.j2")
        if not path.name.startswith("_")
    }


def links_for(
    signer: LinkSigner, campaign: Campaign, recipient: Recipient, *, now: datetime | None = None
) -> Links:
    """Signs every link of one recipient's message."""
    sign = signer.url
    cid, did = campaign.id, recipient.delivery_id
    return Links(
        cta={
            cta.id: sign(
                LinkPurpose.SIGN if cta.kind is CtaKind.SIGN else LinkPurpose.CLICK,
                campaign_id=cid,
                delivery_id=did,
                cta_id=cta.id,
                now=now,
            )
            for cta in campaign.calls_to_action
        },
        unsubscribe=sign(LinkPurpose.UNSUBSCRIBE, campaign_id=cid, delivery_id=did, now=now),
        open_pixel=(
            sign(LinkPurpose.OPEN, campaign_id=cid, delivery_id=did, now=now)
            if campaign.open_tracking
            else None
        ),
    )


def _values(variant: Variant, recipient: Recipient, links: Links) -> dict[str, str]:
    values = {
        "name": recipient.name.strip() or variant.anonymous_name,
        "organisation": recipient.organisation.strip() or variant.anonymous_city,
        "unsubscribe": links.unsubscribe,
    }
    if links.open_pixel is not None:
        values["open_pixel"] = links.open_pixel
    for cta_id, url in links.cta.items():
        values["cta:" + cta_id] = url
    return values


def _fill(slotted: Slotted, values: Mapping[str, str]) -> str:
    segments = slotted.segments
    parts = [segments[0]]
    append = parts.append
    for index, slot in enumerate(slotted.slots, 1):
        append(values[slot])
        append(segments[index])
    return "".join(parts)


def personalise(variant: Variant, recipient: Recipient, links: Links) -> Personalised:
    """The HTML and plain-text bodies of one recipient: a join of segments and values."""
    values = _values(variant, recipient, links)
    escaped = {key: html.escape(value) for key, value in values.items()}
    try:
        result = Personalised(html=_fill(variant.html, escaped), text=_fill(variant.text, values))
    except KeyError as err:
        raise RenderError(
            f"no value for {err.args[0]!r} in the message to delivery {recipient.delivery_id}: "
            "the links do not match the compiled campaign"
        ) from None
    object.__setattr__(result, "values", SlotValues(variant, values, escaped))
    return result


# --- compiling -----------------------------------------------------------------------------


def compile_campaign(
    campaign: Campaign,
    *,
    templates_dir: Path,
    template: str | None = None,
    extra_context: Mapping[str, object] | None = None,
    reminder: Reminder | None = None,
) -> CompiledCampaign:
    """One inlined, slotted variant per language of ``campaign``.

    ``reminder`` renders that reminder instead (its template, subject and preheader);
    ``extra_context`` adds template variables, e.g. ``signatories`` (city names) and
    ``signatory_count`` for the line "Athens, Barcelona and 12 other cities have already signed".
    """
    name = template or (reminder.template if reminder else campaign.template)
    environment = _environment(Path(templates_dir))
    marker = _Marker(secrets.token_hex(8).upper())
    personal = {"name": marker("name"), "organisation": marker("organisation")}
    links = Links(
        cta={c.id: marker("cta:" + c.id) for c in campaign.calls_to_action},
        unsubscribe=marker("unsubscribe"),
        open_pixel=marker("open_pixel") if campaign.open_tracking else None,
    )
    variants = {}
    for language in campaign.languages:
        context = template_context(
            campaign,
            language=language,
            personal=personal,
            links=links,
            extra_context=extra_context,
            reminder=reminder,
        )
        page = _inline(_render(environment, f"{name}.html.j2", context), f"{name}.html.j2")
        text = _render(environment, f"{name}.txt.j2", context)
        strings = strings_for(language)
        variants[language] = Variant(
            language=language,
            subject=str(context["subject"]),
            preheader=str(context["preheader"]),
            html=marker.split(page, f"{name}.html.j2"),
            text=marker.split(text, f"{name}.txt.j2"),
            anonymous_name=strings["anonymous_name"],
            anonymous_city=strings["anonymous_city"],
        )
    return CompiledCampaign(
        campaign_id=campaign.id, template=name, default=campaign.default_language, variants=variants
    )


def render_reference(
    campaign: Campaign,
    *,
    templates_dir: Path,
    recipient: Recipient,
    links: Links,
    template: str | None = None,
    extra_context: Mapping[str, object] | None = None,
    reminder: Reminder | None = None,
) -> Personalised:
    """One message rendered the direct way: Jinja2 with real values, then premailer.

    Costs tens of milliseconds; it exists as the reference ``personalise`` must agree with.
    """
    name = template or (reminder.template if reminder else campaign.template)
    environment = _environment(Path(templates_dir))
    language = campaign.language_for(recipient.language)
    strings = strings_for(language)
    context = template_context(
        campaign,
        language=language,
        personal={
            "name": recipient.name.strip() or strings["anonymous_name"],
            "organisation": recipient.organisation.strip() or strings["anonymous_city"],
        },
        links=links,
        extra_context=extra_context,
        reminder=reminder,
    )
    page = _inline(_render(environment, f"{name}.html.j2", context), f"{name}.html.j2")
    return Personalised(html=page, text=_render(environment, f"{name}.txt.j2", context))


class _Marker:
    """Unique alphanumeric markers (premailer URL-quotes nothing in them) and the cut at them."""

    def __init__(self, nonce: str) -> None:
        self._nonce = f"Q{nonce}S"
        self._slots: list[str] = []
        self._pattern = re.compile(rf"{self._nonce}(\d+)Z")

    def __call__(self, slot: str) -> str:
        self._slots.append(slot)
        return f"{self._nonce}{len(self._slots) - 1}Z"

    def split(self, page: str, template: str) -> Slotted:
        pieces = self._pattern.split(page)
        segments = tuple(pieces[0::2])
        if any(self._nonce.lower() in segment.lower() for segment in segments):
            raise RenderError(
                f"{template}: a per-recipient value (contact, city or link) went through a "
                "filter that changed it; print it as it is"
            )
        return Slotted(segments=segments, slots=tuple(self._slots[int(i)] for i in pieces[1::2]))


@lru_cache(maxsize=16)
def _environment(templates_dir: Path) -> SandboxedEnvironment:
    if not templates_dir.is_dir():
        raise RenderError(f"{templates_dir}: the templates directory does not exist")
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(templates_dir),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _render(environment: SandboxedEnvironment, name: str, context: Mapping[str, object]) -> str:
    try:
        return environment.get_template(name).render(context)
    except jinja2.TemplateNotFound as err:
        loader = environment.loader
        where = getattr(loader, "searchpath", ["?"])[0]
        known = ", ".join(sorted(available_templates(Path(where)))) or "none"
        raise RenderError(
            f"{where}: template {err.name!r} not found (message templates here: {known})"
        ) from None
    except jinja2.TemplateSyntaxError as err:
        raise RenderError(f"{err.filename or err.name}:{err.lineno}: {err.message}") from None
    except Exception as err:  # a template may raise anything; name the file and line
        raise RenderError(f"{_location(err, name)}: {err}") from None


def _location(err: BaseException, name: str) -> str:
    """``file:line`` of the innermost template frame of a render-time error."""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if frame.filename.endswith(".j2"):
            return f"{frame.filename}:{frame.lineno}"
    return name


def _inline(page: str, template: str) -> str:
    try:
        inlined: str = Premailer(page, **_PREMAILER_OPTIONS).transform()
    except Exception as err:  # premailer and cssutils raise many unrelated types
        raise RenderError(f"{template}: the CSS could not be inlined: {err}") from err
    return inlined
