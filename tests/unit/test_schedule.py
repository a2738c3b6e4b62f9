"""Per-timezone send groups: the UTC instant of 09:00 in each city, across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from outreach.pipeline.schedule import duration_text, resolve, send_groups

AUCKLAND, PARIS = "Pacific/Auckland", "Europe/Paris"
SAO_PAULO, MEXICO = "America/Sao_Paulo", "America/Mexico_City"
CITIES = [MEXICO, PARIS, AUCKLAND, SAO_PAULO, PARIS]


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_world_refugee_day_at_nine_in_each_city() -> None:
    groups = send_groups(
        at=datetime(2027, 6, 20, 9), timezone="recipient", contact_timezones=CITIES
    )
    assert [(g.timezone, g.utc, g.contacts) for g in groups] == [
        (AUCKLAND, utc(2027, 6, 19, 21), 1),  # NZST, UTC+12: the day before in UTC
        (PARIS, utc(2027, 6, 20, 7), 2),  # CEST, UTC+2
        (SAO_PAULO, utc(2027, 6, 20, 12), 1),  # UTC-3, no DST since 2019
        (MEXICO, utc(2027, 6, 20, 15), 1),  # UTC-6, no DST since 2022
    ]
    for group in groups:
        assert (group.local.hour, group.local.minute) == (9, 0) and group.note is None


def test_southern_summer_shifts_auckland_and_paris_differently() -> None:
    groups = send_groups(
        at=datetime(2027, 1, 15, 9), timezone="recipient", contact_timezones=CITIES
    )
    by_zone = {g.timezone: g.utc for g in groups}
    assert by_zone == {
        AUCKLAND: utc(2027, 1, 14, 20),  # NZDT, UTC+13
        PARIS: utc(2027, 1, 15, 8),  # CET, UTC+1
        SAO_PAULO: utc(2027, 1, 15, 12),
        MEXICO: utc(2027, 1, 15, 15),
    }
    assert [g.timezone for g in groups] == [AUCKLAND, PARIS, SAO_PAULO, MEXICO]


def test_a_reminder_keeps_nine_oclock_across_the_clock_change() -> None:
    """Paris changes to summer time on 28 March 2027; a week after 09:00 CET is 09:00 CEST."""
    at = datetime(2027, 3, 25, 9)
    first = send_groups(at=at, timezone="recipient", contact_timezones=[PARIS, AUCKLAND])
    later = send_groups(
        at=at, timezone="recipient", contact_timezones=[PARIS, AUCKLAND], after=timedelta(days=7)
    )
    first_by, later_by = {g.timezone: g for g in first}, {g.timezone: g for g in later}
    assert first_by[PARIS].utc == utc(2027, 3, 25, 8)
    assert later_by[PARIS].utc == utc(2027, 4, 1, 7)  # 7 days minus the hour the clocks gained
    # Auckland leaves summer time on 4 April 2027: 09:00 NZDT, then 09:00 NZDT again on 1 April
    assert first_by[AUCKLAND].utc == utc(2027, 3, 24, 20)
    assert later_by[AUCKLAND].utc == utc(2027, 3, 31, 20)
    assert all(g.local.hour == 9 for g in [*first, *later])


def test_one_timezone_sends_everyone_at_one_instant() -> None:
    groups = send_groups(at=datetime(2027, 6, 20, 9), timezone=PARIS, contact_timezones=CITIES)
    assert len(groups) == 1
    assert (groups[0].timezone, groups[0].utc, groups[0].contacts) == (
        PARIS,
        utc(2027, 6, 20, 7),
        5,
    )


def test_a_skipped_local_time_goes_out_when_the_clocks_jump() -> None:
    time = resolve(datetime(2027, 3, 28, 2, 30), PARIS)  # clocks jump from 02:00 to 03:00
    assert time.utc == utc(2027, 3, 28, 1, 0)
    assert (time.local.hour, time.local.minute) == (3, 0)
    assert time.note is not None and "does not exist" in time.note and "03:00 CEST" in time.note


def test_a_repeated_local_time_goes_out_at_its_first_occurrence() -> None:
    time = resolve(datetime(2027, 10, 31, 2, 30), PARIS)  # 03:00 CEST -> 02:00 CET
    assert time.utc == utc(2027, 10, 31, 0, 30)  # 02:30 CEST, not 02:30 CET (01:30 UTC)
    assert time.note is not None and "happens twice" in time.note and "CEST" in time.note


def test_auckland_spring_gap_in_september() -> None:
    time = resolve(datetime(2027, 9, 26, 2, 15), AUCKLAND)  # 02:00 NZST -> 03:00 NZDT
    assert time.utc == utc(2027, 9, 25, 14, 0)
    assert time.note is not None and "NZDT" in time.note


def test_an_unknown_timezone_is_sent_at_utc_and_says_so() -> None:
    time = resolve(datetime(2027, 6, 20, 9), "Mars/Olympus_Mons")
    assert time.utc == utc(2027, 6, 20, 9)
    assert time.note is not None and "unknown timezone" in time.note


def test_resolve_refuses_an_offset() -> None:
    with pytest.raises(ValueError):
        resolve(datetime(2027, 6, 20, 9, tzinfo=UTC), PARIS)


@pytest.mark.parametrize(
    ("value", "text"),
    [(timedelta(days=7), "7d"), (timedelta(hours=1), "1h"), (timedelta(seconds=3), "3s"),
     (timedelta(minutes=30), "30min"), (timedelta(hours=2, seconds=5), "2h")],
)  # fmt: skip
def test_duration_text(value: timedelta, text: str) -> None:
    assert duration_text(value) == text
