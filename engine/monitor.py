"""In-Campaign % monitors (SPEC §1: "an In-Campaign % monitor with an expected level, default
90%, that raises an alert when it drops below").

For every running campaign with an audience (a ruleset or a group), whatever its trigger, at
the end of each tick:

    In-Campaign % = partners of the audience with an active enrollment
                    ÷ partners of the audience who are in the campaign (active, paused or
                      scheduled) or whom its trigger could enroll now

(the audience after exclusions and dedupe). Only an ``audience: true`` trigger can enroll at
any time, so only there do partners outside the campaign count: those it may enroll (not
already treated with ``reenroll: never``, not in another exclusive campaign...). A ``cron`` or
``at`` trigger enrolls at its occurrences, an ``event`` trigger when the event comes, follow-ups
and manual starts when someone answers or starts: between those times nobody is missing, so
the partners of the audience waiting for the next occurrence are not counted (a weekly campaign
would otherwise sink every week and recover every Monday). For those campaigns the measure is
the share of the audience's current enrollments that are active: pausing and scheduled starts
lower it. The partners waiting for a cron or a pending ``at`` occurrence are reported as
``waiting`` beside it.

When it drops below ``monitor.in_campaign_min`` an alert is raised once: it is listed in that
tick's ``alerts``, kept by ``engine alerts``, and emailed to each ``monitor.alert`` address
through the email channel's transport (message id ``alert:<campaign>:<n>:<address>``). When the
percentage is back at or above the minimum, the alert is cleared (also listed in the tick's
``alerts``). An alert names what dropped (:func:`in_campaign` with ``details``): the partners
counted but not active, by why (:data:`REASONS`), with a few of their ids and a one-line
suggestion per reason; the first is the dominant one. What was measured when it was raised is
kept in the store's meta table (``monitor.<campaign>.alert.<n>``) for ``engine alerts``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Mapping

from campaigns.audience import natural_key
from campaigns.enrollment import PastEnrollment, eligible_for_trigger, window_opens
from dsl.runtime import Context

from .audiences import audience_ids, audience_key
from .clock import iso
from .compiled import CompiledCampaign, CompiledWorkspace
from .facts import StoreFacts
from .partners import PartnerBook
from .store import Enrollment, Store

CURRENT = ("scheduled", "active", "paused")
EXAMPLES = 5  # partner ids named per reason
SMALL = 10_000  # current enrollments asked about one by one rather than selecting the whole audience

REASONS = ("paused", "scheduled", "removed", "exit", "completed", "window_closed", "audience_lost",
           "removed_step", "partner_removed", "not_enrolled")
"""Why a partner counted by the measure is not in an active enrollment: the status of their
current enrollment (paused, scheduled), else how their latest one ended (removed, or finished
with one of campaigns.enrollment.FinishReason's reasons), else ``not_enrolled``. The order
breaks ties between reasons with as many partners."""


@dataclass(frozen=True)
class Dropped:
    """Partners counted by the measure but not active, for one reason."""

    reason: str
    partners: int
    examples: tuple[str, ...]
    suggestion: str

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "partners": self.partners, "examples": list(self.examples),
                "suggestion": self.suggestion}


@dataclass(frozen=True)
class InCampaign:
    active: int
    base: int
    waiting: int | None = None  # cron / pending at: audience partners the next occurrence may enroll (not counted)
    dropped: tuple[Dropped, ...] = field(default=())  # with details: base - active, by reason, most first

    @property
    def pct(self) -> float | None:
        return None if self.base == 0 else round(100 * self.active / self.base, 1)

    @property
    def suggestion(self) -> str | None:
        return self.dropped[0].suggestion if self.dropped else None

    def details(self) -> dict[str, Any]:
        """What the alerts and ``engine stats`` show beside the percentage."""
        return {"active": self.active, "of": self.base, "waiting": self.waiting,
                "dropped": [d.to_json() for d in self.dropped], "suggestion": self.suggestion}


def in_campaign(store: Store, plan: CompiledWorkspace, book: PartnerBook, compiled: CompiledCampaign,
                at: datetime, *, details: bool = False) -> InCampaign:
    """The measure as of ``at``; with ``details``, also why the partners counted but not active
    are not, and how many wait for a cron or ``at`` occurrence (this asks for the enrollment
    history of the whole audience, so the tick does it only when an alert is raised or
    cleared)."""
    cid = compiled.id
    ctx = Context(now=at, tz=compiled.tz, facts=StoreFacts(store, plan, cid, None, at))
    counts_others = compiled.trigger == "audience"
    waits = _waits_for_occurrence(store, compiled, at)
    if counts_others or (details and waits):
        audience = set(audience_ids(store, plan, book, compiled, ctx, taken=()))
        current = store.partners_in(cid, CURRENT) & audience
    else:  # only the current enrollments count: ask about them, not the whole audience, when few
        current = _in_audience(store, plan, book, compiled, ctx, store.partners_in(cid, CURRENT))
        audience = current
    active = store.partners_in(cid, ("active",)) & current
    eligible: set[str] = set()
    history: Mapping[str, list[Enrollment]] = {}
    if counts_others or (details and waits):
        others = audience - current
        if compiled.campaign.reenroll == "never":
            others -= store.partners_in(cid, ("finished",))
        history = store.history(sorted(others)) if others else {}
        eligible = {pid for pid in others if eligible_for_trigger(cid, compiled.campaign, [
            PastEnrollment(e.campaign, e.number, e.status, e.started_at, e.finished_at, plan.exclusive(e.campaign))
            for e in history.get(pid, [])], at)}
    base = len(current) + (len(eligible) if counts_others else 0)
    waiting = (len(eligible) if details else None) if waits else None
    if not details:
        return InCampaign(len(active), base, waiting)
    why: dict[str, list[str]] = {}
    for status in ("paused", "scheduled"):
        for pid in store.partners_in(cid, (status,)) & current:
            why.setdefault(status, []).append(pid)
    if counts_others:
        for pid in eligible:
            mine = [e for e in history.get(pid, []) if e.campaign == cid]
            latest = max(mine, key=lambda e: e.number) if mine else None
            reason = "not_enrolled" if latest is None else "removed" if latest.status == "removed" \
                else (latest.reason or "completed")
            why.setdefault(reason, []).append(pid)
    ordered = {reason: sorted(ids, key=natural_key) for reason, ids in why.items()}
    dropped = tuple(Dropped(reason, len(ids), tuple(ids[:EXAMPLES]), suggestion(compiled, reason, ids[0], at))
                    for reason, ids in sorted(ordered.items(), key=lambda item: (-len(item[1]), _rank(item[0]))))
    return InCampaign(len(active), base, waiting, dropped)


def _rank(reason: str) -> int:
    return REASONS.index(reason) if reason in REASONS else len(REASONS)


def _in_audience(store: Store, plan: CompiledWorkspace, book: PartnerBook, compiled: CompiledCampaign,
                 ctx: Context, partners: set[str]) -> set[str]:
    """Which of ``partners`` are in the campaign's audience now."""
    if not partners:
        return set()
    if compiled.audience.dedupe or len(partners) > SMALL:  # dedupe needs everyone; many: one query
        return partners & set(audience_ids(store, plan, book, compiled, ctx, taken=()))
    records = book.get_many(sorted(partners, key=natural_key))
    return {pid for pid, partner in records.items() if compiled.audience.matches(partner, ctx, plan.groups)}


def _waits_for_occurrence(store: Store, compiled: CompiledCampaign, at: datetime) -> bool:
    """Whether the trigger enrolls the audience at a later occurrence: a cron trigger, or an
    ``at`` that has not fired, while the campaign window has not ended."""
    if window_opens(at, compiled.campaign.window, compiled.tz) is None:
        return False
    if compiled.trigger == "cron":
        return True
    return compiled.trigger == "at" and store.last_firing(compiled.id, "at:") is None


def suggestion(compiled: CompiledCampaign, reason: str, example: str, at: datetime) -> str:
    """One line: what to do about partners counted but not active for ``reason``."""
    cid, campaign = compiled.id, compiled.campaign
    window = campaign.window
    ended = window is not None and window.end is not None and window_opens(at, window, compiled.tz) is None
    if reason == "paused":
        return (f"resume them (engine resume {cid} --partner {example}) or remove them: "
                "a paused enrollment does not advance")
    if reason == "scheduled":
        return f"manual starts waiting for their date: check the dates (engine status --partner {example})"
    if reason == "removed":
        return ("removal is a reset and the trigger enrolls them again at the next tick: "
                "to keep them out, exclude them in the audience")
    if reason == "exit":
        return (f"exit_when ({campaign.exit_when}) ended their enrollment but they still match the audience, "
                "so the trigger enrolls them again: add the same condition to audience.exclude")
    if reason == "completed":
        return ("they finished the flow and reenroll lets the trigger enroll them again at the next tick: "
                "use reenroll: never or a duration to let them rest")
    if reason == "window_closed" or (reason == "not_enrolled" and ended):
        return (f"the campaign window ended on {window.end if window else '?'}: "
                "extend window.end, or set active: false to stop the campaign")
    if reason == "audience_lost":
        return "they left the audience (exit_on_audience_loss) and match it again: the next tick enrolls them"
    if reason == "removed_step":
        return ("the step they waited for left the campaign file: check the last edit "
                "(engine plan lists this before a deploy)")
    if reason == "partner_removed":
        return "they left the partner source and came back: the next tick enrolls them"
    return f"the trigger has not enrolled them: see why with engine explain {cid} --partner {example}"


def check_monitors(store: Store, plan: CompiledWorkspace, book: PartnerBook, running: list[str],
                   at: datetime, *, moved: bool = True) -> list[dict[str, Any]]:
    """Raise and clear alerts as of ``at``; what changed, for the tick's report. ``moved``:
    whether the caller changed any enrollment; when it did not, a campaign whose percentage
    cannot have moved since it was last measured (:func:`_measured_as_of`) is not measured
    again, so a tick with nothing to do stays cheap with a million enrollments."""
    changed: list[dict[str, Any]] = []
    revision, position = store.partner_revision(), store.log_position()
    for cid in running:
        compiled = plan.campaigns[cid]
        as_of = _measured_as_of(plan, compiled, revision, position)
        before = store.meta(f"monitor.{cid}") if as_of is not None else None
        if not moved and as_of is not None and before == as_of:
            continue
        measured = in_campaign(store, plan, book, compiled, at)
        minimum = compiled.campaign.monitor.in_campaign_min
        if (store.open_alert(cid) is None) == (measured.pct is not None and measured.pct < minimum):
            measured = in_campaign(store, plan, book, compiled, at, details=True)  # raise or clear: say why
            news = _raise_or_clear(store, compiled, measured, at)
            if news:  # the alert's own log entry moved the position
                changed += news
                position = store.log_position()
                as_of = _measured_as_of(plan, compiled, revision, position)
        kept = json.dumps({"pct": measured.pct, "active": measured.active, "of": measured.base})
        if (as_of is not None and as_of != before) or store.meta(f"monitor.{cid}.measure") != kept:
            with store.transaction():
                if as_of is not None:
                    store.set_meta(f"monitor.{cid}", as_of)
                store.set_meta(f"monitor.{cid}.measure", kept)
    return changed


def last_measure(store: Store, campaign_id: str) -> dict[str, Any] | None:
    """The In-Campaign % as the last tick measured it (``pct``, ``active``, ``of``), for pages
    that must not measure a large audience per request; None before a tick measured it."""
    raw = store.meta(f"monitor.{campaign_id}.measure")
    return json.loads(raw) if raw else None


def _raise_or_clear(store: Store, compiled: CompiledCampaign, measured: InCampaign, at: datetime) -> list[dict[str, Any]]:
    """The campaign's alert raised or cleared, as ``measured`` asks (looked at again in the
    transaction: another process may have done it first); what changed."""
    cid, minimum = compiled.id, compiled.campaign.monitor.in_campaign_min
    changed: list[dict[str, Any]] = []
    with store.transaction():
        alert = store.open_alert(cid)
        if measured.pct is not None and measured.pct < minimum and alert is None:
            seq = store.raise_alert(cid, at, measured.pct, minimum)
            if seq is not None:
                changed.append(_entry(cid, "raised", measured, minimum, at))
                _email(store, compiled, seq, measured, minimum, at)
                store.set_meta(f"monitor.{cid}.alert.{seq}", json.dumps(measured.details()))
                store.log(at, "engine", "alert.raised", cid, pct=measured.pct, minimum=minimum,
                          dropped={d.reason: d.partners for d in measured.dropped})
        elif alert is not None and (measured.pct is None or measured.pct >= minimum):
            if store.clear_alert(alert["seq"], at, measured.pct if measured.pct is not None else 100.0):
                changed.append(_entry(cid, "cleared", measured, minimum, at))
                store.log(at, "engine", "alert.cleared", cid, pct=measured.pct, minimum=minimum)
    return changed


def alert_details(store: Store, alert: Mapping[str, Any]) -> dict[str, Any]:
    """An ``engine alerts`` row with what was measured when it was raised (``active``, ``of``,
    ``waiting``, ``dropped``, ``suggestion``; null for alerts raised before they were kept)."""
    raw = store.meta(f"monitor.{alert['campaign']}.alert.{alert['seq']}")
    kept = json.loads(raw) if raw else {}
    return {**alert, **{key: kept.get(key) for key in ("active", "of", "waiting", "dropped", "suggestion")}}


def _measured_as_of(plan: CompiledWorkspace, compiled: CompiledCampaign, revision: int, log_position: Any) -> str | None:
    """What the In-Campaign % of a campaign depends on, short of measuring it: the audience's
    definition, the partner records' ``revision`` and the audit log's position (operations and
    ticks log what they change); None when the audience reads the clock or the store, or
    re-enrollment the clock (``reenroll: 90d``, ``previously_treated: 30d``, where the partners
    who may be enrolled count: with an `audience` trigger): such a campaign is measured at every
    tick."""
    campaign = compiled.campaign
    if compiled.audience.inputs & {"clock", "store"} or (compiled.trigger == "audience" and (
            isinstance(campaign.reenroll, timedelta) or isinstance(campaign.previously_treated, timedelta))):
        return None
    return json.dumps([audience_key(plan, compiled), revision, log_position])


def _entry(cid: str, state: str, measured: InCampaign, minimum: float, at: datetime) -> dict[str, Any]:
    return {"campaign": cid, "state": state, "in_campaign_pct": measured.pct, "minimum": minimum,
            "active": measured.active, "of": measured.base, "at": iso(at),
            "waiting": measured.waiting, "dropped": [d.to_json() for d in measured.dropped],
            "suggestion": measured.suggestion}


def dropped_text(dropped: list[Mapping[str, Any]]) -> str:
    """``2 paused (p1, p2), 1 removed (p4)``."""
    return ", ".join(f"{d['partners']} {d['reason'].replace('_', ' ')} ({', '.join(d['examples'])}"
                     f"{', …' if d['partners'] > len(d['examples']) else ''})" for d in dropped)


def _email(store: Store, compiled: CompiledCampaign, seq: int, measured: InCampaign, minimum: float,
           at: datetime) -> None:
    name = compiled.campaign.name or compiled.id
    dropped = [d.to_json() for d in measured.dropped]
    why = (f"Not active: {dropped_text(dropped)}.\n"
           + "".join(f"- {d['reason'].replace('_', ' ')}: {d['suggestion']}\n" for d in dropped)) if dropped else ""
    for address in compiled.campaign.monitor.alert:
        store.add_notice({
            "id": f"alert:{compiled.id}:{seq}:{address}", "campaign": compiled.id, "step": "monitor", "partner": "",
            "channel": "email", "to": address,
            "subject": f"In-Campaign alert: {name} at {measured.pct}% (expected {minimum:g}%)",
            "body": (f"Campaign {compiled.id} ({name}) has {measured.active} of {measured.base} eligible audience "
                     f"partners in an active enrollment: {measured.pct}%, below the expected {minimum:g}%.\n"
                     + why +
                     f"Raised at {iso(at)}. See: engine status --campaign {compiled.id}\n"),
            "language": "default", "at": iso(at)})
