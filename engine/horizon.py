"""What a tick, and a run of ticks, may cover without ``--force``: a typo in ``--at``
(``9999-12-31``) must not commit thousands of future-dated messages before anyone notices, and a
typo in ``--every`` (``1s`` for ``1h``) must not start hours of ticks.

``engine run`` and ``engine simulate`` are refused (exit 3, nothing done) when they would make
more than :data:`MAX_TICKS` ticks: a year of hourly ticks is 8,784.

A tick is refused (exit 3, nothing changed) when its time is more than :data:`MAX_SPAN` after
both the last tick and the wall clock, or when one `cron` trigger would fire more than
:data:`MAX_OCCURRENCES` times in it. ``engine run`` asks this of each of its ticks, so a long
run in small steps is never refused; ``engine simulate`` works on a throw-away copy and is never
refused either.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import islice

from campaigns.enrollment import Refused
from campaigns.schedule import cron_occurrences

from .clock import from_iso, iso
from .compiled import CompiledWorkspace
from .store import Store

MAX_SPAN = timedelta(days=366)
MAX_OCCURRENCES = 1000
MAX_TICKS = 10_000


def check_run(first: datetime, end: datetime, every: timedelta) -> None:
    """:class:`Refused` when ticks every ``every`` from ``first`` to ``end`` are more than
    :data:`MAX_TICKS` (counted, not listed)."""
    ticks = -((first - end) // every) + 1 if end > first else 1  # the ceiling of the intervals, and the first
    if ticks > MAX_TICKS:
        raise Refused(f"ticks every {_duration(every)} from {iso(first)} to {iso(end)} would be {ticks:,}, more than "
                      f"{MAX_TICKS:,} in one run; use a longer --every (results do not depend on it but for "
                      "audience sampling), or pass --force")


def _duration(every: timedelta) -> str:
    seconds = int(every.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def check_tick(store: Store, plan: CompiledWorkspace, at: datetime, now: datetime, last_tick: str | None) -> None:
    """:class:`Refused` when a tick at ``at`` would cover more than this module allows."""
    reference = max([now] + ([from_iso(last_tick)] if last_tick else []))
    if at > reference + MAX_SPAN:
        since = f"the last tick ({last_tick})" if last_tick and from_iso(last_tick) >= now else f"now ({iso(now)})"
        raise Refused(f"a tick at {iso(at)} would run {(at - reference).days} days after {since}, more than a "
                      f"tick may cover ({MAX_SPAN.days} days); check --at, or pass --force")
    for cid, (fired_after, campaign_tz, expression) in _cron_campaigns(store, plan).items():
        firings = sum(1 for _ in islice(cron_occurrences(expression, fired_after, at, campaign_tz, inclusive=False),
                                        MAX_OCCURRENCES + 1))
        if firings > MAX_OCCURRENCES:
            raise Refused(f"a tick at {iso(at)} would fire the cron trigger of {cid} more than {MAX_OCCURRENCES} "
                          f"times (it last fired at {iso(fired_after)}); tick in smaller steps "
                          "(engine run --every), or pass --force")


def _cron_campaigns(store: Store, plan: CompiledWorkspace) -> dict:
    """campaign → (the instant after which its cron fires next, its timezone, the expression),
    for the active cron campaigns the store has seen active (a campaign seen for the first
    time fires from that tick on: at most once)."""
    rows = store.campaign_rows()
    found = {}
    for cid, compiled in plan.campaigns.items():
        trigger = compiled.campaign.trigger
        if not compiled.active or trigger is None or trigger.cron is None or cid not in rows:
            continue
        _, active, since, _ = rows[cid]
        if not active or since is None:
            continue
        last = store.last_firing(cid, "cron:")
        fired = from_iso(last[5:]) if last else None
        found[cid] = (fired if fired is not None and fired >= since else since, compiled.tz, trigger.cron)
    return found
