"""When ``cron`` and ``at`` triggers fire (SPEC §6). Pure functions; time is always passed in.

Decisions where SPEC is silent:

- A cron expression is read on the campaign's local clock, field by field as croniter reads it
  (when both day of month and day of week are restricted, either one matches, as in cron).
- DST, the same rule as ``wait: {until: "09:00"}``: a wall time skipped by a spring gap fires at
  the first instant after the gap, and several skipped wall times fire there once; a repeated
  wall time fires at its first occurrence only, because cron fires once per wall time (so
  ``30 3 * * *`` fires once on the autumn day, at the first 03:30).
- The occurrences are one fixed set of instants; a range only selects from it. So the
  occurrences of ``[a, c]`` are those of ``[a, b]`` followed by those of ``(b, c]``, which is
  what lets a tick covering many missed occurrences fire the same ones as many small ticks.
- An expression that can never match again (``0 0 30 2 *``, a year field in the past) has no
  more occurrences; it is not an error at tick time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Iterator

from .enrollment import local_instants

UTC = timezone.utc


def cron_occurrences(expression: str, after: datetime, until: datetime, tz: tzinfo, *,
                     inclusive: bool = True) -> Iterator[datetime]:
    """The instants (UTC, strictly increasing) at which ``expression``, read on the local clock
    of ``tz``, fires with ``after <= t <= until`` (``after < t`` when not ``inclusive``).

    Lazy, so a caller that stops early pays for what it took, not for the whole range. A bad
    expression or a naive datetime is a ValueError at once, not at the first ``next()``."""
    if after.tzinfo is None or until.tzinfo is None:
        raise ValueError("cron_occurrences needs aware datetimes")
    from croniter import croniter  # here: a workspace without cron triggers never pays for importing it

    # Cheap to build and raises croniter's ValueError for an expression it cannot read.
    croniter(expression, datetime(2000, 1, 1))
    return _occurrences(expression, after.astimezone(UTC), until.astimezone(UTC), tz, inclusive)


def _occurrences(expression: str, after: datetime, until: datetime, tz: tzinfo,
                 inclusive: bool) -> Iterator[datetime]:
    from croniter import CroniterBadDateError, croniter

    if until < after:
        return
    # Every wall time the clock had passed (read or jumped over) by ``after - 1s`` fires before
    # ``after``, so starting just there misses nothing, even a gap wall time that fires exactly
    # at ``after``; anything earlier than ``after`` that comes through is dropped below.
    start = (after - timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None, microsecond=0)
    # Bounds croniter's search for a next match to the range, so an expression that matches
    # rarely or never costs no more than the range it is asked about.
    years = until.year - after.year + 2
    walls = croniter(expression, start, ret_type=datetime, max_years_between_matches=years)
    last = None
    while True:
        try:
            wall = walls.get_next(datetime)
            instant = local_instants(wall.date(), wall.time(), tz)[0]  # once per wall time
        except (CroniterBadDateError, ValueError, OverflowError):
            return  # no match left in the range, or the search ran past the year 9999
        if instant > until:
            return
        if instant < after or (instant == after and not inclusive):
            continue
        if last is not None and instant <= last:  # gap wall times that share an instant
            continue
        last = instant
        yield instant


NEXT_FIRING_WITHIN = timedelta(days=10 * 366)  # a cron's next firing is looked for this far ahead
LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=2)  # as far as it can be looked for (room for any zone's offset)


def next_cron_firing(expression: str, after: datetime, tz: tzinfo, *, inclusive: bool = True,
                     within: timedelta = NEXT_FIRING_WITHIN) -> datetime | None:
    """The first instant at which ``expression`` fires at or after ``after`` (strictly after when
    not ``inclusive``), looked for up to ``within`` ahead (ten years: a ``29 2`` day-of-month fires
    every four years, eight across a century); None when it does not fire in that time (``0 0 30
    2 *`` never does). Used where a cron trigger's *next* firing is shown (``engine test``,
    ``engine plan``) and, cached, where a tick looks for the next occurrence to fire
    (:func:`cached_next_cron_firing`)."""
    until = after + within if after <= LATEST - within else LATEST
    for when in cron_occurrences(expression, after, until, tz, inclusive=inclusive):
        return when
    return None


@lru_cache(maxsize=1024)
def cached_next_cron_firing(expression: str, after: datetime, tz: tzinfo, inclusive: bool) -> datetime | None:
    """:func:`next_cron_firing`, remembered: a tick asks every cron campaign for its next
    firing, and between firings the answer does not change (the occurrences are one fixed set),
    so a run of idle ticks reads croniter once per firing, not once per tick."""
    return next_cron_firing(expression, after, tz, inclusive=inclusive)


def at_fire_time(at: datetime, first_seen: datetime) -> datetime:
    """When an ``at`` one-shot fires, in UTC: at its time, or, when that time had already
    passed at the tick that first saw the campaign active (``first_seen``), once at that tick,
    so that a campaign turned on late still runs once, and not before that tick."""
    if at.tzinfo is None or first_seen.tzinfo is None:
        raise ValueError("at_fire_time needs aware datetimes")
    return max(at, first_seen).astimezone(UTC)
