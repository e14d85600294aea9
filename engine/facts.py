"""What expressions may ask the store about a partner, as of a time (:class:`StoreFacts`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping

from .compiled import CompiledWorkspace
from .store import Enrollment, Store


@dataclass
class StoreFacts:
    """What expressions may ask about a partner (``opened("welcome")``, ``in_campaign("x")``),
    answered from the store as of the evaluation's time. Steps are those of ``campaign``;
    engagement counts within the current enrollment (since it started). Never changed once
    made (not frozen: one is made for every step executed, and a frozen one costs more)."""

    store: Store
    plan: CompiledWorkspace
    campaign: str
    enrollment: Enrollment | None
    now: datetime

    def _id(self, partner: Mapping) -> str:
        return str(partner.get(self.plan.id_field))

    def in_group(self, partner: Mapping, name: str) -> bool:
        return self._id(partner) in self.plan.groups.get(name, ())

    def in_campaign(self, partner: Mapping, campaign_id: str) -> bool:
        return self.store.has_current(self._id(partner), campaign_id)

    def was_in_campaign(self, partner: Mapping, campaign_id: str, within: timedelta | None = None) -> bool:
        """Ever enrolled (up to now); with ``within``, enrolled at some time in [now - within, now]."""
        return self.store.was_enrolled(self._id(partner), campaign_id, self.now, within)

    def _names(self, step_id: str) -> tuple[str, ...]:
        """The step's id and the ids it had (``renamed_from``): its history is under all of them."""
        compiled = self.plan.campaigns.get(self.campaign)
        return compiled.flow.names(step_id) if compiled is not None else (step_id,)

    def _engaged(self, partner: Mapping, step_id: str, kind: str) -> bool:
        since = self.enrollment.started_at if self.enrollment is not None else None
        return any(self.store.engaged(self._id(partner), self.campaign, name, kind, since, self.now)
                   for name in self._names(step_id))

    def opened(self, partner: Mapping, step_id: str) -> bool:
        return self._engaged(partner, step_id, "opened") or self._engaged(partner, step_id, "clicked")

    def clicked(self, partner: Mapping, step_id: str) -> bool:
        return self._engaged(partner, step_id, "clicked")

    def bounced(self, partner: Mapping, step_id: str) -> bool:
        return self._engaged(partner, step_id, "bounced")

    def responded(self, partner: Mapping, step_id: str) -> bool:
        return self.response(partner, step_id) is not None

    def response(self, partner: Mapping, step_id: str) -> str | None:
        if self.enrollment is None:
            return None
        for name in self._names(step_id):
            found = self.store.response(self.enrollment.id, name, self.now)
            if found is not None:
                return found
        return None

    def variant(self, partner: Mapping, step_id: str) -> str | None:
        return self._executed(step_id, "variant")

    def split(self, partner: Mapping, step_id: str) -> str | None:
        return self._executed(step_id, "path")

    def _executed(self, step_id: str, key: str) -> str | None:
        """What the step's executed run recorded under ``key`` (the variant sent, the path
        taken), up to now; a skipped run sent nothing and took no path."""
        if self.enrollment is None:
            return None
        for name in self._names(step_id):
            run = self.store.step_run(self.enrollment.id, name)
            if run is not None and run.status == "executed" and run.at <= self.now:
                found = run.detail.get(key)
                if isinstance(found, str):
                    return found
        return None
