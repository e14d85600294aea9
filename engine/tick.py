"""One tick: everything due at or before logical time ``at``, in time order (SPEC §6, §10).

    deliver what a killed tick left committed but undelivered
    import the partner source if it changed; check exits for the partners that changed
    note campaigns switched on or off
    repeat: execute the steps due up to the next trigger occurrence, then fire it
            (scheduled manual starts, events, cron and `at` occurrences, each at its own time)
    sample every `audience` trigger at `at` (only the partners something happened to, between
            full samples), and execute the steps that makes due
    deliver the outbox

Steps execute *as of their due time*: that time is the expression's ``now``, the template's
``now`` and the message's ``at``, so one tick over a month and hourly ticks over the same month
send the same messages at the same logical times (only audience sampling happens at the ticks).

Exactly once: a batch of step executions is one store transaction holding each step's new state,
its outbox records, activities, pop-ups and log lines. Rows are re-read inside the transaction
(SQLite's ``BEGIN IMMEDIATE`` lets one writer in at a time; on PostgreSQL each batch claims
its enrollments with ``FOR UPDATE SKIP LOCKED``, so several workers run batches side by side,
and everything else takes the store's advisory lock) and changed by compare-and-set on
their version, and the database refuses a second run of a step (primary key) or a second current
enrollment (unique index): two ticks at once cannot both execute a step. Messages reach their
files only after the commit, through the idempotent file transport, so a kill at any instant
loses nothing and repeats nothing.

Decisions where SPEC is silent:

- Ties: at one instant, due steps go first, then scheduled starts, events, and cron/`at`
  occurrences (by campaign id): a run that ends at 09:00 has finished when the 09:00 cron fires.
- A trigger never enrolls after the campaign window's end (the campaign is over); before its
  start it enrolls and the steps wait for the start.
- `exit_when` and `exit_on_audience_loss` are checked when each step falls due and at the tick
  that imports a change to the partner's record; an enrollment waiting past its last step
  completes at the end of its trailing waits.
- Events (dotted names) enroll as of their own time, but never before the tick that first saw
  the campaign active, like cron. An event for a partner not in the store enrolls nobody.
- A campaign with ``active: false`` does not run: no trigger fires, its enrollments do not
  advance. When it is switched back on, whatever fell due meanwhile is due at that tick. A file
  with errors is not run either, but fixing it changes no due time.
- An `audience` trigger does not enroll a partner again at the very instant their previous
  enrollment in that campaign started or ended (so a second tick at the same time does nothing).
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Mapping

from campaigns.enrollment import (FinishReason, Origin, PastEnrollment, SkipReason, eligible_as_member,
                                  eligible_for_trigger, window_opens)
from campaigns.flow import END, Node
from campaigns.audience import natural_key
from campaigns.schedule import at_fire_time, cron_occurrences
from dsl.diagnostics import error
from dsl.source import Span
from dsl.runtime import Context

from .audiences import audience_ids, audience_key
from .clock import aware, from_iso, iso
from .compiled import CompiledCampaign, CompiledWorkspace
from .partners import PartnerBook, import_partners
from .delivery import Transports, deliver
from .links import links_for, require_signer
from .locks import lock_error, snapshot
from .monitor import check_monitors
from .steps import Effects, Job, execute
from .errors import StoreContention, StoreError
from .batch import StepBatch, record_effects
from .facts import StoreFacts
from .report import CampaignFailed, TickReport, _Unit
from .store import Conflict, Enrollment, Store

ENGINE_USER = "engine"
BATCH = 500
FULL_SAMPLE_EVERY = timedelta(days=1)  # an `audience` trigger looks at everyone at least this often
CONTENTION_ATTEMPTS = 5  # runs of a tick that another worker's deadlock may cut short
FAILING_RENDERS_SECONDS = 5.0  # CPU a campaign's failing steps may take in one tick before it stops


def tick(store: Store, plan: CompiledWorkspace, book: PartnerBook, at: datetime,
         using: Transports | None = None, *, offline: bool = False) -> TickReport:
    """One tick at ``at``; messages go through ``using`` (default: the transports engine.yaml
    configures). ``offline`` (a simulation) signs the links in messages with a key no server
    accepts, so it needs no secret."""
    return Tick(store, plan, book, aware(at), using, offline=offline).run()


class Tick:
    def __init__(self, store: Store, plan: CompiledWorkspace, book: PartnerBook, at: datetime,
                 using: Transports | None = None, *, offline: bool = False):
        self.store, self.plan, self.book, self.at = store, plan, book, at
        self.using = using
        web = plan.settings.web
        self.links = links_for(web, require_signer(web, offline))  # MissingSecret: nothing has run yet
        self.report = TickReport(at, diagnostics=list(plan.workspace.errors))
        self.running: list[str] = []  # campaigns that run: loaded without errors and active
        self._failing_time: Counter = Counter()  # campaign → CPU seconds its failed steps took
        self._halted: dict[str, str] = {}  # campaign → why it stops after the batch in progress
        self._numbers: dict[str, int | None] = {}

    def run(self) -> TickReport:
        """The tick. A deadlock or serialization failure on a server store (another worker got in
        the way) rolls back one transaction, whose counts are taken back; the tick then runs
        again from the top, which does only what was not committed (ticks are idempotent)."""
        for attempt in range(1, CONTENTION_ATTEMPTS + 1):
            try:
                self._run()
                break
            except StoreContention:
                if attempt == CONTENTION_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0, 0.05 * attempt))
        self.report.diagnostics = list(dict.fromkeys(self.report.diagnostics))
        return self.report

    def _run(self) -> None:
        self._deliver()  # what an earlier tick committed but did not hand over (killed, or an outage)
        imported = import_partners(self.store, self.plan, self.at)
        self.report.diagnostics += imported.diagnostics
        self.book.refresh()
        self._sync_campaigns()
        self._check_exits(imported.changed)
        while True:
            upcoming = self._next_occurrence()
            self._run_steps(upcoming[0] if upcoming else self.at)
            if upcoming is None:
                break
            with self._unit():
                upcoming[1]()
        self._sample_audiences()
        self._enroll_members()
        self._ask_waits()
        self._run_steps(self.at)
        moved = any((self.report.enrolled, self.report.executed, self.report.skipped, self.report.finished,
                     self.report.failed))
        self.report.alerts += check_monitors(self.store, self.plan, self.book, self.running, self.at, moved=moved)
        self._deliver()

    def _deliver(self) -> None:
        done = deliver(self.store, self.plan, self.at, self.using)
        self.report.delivered += done.sent
        self.report.retried += done.retry
        self.report.undeliverable += done.failed
        for channel in done.waiting:
            self.report.warnings.append(f"{channel} messages wait in the outbox: engine.yaml gives the {channel} "
                                        "channel no transport that can send them")

    def catch_up(self, campaign_id: str, partner_id: str) -> None:
        """Execute the partner's steps in the campaign that fell due before the tick's time, in
        the caller's transaction: an operation acts on the enrollment as it is at the
        operation's time, whether or not a tick ran in between (SPEC §6). A step due at that
        very instant comes after the operation (so a start can be followed by a skip of the
        first step)."""
        compiled = self.plan.campaigns.get(campaign_id)
        if compiled is None or not compiled.active:
            return
        counts: Counter = Counter()
        while True:
            current = [e for e in self.store.enrollments_of(partner_id, campaign_id) if e.status == "active"]
            if not current or current[-1].due_at is None or current[-1].due_at >= self.at:
                break
            e = current[-1]
            self._advance(e, self.book.get(partner_id), counts)
            moved = self.store.enrollment(e.id)
            if moved is None or moved.version == e.version:
                break  # nothing moved (another process has it): do not spin
        for (cid, step, status), n in sorted(counts.items()):
            self._log_batch(cid, step, status, n, partner_id)

    # --- a campaign that fails at run time fails alone ---------------------------------------

    @contextmanager
    def _as_campaign(self, cid: str) -> Iterator[None]:
        """Work done for one campaign: what it raises, unless the store failed, is that
        campaign's failure (:class:`CampaignFailed`)."""
        try:
            yield
        except (CampaignFailed, Conflict, StoreError, sqlite3.Error):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug, or input the checker let through: reported
            raise CampaignFailed(cid, exc) from exc

    @contextmanager
    def _unit(self) -> Iterator["_Unit"]:
        """One unit of work around a transaction: if the transaction rolls back, so do the
        counts it added to the report. A campaign that failed inside it stops for the rest of
        the tick (reported; the other campaigns go on, and the unit may be done again)."""
        unit = _Unit(self.report.counts())
        try:
            yield unit
        except CampaignFailed as failed:
            self.report.restore(unit.counts)
            unit.failed = True
            self._stop(failed)
        except BaseException:
            self.report.restore(unit.counts)
            raise

    def _stop(self, failed: "CampaignFailed") -> None:
        if failed.campaign not in self.running:
            return
        self.running.remove(failed.campaign)
        file = self.plan.workspace.files.get(failed.campaign)
        cause = f"{type(failed.cause).__name__}: {failed.cause}".rstrip(": ")
        self.report.diagnostics.append(error(
            Span(str(file.path) if file else failed.campaign, 1, 1),
            f"campaign '{failed.campaign}' failed at run time and stopped for this tick ({cause}); "
            "the other campaigns ran, and it tries again at the next tick"))
        with self.store.transaction():
            self.store.log(self.at, ENGINE_USER, "campaign.failed", failed.campaign, error=cause)

    # --- campaigns switched on and off -----------------------------------------------------

    def _sync_campaigns(self) -> None:
        """Record new campaigns and switches on or off; hold back drafts and locked campaigns
        whose steps or audience were edited (the others run)."""
        held: set[str] = set()
        with self.store.transaction():
            known = self.store.campaign_rows()  # inside: another tick may be adding them right now
            locks = self.store.locks()
            for cid, compiled in self.plan.campaigns.items():
                campaign = compiled.campaign
                if cid not in known:
                    self.store.add_campaign(cid, campaign.name, campaign.active, self.at)
                elif known[cid][1] != campaign.active:
                    self.store.set_campaign_active(cid, campaign.name, campaign.active, self.at)
                    if campaign.active:
                        self.store.resume_overdue(cid, self.at)
                    self.store.log(self.at, ENGINE_USER, "campaign.activated" if campaign.active else "campaign.deactivated",
                                   cid)
                draft = known[cid][3] if cid in known else None
                if draft is not None and draft == compiled.content_hash:
                    held.add(cid)
                elif draft is not None:  # edited since it returned to draft: scheduled again from now
                    self.store.set_draft(cid, None, self.at)
                    self.store.log(self.at, ENGINE_USER, "campaign.scheduled", cid)
                if cid in locks:
                    problem = lock_error(cid, campaign, *locks[cid])
                    if problem is not None:
                        self.report.diagnostics.append(problem)
                        held.add(cid)
        self.since = {cid: row[2] for cid, row in self.store.campaign_rows().items()}
        self.running = sorted(cid for cid, c in self.plan.campaigns.items() if c.active and cid not in held)

    # --- what happens when -----------------------------------------------------------------

    def _next_occurrence(self) -> tuple[datetime, Callable[[], None]] | None:
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
            with self._unit(), self._as_campaign(cid):
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
            for when in cron_occurrences(trigger.cron, after, self.at, compiled.tz, inclusive=inclusive):
                return when, "cron:" + iso(when)
        return None

    # --- enrolling -------------------------------------------------------------------------

    def _fire(self, compiled: CompiledCampaign, key: str, when: datetime) -> None:
        """A cron or `at` occurrence: the whole audience, as of that time."""
        with self._as_campaign(compiled.id), self.store.transaction():
            if not self.store.record_firing(compiled.id, key, when):
                return
            ids = self._audience(compiled, when) if window_opens(when, compiled.campaign.window, compiled.tz) else []
            enrolled = self._enroll_all(compiled, ids, when, source=compiled.trigger or "trigger")
            self.store.set_firing_count(compiled.id, key, enrolled)
            if compiled.trigger == "at" and enrolled:  # a one-shot that starts sending is locked
                self.store.lock(compiled.id, when, snapshot(compiled.campaign))

    def _sample_audiences(self) -> None:
        """Every `audience` trigger at the tick's time: whoever is in the audience and may be
        enrolled is. A full sample asks the store for the whole audience (one query when it
        can be pushed down); between full samples only the partners something happened to
        since the last sample are looked at (:meth:`_sample_candidates`)."""
        for cid in list(self.running):
            with self._unit(), self._as_campaign(cid):
                self._sample_audience(self.plan.campaigns[cid])

    def _sample_audience(self, compiled: CompiledCampaign) -> None:
        cid = compiled.id
        if compiled.trigger == "audience" and window_opens(self.at, compiled.campaign.window, compiled.tz) is not None:
            with self.store.transaction():
                # never re-enrolled: whoever was ever in it (and not removed) is out of the question
                statuses = ("scheduled", "active", "paused") + (("finished",) if compiled.campaign.reenroll == "never" else ())
                state = _SampleState.read(self.store, cid)
                candidates = self._sample_candidates(compiled, state)
                ctx = self._context(compiled, self.at)
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
        reads the clock or the store (``now``, ``days_since``, ``in_campaign`` ...), and
        always with ``dedupe`` (who is a duplicate depends on the others)."""
        audience = compiled.audience
        if state is None or state.key != audience_key(self.plan, compiled) or audience.dedupe \
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

    def _enroll_members(self) -> None:
        """Members added to a target group since the last tick (engine group), at the tick's time."""
        for cid in list(self.running):
            compiled = self.plan.campaigns[cid]
            if window_opens(self.at, compiled.campaign.window, compiled.tz) is None:
                continue
            with self._unit(), self._as_campaign(cid), self.store.transaction():
                ids = self.store.members_to_enroll(cid)
                if not ids:
                    continue
                partners, history = self.book.get_many(ids), self.store.history(ids)
                ctx = self._context(compiled, self.at)
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
        return audience_ids(self.store, self.plan, self.book, compiled, self._context(compiled, at))

    def _enroll_all(self, compiled: CompiledCampaign, ids: list[str], at: datetime, source: str,
                    not_again_at: datetime | None = None) -> int:
        history = self.store.history(ids) if ids else {}
        enrolled = 0
        for pid in ids:
            past = history.get(pid, [])
            if not_again_at is not None and any(
                    e.campaign == compiled.id and (e.started_at == not_again_at or e.finished_at == not_again_at)
                    for e in past):
                continue
            if not eligible_for_trigger(compiled.id, compiled.campaign, self._past(past), at):
                continue
            if self._enroll(compiled, pid, at, Origin.TRIGGER, source):
                enrolled += 1
        if enrolled:
            self.store.log(at, ENGINE_USER, "enrolled", compiled.id, count=enrolled, origin="trigger", trigger=source)
        return enrolled

    def _enroll(self, compiled: CompiledCampaign, pid: str, at: datetime, origin: Origin, source: str | None) -> bool:
        next_step, due = compiled.flow.first(at, self._tz(compiled, pid))
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
        with self._as_campaign(compiled.id), self.store.transaction():
            fresh = self.store.enrollment(scheduled.id)
            if fresh is None or fresh.status != "scheduled":
                return
            next_step, due = compiled.flow.first(fresh.started_at, self._tz(compiled, fresh.partner))
            self.store.update_enrollment(fresh, status="active", next_step=next_step, due_at=due)
            self.store.log(fresh.started_at, ENGINE_USER, "activated", fresh.campaign, fresh.partner, number=fresh.number)

    def _on_event(self, event_id: str, kind: str, at: datetime, pid: str, data: Mapping[str, Any]) -> None:
        with self.store.transaction():
            if not self.store.mark_event_processed(event_id):
                return
            partner = self.book.get(pid)
            for cid in self.running:
                compiled = self.plan.campaigns[cid]
                trigger = compiled.campaign.trigger
                if partner is None or trigger is None or trigger.event != kind:
                    continue
                since = self.since.get(cid)
                if since is None or at < since or window_opens(at, compiled.campaign.window, compiled.tz) is None:
                    continue
                with self._as_campaign(cid):
                    self._enroll_on_event(compiled, partner, event_id, kind, at, pid, data)

    def _enroll_on_event(self, compiled: CompiledCampaign, partner: Mapping, event_id: str, kind: str, at: datetime,
                         pid: str, data: Mapping[str, Any]) -> None:
        cid = compiled.id
        event = {"type": kind, "at": at, "partner": pid, "id": event_id, "data": dict(data)}
        ctx = self._context(compiled, at, event=event, pid=pid)
        if not compiled.audience.matches(partner, ctx, self.plan.groups):
            return
        if compiled.trigger_when is not None and not compiled.trigger_when.test(partner, ctx):
            return
        past = self._past(self.store.enrollments_of(pid))
        if eligible_for_trigger(cid, compiled.campaign, past, at) and \
                self._enroll(compiled, pid, at, Origin.TRIGGER, f"event:{event_id}"):
            self.store.log(at, ENGINE_USER, "enrolled", cid, pid, count=1, origin="trigger", event=event_id)

    # --- exits on changed records ----------------------------------------------------------

    def _check_exits(self, changed: list[str]) -> None:
        if not changed:
            return
        watched = {cid for cid in self.running
                   if self.plan.campaigns[cid].exit_when is not None or self.plan.campaigns[cid].campaign.exit_on_audience_loss}
        if not watched:
            return
        for chunk in _chunks(changed, BATCH):
            while not self._check_exits_of(chunk, watched & set(self.running)):
                pass  # a campaign failed: the chunk again, without it

    def _check_exits_of(self, chunk: list[str], watched: set[str]) -> bool:
        """Whether the chunk was done (not rolled back because a campaign failed)."""
        with self._unit() as unit, self.store.transaction():
            partners = self.book.get_many(chunk)
            for pid, enrollments in self.store.history(chunk).items():
                for e in enrollments:
                    if e.campaign in watched and e.status == "active" and pid in partners:
                        with self._as_campaign(e.campaign):
                            reason = self._exit_reason(self.plan.campaigns[e.campaign], e, partners[pid], self.at)
                        if reason is not None:
                            self._finish(e, reason, self.at)
        return not unit.failed

    def _exit_reason(self, compiled: CompiledCampaign, e: Enrollment, partner: Mapping, at: datetime) -> str | None:
        ctx = self._context(compiled, at, enrollment=e)
        if compiled.exit_when is not None and compiled.exit_when.test(partner, ctx):
            return FinishReason.EXIT
        if compiled.campaign.exit_on_audience_loss and not compiled.audience.matches(partner, ctx, self.plan.groups):
            return FinishReason.AUDIENCE_LOST
        return None

    # --- steps -----------------------------------------------------------------------------

    def _run_steps(self, until: datetime) -> None:
        """Execute every step due at or before ``until``, earliest first, in batches: one
        transaction per batch, which asks the store about all its steps at once and writes
        their step runs and messages at once (:class:`StepBatch`)."""
        while True:
            with self._unit(), self.store.transaction(exclusive=False):
                batch = self.store.due(until, self.running, BATCH)
                if not batch:
                    return
                partners = self.book.get_many({e.partner for e in batch})
                steps = StepBatch(self.store)
                steps.prefetch(self.plan, batch, partners)
                counts: Counter = Counter()
                earliest_new = None
                for e in batch:
                    if earliest_new is not None and e.due_at > earliest_new:
                        break  # a step this batch made due comes first: keep time order
                    if e.campaign in self._halted:
                        continue  # it stops after this batch: its steps wait
                    with self._as_campaign(e.campaign):
                        new_due = self._advance(e, partners.get(e.partner), counts, steps)
                    if new_due is not None and (earliest_new is None or new_due < earliest_new):
                        earliest_new = new_due
                steps.write()
                for (cid, step, status), n in sorted(counts.items()):
                    self._log_batch(cid, step, status, n)
            for cid, why in list(self._halted.items()):
                self._stop(CampaignFailed(cid, RuntimeError(why)))
            self._halted.clear()

    def _log_batch(self, cid: str, step_id: str, status: str, count: int, partner: str | None = None) -> None:
        """One audit-log line per batch of generated records: which step, what kind, how many."""
        node = self.plan.campaigns[cid].flow.node(step_id)
        self.store.log(self.at, ENGINE_USER, f"step.{status}", cid, partner, step=step_id,
                       kind=node.kind if node else None, count=count)

    def _tz(self, compiled: CompiledCampaign, partner_id: str):
        """The partner's local timezone for this campaign (read only when it can matter)."""
        return compiled.tz if compiled.timezone_field is None else compiled.local_tz(self.book.get(partner_id))

    def _advance(self, e: Enrollment, partner: Mapping | None, counts: Counter,
                 batch: "StepBatch | None" = None) -> datetime | None:
        """Bring one enrollment past its due step (or end); the new due time, if any. Its
        writes go with ``batch``'s, or at once when it is on its own."""
        if batch is None:
            batch = StepBatch(self.store)
            new_due = self._advance(e, partner, counts, batch)
            batch.write()
            return new_due
        compiled = self.plan.campaigns[e.campaign]
        campaign, due = compiled.campaign, e.due_at
        assert due is not None
        try:
            if partner is None:
                return self._finish(e, FinishReason.PARTNER_REMOVED, due)
            if e.next_step is None:
                return self._at_the_end(compiled, e, due)
            node = compiled.flow.node(e.next_step)
            if node is None:
                return self._step_removed(compiled, e, due)
            opens = window_opens(due, campaign.window, compiled.tz)
            if opens is None:
                return self._finish(e, FinishReason.WINDOW_CLOSED, due)
            if opens > due:
                self.store.update_enrollment(e, due_at=opens)
                return opens
            if compiled.exit_when is not None or campaign.exit_on_audience_loss:
                reason = self._exit_reason(compiled, e, partner, due)
                if reason is not None:
                    return self._finish(e, reason, due)
            tz = compiled.local_tz(partner)
            if any(batch.has_run(e.id, name) for name in compiled.flow.names(node.key)):  # skipped ahead by a user
                next_step, next_due = batch.position_after(compiled, node.key, due, tz)
                self.store.update_enrollment(e, after_step=node.key, next_step=next_step, due_at=next_due)
                return next_due
            if node.kind == "branch":
                return self._branch(compiled, e, node, partner, due, tz, counts, batch)
            if node.kind == "wait_for":
                return self._wait_for(compiled, e, node, partner, due, tz, counts, batch)
            step = node.item
            effects = self.effects(compiled, e, step, partner, due, batch=batch)
            next_step, next_due = batch.position_after(compiled, step.id, due, tz)
            self.store.update_enrollment(e, after_step=step.id, next_step=next_step, due_at=next_due)
            self._record(e, step.id, 1, effects, due, batch=batch)  # only once the compare-and-set won
            counts[(e.campaign, step.id, effects.status)] += 1
            return next_due
        except Conflict:
            return None  # another tick moved it first

    # --- flow: branches, waits-for and jumps ---------------------------------------------------

    def _branch(self, compiled: CompiledCampaign, e: Enrollment, node: Node, partner: Mapping, due: datetime,
                tz, counts: Counter, batch: StepBatch) -> datetime | None:
        """The first case that holds as of the branch's due time sends the enrollment to its
        target; none: on to the next step. The branch's run records which case won."""
        chosen = compiled.branch_target(node.key, partner, self._context(compiled, due, enrollment=e))
        number, target = chosen if chosen is not None else (None, None)
        effects = Effects("executed", detail={"case": number, "goto": target})
        if target is None:
            next_step, next_due = batch.position_after(compiled, node.key, due, tz)
            self.store.update_enrollment(e, after_step=node.key, next_step=next_step, due_at=next_due)
        else:
            next_due = self.jump(compiled, e, node.key, target, due, tz, SkipReason.BRANCH, batch)
        self._record(e, node.key, 1, effects, due, batch=batch)
        counts[(e.campaign, node.key, "executed")] += 1
        return next_due

    def _wait_for(self, compiled: CompiledCampaign, e: Enrollment, node: Node, partner: Mapping, due: datetime,
                  tz, counts: Counter, batch: StepBatch) -> datetime | None:
        """A wait-for ends at the first tick whose time sees its condition hold, or at its
        ``at_most``, whichever comes first. Reached now (``due``: when the wait began): asked at
        once, as of the tick's time; still false, the enrollment waits with ``at_most`` as its
        due time and every later tick asks again (:meth:`_ask_waits`). Due while waiting: it
        ended, by the condition (a tick found it true and made it due then) or by ``at_most``."""
        wait = node.wait_for
        assert wait is not None
        began = e.waiting_since or due
        deadline = began + wait.at_most
        if e.waiting_since is None:
            if deadline > self.at and not self._holds(compiled, node, e, partner):
                self.store.update_enrollment(e, waiting_since=due, due_at=deadline)
                return deadline
            ended = min(deadline, self.at)
        else:
            ended = due
        next_step, next_due = batch.position_after(compiled, node.key, ended, tz)
        self.store.update_enrollment(e, after_step=node.key, next_step=next_step, due_at=next_due)
        how = "condition" if ended < deadline else "at_most"
        self._record(e, node.key, 1, Effects("executed", detail={"began": iso(began), "ended_by": how}), ended,
                     batch=batch)
        counts[(e.campaign, node.key, "executed")] += 1
        return next_due

    def _holds(self, compiled: CompiledCampaign, node: Node, e: Enrollment, partner: Mapping) -> bool:
        """A wait-for's condition, as of the tick's time."""
        return compiled.wait_for[node.key].test(partner, self._context(compiled, self.at, enrollment=e))

    def _ask_waits(self) -> None:
        """Every enrollment waiting at a wait-for is asked its condition at the tick's time; one
        that holds becomes due now (its next step follows at once)."""
        campaigns = [cid for cid in self.running if self.plan.campaigns[cid].wait_for]
        after = 0
        while campaigns:
            with self._unit(), self.store.transaction(exclusive=False):
                waiting = self.store.waiting(self.at, campaigns, after, BATCH)
                if not waiting:
                    return
                partners = self.book.get_many({e.partner for e in waiting})
                for e in waiting:
                    compiled = self.plan.campaigns[e.campaign]
                    node = compiled.flow.node(e.next_step)
                    partner = partners.get(e.partner)
                    if node is None or node.wait_for is None or partner is None:
                        continue  # the tick's own rules deal with it when it falls due
                    with self._as_campaign(e.campaign):
                        if self._holds(compiled, node, e, partner):
                            try:
                                self.store.update_enrollment(e, due_at=self.at)
                            except Conflict:
                                pass  # another tick moved it first
                after = waiting[-1].id

    def jump(self, compiled: CompiledCampaign, e: Enrollment, origin: str | None, target: str, at: datetime, tz,
              reason: SkipReason, batch: StepBatch | None = None, *, inclusive: bool = False) -> datetime | None:
        """Move the enrollment from ``origin`` to ``target`` (END: it completes) at ``at``: the
        steps in between are recorded skipped with ``reason`` (those not run already)."""
        for node in compiled.flow.jumped_over(origin, target, inclusive=inclusive):
            ran = batch.has_run(e.id, node.key) if batch is not None else self.store.step_run(e.id, node.key)
            if not ran:
                self._record(e, node.key, 1, Effects("skipped", reason), at, batch=batch)
        if target == END:
            self.store.update_enrollment(e, status="finished", reason=str(FinishReason.COMPLETED), finished_at=at,
                                         due_at=None)
            self.report.finished += 1
            return None
        next_step, next_due = compiled.flow.at(target, at, tz)
        self.store.update_enrollment(e, after_step=e.after_step if inclusive else origin, next_step=next_step,
                                     due_at=next_due)
        return next_due

    def effects(self, compiled: CompiledCampaign, e: Enrollment, step, partner: Mapping, due: datetime, *,
                run: int = 1, condition: bool = True, batch: "StepBatch | None" = None) -> Effects:
        """What the step does for this partner as of ``due``: skipped (``when``, exclude,
        consent, a hard bounce) or executed (rendered). The store is asked through ``batch``
        (what it fetched in advance), or directly."""
        facts = batch if batch is not None else StepBatch(self.store)
        kind = facts.kind(compiled.id, step)
        ctx = self._context(compiled, due, enrollment=e)
        when = compiled.step_when.get(step.id) if condition else None
        if when is not None and not when.test(partner, ctx):
            return Effects("skipped", SkipReason.CONDITION)
        if self.plan.exclude is not None and self.plan.exclude.test(partner, ctx):
            return Effects("skipped", SkipReason.EXCLUDED)
        if kind in StepBatch.GATED:
            ledger = facts.consent_latest(e.partner, kind, due)
            if not compiled.audience.consents(kind, partner, ledger, ctx):
                return Effects("skipped", SkipReason.NO_CONSENT)
        address = partner.get(StepBatch.ADDRESS_FIELDS.get(kind, ""))
        if isinstance(address, str) and facts.undeliverable(address, due):  # it hard-bounced before
            return Effects("skipped", SkipReason.UNDELIVERABLE)
        if compiled.id not in self._numbers:
            self._numbers[compiled.id] = self.store.campaign_number(compiled.id)
        job = Job(compiled.id, compiled.campaign, self._numbers[compiled.id], step, partner, e.partner,
                  e.id, e.number, run, due, compiled.tz, self.plan.templates_dir, self.plan.settings, kind,
                  links=self.links)
        began = time.thread_time()
        effects = execute(job)
        if effects.status == "failed":
            self._note_failing(compiled.id, time.thread_time() - began, effects)
        return effects

    def _note_failing(self, cid: str, seconds: float, effects: Effects) -> None:
        """A template that runs out of its render budget fails its step, but spends that budget
        (2 s) first, for every partner: past :data:`FAILING_RENDERS_SECONDS` in one tick, the
        campaign stops for the rest of the tick (the steps done so far stay done, the others
        wait), so a broken template costs seconds a tick, not hours."""
        self._failing_time[cid] += seconds
        if self._failing_time[cid] > FAILING_RENDERS_SECONDS and cid in self.running:
            self._halted.setdefault(cid, f"its failing steps took {self._failing_time[cid]:.1f} s of this tick; "
                                         f"the last: {effects.detail.get('error', effects.reason)}")

    def _record(self, e: Enrollment, step_id: str, run: int, effects: Effects, due: datetime | None,
                at: datetime | None = None, batch: "StepBatch | None" = None) -> None:
        if batch is None:
            record_effects(self.store, e, step_id, run, effects, due, at or due)
        else:
            batch.record(e, step_id, run, effects, due, at or due)
        if effects.status == "executed":
            self.report.executed += 1
        elif effects.status == "skipped":
            self.report.skipped += 1
        else:
            self.report.failed += 1

    def _at_the_end(self, compiled: CompiledCampaign, e: Enrollment, due: datetime) -> datetime | None:
        """Past its last step: completed, unless the file gained steps after the last one it
        reached meanwhile (those are after its position, so they run for it)."""
        try:
            next_step, next_due = compiled.flow.after(e.after_step, self._reached_at(e), self._tz(compiled, e.partner))
        except KeyError:
            next_step = None
        if next_step is None:
            return self._finish(e, FinishReason.COMPLETED, due)
        self.store.update_enrollment(e, next_step=next_step, due_at=max(next_due, due))
        return max(next_due, due)

    def _reached_at(self, e: Enrollment) -> datetime:
        """When the last step the enrollment reached was due (its start, before any)."""
        first_runs = [r for r in self.store.step_runs(e.id) if r.step == e.after_step and r.run == 1]
        return (first_runs[0].due_at or first_runs[0].at) if first_runs and e.after_step else e.started_at

    def _step_removed(self, compiled: CompiledCampaign, e: Enrollment, due: datetime) -> datetime | None:
        """The step it waited for left the file: close it, and go on after the last step it
        reached, with the due times the waits of the file as it is now give from there."""
        self.store.record_step(e.id, e.next_step or "", 1, "skipped", SkipReason.STEP_REMOVED, due, due)
        self.report.skipped += 1
        try:
            next_step, next_due = compiled.flow.after(e.after_step, self._reached_at(e), self._tz(compiled, e.partner))
        except KeyError:
            return self._finish(e, FinishReason.REMOVED_STEP, due)
        self.store.update_enrollment(e, next_step=next_step, due_at=next_due)
        return next_due

    def _finish(self, e: Enrollment, reason: str, at: datetime) -> None:
        self.store.update_enrollment(e, status="finished", reason=str(reason), finished_at=at, due_at=None)
        self.report.finished += 1
        return None

    # --- evaluation ------------------------------------------------------------------------

    def _context(self, compiled: CompiledCampaign, at: datetime, *, enrollment: Enrollment | None = None,
                 event: Mapping | None = None, pid: str | None = None) -> Context:
        facts = StoreFacts(self.store, self.plan, compiled.id, enrollment, at)
        return Context(now=at, tz=compiled.tz, event=event, facts=facts, warnings=self.report.warnings)


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


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]
