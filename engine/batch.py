"""Steps executed together in one transaction: what they ask the store, asked once for all of
them, and what they produce, written in one statement each (:class:`StepBatch`)."""

from __future__ import annotations

from bisect import insort
from datetime import datetime, tzinfo
from typing import Mapping

from campaigns.shapes import Cap
from campaigns.policy import sends_in, window_of

from .channels import Outgoing
from .compiled import CompiledCampaign, CompiledWorkspace
from .delivery import Handover
from .steps import Effects
from .store import Enrollment, Store
from .store.records import payload_text


def record_effects(store: Store, e: Enrollment, step_id: str, run: int, effects: Effects, due: datetime | None,
                   at: datetime) -> None:
    """A step's state and everything it produced, in the caller's transaction."""
    batch = StepBatch(store)
    batch.record(e, step_id, run, effects, due, at)
    batch.write()


class StepBatch:
    """Steps executed together in one transaction (a batch of due steps; or one step). What
    the rules ask the store about each step (has it run already, the partner's consent ledger,
    a hard bounce of the address) is asked for all of them in one query each
    (:meth:`prefetch`); a question not asked in advance goes to the store when it comes. The
    step runs and outbox rows they produce are written in one statement each (:meth:`write`).

    Messages for the channels in ``local`` (whose transport is local and idempotent) are recorded
    sent at ``at`` with a handover that lists them (engine.delivery): :attr:`handover`, for the
    caller to hand over once the transaction commits."""

    GATED = ("email", "sms")  # the channels the consent ledger speaks for
    ADDRESS_FIELDS = {"email": "email", "sms": "phone"}  # the partner field a channel's messages go to

    def __init__(self, store: Store, local: frozenset[str] = frozenset(), at: datetime | None = None):
        self.store, self.local, self.at = store, local, at
        self.handover: Handover | None = None
        self._sent: dict[tuple[str, str], tuple[datetime, datetime, list[datetime]]] = {}  # (partner, channel) →
        # the sends known in an interval of due times: (after, before, sorted due times)
        self._sends: list[tuple] = []
        self._converted: dict[int, bool] = {}
        self._runs: set[tuple[int, str]] = set()  # (enrollment, step) with a run, of _known_runs
        self._known_runs: set[int] = set()  # the enrollments whose runs were fetched
        self._consent: dict[tuple[str, str, datetime], bool | None] = {}
        self._bounced: dict[tuple[str, datetime], bool] = {}
        self._steps: list[tuple] = []
        self._messages: list[tuple[Mapping, int, bool]] = []
        self._positions: dict[tuple[str, str, datetime, tzinfo], tuple[str | None, datetime]] = {}
        self._kinds: dict[tuple[str, str], str] = {}

    def prefetch(self, plan: CompiledWorkspace, enrollments: list[Enrollment], partners: Mapping[str, Mapping]) -> None:
        """Ask what the steps these enrollments wait for will ask, each as of its due time."""
        consents, addresses = [], []
        for e in enrollments:
            compiled = plan.campaigns.get(e.campaign)
            node = compiled.flow.node(e.next_step) if compiled is not None else None
            partner = partners.get(e.partner)
            if node is None or partner is None or e.due_at is None:
                continue
            for key in compiled.flow.reached_at_once(node.key):  # the step, and those after it at once
                kind = self.kind(e.campaign, compiled.steps[key])
                if kind in self.GATED:
                    consents.append((e.partner, kind, e.due_at))
                address = partner.get(self.ADDRESS_FIELDS.get(kind, ""))
                if isinstance(address, str):
                    addresses.append((address, e.due_at))
        self._prefetch_caps(plan, enrollments, partners)
        self._prefetch_goals(plan, enrollments)
        fresh = {e.id for e in enrollments} - self._known_runs
        if fresh:
            self._runs |= self.store.steps_run(fresh)
            self._known_runs |= fresh
        if consents:
            self._consent.update(self.store.consents_latest(consents))
        bounced = self.store.undeliverable_among(addresses) if addresses else set()
        self._bounced.update((key, key in bounced) for key in addresses)

    def _prefetch_caps(self, plan: CompiledWorkspace, enrollments: list[Enrollment],
                       partners: Mapping[str, Mapping]) -> None:
        """Lock the partners whose capped message steps may run in this batch (PostgreSQL: so
        another worker's batch cannot count their sends at the same time), then read their
        sends around the batch's due times, in one query."""
        caps = plan.settings.policies.frequency
        if not caps:
            return
        capped: set[str] = set()
        for e in enrollments:
            compiled = plan.campaigns.get(e.campaign)
            node = compiled.flow.node(e.next_step) if compiled is not None else None
            if node is None or e.due_at is None or e.partner not in partners:
                continue
            if any(compiled.rules.capped(compiled.steps[key].kind) for key in compiled.flow.reached_at_once(node.key)):
                capped.add(e.partner)
        if not capped:
            return
        self.store.lock_partners(sorted(capped))
        longest = max(cap.per for cap in caps.values())
        dues = [e.due_at for e in enrollments if e.partner in capped]
        after, before = min(dues) - longest, max(dues) + longest
        found = self.store.sends_between(sorted(capped), sorted(caps), after, before)
        for partner in capped:
            for channel in caps:
                self._sent[(partner, channel)] = (after, before, found.get((partner, channel), []))

    def _prefetch_goals(self, plan: CompiledWorkspace, enrollments: list[Enrollment]) -> None:
        """Which of the enrollments of campaigns whose goal exits have converted (in one query)."""
        ids = [e.id for e in enrollments if (c := plan.campaigns.get(e.campaign)) is not None
               and c.campaign.goal is not None and c.campaign.goal.exit and e.id not in self._converted]
        if ids:
            found = self.store.converted(ids)
            self._converted.update((i, i in found) for i in ids)

    def sends(self, partner: str, channel: str, due: datetime, cap: Cap) -> list[datetime]:
        """The partner's sends on the channel that a cap on a send due at ``due`` looks at: those
        fetched in advance or now, and those of this batch, sorted."""
        after, before = window_of(due, cap)
        known = self._sent.get((partner, channel))
        if known is None or after < known[0] or before > known[1]:
            found = self.store.sends_between([partner], [channel], after, before).get((partner, channel), [])
            for row in self._sends:  # this batch's, not written yet
                if row[:2] == (partner, channel):
                    insort(found, row[2])
            known = self._sent[(partner, channel)] = (after, before, found)
        return sends_in(known[2], after, before)

    def converted(self, enrollment_id: int) -> bool:
        if enrollment_id not in self._converted:
            self._converted[enrollment_id] = bool(self.store.converted([enrollment_id]))
        return self._converted[enrollment_id]

    def kind(self, campaign_id: str, step) -> str:
        """``step.kind`` (a step of the campaign), worked out once per batch."""
        key = (campaign_id, step.id)
        if key not in self._kinds:
            self._kinds[key] = step.kind
        return self._kinds[key]

    def position_after(self, compiled: CompiledCampaign, step_id: str, due: datetime,
                       tz: tzinfo) -> tuple[str | None, datetime]:
        """Where an enrollment goes after the step due at ``due`` (:meth:`Flow.after`), worked
        out once per batch for the many that are at the same place at the same time."""
        key = (compiled.id, step_id, due, tz)
        if key not in self._positions:
            self._positions[key] = compiled.flow.after(step_id, due, tz)
        return self._positions[key]

    def has_run(self, enrollment_id: int, step_id: str) -> bool:
        """Whether the step has a run in the enrollment (recorded before, or in this batch)."""
        key = (enrollment_id, step_id)
        if enrollment_id not in self._known_runs:
            self._known_runs.add(enrollment_id)
            self._runs |= self.store.steps_run([enrollment_id])
        return key in self._runs

    def consent_latest(self, partner: str, channel: str, until: datetime) -> bool | None:
        key = (partner, channel, until)
        if key not in self._consent:
            self._consent[key] = self.store.consent_latest(partner, channel, until)
        return self._consent[key]

    def undeliverable(self, address: str, until: datetime) -> bool:
        key = (address, until)
        if key not in self._bounced:
            self._bounced[key] = self.store.undeliverable(address, until)
        return self._bounced[key]

    def record(self, e: Enrollment, step_id: str, run: int, effects: Effects, due: datetime | None,
               at: datetime) -> None:
        """A step's state and everything it produced (written by :meth:`write`; activities and
        pop-ups, which are rare, at once)."""
        self._steps.append((e.id, step_id, run, effects.status, effects.reason, due, at, effects.detail))
        if effects.send is not None:
            sent_at = due or at
            self._sends.append((e.partner, effects.send, sent_at, e.id, step_id, run))
            known = self._sent.get((e.partner, effects.send))
            if known is not None:
                insort(known[2], sent_at)
        self._messages += [(message, e.id, effects.html) for message in effects.messages]
        if effects.activity is not None:
            self.store.add_activity(effects.activity)
        if effects.popup is not None:
            self.store.add_popup(effects.popup)
        self._runs.add((e.id, step_id))

    def write(self) -> None:
        """What :meth:`record` kept, into the caller's transaction."""
        if self._steps:
            self.store.record_steps(self._steps)
        if self._messages:
            handed = [m for m in self._messages if m[0]["channel"] in self.local] if self.at is not None else []
            queued = [m for m in self._messages if m[0]["channel"] not in self.local] if handed else self._messages
            if queued:
                self.store.add_messages(queued)
            if handed:
                self._hand_over(handed)
        if self._sends:
            self.store.record_sends(self._sends)
        self._steps, self._messages, self._sends = [], [], []

    def _hand_over(self, messages: list[tuple[Mapping, int, bool]]) -> None:
        assert self.at is not None and self.handover is None
        texts = [payload_text(record) for record, _, _ in messages]
        self.store.add_messages(messages, sent_at=self.at, payloads=texts)
        ids = [record["id"] for record, _, _ in messages]
        self.handover = Handover(self.store.add_handover(ids, self.at),
                                 [Outgoing(record["id"], record["channel"], record, html, text)
                                  for (record, _, html), text in zip(messages, texts)])
