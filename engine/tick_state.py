"""What the parts of one tick share (:class:`TickState`): the store, the compiled workspace, the
partners, the tick's time and report, which campaigns run, and the units of work whose counts
roll back with their transaction. The tick (engine.tick), its triggers (engine.triggers) and
the advancing of enrollments (engine.advance) each hold the same one."""

from __future__ import annotations

import sqlite3
from collections import Counter
from contextlib import contextmanager
from datetime import datetime
from typing import Iterator, Mapping

from dsl.diagnostics import error
from dsl.runtime import Context
from dsl.source import Span

from .compiled import CompiledCampaign, CompiledWorkspace
from .errors import StoreError
from .facts import StoreFacts
from .links import Links
from .partners import PartnerBook
from .report import CampaignFailed, TickReport, _Unit
from .store import Conflict, Enrollment, Store

ENGINE_USER = "engine"


class TickState:
    """One tick's shared state. Its containers are changed in place, never replaced, so every
    part that holds them sees the same ones."""

    def __init__(self, store: Store, plan: CompiledWorkspace, book: PartnerBook, at: datetime, links: Links):
        self.store, self.plan, self.book, self.at, self.links = store, plan, book, at, links
        self.report = TickReport(at, diagnostics=list(plan.workspace.errors))
        self.running: list[str] = []  # campaigns that run: loaded without errors, active, not held back
        self.since: dict[str, datetime | None] = {}  # campaign → the tick that last saw it switch on
        self.halted: dict[str, str] = {}  # campaign → why it stops after the batch in progress
        self.failing_time: Counter = Counter()  # campaign → CPU seconds its failed steps took
        self.numbers: dict[str, int | None] = {}  # campaign → its number in the store

    # --- a campaign that fails at run time fails alone ---------------------------------------

    @contextmanager
    def as_campaign(self, cid: str) -> Iterator[None]:
        """Work done for one campaign: what it raises, unless the store failed, is that
        campaign's failure (:class:`CampaignFailed`)."""
        try:
            yield
        except (CampaignFailed, Conflict, StoreError, sqlite3.Error):
            raise
        except Exception as exc:  # a bug, or input the checker let through: reported
            raise CampaignFailed(cid, exc) from exc

    @contextmanager
    def unit(self) -> Iterator[_Unit]:
        """One unit of work around a transaction: if the transaction rolls back, so do the
        counts it added to the report. A campaign that failed inside it stops for the rest of
        the tick (reported; the other campaigns go on, and the unit may be done again)."""
        unit = _Unit(self.report.counts())
        try:
            yield unit
        except CampaignFailed as failed:
            self.report.restore(unit.counts)
            unit.failed = True
            self.stop(failed)
        except BaseException:
            self.report.restore(unit.counts)
            raise

    def stop(self, failed: CampaignFailed) -> None:
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

    # --- evaluation ------------------------------------------------------------------------

    def context(self, compiled: CompiledCampaign, at: datetime, *, enrollment: Enrollment | None = None,
                event: Mapping | None = None) -> Context:
        """Where an expression of the campaign is evaluated as of ``at`` (for an enrollment)."""
        facts = StoreFacts(self.store, self.plan, compiled.id, enrollment, at)
        return Context(now=at, tz=compiled.tz, event=event, facts=facts, warnings=self.report.warnings)

    def tz_of(self, compiled: CompiledCampaign, partner_id: str):
        """The partner's local timezone for this campaign (their record is read only when it can matter)."""
        return compiled.tz if compiled.timezone_field is None else compiled.local_tz(self.book.get(partner_id))


class Part:
    """A part of a tick: it holds the tick's shared state, and names its pieces as its own."""

    def __init__(self, state: TickState):
        self.state = state
        self.store, self.plan, self.book, self.at, self.report = state.store, state.plan, state.book, state.at, state.report
        self.running, self.since, self.halted = state.running, state.since, state.halted
        self.unit, self.as_campaign, self.stop = state.unit, state.as_campaign, state.stop
        self.context, self.tz_of = state.context, state.tz_of
