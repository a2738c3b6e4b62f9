"""Organisations (member cities) and the contacts who read outreach's mail."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Organisation:
    name: str
    country: str
    region: str
    timezone: str


@dataclass(frozen=True, slots=True)
class Contact:
    email: str
    name: str
    language: str
    organisation: Organisation
    tags: frozenset[str] = field(default_factory=frozenset)


def normalise_email(address: str) -> str:
    """The key contacts are upserted by: trimmed, domain lower-cased (IDNA kept as text)."""
    local, _, domain = address.strip().rpartition("@")
    return f"{local}@{domain.lower()}" if local else address.strip().lower()
