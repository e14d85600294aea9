"""Goals (SPEC §11): which enrollments converted, and when. A ``when`` goal converts at the first
tick at whose time its condition holds; an ``event`` goal at the event's time (with its ``where``
holding for the event). Either counts only within ``within`` of the enrollment's start (at any
time without one), and only for enrollments that started (active, paused or finished: a removed one was reset).

A conversion is one row of the store's ``conversions`` (an enrollment converts once). With
``exit: true`` (the default) an active enrollment finishes at once with reason ``goal``; a
paused one finishes when it is resumed and its next step falls due (engine.advance), since the
engine never finishes a paused enrollment. A finished enrollment still converts: a partner who
pays a week after the last reminder counts for the campaign.

Decisions where SPEC is silent: ``when`` goals are checked at the end of the tick, after the
steps due up to its time have run (they fell due before the tick saw the goal reached, so ticking
hourly or daily sends the same messages); the campaigns checked are those that run (a draft or a
switched-off campaign converts nobody), but an event goal converts in any campaign whose file is
loaded, since the event passes only once. A goal that already holds when the partner is
enrolled converts at the end of that tick.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

from campaigns.enrollment import FinishReason
from campaigns.shapes import Goal

from .advance import Advance
from .compiled import CompiledCampaign
from .store import Conflict, Enrollment
from .tick_state import ENGINE_USER, Part, TickState

BATCH = 500


class Goals(Part):
    """The goals of one tick's campaigns."""

    def __init__(self, state: TickState, advance: Advance):
        super().__init__(state)
        self.advance = advance

    def check_conditions(self) -> None:
        """Every running campaign's ``when`` goal, asked at the tick's time of the enrollments
        still inside their ``within``."""
        for cid in list(self.running):
            compiled = self.plan.campaigns[cid]
            goal = compiled.campaign.goal
            if compiled.goal_when is None or goal is None:
                continue
            candidates = self.store.goal_candidates(cid, _window_start(goal, self.at), self.at)
            for start in range(0, len(candidates), BATCH):
                chunk = candidates[start:start + BATCH]
                with self.unit(), self.store.transaction(), self.as_campaign(cid):
                    partners = self.book.get_many({e.partner for e in chunk})
                    for e in chunk:
                        partner = partners.get(e.partner)
                        if partner is not None and compiled.goal_when.test(
                                partner, self.context(compiled, self.at, enrollment=e)):
                            self.convert(compiled, e, self.at, "when")

    def on_event(self, event_id: str, kind: str, at: datetime, pid: str, partner: Mapping | None,
                 data: Mapping[str, Any]) -> None:
        """The event's conversions, in the caller's transaction (the one that marks it processed)."""
        if partner is None:
            return
        for cid, compiled in self.plan.campaigns.items():
            goal = compiled.campaign.goal
            if goal is None or goal.event != kind:
                continue
            event = {"type": kind, "at": at, "partner": pid, "id": event_id, "data": dict(data)}
            with self.as_campaign(cid):
                for e in self.store.goal_candidates(cid, _window_start(goal, at), at, partner=pid):
                    ctx = self.context(compiled, at, enrollment=e, event=event)
                    if compiled.goal_where is None or compiled.goal_where.test(partner, ctx):
                        self.convert(compiled, e, at, f"event:{event_id}")

    def convert(self, compiled: CompiledCampaign, e: Enrollment, at: datetime, source: str) -> None:
        if not self.store.add_conversion(e.id, compiled.id, e.partner, at, source):
            return
        self.report.converted += 1
        self.store.log(at, ENGINE_USER, "goal.converted", compiled.id, e.partner, number=e.number, source=source)
        goal = compiled.campaign.goal
        if goal is not None and goal.exit and e.status == "active" and compiled.id in self.running:
            try:
                self.advance.finish(e, FinishReason.GOAL, at)
            except Conflict:
                pass  # another tick moved it first: its next step finishes it (engine.advance)


EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _window_start(goal: Goal, at: datetime) -> datetime:
    """The earliest enrollment start a conversion at ``at`` counts for."""
    return at - goal.within if goal.within is not None else EARLIEST
