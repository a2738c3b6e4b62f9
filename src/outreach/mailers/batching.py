"""Batch bodies: the shared segments sent once per request, each recipient's values beside them.

A campaign variant is literal segments with named slots between them (``ports.SharedBody``).
Template-style batch APIs (Mailgun recipient-variables, SendGrid substitutions, Brevo params)
take one body with placeholders and, per recipient, the values to put in. ``batch_body`` writes
the segments joined with the provider's placeholders and each message's variables. A slot
whose HTML-escaped and raw values are the same for every message of the request (most links
and plain names) gets one variable for both bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from outreach.ports import OutgoingMessage, SharedBody


@dataclass(frozen=True, slots=True)
class BatchBody:
    html: str
    text: str
    variables: list[dict[str, str]]  # one per message, in order


def envelope_key(message: OutgoingMessage) -> tuple[object, ...]:
    """What messages must have in common to go in one batch request: the same shared body
    (campaign variant), subject and sender."""
    return (
        message.shared.key if message.shared else None,
        message.campaign_id,
        message.subject,
        message.envelope_from,
        message.from_name,
        message.reply_to,
    )


def can_share(message: OutgoingMessage, *, forbidden: Sequence[str] = ()) -> bool:
    """True when ``message`` carries a shared body with every slot value, and no segment
    contains text the provider would read as its own template syntax (``forbidden``)."""
    shared = message.shared
    if shared is None:
        return False
    if not (
        message.html_values.keys() >= set(shared.html_slots)
        and message.text_values.keys() >= set(shared.text_slots)
    ):
        return False
    return _clean(shared, tuple(forbidden))


_checked: dict[tuple[str, tuple[str, ...]], bool] = {}


def _clean(shared: SharedBody, forbidden: tuple[str, ...]) -> bool:
    """No segment of ``shared`` contains a ``forbidden`` marker (checked once per body)."""
    key = (shared.key, forbidden)
    known = _checked.get(key)
    if known is None:
        if len(_checked) > 1000:
            _checked.clear()
        known = _checked[key] = not any(
            marker in segment
            for marker in forbidden
            for segment in (*shared.html_segments, *shared.text_segments)
        )
    return known


def _join(segments: tuple[str, ...], holders: list[str]) -> str:
    parts = [segments[0]]
    for holder, segment in zip(holders, segments[1:], strict=True):
        parts.append(holder)
        parts.append(segment)
    return "".join(parts)


def batch_body(
    messages: Sequence[OutgoingMessage], *, placeholder: Callable[[str], str]
) -> BatchBody:
    """The shared bodies of ``messages`` (all made from the same ``SharedBody``) with
    ``placeholder(variable)`` in each slot, and every message's variables."""
    shared: SharedBody | None = messages[0].shared
    assert shared is not None
    html_slots, text_slots = set(shared.html_slots), set(shared.text_slots)
    html_keys: dict[str, str] = {}
    text_keys: dict[str, str] = {}
    for number, slot in enumerate(sorted(html_slots | text_slots)):
        same = (
            slot in html_slots
            and slot in text_slots
            and all(m.html_values[slot] == m.text_values[slot] for m in messages)
        )
        if slot in html_slots:
            html_keys[slot] = f"v{number}" if same else f"h{number}"
        if slot in text_slots:
            text_keys[slot] = f"v{number}" if same else f"t{number}"
    html = _join(shared.html_segments, [placeholder(html_keys[s]) for s in shared.html_slots])
    text = _join(shared.text_segments, [placeholder(text_keys[s]) for s in shared.text_slots])
    html_items = list(html_keys.items())
    text_items = list(text_keys.items())
    variables = []
    for message in messages:
        values = {key: message.html_values[slot] for slot, key in html_items}
        for slot, key in text_items:
            values[key] = message.text_values[slot]
        variables.append(values)
    return BatchBody(html=html, text=text, variables=variables)
