"""Experiments and policies as pure functions of (campaign, partner, time, history), SPEC §11:
who gets which variant or split path, who is held out, when a message may go out (quiet hours,
send days) and whether a frequency cap lets it. The tick asks; the store counts.

Assignment is the SPEC's hash, so anyone can reproduce it::

    h = int.from_bytes(sha256(f"{campaign}/{step}/{partner}".encode()).digest()[:8], "big") % W

with ``W`` the sum of the weights; options are taken in file order with cumulative weights, and
the first whose cumulative weight exceeds ``h`` wins. The holdout is the same hash with the step
name ``holdout`` and ``W = 10000``: held out when ``h < pct × 100``.

Decisions where SPEC is silent (docs/experiments.md says them to users):

- Quiet hours are ``[from, to)`` on the partner's local clock: ``{from: "21:00", to: "08:00"}``
  is overnight, a message due at 21:00 waits until 08:00 and one due at 08:00 goes. Equal times
  are no quiet hours. A local time a DST change skips is read as the first instant after it.
- A message due on a day not in ``send_days`` waits for the first instant of the next allowed
  day that is outside quiet hours.
- A frequency cap lets a message go when, with it, no window of length ``per`` holds more than
  ``max`` of the partner's sends on that channel. When steps run in due-time order (one
  process, or one batch) this is the SPEC's count over ``(t − per, t]``; it also counts sends
  due after ``t``, which exist only when several workers raced, so the cap holds then too.
- ``on_cap: defer`` makes the step due when a slot frees: the first instant at which the count
  allows it (which may then meet quiet hours, and wait again).
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Mapping, Sequence

from .enrollment import local_instants, duration_text
from .shapes import MESSAGE_KINDS, WEEKDAYS, Cap, Campaign, Policies, QuietHours

HOLDOUT = "holdout"  # the step name of the holdout's hash
HOLDOUT_BUCKETS = 10_000
SEARCH_DAYS = 8  # a week of days, and one: an allowed instant is always found within them


# --- assignment ---------------------------------------------------------------------------------


def bucket(campaign: str, step: str, partner: str, total: int) -> int:
    """The SPEC's hash of (campaign, step, partner), modulo ``total``."""
    digest = hashlib.sha256(f"{campaign}/{step}/{partner}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total


def assign(campaign: str, step: str, partner: str, weights: Mapping[str, int]) -> str:
    """The option (a variant or a split path) the partner gets: weights in file order."""
    total = sum(weights.values())
    h = bucket(campaign, step, partner, total)
    cumulative = 0
    for key, weight in weights.items():
        cumulative += weight
        if cumulative > h:
            return key
    raise ValueError("the weights add up to 0")  # the model refuses such files


def held_out(campaign: str, partner: str, pct: float | None) -> bool:
    """Whether the partner is in the campaign's holdout of ``pct`` percent."""
    return bool(pct) and bucket(campaign, HOLDOUT, partner, HOLDOUT_BUCKETS) < pct * 100  # type: ignore[operator]


def weights(options: Mapping) -> dict[str, int]:
    """key → weight of a step's variants or a split's paths, in file order."""
    return {key: option.weight for key, option in options.items()}


# --- when a message may go ---------------------------------------------------------------------


@dataclass(frozen=True)
class Hold:
    """A policy that kept a message step from going at its due time: ``until`` it goes (None:
    it was skipped), and the rule in words (``quiet_hours 21:00–08:00``)."""

    rule: str  # quiet_hours | send_days | frequency_cap
    detail: str
    until: datetime | None

    def as_json(self, since: datetime) -> str:
        """What the enrollment keeps while it waits (``since``: the due time it was moved from)."""
        return json.dumps({"rule": self.rule, "detail": self.detail, "from": _iso(since),
                           "until": _iso(self.until) if self.until else None})


@dataclass(frozen=True)
class Rules:
    """The policies one campaign's message steps obey: engine.yaml's, with the campaign's own
    quiet hours and send days; none at all for a transactional campaign."""

    quiet_hours: QuietHours | None = None
    send_days: tuple[str, ...] | None = None
    caps: Mapping[str, Cap] | None = None
    on_cap: str = "skip"

    @property
    def timed(self) -> bool:
        return self.quiet_hours is not None or self.send_days is not None

    def capped(self, kind: str) -> Cap | None:
        return self.caps.get(kind) if self.caps else None


NO_RULES = Rules()


def rules_for(campaign: Campaign, policies: Policies) -> Rules:
    if campaign.transactional:
        return NO_RULES
    quiet = campaign.quiet_hours if campaign.quiet_hours is not None else policies.quiet_hours
    days = campaign.send_days if campaign.send_days is not None else policies.send_days
    if quiet is not None and quiet.from_ == quiet.to:
        quiet = None
    return Rules(quiet, tuple(days) if days is not None else None, dict(policies.frequency) or None, policies.on_cap)


def is_message(kind: str) -> bool:
    return kind in MESSAGE_KINDS


def sending_hold(due: datetime, tz: tzinfo, rules: Rules) -> Hold | None:
    """None when a message due at ``due`` may go then; else the rule that holds it and the next
    allowed instant (partner-local ``tz``)."""
    if not rules.timed:
        return None
    blocked = _blocked(due, tz, rules)
    if blocked is None:
        return None
    return Hold(blocked, _describe(blocked, rules), next_allowed(due, tz, rules))


def next_allowed(due: datetime, tz: tzinfo, rules: Rules) -> datetime:
    """The first instant at or after ``due`` on an allowed day and outside quiet hours."""
    candidate = due
    for _ in range(4 * SEARCH_DAYS):
        blocked = _blocked(candidate, tz, rules)
        if blocked is None:
            return candidate
        local = candidate.astimezone(tz)
        if blocked == "send_days":
            candidate = _first_instant(local.date() + timedelta(days=1), time(0, 0), tz)
        else:
            candidate = _quiet_end(candidate, tz, rules.quiet_hours)  # type: ignore[arg-type]
    raise AssertionError("no allowed instant within a week: send_days is never empty")


def _blocked(at: datetime, tz: tzinfo, rules: Rules) -> str | None:
    local = at.astimezone(tz)
    if rules.send_days is not None and WEEKDAYS[local.weekday()] not in rules.send_days:
        return "send_days"
    quiet = rules.quiet_hours
    if quiet is not None and _in_quiet(local.time().replace(tzinfo=None), quiet):
        return "quiet_hours"
    return None


def _in_quiet(clock: time, quiet: QuietHours) -> bool:
    start, end = _clock(quiet.from_), _clock(quiet.to)
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end  # overnight


def _quiet_end(at: datetime, tz: tzinfo, quiet: QuietHours) -> datetime:
    """The first instant after ``at`` at which the local clock reads ``to``."""
    end = _clock(quiet.to)
    day = at.astimezone(tz).date()
    for offset in (0, 1, 2):
        for instant in local_instants(day + timedelta(days=offset), end, tz):
            if instant > at:
                return instant
    raise AssertionError("quiet hours end within two days")


def _first_instant(day: date, clock: time, tz: tzinfo) -> datetime:
    return min(local_instants(day, clock, tz))


def _clock(text: str) -> time:
    return time.fromisoformat(text.zfill(5))


def _describe(rule: str, rules: Rules) -> str:
    if rule == "quiet_hours":
        quiet = rules.quiet_hours
        return f"quiet_hours {quiet.from_}–{quiet.to}"  # type: ignore[union-attr]
    return "send_days " + ", ".join(rules.send_days or ())


# --- frequency caps ------------------------------------------------------------------------------


def cap_detail(channel: str, cap: Cap) -> str:
    return f"frequency_cap {channel} {cap.max} per {duration_text(cap.per)}"


def cap_allows(due: datetime, sends: Sequence[datetime], cap: Cap) -> bool:
    """Whether one more send at ``due`` keeps every window of length ``per`` at most ``max``
    (``sends``: the partner's sends on the channel around ``due``, sorted)."""
    times = sorted((*sends, due))
    for end in times:
        if due <= end < due + cap.per:
            # the window (end - per, end]: sends after end - per, up to and including end
            if bisect_right(times, end) - bisect_right(times, end - cap.per) > cap.max:
                return False
    return True


def cap_frees(due: datetime, sends: Sequence[datetime], cap: Cap) -> datetime:
    """The first instant at or after ``due`` at which :func:`cap_allows` (for ``on_cap: defer``):
    a send leaves the window ``per`` after its due time."""
    ordered = sorted(sends)
    candidates = sorted({due, *(s + cap.per for s in ordered if s + cap.per > due)})
    for candidate in candidates:
        if cap_allows(candidate, ordered, cap):
            return candidate
    return ordered[-1] + cap.per if ordered else due  # after every send has left its window


def window_of(due: datetime, cap: Cap) -> tuple[datetime, datetime]:
    """The open interval of due times :func:`cap_allows` looks at for a send at ``due``."""
    return due - cap.per, due + cap.per


def sends_in(sends: Sequence[datetime], after: datetime, before: datetime) -> list[datetime]:
    """The sorted ``sends`` strictly between ``after`` and ``before``."""
    return list(sends[bisect_right(sends, after):bisect_left(sends, before)])


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
