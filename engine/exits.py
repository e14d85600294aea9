"""Exits checked when a partner's record changes: the partners a partner import changed are
asked each running campaign's ``exit_when`` and audience (``exit_on_audience_loss``), once the
import has committed. The partner revision checked is kept in the store (meta
``exits.revision``) and moved only after the check, so a tick killed in between checks again,
never skips."""

from __future__ import annotations

from .advance import Advance
from .store import Store
from .store.records import chunks
from .tick_state import Part, TickState

EXITS_CHECKED = "exits.revision"  # meta key: the partner revision whose changes exits were checked for
CHUNK = 500  # partners checked in one transaction


def exits_revision(store: Store) -> int:
    """The partner revision whose changes the exit checks have seen; a store that has none yet
    starts from the revision it has now (before the coming import)."""
    raw = store.meta(EXITS_CHECKED)
    if raw is not None:
        return int(raw)
    with store.transaction():
        revision = store.partner_revision()
        store.set_meta(EXITS_CHECKED, str(revision))
    return revision


class Exits(Part):
    """The exit checks of one tick (see the module's docstring)."""

    def __init__(self, state: TickState, advance: Advance):
        super().__init__(state)
        self.advance = advance

    def check(self, since: int) -> None:
        """Exits of the partners whose records changed since revision ``since`` (this tick's
        import, and any an earlier tick imported but was killed before it checked); the
        revision checked is recorded only after the check, so a kill repeats it, never skips it."""
        revision = self.store.partner_revision()
        if revision == since:
            return
        watched = {cid for cid in self.running
                   if self.plan.campaigns[cid].exit_when is not None or self.plan.campaigns[cid].campaign.exit_on_audience_loss}
        if watched:
            for chunk in chunks(list(self.store.partners_changed_since(since)), CHUNK):
                while not self._check_chunk(chunk, watched & set(self.running)):
                    pass  # a campaign failed: the chunk again, without it
        with self.store.transaction():
            self.store.set_meta(EXITS_CHECKED, str(revision))

    def _check_chunk(self, chunk: list[str], watched: set[str]) -> bool:
        """Whether the chunk was done (not rolled back because a campaign failed)."""
        with self.unit() as unit, self.store.transaction():
            partners = self.book.get_many(chunk)
            for pid, enrollments in self.store.history(chunk).items():
                for e in enrollments:
                    if e.campaign in watched and e.status == "active" and pid in partners:
                        with self.as_campaign(e.campaign):
                            reason = self.advance.exit_reason(self.plan.campaigns[e.campaign], e, partners[pid], self.at)
                        if reason is not None:
                            self.advance.finish(e, reason, self.at)
        return not unit.failed
