"""When a scheduled send is due for each contact: timezone groups and their UTC instants.

Pure. A campaign's ``schedule`` gives a wall-clock time (``at: 2027-06-20T09:00``) and either
``timezone: recipient`` (09:00 in each contact's own timezone: one group per timezone) or one
IANA zone (everyone at that single instant: one group). Groups come out in the order they are
due, so Auckland's 09:00 goes first and the Americas' last.

Wall-clock times are turned into instants with ``zoneinfo``, explicitly for the two hours a
year where that is not obvious, and each such group says what was done in its ``note``:

* a time the clocks skip (02:30 when they jump from 02:00 to 03:00) is sent at the moment of
  the jump, 03:00 local time;
* a time that happens twice (02:30 when the clocks go back from 03:00 to 02:00) is sent at its
  first occurrence, still in summer time.

Reminders keep the wall-clock time: ``after: 7d`` from 09:00 is 09:00 a week later in each
timezone, even when the clocks changed in between.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

RECIPIENT = "recipient"
FALLBACK_ZONE = "UTC"


@dataclass(frozen=True, slots=True)
class LocalTime:
    """A wall-clock time in one timezone, and the instant it stands for."""

    timezone: str
    wall: datetime  # naive: the time as written in the campaign file
    local: datetime  # aware, in ``timezone``: when it happens there
    utc: datetime
    note: str | None = None  # how a skipped or repeated wall-clock time was resolved


@dataclass(frozen=True, slots=True)
class SendGroup:
    """The contacts of one timezone (or all of them, for a fixed timezone) due together."""

    timezone: str
    wall: datetime
    local: datetime
    utc: datetime
    contacts: int
    note: str | None = None


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _clock(moment: datetime) -> str:
    return f"{moment:%H:%M}" if moment.second == 0 else f"{moment:%H:%M:%S}"


def _jump(zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The instant in ``(low, high]`` at which ``zone`` switches to ``high``'s UTC offset."""
    after = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def resolve(wall: datetime, timezone: str) -> LocalTime:
    """The instant of the naive wall-clock time ``wall`` in ``timezone``.

    An unknown timezone is treated as UTC, and the note says so.
    """
    if wall.tzinfo is not None:
        raise ValueError("resolve() takes a wall-clock time without an offset")
    zone = _zone(timezone)
    if zone is None:
        local = wall.replace(tzinfo=UTC)
        return LocalTime(
            timezone, wall, local, local, note=f"unknown timezone {timezone!r}; sent at UTC"
        )
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return LocalTime(timezone, wall, first, first.astimezone(UTC))
    day = f"{wall:%Y-%m-%d}"
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
        # the wall-clock time happens twice: take the first, before the clocks go back
        local = first.astimezone(UTC).astimezone(zone)
        note = (
            f"{_clock(wall)} happens twice on {day} in {timezone} (the clocks go back); "
            f"sent at the first, {_clock(local)} {local:%Z}"
        )
        return LocalTime(timezone, wall, local, local.astimezone(UTC), note)
    # the wall-clock time does not exist: send when the clocks jump forward over it
    instant = _jump(zone, second.astimezone(UTC), first.astimezone(UTC))
    local = instant.astimezone(zone)
    before = (instant - timedelta(seconds=1)).astimezone(zone)
    note = (
        f"{_clock(wall)} does not exist on {day} in {timezone} (the clocks jump from "
        f"{_clock(before + timedelta(seconds=1))} to {_clock(local)}); "
        f"sent at {_clock(local)} {local:%Z}"
    )
    return LocalTime(timezone, wall, local, instant, note)


def group_key(schedule_timezone: str, contact_timezone: str) -> str:
    """The group a contact of ``contact_timezone`` belongs to."""
    return contact_timezone if schedule_timezone == RECIPIENT else schedule_timezone


def send_groups(
    *,
    at: datetime,
    timezone: str,
    contact_timezones: Iterable[str],
    after: timedelta = timedelta(0),
) -> list[SendGroup]:
    """One group per timezone of the given contacts (one per contact, repeats counted), or a
    single group when ``timezone`` names one zone; ordered by UTC instant, then timezone.

    ``after`` moves the wall-clock time (a reminder's delay).
    """
    wall = at.replace(tzinfo=None) + after
    counts = Counter(group_key(timezone, zone) for zone in contact_timezones)
    groups = []
    for zone, contacts in counts.items():
        time = resolve(wall, zone)
        groups.append(
            SendGroup(
                timezone=zone,
                wall=wall,
                local=time.local,
                utc=time.utc,
                contacts=contacts,
                note=time.note,
            )
        )
    return sorted(groups, key=lambda group: (group.utc, group.timezone))


def due_instant(
    *, at: datetime, timezone: str, contact_timezone: str, after: timedelta
) -> datetime:
    """The UTC instant a single contact of ``contact_timezone`` is due."""
    wall = at.replace(tzinfo=None) + after
    return resolve(wall, group_key(timezone, contact_timezone)).utc


def duration_text(value: timedelta) -> str:
    """A duration as staff write it (``7d``, ``12h``, ``30min``, ``45s``); rounded down
    when it is not a whole number of the largest unit that fits."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    for unit, size, below in (("s", 1, 120), ("min", 60, 7200), ("h", 3600, 172800)):
        if seconds < below:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"
