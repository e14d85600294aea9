"""Advancing one enrollment through its campaign's flow (:class:`Advance`): the step it waits
for executes as of its due time (or is skipped: its condition, exclude, consent, a bounce, the
holdout, a frequency cap), waits for quiet hours, send days or a cap's free slot, a branch
chooses a case, a split a path, a wait-for ends or goes on waiting, a jump skips the steps it
passes over, and the enrollment moves on to its next position or finishes. Every write goes
into the caller's transaction, through the batch the step belongs to (engine.batch).

The policies of a message step, in order: the holdout skips it; quiet hours and send days move
it to the next allowed local instant (without a step run: it runs then, as of then); its own
``when``, exclude, consent and address rules may skip it; a frequency cap skips or defers it
(``on_cap``). A transactional campaign has no policies (and no consent rule).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from typing import Mapping

from campaigns.enrollment import FinishReason, SkipReason, window_opens
from campaigns.flow import END, Node
from campaigns.policy import Hold, assign, cap_allows, cap_detail, cap_frees, held_out, is_message, sending_hold, weights

from .batch import StepBatch, record_effects
from .clock import iso
from .compiled import CompiledCampaign
from .steps import Effects, Job, execute
from .store import Conflict, Enrollment
from .tick_state import Part

FAILING_RENDERS_SECONDS = 5.0  # CPU a campaign's failing steps may take in one tick before it stops


class Advance(Part):
    """How one tick moves enrollments on."""

    def advance_now(self, e: Enrollment, partner: Mapping | None, counts: Counter,
                     batch: StepBatch) -> Enrollment | None:
        """Bring one enrollment past everything due at its due time: a branch, a jump, a
        wait-for that holds and the steps after them are done in the same pass (in file order,
        at one instant, so time order holds), not one batch later each."""
        moved = None
        while e.campaign not in self.halted:  # a halted campaign stops after this batch: its steps wait
            moved = self.advance(e, partner, counts, batch)
            if moved is None or moved.status != "active" or moved.due_at != e.due_at:
                return moved
            e = moved
        return moved

    def advance(self, e: Enrollment, partner: Mapping | None, counts: Counter,
                 batch: "StepBatch | None" = None) -> Enrollment | None:
        """Bring one enrollment past its due step (or end): the enrollment as it is now, or None
        when it finished or another tick moved it first. Its writes go with ``batch``'s, or at
        once when it is on its own."""
        if batch is None:
            batch = StepBatch(self.store)
            moved = self.advance(e, partner, counts, batch)
            batch.write()
            return moved
        compiled = self.plan.campaigns[e.campaign]
        campaign, due = compiled.campaign, e.due_at
        assert due is not None
        try:
            if partner is None:
                return self.finish(e, FinishReason.PARTNER_REMOVED, due)
            if e.next_step is None:
                return self._at_the_end(compiled, e, due)
            node = compiled.flow.node(e.next_step)
            if node is None:
                return self._step_removed(compiled, e, due)
            opens = window_opens(due, campaign.window, compiled.tz)
            if opens is None:
                return self.finish(e, FinishReason.WINDOW_CLOSED, due)
            if opens > due:
                return self.store.update_enrollment(e, due_at=opens)
            if compiled.exit_when is not None or campaign.exit_on_audience_loss:
                reason = self.exit_reason(compiled, e, partner, due)
                if reason is not None:
                    return self.finish(e, reason, due)
            if campaign.goal is not None and campaign.goal.exit and batch.converted(e.id):
                return self.finish(e, FinishReason.GOAL, due)  # converted while paused, now resumed
            tz = compiled.local_tz(partner)
            if any(batch.has_run(e.id, name) for name in compiled.flow.names(node.key)):  # skipped ahead by a user
                return self._move_on(compiled, e, node.key, due, tz, batch)
            if node.kind in ("branch", "split"):
                return self._choose(compiled, e, node, partner, due, tz, counts, batch)
            if node.kind == "wait_for":
                return self._wait_for(compiled, e, node, partner, due, tz, counts, batch)
            step = node.item
            effects = self._due_effects(compiled, e, step, partner, due, tz, batch)
            if effects.hold is not None:  # deferred: quiet hours, send days or a cap's free slot
                return self._hold(e, step.id, effects.hold, due, counts)
            moved = self._move_on(compiled, e, step.id, due, tz, batch)
            self._record(e, step.id, 1, effects, due, batch=batch)  # only once the compare-and-set won
            counts[(e.campaign, step.id, effects.status)] += 1
            return moved
        except Conflict:
            return None  # another tick moved it first

    def _due_effects(self, compiled: CompiledCampaign, e: Enrollment, step, partner: Mapping, due: datetime, tz,
                     batch: StepBatch) -> Effects:
        """What a step that fell due does, its policies first (see the module's docstring): held
        out, held by quiet hours or send days (status ``deferred``), or :meth:`effects` with its
        frequency cap. A step that runs after a hold says which rule held it."""
        message = is_message(step.kind)
        if message and held_out(compiled.id, e.partner, compiled.campaign.holdout):
            return Effects("skipped", SkipReason.HOLDOUT)
        hold = sending_hold(due, tz, compiled.rules) if message else None
        if hold is not None:
            return Effects("deferred", hold=hold)
        effects = self.effects(compiled, e, step, partner, due, batch=batch, capped=True)
        if e.held is not None and effects.hold is None:
            effects.detail = {**effects.detail, "held": json.loads(e.held)}
        return effects

    def _choose(self, compiled: CompiledCampaign, e: Enrollment, node: Node, partner: Mapping, due: datetime,
                tz, counts: Counter, batch: StepBatch) -> Enrollment | None:
        """A branch: the first case that holds as of its due time sends the enrollment to its
        target (none: on to the next step). A split: the partner's path (campaigns.policy.assign)
        does. The run records the choice."""
        if node.kind == "split":
            path = assign(compiled.id, node.key, e.partner, weights(node.item.split))
            target, reason = node.item.split[path].goto, SkipReason.SPLIT
            detail = {"path": path, "goto": target}
        else:
            chosen = compiled.branch_target(node.key, partner, self.context(compiled, due, enrollment=e))
            number, target = chosen if chosen is not None else (None, None)
            detail, reason = {"case": number, "goto": target}, SkipReason.BRANCH
        if target is None:
            moved = self._move_on(compiled, e, node.key, due, tz, batch)
        else:
            moved = self.jump(compiled, e, node.key, target, due, tz, reason, batch)
        self._record(e, node.key, 1, Effects("executed", detail=detail), due, batch=batch)
        counts[(e.campaign, node.key, "executed")] += 1
        return moved

    def _hold(self, e: Enrollment, step_id: str, hold: Hold, due: datetime, counts: Counter) -> Enrollment:
        """A message step that may not go at its due time waits until ``hold.until``; the
        enrollment keeps which rule moved it, and from when (first moved: kept over later moves)."""
        since = datetime.fromisoformat(json.loads(e.held)["from"]) if e.held else due
        moved = self.store.update_enrollment(e, due_at=hold.until, held=hold.as_json(since))
        counts[(e.campaign, step_id, "deferred")] += 1
        self.report.deferred += 1
        return moved

    def _wait_for(self, compiled: CompiledCampaign, e: Enrollment, node: Node, partner: Mapping, due: datetime,
                  tz, counts: Counter, batch: StepBatch) -> Enrollment | None:
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
            if deadline > self.at and not self.holds(compiled, node, e, partner):
                return self.store.update_enrollment(e, waiting_since=due, due_at=deadline)
            ended = min(deadline, self.at)
        else:
            ended = due
        moved = self._move_on(compiled, e, node.key, ended, tz, batch)
        how = "condition" if ended < deadline else "at_most"
        self._record(e, node.key, 1, Effects("executed", detail={"began": iso(began), "ended_by": how}), ended,
                     batch=batch)
        counts[(e.campaign, node.key, "executed")] += 1
        return moved

    def _move_on(self, compiled: CompiledCampaign, e: Enrollment, key: str, due: datetime, tz,
                 batch: StepBatch) -> Enrollment | None:
        """Past ``key`` (due or ended at ``due``): to the next position, or, with nothing after
        it and no trailing wait, completed at once."""
        next_step, next_due = batch.position_after(compiled, key, due, tz)
        if next_step is None and next_due == due:
            self.store.update_enrollment(e, after_step=key, next_step=None, status="finished",
                                         reason=str(FinishReason.COMPLETED), finished_at=due, due_at=None)
            self.report.finished += 1
            return None
        return self.store.update_enrollment(e, after_step=key, next_step=next_step, due_at=next_due)

    def holds(self, compiled: CompiledCampaign, node: Node, e: Enrollment, partner: Mapping) -> bool:
        """A wait-for's condition, as of the tick's time."""
        return compiled.wait_for[node.key].test(partner, self.context(compiled, self.at, enrollment=e))

    def jump(self, compiled: CompiledCampaign, e: Enrollment, origin: str | None, target: str, at: datetime, tz,
              reason: SkipReason, batch: StepBatch | None = None, *, inclusive: bool = False) -> Enrollment | None:
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
        return self.store.update_enrollment(e, after_step=e.after_step if inclusive else origin,
                                            next_step=next_step, due_at=next_due)

    def effects(self, compiled: CompiledCampaign, e: Enrollment, step, partner: Mapping, due: datetime, *,
                run: int = 1, condition: bool = True, batch: "StepBatch | None" = None,
                capped: bool = False) -> Effects:
        """What the step does for this partner as of ``due``: skipped (``when``, exclude,
        consent, a hard bounce; ``capped``: a frequency cap) or executed (rendered); or, capped
        with ``on_cap: defer``, held until a slot frees. The store is asked through ``batch``
        (what it fetched in advance), or directly."""
        facts = batch if batch is not None else StepBatch(self.store)
        kind = facts.kind(compiled.id, step)
        ctx = self.context(compiled, due, enrollment=e)
        when = compiled.step_when.get(step.id) if condition else None
        if when is not None and not when.test(partner, ctx):
            return Effects("skipped", SkipReason.CONDITION)
        if self.plan.exclude is not None and self.plan.exclude.test(partner, ctx):
            return Effects("skipped", SkipReason.EXCLUDED)
        if kind in StepBatch.GATED and not compiled.campaign.transactional:
            ledger = facts.consent_latest(e.partner, kind, due)
            if not compiled.audience.consents(kind, partner, ledger, ctx):
                return Effects("skipped", SkipReason.NO_CONSENT)
        address = partner.get(StepBatch.ADDRESS_FIELDS.get(kind, ""))
        if isinstance(address, str) and facts.undeliverable(address, due):  # it hard-bounced before
            return Effects("skipped", SkipReason.UNDELIVERABLE)
        cap = compiled.rules.capped(kind) if capped else None
        sent = facts.sends(e.partner, kind, due, cap) if cap is not None else []
        if cap is not None and not cap_allows(due, sent, cap):
            detail = cap_detail(kind, cap)
            if compiled.rules.on_cap == "defer":
                return Effects("deferred", hold=Hold("frequency_cap", detail, cap_frees(due, sent, cap)))
            return Effects("skipped", SkipReason.FREQUENCY_CAP, detail={"rule": detail})
        if compiled.id not in self.state.numbers:
            self.state.numbers[compiled.id] = self.store.campaign_number(compiled.id)
        job = Job(compiled.id, compiled.campaign, self.state.numbers[compiled.id], step, partner, e.partner,
                  e.id, e.number, run, due, compiled.tz, self.plan.templates_dir, self.plan.settings, kind,
                  links=self.state.links)
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
        self.state.failing_time[cid] += seconds
        if self.state.failing_time[cid] > FAILING_RENDERS_SECONDS and cid in self.running:
            self.halted.setdefault(cid, f"its failing steps took {self.state.failing_time[cid]:.1f} s of this tick; "
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

    def _at_the_end(self, compiled: CompiledCampaign, e: Enrollment, due: datetime) -> Enrollment | None:
        """Past its last step: completed, unless the file gained steps after the last one it
        reached meanwhile (those are after its position, so they run for it)."""
        try:
            next_step, next_due = compiled.flow.after(e.after_step, self._reached_at(e), self.tz_of(compiled, e.partner))
        except KeyError:
            next_step = None
        if next_step is None:
            return self.finish(e, FinishReason.COMPLETED, due)
        return self.store.update_enrollment(e, next_step=next_step, due_at=max(next_due, due))

    def _reached_at(self, e: Enrollment) -> datetime:
        """When the last step the enrollment reached was due (its start, before any)."""
        first_runs = [r for r in self.store.step_runs(e.id) if r.step == e.after_step and r.run == 1]
        return (first_runs[0].due_at or first_runs[0].at) if first_runs and e.after_step else e.started_at

    def _step_removed(self, compiled: CompiledCampaign, e: Enrollment, due: datetime) -> Enrollment | None:
        """The step it waited for left the file: close it, and go on after the last step it
        reached, with the due times the waits of the file as it is now give from there."""
        self.store.record_step(e.id, e.next_step or "", 1, "skipped", SkipReason.STEP_REMOVED, due, due)
        self.report.skipped += 1
        try:
            next_step, next_due = compiled.flow.after(e.after_step, self._reached_at(e), self.tz_of(compiled, e.partner))
        except KeyError:
            return self.finish(e, FinishReason.REMOVED_STEP, due)
        return self.store.update_enrollment(e, next_step=next_step, due_at=next_due)

    def finish(self, e: Enrollment, reason: str, at: datetime) -> None:
        self.store.update_enrollment(e, status="finished", reason=str(reason), finished_at=at, due_at=None)
        self.report.finished += 1
        return None

    def exit_reason(self, compiled: CompiledCampaign, e: Enrollment, partner: Mapping, at: datetime) -> str | None:
        ctx = self.context(compiled, at, enrollment=e)
        if compiled.exit_when is not None and compiled.exit_when.test(partner, ctx):
            return FinishReason.EXIT
        if compiled.campaign.exit_on_audience_loss and not compiled.audience.matches(partner, ctx, self.plan.groups):
            return FinishReason.AUDIENCE_LOST
        return None
