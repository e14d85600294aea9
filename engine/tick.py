"""One tick: everything due at or before logical time ``at``, in time order (SPEC §6, §10).

    deliver what a killed tick left committed but undelivered
    import the partner source if it changed; check exits for the partners that changed
    note campaigns switched on or off (and their priorities)
    repeat: execute the steps due up to the next trigger occurrence, then fire it
            (scheduled manual starts, events, cron and `at` occurrences, each at its own time)
    sample every `audience` trigger at `at` (only the partners something happened to, between
            full samples), enroll new target-group members, ask every waiting wait-for's
            condition, and execute the steps that makes due
    convert the enrollments whose campaign's `when` goal holds now
    deliver the outbox

The parts: this module keeps the order above and the transactions things run in;
engine.campaign_sync says which campaigns run, engine.exits which enrollments a changed record
ends, engine.triggers who is enrolled when, engine.advance how one enrollment moves through its
campaign's flow, engine.delivery how messages reach their transports; engine.tick_state is what
they share (store, plan, time, report, the running
campaigns, and the units of work whose counts roll back with their transaction).

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
  The occurrences of one instant all fire before the steps they make due then run, so those
  steps go together, in priority order (SPEC §11).
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

import random
import time
from collections import Counter
from datetime import datetime
from functools import cached_property

from .advance import Advance
from .batch import StepBatch, record_effects
from .campaign_sync import sync_campaigns
from .clock import aware
from .compiled import CompiledCampaign, CompiledWorkspace
from .delivery import Delivery, Transports, deliver, hand_over_committed, local_channels, transports
from .errors import StoreContention
from .exits import Exits, exits_revision
from .facts import StoreFacts
from .goals import Goals
from .links import links_for, require_signer
from .membership import leave_static_groups
from .monitor import check_monitors
from .partners import PartnerBook, PartnerImport, import_partners
from .report import CampaignFailed, TickReport
from .steps import Effects
from .store import Conflict, Enrollment, Store
from .tick_state import ENGINE_USER, Part, TickState
from .triggers import Triggers

__all__ = ["Tick", "StoreFacts", "TickReport", "record_effects", "tick"]

BATCH = 500
CONTENTION_ATTEMPTS = 5  # runs of a tick that another worker's deadlock may cut short


def tick(store: Store, plan: CompiledWorkspace, book: PartnerBook, at: datetime,
         using: Transports | None = None, *, offline: bool = False) -> TickReport:
    """One tick at ``at``; messages go through ``using`` (default: the transports engine.yaml
    configures). ``offline`` (a simulation) signs the links in messages with a key no server
    accepts, so it needs no secret."""
    return Tick(store, plan, book, aware(at), using, offline=offline).run()


def import_before_tick(store: Store, plan: CompiledWorkspace, at: datetime) -> PartnerImport:
    """The partner source imported as a tick would, for a command that runs before the first
    tick, or after the source changed and before the next tick: ``engine start``, ``explain``
    or ``group add`` see the partners the next tick will. That tick still checks the exits of
    the records this import changed."""
    exits_revision(store)
    return import_partners(store, plan, at)


class Tick(Part):
    """One tick: the order of things (see the module's docstring), the transactions they run in,
    and the operations' way in (:meth:`catch_up`, :meth:`effects`, :meth:`jump`). Who is enrolled
    is :class:`~engine.triggers.Triggers`' business, how an enrollment moves on
    :class:`~engine.advance.Advance`'s, which exits a changed record triggers
    :class:`~engine.exits.Exits`'."""

    def __init__(self, store: Store, plan: CompiledWorkspace, book: PartnerBook, at: datetime,
                 using: Transports | None = None, *, offline: bool = False):
        web = plan.settings.web
        links = links_for(web, require_signer(web, offline))  # MissingSecret: nothing has run yet
        super().__init__(TickState(store, plan, book, at, links))
        self.using = using
        self.advance = Advance(self.state)
        self.goals = Goals(self.state, self.advance)
        self.triggers = Triggers(self.state, self.goals)
        self.exits = Exits(self.state, self.advance)

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
        exits_checked = exits_revision(self.store)
        imported = import_partners(self.store, self.plan, self.at)
        self.report.diagnostics += imported.diagnostics
        self.book.refresh()
        sync_campaigns(self.state)
        self.exits.check(exits_checked)
        fired_at = None
        while True:
            upcoming = self.triggers.next_occurrence()
            if upcoming is None or upcoming[0] != fired_at:  # occurrences of one instant fire together
                self._run_steps(upcoming[0] if upcoming else self.at)
            if upcoming is None:
                break
            with self.unit():
                upcoming[1]()
            fired_at = upcoming[0]
        self.triggers.sample_audiences()
        with self.store.transaction():
            leave_static_groups(self.store, self.plan.groups, self.at, ENGINE_USER)
        self.triggers.enroll_members()
        self._ask_waits()
        self._run_steps(self.at)
        self.goals.check_conditions()
        moved = any((self.report.enrolled, self.report.executed, self.report.skipped, self.report.finished,
                     self.report.failed))
        self.report.alerts += check_monitors(self.store, self.plan, self.book, self.running, self.at, moved=moved)
        self._deliver()

    @cached_property
    def transports(self) -> Transports:
        return transports(self.plan) if self.using is None else self.using

    @cached_property
    def local_channels(self) -> frozenset[str]:
        """The channels whose messages a batch hands over as it commits (engine.delivery)."""
        return local_channels(self.transports)

    def _deliver(self) -> None:
        done = deliver(self.store, self.plan, self.at, self.transports)
        self._count_delivery(done)
        for channel in done.waiting:
            self.report.warnings.append(f"{channel} messages wait in the outbox: engine.yaml gives the {channel} "
                                        "channel no transport that can send them")

    def _count_delivery(self, done: Delivery) -> None:
        self.report.delivered += done.sent
        self.report.retried += done.retry
        self.report.undeliverable += done.failed

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
            self.advance.advance(e, self.book.get(partner_id), counts)
            moved = self.store.enrollment(e.id)
            if moved is None or moved.version == e.version:
                break  # nothing moved (another process has it): do not spin
        for (cid, step, status), n in sorted(counts.items()):
            self._log_batch(cid, step, status, n, partner_id)

    def _run_steps(self, until: datetime) -> None:
        """Execute every step due at or before ``until``, earliest first, in batches: one
        transaction per batch, which asks the store about all its steps at once and writes
        their step runs and messages at once (:class:`StepBatch`)."""
        while True:
            handover = None
            with self.unit() as unit, self.store.transaction(exclusive=False):
                batch = self.store.due(until, self.running, BATCH)
                if not batch:
                    return
                partners = self.book.get_many({e.partner for e in batch})
                steps = StepBatch(self.store, self.local_channels, self.at)
                steps.prefetch(self.plan, batch, partners)
                counts: Counter = Counter()
                earliest_new = None
                for e in batch:
                    if earliest_new is not None and e.due_at > earliest_new:
                        break  # a step this batch made due comes first: keep time order
                    with self.as_campaign(e.campaign):
                        moved = self.advance.advance_now(e, partners.get(e.partner), counts, steps)
                    new_due = moved.due_at if moved is not None else None
                    if new_due is not None and (earliest_new is None or new_due < earliest_new):
                        earliest_new = new_due
                steps.write()
                for (cid, step, status), n in sorted(counts.items()):
                    self._log_batch(cid, step, status, n)
                handover = steps.handover
            if handover is not None and not unit.failed:  # committed: to the files now
                self._count_delivery(hand_over_committed(self.store, self.transports, handover, self.at))
            for cid, why in list(self.halted.items()):
                self.stop(CampaignFailed(cid, RuntimeError(why)))
            self.halted.clear()

    def _ask_waits(self) -> None:
        """Every enrollment waiting at a wait-for is asked its condition at the tick's time; one
        that holds becomes due now (its next step follows at once)."""
        campaigns = [cid for cid in self.running if self.plan.campaigns[cid].wait_for]
        after = 0
        while campaigns:
            with self.unit(), self.store.transaction(exclusive=False):
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
                    with self.as_campaign(e.campaign):
                        if self.advance.holds(compiled, node, e, partner):
                            try:
                                self.store.update_enrollment(e, due_at=self.at)
                            except Conflict:
                                pass  # another tick moved it first
                after = waiting[-1].id

    def _log_batch(self, cid: str, step_id: str, status: str, count: int, partner: str | None = None) -> None:
        """One audit-log line per batch of generated records: which step, what kind, how many."""
        node = self.plan.campaigns[cid].flow.node(step_id)
        self.store.log(self.at, ENGINE_USER, f"step.{status}", cid, partner, step=step_id,
                       kind=node.kind if node else None, count=count)

    # --- for the operations ------------------------------------------------------------------

    def execute(self, campaign_id: str) -> TickReport:
        """``engine execute``: the campaign's trigger fires at the tick's time, on demand, and
        what that makes due in the campaign runs now and is delivered; the other campaigns are
        left to the next tick. The caller has checked that the campaign may run now."""
        self._deliver()
        sync_campaigns(self.state)
        if campaign_id in self.running:
            self.running[:] = [campaign_id]
            self.triggers.execute(self.plan.campaigns[campaign_id])
            self._run_steps(self.at)
            self._deliver()
        self.report.diagnostics = list(dict.fromkeys(self.report.diagnostics))
        return self.report

    def effects(self, compiled: CompiledCampaign, e: Enrollment, step, partner, due: datetime, **options) -> Effects:
        """What the step does for this partner as of ``due`` (:meth:`Advance.effects`)."""
        return self.advance.effects(compiled, e, step, partner, due, **options)

    def jump(self, compiled: CompiledCampaign, e: Enrollment, origin: str | None, target: str, at: datetime, tz,
             reason, *, inclusive: bool = False) -> Enrollment | None:
        """Move an enrollment to ``target`` at ``at`` (:meth:`Advance.jump`), in the caller's transaction."""
        return self.advance.jump(compiled, e, origin, target, at, tz, reason, inclusive=inclusive)
