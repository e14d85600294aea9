"""Who a tick enrolls, and when: the triggers of the running campaigns (SPEC §6).

Scheduled manual starts, events, and cron and `at` occurrences fire at their own times, one at a
time and earliest first (:meth:`Triggers.next_occurrence`), interleaved by the tick with the
steps due between them; `audience` triggers are sampled at the tick's time
(:meth:`Triggers.sample_audiences`), and members added to a campaign's target group are enrolled
then too (:meth:`Triggers.enroll_members`). Who may be enrolled is the domain's rule
(campaigns.enrollment); where a new enrollment starts is its campaign's flow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Mapping

from campaigns.audience import natural_key
from campaigns.enrollment import (Origin, PastEnrollment, eligible_as_member, eligible_for_trigger,
                                  window_opens)
from campaigns.schedule import NEXT_FIRING_WITHIN, at_fire_time, cached_next_cron_firing, cron_occurrences

from .audiences import audience_ids, audience_key
from .clock import aware, from_iso, iso
from .compiled import CompiledCampaign
from .locks import snapshot
from .store import Enrollment, Store
from .store.records import Start
from .tick_state import ENGINE_USER, Part, TickState

if TYPE_CHECKING:
    from .goals import Goals

FULL_SAMPLE_EVERY = timedelta(days=1)  # an `audience` trigger looks at everyone at least this often


class Triggers(Part):
    """The triggers of one tick's running campaigns (and the goals an event reaches)."""

    def __init__(self, state: TickState, goals: "Goals | None" = None):
        super().__init__(state)
        self.goals = goals

    def next_occurrence(self) -> tuple[datetime, Callable[[], None]] | None:
        """The earliest trigger occurrence at or before the tick's time, and how to fire it."""
        found: list[tuple[datetime, int, str, Callable[[], None]]] = []
        scheduled = self.store.next_scheduled(self.at, self.running)
        if scheduled is not None:
            found.append((scheduled.started_at, 0, "", lambda: self._activate(scheduled)))
        event = self.store.next_pending_event(self.at)
        if event is not None:
            found.append((event[2], 1, event[0], lambda: self._on_event(*event)))
        for cid in list(self.running):
            compiled, occurrence = self.plan.campaigns[cid], None
            with self.unit(), self.as_campaign(cid):
                occurrence = self._next_firing(compiled)
            if cid in self.running and occurrence is not None:
                when, key = occurrence
                found.append((when, 2, cid, lambda c=compiled, k=key, w=when: self._fire(c, k, w)))
        if not found:
            return None
        when, _, _, fire = min(found, key=lambda f: f[:3])
        return when, fire

    def _next_firing(self, compiled: CompiledCampaign) -> tuple[datetime, str] | None:
        trigger, since = compiled.campaign.trigger, self.since.get(compiled.id)
        if trigger is None or since is None:
            return None
        if trigger.at is not None:
            key = "at:" + iso(_aware_local(trigger.at, compiled))
            if self.store.has_fired(compiled.id, key):
                return None
            when = at_fire_time(_aware_local(trigger.at, compiled), since)
            return (when, key) if when <= self.at else None
        if trigger.cron is not None:
            last = self.store.last_firing(compiled.id, "cron:")
            fired = from_iso(last[5:]) if last else None
            # from the last occurrence fired, or from when it was (last) switched on
            after, inclusive = (fired, False) if fired is not None and fired >= since else (since, True)
            when = cached_next_cron_firing(trigger.cron, after, compiled.tz, inclusive)
            if when is None and self.at - after > NEXT_FIRING_WITHIN:  # looked for further than ahead
                when = next(cron_occurrences(trigger.cron, after, self.at, compiled.tz, inclusive=inclusive), None)
            if when is not None and when <= self.at:
                return when, "cron:" + iso(when)
        return None

    def _fire(self, compiled: CompiledCampaign, key: str, when: datetime) -> None:
        """A cron or `at` occurrence: the whole audience, as of that time."""
        with self.as_campaign(compiled.id), self.store.transaction():
            if not self.store.record_firing(compiled.id, key, when):
                return
            ids = self._audience(compiled, when) if window_opens(when, compiled.campaign.window, compiled.tz) else []
            enrolled = self._enroll_all(compiled, ids, when, source=compiled.trigger or "trigger")
            self.store.set_firing_count(compiled.id, key, enrolled)
            if compiled.trigger == "at" and enrolled:  # a one-shot that starts sending is locked
                self.store.lock(compiled.id, when, snapshot(compiled.campaign))

    def execute(self, compiled: CompiledCampaign) -> int:
        """The trigger fired now, on demand (``engine execute``): a campaign with an audience
        enrolls it as a firing would (recorded as the occurrence ``execute:<time>``), one
        without a trigger enrolls its target group's new members; the number enrolled."""
        if compiled.trigger is None:
            before = self.report.enrolled
            self.enroll_members()
            return self.report.enrolled - before
        with self.as_campaign(compiled.id), self.store.transaction():
            key = "execute:" + iso(self.at)
            if not self.store.record_firing(compiled.id, key, self.at):
                return 0
            enrolled = self._enroll_all(compiled, self._audience(compiled, self.at), self.at, source="execute")
            self.store.set_firing_count(compiled.id, key, enrolled)
            if compiled.trigger == "at" and enrolled:
                self.store.lock(compiled.id, self.at, snapshot(compiled.campaign))
        return enrolled

    def sample_audiences(self) -> None:
        """Every `audience` trigger at the tick's time: whoever is in the audience and may be
        enrolled is. A full sample asks the store for the whole audience (one query when it
        can be pushed down); between full samples only the partners something happened to
        since the last sample are looked at (:meth:`_sample_candidates`)."""
        for cid in list(self.running):
            with self.unit(), self.as_campaign(cid):
                self._sample_audience(self.plan.campaigns[cid])

    def _sample_audience(self, compiled: CompiledCampaign) -> None:
        cid = compiled.id
        if compiled.trigger == "audience" and window_opens(self.at, compiled.campaign.window, compiled.tz) is not None:
            with self.store.transaction():
                # never re-enrolled: whoever was ever in it (and not removed) is out of the question
                statuses = ("scheduled", "active", "paused") + (("finished",) if compiled.campaign.reenroll == "never" else ())
                state = _SampleState.read(self.store, cid)
                candidates = self._sample_candidates(compiled, state)
                if candidates == set():  # nothing happened since: the next sample looks from the last one on
                    return
                if candidates and compiled.audience.dedupe:  # who is a duplicate depends on the others
                    candidates = None
                ctx = self.context(compiled, self.at)
                if candidates is None:
                    taken = self.store.partners_in(cid, statuses) if compiled.audience.dedupe else None
                    ids = audience_ids(self.store, self.plan, self.book, compiled, ctx, taken=taken, not_in=statuses)
                else:
                    partners = self.book.get_many(sorted(candidates, key=natural_key))
                    ids = [pid for pid, partner in partners.items()
                           if compiled.audience.matches(partner, ctx, self.plan.groups)]
                self._enroll_all(compiled, ids, self.at, source="audience", not_again_at=self.at)
                full_at = self.at if candidates is None else state.full_at
                _SampleState(audience_key(self.plan, compiled), self.store.partner_revision(), self.at,
                             full_at).write(self.store, cid)

    def _sample_candidates(self, compiled: CompiledCampaign, state: "_SampleState | None") -> set[str] | None:
        """The partners whose place in the audience, or whose eligibility, may have changed
        since the last sample; None when everyone must be looked at (a full sample). Between
        full samples, membership changes only with a partner's record (imports number the
        records they change), and eligibility only when an enrollment ends (in any campaign,
        for exclusivity) or, with ``reenroll: 90d``, when an exit grows old enough (with
        ``previously_treated: 30d``, an exit from any campaign).

        A full sample is taken the first time, after the campaign, a group or the partner
        schema changed, at least once a day (logical time), at every tick when the audience
        reads the clock or the store (``now``, ``days_since``, ``in_campaign`` ...), and with
        ``dedupe`` whenever there is any candidate (who is a duplicate depends on the others;
        with none, nothing and nobody changed, and the sample finds what the last one did)."""
        audience = compiled.audience
        if state is None or state.key != audience_key(self.plan, compiled) \
                or audience.inputs & {"clock", "store"} or not state.at <= self.at < state.full_at + FULL_SAMPLE_EVERY:
            return None
        candidates = set(self.store.partners_changed_since(state.revision))
        candidates |= self.store.partners_finished(state.at, self.at)
        reenroll = compiled.campaign.reenroll
        if isinstance(reenroll, timedelta):
            candidates |= self.store.partners_finished(state.at - reenroll, self.at - reenroll, compiled.id)
        treated = compiled.campaign.previously_treated
        if compiled.campaign.exclusive and isinstance(treated, timedelta):
            candidates |= self.store.partners_finished(state.at - treated, self.at - treated)
        return candidates

    def enroll_members(self) -> None:
        """Members added to a target group since the last tick (engine group), at the tick's time."""
        for cid in list(self.running):
            compiled = self.plan.campaigns[cid]
            if window_opens(self.at, compiled.campaign.window, compiled.tz) is None \
                    or not self.store.members_to_enroll(cid):  # asked again below, in the transaction
                continue
            with self.unit(), self.as_campaign(cid), self.store.transaction():
                ids = self.store.members_to_enroll(cid)
                if not ids:
                    continue
                partners, history = self.book.get_many(ids), self.store.history(ids)
                ctx = self.context(compiled, self.at)
                enrolled = 0
                for pid in ids:
                    partner = partners.get(pid)
                    if partner is None or compiled.audience.excluded_by(partner, ctx) is not None:
                        continue
                    if eligible_as_member(cid, compiled.campaign, self._past(history.get(pid, [])), self.at) and \
                            self._enroll(compiled, pid, self.at, Origin.MANUAL, "member"):
                        enrolled += 1
                if enrolled:
                    self.store.log(self.at, ENGINE_USER, "enrolled", cid, count=enrolled, origin="manual", trigger="members")

    def _audience(self, compiled: CompiledCampaign, at: datetime) -> list[str]:
        """The audience as of ``at`` (with dedupe, the partners the campaign has keep their
        email or company for themselves)."""
        return audience_ids(self.store, self.plan, self.book, compiled, self.context(compiled, at))

    def _enroll_all(self, compiled: CompiledCampaign, ids: list[str], at: datetime, source: str,
                    not_again_at: datetime | None = None) -> int:
        history = self.store.history(ids) if ids else {}
        starts = []
        for pid in ids:
            past = history.get(pid, [])
            if not_again_at is not None and any(
                    e.campaign == compiled.id and (e.started_at == not_again_at or e.finished_at == not_again_at)
                    for e in past):
                continue
            if not eligible_for_trigger(compiled.id, compiled.campaign, self._past(past), at):
                continue
            next_step, due = compiled.flow.first(at, self.tz_of(compiled, pid))
            number = 1 + max((e.number for e in past if e.campaign == compiled.id), default=0)
            starts.append(Start(pid, number, next_step, due))
        enrolled = len(self.store.add_enrollments(compiled.id, starts, origin=Origin.TRIGGER, source=source, at=at))
        self.report.enrolled += enrolled
        if enrolled:
            self.store.log(at, ENGINE_USER, "enrolled", compiled.id, count=enrolled, origin="trigger", trigger=source)
        return enrolled

    def _enroll(self, compiled: CompiledCampaign, pid: str, at: datetime, origin: Origin, source: str | None) -> bool:
        next_step, due = compiled.flow.first(at, self.tz_of(compiled, pid))
        created = self.store.add_enrollment(compiled.id, pid, status="active", origin=origin, source=source,
                                            created_at=at, started_at=at, next_step=next_step, due_at=due)
        if created is not None:
            self.report.enrolled += 1
        return created is not None

    def _past(self, enrollments: list[Enrollment]) -> list[PastEnrollment]:
        return [PastEnrollment(e.campaign, e.number, e.status, e.started_at, e.finished_at,
                               self.plan.exclusive(e.campaign)) for e in enrollments]

    def _activate(self, scheduled: Enrollment) -> None:
        """A manual start whose date came."""
        compiled = self.plan.campaigns[scheduled.campaign]
        with self.as_campaign(compiled.id), self.store.transaction():
            fresh = self.store.enrollment(scheduled.id)
            if fresh is None or fresh.status != "scheduled":
                return
            next_step, due = compiled.flow.first(fresh.started_at, self.tz_of(compiled, fresh.partner))
            self.store.update_enrollment(fresh, status="active", next_step=next_step, due_at=due)
            self.store.log(fresh.started_at, ENGINE_USER, "activated", fresh.campaign, fresh.partner, number=fresh.number)

    def _on_event(self, event_id: str, kind: str, at: datetime, pid: str, data: Mapping[str, Any]) -> None:
        with self.store.transaction():
            if not self.store.mark_event_processed(event_id):
                return
            partner = self.book.get(pid)
            if self.goals is not None:
                self.goals.on_event(event_id, kind, at, pid, partner, data)
            for cid in self.running:
                compiled = self.plan.campaigns[cid]
                trigger = compiled.campaign.trigger
                if partner is None or trigger is None or trigger.event != kind:
                    continue
                since = self.since.get(cid)
                if since is None or at < since or window_opens(at, compiled.campaign.window, compiled.tz) is None:
                    continue
                with self.as_campaign(cid):
                    self._enroll_on_event(compiled, partner, event_id, kind, at, pid, data)

    def _enroll_on_event(self, compiled: CompiledCampaign, partner: Mapping, event_id: str, kind: str, at: datetime,
                         pid: str, data: Mapping[str, Any]) -> None:
        cid = compiled.id
        event = {"type": kind, "at": at, "partner": pid, "id": event_id, "data": dict(data)}
        ctx = self.context(compiled, at, event=event)
        if not compiled.audience.matches(partner, ctx, self.plan.groups):
            return
        if compiled.trigger_when is not None and not compiled.trigger_when.test(partner, ctx):
            return
        past = self._past(self.store.enrollments_of(pid))
        if eligible_for_trigger(cid, compiled.campaign, past, at) and \
                self._enroll(compiled, pid, at, Origin.TRIGGER, f"event:{event_id}"):
            self.store.log(at, ENGINE_USER, "enrolled", cid, pid, count=1, origin="trigger", event=event_id)


@dataclass(frozen=True)
class _SampleState:
    """What the last sample of an `audience` trigger saw, kept in the store's meta table."""

    key: str  # audience_key() of the campaign then
    revision: int  # the partner records' revision then
    at: datetime  # when it was taken
    full_at: datetime  # when the last full sample was taken

    @classmethod
    def read(cls, store: Store, campaign_id: str) -> "_SampleState | None":
        raw = store.meta(f"audience.{campaign_id}")
        if raw is None:
            return None
        data = json.loads(raw)
        return cls(data["key"], data["revision"], from_iso(data["at"]), from_iso(data["full_at"]))

    def write(self, store: Store, campaign_id: str) -> None:
        store.set_meta(f"audience.{campaign_id}", json.dumps(
            {"key": self.key, "revision": self.revision, "at": iso(self.at), "full_at": iso(self.full_at)}))


def _aware_local(value: datetime, compiled: CompiledCampaign) -> datetime:
    return aware(value if value.tzinfo is not None else value.replace(tzinfo=compiled.tz))
