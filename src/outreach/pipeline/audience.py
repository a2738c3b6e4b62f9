"""Who a campaign goes to: the audience rules applied to one contact at a time.

An empty ``include`` rule includes every contact. Each non-empty list of ``include`` must match
(for tags: any one of them); a match of any non-empty list of ``exclude`` leaves the contact
out. Tags, regions, countries and languages compare without regard to case, and a listed
language also matches its regional variants (``pt`` matches ``pt-BR``). Every exclusion comes
with a reason staff can read, so a preview can say why a city is not in the audience.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from outreach.domain.campaign import Audience, AudienceRule
from outreach.domain.contacts import Contact

T = TypeVar("T")


def select(audience: Audience, contact: Contact) -> str | None:
    """None when ``contact`` is in the audience, otherwise why it is not."""
    return _excluded_by(audience.exclude, contact) or _not_included_by(audience.include, contact)


def included(
    audience: Audience, items: Iterable[T], *, contact: Callable[[T], Contact]
) -> Iterator[T]:
    """The items whose contact is in the audience, streamed in the order given."""
    return (item for item in items if select(audience, contact(item)) is None)


def _not_included_by(rule: AudienceRule, contact: Contact) -> str | None:
    organisation = contact.organisation
    if rule.tags and not _folded(contact.tags) & _folded(rule.tags):
        return f"not tagged any of: {_listed(rule.tags)}"
    if rule.regions and organisation.region.casefold() not in _folded(rule.regions):
        return f"not in regions: {_listed(rule.regions)}"
    if rule.countries and organisation.country.casefold() not in _folded(rule.countries):
        return f"country '{organisation.country}' not in: {_listed(rule.countries)}"
    if rule.languages and not _speaks(contact.language, rule.languages):
        return f"language '{contact.language}' not in: {_listed(rule.languages)}"
    return None


def _excluded_by(rule: AudienceRule, contact: Contact) -> str | None:
    organisation = contact.organisation
    tags = sorted(_folded(contact.tags) & _folded(rule.tags))
    if tags:
        return f"excluded: tag '{tags[0]}'"
    if organisation.region.casefold() in _folded(rule.regions):
        return f"excluded: region '{organisation.region}'"
    if organisation.country.casefold() in _folded(rule.countries):
        return f"excluded: country '{organisation.country}'"
    if rule.languages and _speaks(contact.language, rule.languages):
        return f"excluded: language '{contact.language}'"
    return None


def _speaks(language: str, listed: Iterable[str]) -> bool:
    """``language`` is listed, itself or through its base language (pt-BR through pt)."""
    wanted = _folded(listed)
    folded = language.casefold()
    return folded in wanted or folded.split("-", 1)[0] in wanted


def _folded(values: Iterable[str]) -> set[str]:
    return {value.casefold() for value in values}


def _listed(values: Iterable[str]) -> str:
    return ", ".join(values)
