"""In-Campaign % monitors (SPEC §1: "an In-Campaign % monitor with an expected level, default
90%, that raises an alert when it drops below").

For every running campaign with an ``audience`` trigger, at the end of each tick:

    In-Campaign % = partners of the audience with an active enrollment
                    ÷ partners of the audience who are in the campaign (active, paused or
                      scheduled) or could be enrolled by its trigger now

(the audience after exclusions and dedupe; partners who may not be enrolled, e.g. already
treated with ``reenroll: never`` or in another exclusive campaign, do not count). When it drops
below ``monitor.in_campaign_min`` an alert is raised once: it is listed in that tick's
``alerts``, kept by ``engine alerts``, and emailed to each ``monitor.alert`` address through the
email channel's transport (message id ``alert:<campaign>:<n>:<address>``). When the percentage
is back at or above the minimum, the alert is cleared (also listed in the tick's ``alerts``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from campaigns.enrollment import PastEnrollment, eligible_for_trigger
from dsl.runtime import Context

from .audiences import audience_ids, audience_key
from .clock import iso
from .compiled import CompiledCampaign, CompiledWorkspace
from .facts import StoreFacts
from .partners import PartnerBook
from .store import Store

CURRENT = ("scheduled", "active", "paused")


@dataclass(frozen=True)
class InCampaign:
    active: int
    base: int

    @property
    def pct(self) -> float | None:
        return None if self.base == 0 else round(100 * self.active / self.base, 1)


def in_campaign(store: Store, plan: CompiledWorkspace, book: PartnerBook, compiled: CompiledCampaign,
                at: datetime) -> InCampaign:

    ctx = Context(now=at, tz=compiled.tz, facts=StoreFacts(store, plan, compiled.id, None, at))
    audience = set(audience_ids(store, plan, book, compiled, ctx, taken=()))
    current = store.partners_in(compiled.id, CURRENT) & audience
    active = store.partners_in(compiled.id, ("active",)) & audience
    others = audience - current
    if compiled.campaign.reenroll == "never":
        others -= store.partners_in(compiled.id, ("finished",))
    history = store.history(sorted(others)) if others else {}
    eligible = sum(1 for pid in others if eligible_for_trigger(compiled.id, compiled.campaign, [
        PastEnrollment(e.campaign, e.number, e.status, e.started_at, e.finished_at, plan.exclusive(e.campaign))
        for e in history.get(pid, [])], at))
    return InCampaign(len(active), len(current) + eligible)


def check_monitors(store: Store, plan: CompiledWorkspace, book: PartnerBook, running: list[str],
                   at: datetime, *, moved: bool = True) -> list[dict[str, Any]]:
    """Raise and clear alerts as of ``at``; what changed, for the tick's report. ``moved``:
    whether the caller changed any enrollment; when it did not, a campaign whose percentage
    cannot have moved since it was last measured (:func:`_measured_as_of`) is not measured
    again, so a tick with nothing to do stays cheap with a million enrollments."""
    changed: list[dict[str, Any]] = []
    for cid in running:
        compiled = plan.campaigns[cid]
        if compiled.trigger != "audience":
            continue
        if not moved and store.meta(f"monitor.{cid}") == _measured_as_of(store, plan, compiled, at):
            continue
        measured = in_campaign(store, plan, book, compiled, at)
        minimum = compiled.campaign.monitor.in_campaign_min
        with store.transaction():
            alert = store.open_alert(cid)
            if measured.pct is not None and measured.pct < minimum and alert is None:
                seq = store.raise_alert(cid, at, measured.pct, minimum)
                if seq is not None:
                    changed.append(_entry(cid, "raised", measured, minimum, at))
                    _email(store, compiled, seq, measured, minimum, at)
                    store.log(at, "engine", "alert.raised", cid, pct=measured.pct, minimum=minimum)
            elif alert is not None and (measured.pct is None or measured.pct >= minimum):
                if store.clear_alert(alert["seq"], at, measured.pct if measured.pct is not None else 100.0):
                    changed.append(_entry(cid, "cleared", measured, minimum, at))
                    store.log(at, "engine", "alert.cleared", cid, pct=measured.pct, minimum=minimum)
        with store.transaction():
            store.set_meta(f"monitor.{cid}", _measured_as_of(store, plan, compiled, at))
    return changed


def _measured_as_of(store: Store, plan: CompiledWorkspace, compiled: CompiledCampaign, at: datetime) -> str:
    """What the In-Campaign % of a campaign depends on, short of measuring it: the audience's
    definition, the partner records' revision and the audit log's position (operations and
    ticks log what they change), plus the time when the audience or re-enrollment reads the
    clock or the store (``reenroll: 90d`` and ``previously_treated: 30d`` read the clock too)."""
    timeless = not compiled.audience.inputs & {"clock", "store"} and not isinstance(compiled.campaign.reenroll, timedelta) \
        and not isinstance(compiled.campaign.previously_treated, timedelta)
    return json.dumps([audience_key(plan, compiled), store.partner_revision(), store.log_position(),
                       None if timeless else iso(at)])


def _entry(cid: str, state: str, measured: InCampaign, minimum: float, at: datetime) -> dict[str, Any]:
    return {"campaign": cid, "state": state, "in_campaign_pct": measured.pct, "minimum": minimum,
            "active": measured.active, "of": measured.base, "at": iso(at)}


def _email(store: Store, compiled: CompiledCampaign, seq: int, measured: InCampaign, minimum: float,
           at: datetime) -> None:
    name = compiled.campaign.name or compiled.id
    for address in compiled.campaign.monitor.alert:
        store.add_notice({
            "id": f"alert:{compiled.id}:{seq}:{address}", "campaign": compiled.id, "step": "monitor", "partner": "",
            "channel": "email", "to": address,
            "subject": f"In-Campaign alert: {name} at {measured.pct}% (expected {minimum:g}%)",
            "body": (f"Campaign {compiled.id} ({name}) has {measured.active} of {measured.base} eligible audience "
                     f"partners in an active enrollment: {measured.pct}%, below the expected {minimum:g}%.\n"
                     f"Raised at {iso(at)}. See: engine status --campaign {compiled.id}\n"),
            "language": "default", "at": iso(at)})
