"""When cron and `at` triggers fire: cron read on the campaign's local clock, DST gaps and
repeats, range boundaries, expressions that never match, and the granularity invariance the
tick relies on (one long range fires exactly what many short ones do)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from itertools import islice
from typing import Callable
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.enrollment import local_instants
from campaigns.schedule import at_fire_time, cron_occurrences

UTC = timezone.utc
HELSINKI = ZoneInfo("Europe/Helsinki")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # DST moves the clock by 30 minutes


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def helsinki(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=HELSINKI)


def occurrences(expression: str, after: datetime, until: datetime, tz: tzinfo = HELSINKI, *,
                inclusive: bool = True) -> list[datetime]:
    return list(cron_occurrences(expression, after, until, tz, inclusive=inclusive))


# --- Cron on the local clock --------------------------------------------------------------------


def test_weekly_cron_fires_on_each_monday_at_local_time() -> None:
    # July 2026: Helsinki is UTC+3, the Mondays are the 6th, 13th, 20th and 27th
    assert occurrences("0 9 * * MON", helsinki(2026, 7, 1), helsinki(2026, 7, 31, 23, 59)) == [
        utc(2026, 7, 6, 6), utc(2026, 7, 13, 6), utc(2026, 7, 20, 6), utc(2026, 7, 27, 6)]


def test_results_are_aware_utc() -> None:
    (first, *_) = occurrences("0 9 * * MON", helsinki(2026, 7, 1), helsinki(2026, 7, 31))
    assert first.tzinfo is UTC


def test_winter_time_is_utc_plus_two() -> None:
    assert occurrences("0 9 * * MON", utc(2026, 12, 1), utc(2026, 12, 15)) == [
        utc(2026, 12, 7, 7), utc(2026, 12, 14, 7)]


def test_start_is_inclusive_unless_asked_otherwise() -> None:
    start = utc(2026, 7, 6, 6)  # a Monday, 09:00 in Helsinki
    until = utc(2026, 7, 13, 6)  # the next one: the end is always inclusive
    assert occurrences("0 9 * * MON", start, until) == [utc(2026, 7, 6, 6), utc(2026, 7, 13, 6)]
    assert occurrences("0 9 * * MON", start, until, inclusive=False) == [utc(2026, 7, 13, 6)]
    assert occurrences("0 9 * * MON", helsinki(2026, 7, 6, 9), until) == [start, until]  # any aware zone
    assert occurrences("0 9 * * MON", start + timedelta(seconds=1), until) == [until]
    assert occurrences("0 9 * * MON", start, until - timedelta(microseconds=1)) == [start]


def test_an_empty_or_reversed_range_has_no_occurrences() -> None:
    assert occurrences("0 9 * * MON", utc(2026, 7, 6, 6), utc(2026, 7, 6, 6)) == [utc(2026, 7, 6, 6)]
    assert occurrences("0 9 * * MON", utc(2026, 7, 6, 6), utc(2026, 7, 6, 6), inclusive=False) == []
    assert occurrences("0 9 * * MON", utc(2026, 7, 14), utc(2026, 7, 6)) == []


def test_a_rare_expression_is_found_years_ahead() -> None:
    # local midnight of a leap day, UTC+2 in February
    assert occurrences("0 0 29 2 *", utc(2026, 1, 1), utc(2033, 1, 1)) == [
        utc(2028, 2, 28, 22), utc(2032, 2, 28, 22)]


# --- DST ----------------------------------------------------------------------------------------

DST = [
    # spring forward on 2026-03-29: 03:00 EET jumps to 04:00 EEST (01:00 UTC)
    ("30 3 * * *", helsinki(2026, 3, 28), helsinki(2026, 3, 31),
     [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)]),  # 03:30 missing: 04:00
    ("*/15 3 * * *", helsinki(2026, 3, 29), helsinki(2026, 3, 30),
     [utc(2026, 3, 29, 1)]),  # four wall times in the gap, one instant
    ("*/15 3-4 * * *", helsinki(2026, 3, 29), helsinki(2026, 3, 30),  # the gap and 04:00 are one instant
     [utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 15), utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 1, 45)]),
    ("59 2 * * *", helsinki(2026, 3, 29), helsinki(2026, 3, 30), [utc(2026, 3, 29, 0, 59)]),
    # fall back on 2026-10-25: 04:00 EEST goes back to 03:00 EET; 03:00–03:59 happen twice
    ("30 3 * * *", helsinki(2026, 10, 24), helsinki(2026, 10, 27),
     [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]),  # the first 03:30
    ("*/15 3 * * *", helsinki(2026, 10, 25), helsinki(2026, 10, 26),
     [utc(2026, 10, 25, 0), utc(2026, 10, 25, 0, 15), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 0, 45)]),
    ("0 * * * *", utc(2026, 10, 24, 23), utc(2026, 10, 25, 3),  # hourly: 03:00 once, so 2 hours apart
     [utc(2026, 10, 24, 23), utc(2026, 10, 25, 0), utc(2026, 10, 25, 2), utc(2026, 10, 25, 3)]),
    # Lord Howe springs from 02:00 to 02:30 (15:30 UTC): 02:00 and 02:15 are the gap, 02:30 its end
    ("*/15 2 * * *", datetime(2026, 10, 4, tzinfo=LORD_HOWE), datetime(2026, 10, 5, tzinfo=LORD_HOWE),
     [utc(2026, 10, 3, 15, 30), utc(2026, 10, 3, 15, 45)]),
]


@pytest.mark.parametrize("expression, after, until, expected", DST)
def test_dst(expression: str, after: datetime, until: datetime, expected: list[datetime]) -> None:
    tz = after.tzinfo if isinstance(after.tzinfo, ZoneInfo) else HELSINKI
    assert occurrences(expression, after, until, tz) == expected


def test_a_gap_occurrence_at_the_start_of_the_range() -> None:
    # 03:30 on the spring day fires at 01:00 UTC, when the clock already reads 04:00
    assert occurrences("30 3 * * *", utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)) == [utc(2026, 3, 29, 1)]
    assert occurrences("30 3 * * *", utc(2026, 3, 29, 1), utc(2026, 3, 29, 2), inclusive=False) == []


def test_the_repeated_wall_time_does_not_fire_again() -> None:
    # from between the two 03:30s of the autumn day: the second one is not an occurrence
    assert occurrences("30 3 * * *", utc(2026, 10, 25, 1), utc(2026, 10, 26, 2)) == [utc(2026, 10, 26, 1, 30)]


# --- Never, errors, laziness --------------------------------------------------------------------


class CountingCroniter:
    """croniter as the schedule uses it, counting the searches (counted, not timed: the test
    holds on a loaded machine too) and keeping how far each may look."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import croniter as module

        self.searches = 0
        self.years: list[int] = []
        real = module.croniter
        counter = self

        class Counting(real):  # type: ignore[misc, valid-type]
            def __init__(self, *args, **kwargs):
                counter.years.append(kwargs.get("max_years_between_matches"))
                super().__init__(*args, **kwargs)

            def get_next(self, *args, **kwargs):
                counter.searches += 1
                return super().get_next(*args, **kwargs)

        monkeypatch.setattr(module, "croniter", Counting)


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 1 1 * 0 2020"])
def test_an_expression_that_never_matches_looks_no_further_than_the_range(expression: str, monkeypatch) -> None:
    counting = CountingCroniter(monkeypatch)
    assert occurrences(expression, utc(2026, 1, 1), utc(2100, 1, 1)) == []
    assert occurrences(expression, utc(2026, 1, 1), utc(9999, 12, 31)) == []
    assert counting.searches == 2  # one search each, which finds nothing within the range
    searched = [years for years in counting.years if years is not None]  # (the others only read it)
    assert searched == [2100 - 2026 + 2, 9999 - 2026 + 2]


def test_lazy_when_the_end_is_far_away(monkeypatch) -> None:
    counting = CountingCroniter(monkeypatch)
    every_minute = cron_occurrences("* * * * *", utc(2026, 7, 1), utc(9999, 12, 31), HELSINKI)
    assert list(islice(every_minute, 3)) == [utc(2026, 7, 1), utc(2026, 7, 1, 0, 1), utc(2026, 7, 1, 0, 2)]
    assert counting.searches <= 4  # as many as were asked for (and the one just before `after`)


def test_the_range_end_stops_the_search() -> None:
    assert occurrences("0 0 29 2 *", utc(2026, 1, 1), utc(2027, 1, 1)) == []


@pytest.mark.parametrize("after, until", [
    (datetime(2026, 7, 1), utc(2026, 8, 1)),
    (utc(2026, 7, 1), datetime(2026, 8, 1)),
])
def test_naive_datetimes_are_refused_at_once(after: datetime, until: datetime) -> None:
    with pytest.raises(ValueError):
        cron_occurrences("0 9 * * MON", after, until, HELSINKI)


@pytest.mark.parametrize("expression", ["0 9 * *", "61 9 * * *", "0 9 * * FUNDAY", "every monday"])
def test_a_bad_expression_is_refused_at_once(expression: str) -> None:
    with pytest.raises(ValueError):
        cron_occurrences(expression, utc(2026, 7, 1), utc(2026, 8, 1), HELSINKI)


# --- `at` one-shots -----------------------------------------------------------------------------


def test_at_fires_at_its_time() -> None:
    assert at_fire_time(utc(2026, 7, 1, 6), first_seen=utc(2026, 6, 1)) == utc(2026, 7, 1, 6)
    assert at_fire_time(utc(2026, 7, 1, 6), first_seen=utc(2026, 7, 1, 6)) == utc(2026, 7, 1, 6)


def test_an_at_already_past_fires_once_at_the_first_tick() -> None:
    assert at_fire_time(utc(2026, 7, 1, 6), first_seen=utc(2026, 7, 3, 12)) == utc(2026, 7, 3, 12)


def test_at_fire_time_is_utc() -> None:
    fired = at_fire_time(helsinki(2026, 7, 1, 9), first_seen=helsinki(2026, 6, 1))
    assert fired == utc(2026, 7, 1, 6) and fired.tzinfo is UTC


def test_at_fire_time_needs_aware_times() -> None:
    with pytest.raises(ValueError):
        at_fire_time(datetime(2026, 7, 1, 9), first_seen=utc(2026, 6, 1))
    with pytest.raises(ValueError):
        at_fire_time(utc(2026, 7, 1, 9), first_seen=datetime(2026, 6, 1))


# --- Properties ---------------------------------------------------------------------------------
#
# Expressions are built from fields whose meaning is written here as a predicate, so the oracle
# does not ask croniter; the predicate also checks every result's local wall time.

MINUTES = [("0", {0}), ("30", {30}), ("*/15", {0, 15, 30, 45}), ("5,50", {5, 50}), ("*", set(range(60)))]
HOURS = [("*", set(range(24))), ("3", {3}), ("2-4", {2, 3, 4}), ("1,9", {1, 9}), ("*/6", {0, 6, 12, 18})]
DAYS = [("*", None), ("1", {1}), ("29", {29}), ("25-31", set(range(25, 32)))]
WEEKDAYS = [("*", None), ("MON", {1}), ("SUN", {0}), ("1-5", {1, 2, 3, 4, 5})]  # cron: 0 is Sunday

Matcher = Callable[[datetime], bool]


def _cron(minute, hour, day, weekday) -> tuple[str, Matcher]:
    (m, minutes), (h, hours), (d, days), (w, weekdays) = minute, hour, day, weekday

    def matches(wall: datetime) -> bool:
        on_day = wall.day in days if days else True
        on_weekday = (wall.weekday() + 1) % 7 in weekdays if weekdays else True
        either = days and weekdays  # both restricted: either one, as in cron
        day_ok = (on_day or on_weekday) if either else (on_day and on_weekday)
        return wall.second == 0 and wall.minute in minutes and wall.hour in hours and day_ok

    return f"{m} {h} {d} * {w}", matches


crons = st.builds(_cron, st.sampled_from(MINUTES), st.sampled_from(HOURS), st.sampled_from(DAYS),
                  st.sampled_from(WEEKDAYS))


def _transitions(tz: tzinfo, year: int) -> list[datetime]:
    """The instants at which the zone's offset changes in ``year`` (to the quarter hour)."""
    step, t = timedelta(minutes=15), datetime(year, 1, 1, tzinfo=UTC)
    found = []
    while t.year == year:
        if (t - step).utcoffset() is not None and tz.utcoffset(t - step) != tz.utcoffset(t):
            found.append(t)
        t += step
    return found


ZONES = [HELSINKI, NEW_YORK, LORD_HOWE, UTC]
ANCHORS = {tz: _transitions(tz, 2026) + [utc(2026, 7, 1)] for tz in ZONES}  # near DST changes
zones = st.sampled_from(ZONES)


@st.composite
def ranges(draw, parts: int = 1) -> tuple[tzinfo, list[datetime]]:
    """A zone and ``parts + 1`` increasing instants near one of its DST changes, mostly on whole
    minutes so that boundaries often fall exactly on occurrences."""
    tz = draw(zones)
    start = draw(st.sampled_from(ANCHORS[tz])) + timedelta(minutes=draw(st.integers(-36 * 60, 12 * 60)))
    points = [start + timedelta(seconds=draw(st.sampled_from([0, 0, 0, 1, 59])))]
    for _ in range(parts):
        points.append(points[-1] + timedelta(minutes=draw(st.integers(0, 24 * 60))))
    return tz, points


def _is_gap_end(instant: datetime, tz: tzinfo) -> bool:
    """Whether the local clock jumped forward at ``instant``."""
    before, now = ((instant - timedelta(seconds=s)).astimezone(tz).replace(tzinfo=None) for s in (1, 0))
    return now - before > timedelta(seconds=1)


def _oracle(matches: Matcher, after: datetime, until: datetime, tz: tzinfo,
            inclusive: bool) -> list[datetime]:
    """Every local minute around the range, matched by hand and mapped to its first instant."""
    wall = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0) - timedelta(hours=3)
    end = until.astimezone(tz).replace(tzinfo=None) + timedelta(hours=3)
    found = set()
    while wall <= end:
        if matches(wall):
            instant = local_instants(wall.date(), wall.time(), tz)[0]
            if (after <= instant if inclusive else after < instant) and instant <= until:
                found.add(instant)
        wall += timedelta(minutes=1)
    return sorted(found)


@settings(max_examples=50, deadline=None)
@given(crons, ranges(), st.booleans())
def test_occurrences_are_increasing_in_range_and_on_the_cron(cron, zone_range, inclusive: bool) -> None:
    (expression, matches), (tz, (after, until)) = cron, zone_range
    found = occurrences(expression, after, until, tz, inclusive=inclusive)
    assert all(a < b for a, b in zip(found, found[1:]))
    assert all((after <= t if inclusive else after < t) and t <= until and t.tzinfo is UTC for t in found)
    for t in found:
        wall = t.astimezone(tz).replace(tzinfo=None)
        if matches(wall):  # on the cron, and the first time the clock read it
            assert local_instants(wall.date(), wall.time(), tz)[0] == t
        else:  # a wall time the clock skipped: fired as the gap ended
            assert _is_gap_end(t, tz)


@settings(max_examples=50, deadline=None)
@given(crons, ranges(), st.booleans())
def test_occurrences_are_every_matching_wall_time(cron, zone_range, inclusive: bool) -> None:
    (expression, matches), (tz, (after, until)) = cron, zone_range
    assert occurrences(expression, after, until, tz, inclusive=inclusive) == _oracle(
        matches, after, until, tz, inclusive)


@settings(max_examples=50, deadline=None)
@given(crons, ranges(parts=2))
def test_splitting_a_range_fires_the_same_occurrences(cron, zone_range) -> None:
    (expression, _), (tz, (a, b, c)) = cron, zone_range
    whole = occurrences(expression, a, c, tz)
    assert whole == occurrences(expression, a, b, tz) + occurrences(expression, b, c, tz, inclusive=False)


@settings(max_examples=50, deadline=None)
@given(crons, ranges(parts=5))
def test_many_ticks_fire_what_one_tick_does(cron, zone_range) -> None:
    (expression, _), (tz, ticks) = cron, zone_range
    many = [t for since, until in zip(ticks, ticks[1:])
            for t in cron_occurrences(expression, since, until, tz, inclusive=False)]
    assert many == occurrences(expression, ticks[0], ticks[-1], tz, inclusive=False)


@settings(max_examples=50, deadline=None)
@given(st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)),
       st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)))
def test_at_fires_once_never_before_its_time_or_its_first_tick(at: datetime, first_seen: datetime) -> None:
    fired = at_fire_time(at, first_seen)
    assert fired >= at and fired >= first_seen and fired in (at, first_seen)
