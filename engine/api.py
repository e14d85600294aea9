"""The ``Engine``: the one object Python code and tests use; the CLI is a thin layer over it.

    with Engine.open("examples", clock=FixedClock("2026-07-01T00:00")) as engine:
        engine.tick()                          # as of the clock
        engine.run(until="2026-08-01")         # hourly ticks up to then
        engine.start("demo-invite", "p001", user="alice")
        engine.outbox("email")                 # what was sent

Every method takes its time as ``at`` (a datetime, or text such as ``2026-07-01T09:00``, read in
the workspace's timezone) and falls back to the engine's clock; nothing reads the wall clock
except :class:`engine.clock.SystemClock`. The workspace files are re-read when they change, so a
test can edit a campaign between two ticks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from dsl.diagnostics import SourceError, did_you_mean, error
from dsl.source import Span

from .clock import Clock, SystemClock, aware, from_iso, iso, parse_every, parse_time
from .compiled import CompiledWorkspace, compile_workspace, fingerprint
from .errors import UnknownName
from .horizon import check_run, check_tick
from .partners import PartnerBook
from .plan_cache import cached_plan
from .store import Enrollment, Store, connect, store_location
from .tick import TickReport, import_before_tick, tick

if TYPE_CHECKING:  # the other methods import what they use, so that a tick imports none of it
    from . import groups, operations
    from .ingest import EventImport

LAST_TICK = "tick.last"
STORE_VARIABLE = "ENGINE_STORE"  # a store URL: overrides engine.yaml's store



def copy_workspace(source: str | Path, target: Path) -> Path:
    """A copy of the workspace without its runtime state (`engine simulate`, the test fixtures)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".engine", "__pycache__"))
    return target

class Engine:
    def __init__(self, root: Path, store: Store | Path | str, clock: Clock):
        """``store`` is a store, or where to open one on first use (so a command that fails on
        its arguments leaves no database behind): the path of a SQLite file, or a PostgreSQL URL."""
        self.root, self.clock = root, clock
        self._store = store if not isinstance(store, (Path, str)) else None
        self._store_location = store if isinstance(store, (Path, str)) else None
        self._plan: CompiledWorkspace | None = None
        self._book: PartnerBook | None = None
        self.offline = False  # a simulation: every channel to the workspace's own files, never a server
        self._offline: tuple[CompiledWorkspace, dict] | None = None
        self.recheck_seconds = 0.0  # how stale the compiled workspace may be (engine serve: 1 s)
        self._checked = 0.0

    @classmethod
    def open(cls, workspace: str | Path = ".", store: str | None = None, clock: Clock | None = None) -> "Engine":
        """The engine of a workspace, on the store ``store`` (a URL), else the one the
        ``ENGINE_STORE`` environment variable names, else engine.yaml's. SourceError when
        engine.yaml itself is unusable (the campaigns' own errors only keep those campaigns from
        running); ValueError for a URL that names no store."""
        root = Path(workspace)
        loaded = load_plan(root)
        url = store or os.environ.get(STORE_VARIABLE) or loaded.workspace.settings.store
        engine = cls(root, store_location(url, root), clock or SystemClock())
        engine._plan = loaded
        return engine

    @property
    def store(self) -> Store:
        """The store, opened at first use. A process that opens it keeps runtime state beside
        the workspace (``.engine/``: the compiled workspace's cache, the file outbox), even
        when the store is elsewhere (PostgreSQL): the folder is made then, where it can be."""
        if self._store is None:
            assert self._store_location is not None
            self._store = connect(self._store_location)
            with contextlib.suppress(OSError):  # (a read-only checkout goes without the cache)
                (self.root / ".engine").mkdir(exist_ok=True)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the workspace -----------------------------------------------------------------------

    @property
    def plan(self) -> CompiledWorkspace:
        """The compiled workspace, re-loaded when one of its files changed (looked at on every use,
        or at most every ``recheck_seconds``: a server's requests need not scan the workspace)."""
        if self._plan is not None and self.recheck_seconds and time.monotonic() - self._checked < self.recheck_seconds:
            return self._plan
        if self._plan is None or self._plan.fingerprint != fingerprint(self.root):
            self._plan = load_plan(self.root)
            self._book = None
        self._checked = time.monotonic()
        return self._plan

    @property
    def book(self) -> PartnerBook:
        return self._book_of(self.plan)

    def _book_of(self, plan: CompiledWorkspace) -> PartnerBook:
        """The partner book of ``plan``, the plan just looked at (a tick looks at the files once)."""
        if self._book is None:
            self._book = PartnerBook(self.store, plan)
        self._book.refresh()
        return self._book

    def _offline_transports(self, plan: CompiledWorkspace) -> dict:
        """What a simulation delivers through: made once per compiled workspace, not per tick."""
        if self._offline is None or self._offline[0] is not plan:
            from .delivery import offline_transports

            self._offline = (plan, offline_transports(plan))
        return self._offline[1]

    def read_partners(self, at: datetime | str | None = None) -> PartnerBook:
        """The partner records, the source imported first when it changed since the last import
        (a tick's or a command's): an operation or a read command before the first tick sees
        the partners the tick will. A source with errors keeps the records it had (the tick
        reports the errors)."""
        import_before_tick(self.store, self.plan, self.time(at))
        return self.book

    def time(self, at: datetime | str | None) -> datetime:
        if at is None:
            return aware(self.clock.now())
        if isinstance(at, str):
            return parse_time(at, self.plan.tz)
        return aware(at)

    # --- ticks -------------------------------------------------------------------------------

    def tick(self, at: datetime | str | None = None, *, force: bool = False) -> TickReport:
        """Everything due at or before ``at``. Refused (:class:`~campaigns.enrollment.Refused`)
        when ``at`` is far beyond the last tick and the wall clock, unless ``force``
        (:mod:`engine.horizon`)."""
        when = self.time(at)
        plan = self.plan
        if not force:
            check_tick(self.store, plan, when, SystemClock().now(), self.store.meta(LAST_TICK))
        report = tick(self.store, plan, self._book_of(plan), when, self._offline_transports(plan) if self.offline else None,
                      offline=self.offline)
        with self.store.transaction():
            last = self.store.meta(LAST_TICK)
            if last is None or from_iso(last) < when:
                self.store.set_meta(LAST_TICK, iso(when))
        return report

    def run(self, until: datetime | str, every: timedelta | str = "1h", start: datetime | str | None = None,
            progress: Callable[[int, int, TickReport], None] | None = None, *, force: bool = False) -> TickReport:
        """Ticks at ``start``, ``start + every``, … and at ``until``; the totals. Without
        ``start``, from one interval after the last tick (or just one tick at ``until``).
        Refused when that is more than :data:`engine.horizon.MAX_TICKS` ticks, or (each tick)
        when a tick covers more than a tick may, unless ``force``."""
        end = self.time(until)
        step = parse_every(every) if isinstance(every, str) else every
        if step <= timedelta(0):
            raise ValueError("the interval between ticks must be positive")
        if start is not None:
            first = self.time(start)
        else:
            last = self.store.meta(LAST_TICK)
            first = from_iso(last) + step if last else end
        if not force:
            check_run(first, end, step)
        times = []
        moment = first
        while moment < end:
            times.append(moment)
            moment += step
        times.append(end)
        total = TickReport(end)
        for i, moment in enumerate(times, 1):
            report = self.tick(moment, force=force)
            total.add(report)
            if progress is not None:
                progress(i, len(times), report)
        total.diagnostics = list(dict.fromkeys(total.diagnostics))
        return total

    # --- events --------------------------------------------------------------------------------

    def import_events(self, path: str | Path, at: datetime | str | None = None, *,
                      user: str | None = None) -> EventImport:
        """Store the events of a JSONL file (SPEC §8); event triggers use them at the next tick.
        Bad lines are reported and skipped; an event seen before counts once.

        ``user``: who imports, refused (:class:`~campaigns.enrollment.Refused`) unless they have
        the ``events`` or ``marketing`` role when engine.yaml lists users, and written to the
        audit log. Without one, the import is the program's own feed (a simulation, a test, a
        signed webhook), logged as ``engine``; the command line always names a user."""
        from . import operations
        from .ingest import import_events

        plan = self.plan
        who = operations.resolve_user(plan, user, "events.import") if user is not None else "engine"
        when = self.time(at)
        return import_events(self.store, plan, self.read_partners(when), Path(path), when, who)

    # --- operations ------------------------------------------------------------------------------

    def _operator(self, user: str | None, at: datetime | str | None) -> operations.Operator:
        from . import operations

        plan = self.plan
        who, when = operations.resolve_user(plan, user), self.time(at)
        return operations.Operator(self.store, plan, self.read_partners(when), who, when)

    def start(self, campaign: str, partner: str, on: datetime | str | None = None, *, user: str | None = None,
              at: datetime | str | None = None) -> Enrollment:
        from . import operations

        op = self._operator(user, at)
        begins = None
        if on is not None:
            tz = op.plan.campaigns[campaign].tz if campaign in op.plan.campaigns else op.plan.tz
            begins = parse_time(on, tz) if isinstance(on, str) else aware(on)
        return operations.start(op, campaign, partner, begins)

    def pause(self, campaign: str | Sequence[str], partners: str | Sequence[str], *, user: str | None = None,
              at: datetime | str | None = None) -> list[Enrollment]:
        """Pause the partners' current enrollments in the campaign (or each of several
        campaigns): all of them or none."""
        return self._change("PAUSE", campaign, partners, user, at)

    def resume(self, campaign: str | Sequence[str], partners: str | Sequence[str], *, user: str | None = None,
               at: datetime | str | None = None) -> list[Enrollment]:
        return self._change("RESUME", campaign, partners, user, at)

    def remove(self, campaign: str | Sequence[str], partners: str | Sequence[str], *, user: str | None = None,
               at: datetime | str | None = None) -> list[Enrollment]:
        return self._change("REMOVE", campaign, partners, user, at)

    def _change(self, operation: str, campaign: str | Sequence[str], partners: str | Sequence[str], user: str | None,
                at: datetime | str | None) -> list[Enrollment]:
        from campaigns.enrollment import Operation

        from . import operations

        return operations.change(self._operator(user, at), Operation[operation], campaign, _many(partners))

    def execute(self, campaign: str, *, user: str | None = None, at: datetime | str | None = None) -> TickReport:
        """Fire the campaign's trigger now, on demand, and run what falls due in it."""
        from . import operations

        return operations.execute(self._operator(user, at), campaign)

    def startable(self, partner: str, at: datetime | str | None = None) -> list[dict[str, Any]]:
        """Every campaign, and whether the partner can be started in it now (why not, if not)."""
        from . import operations

        when = self.time(at)
        reader = operations.Operator(self.store, self.plan, self.read_partners(when), "", when)
        return operations.startable(reader, partner)

    def members(self, campaign: str, *, status: str | None = None, page: int = 1,
                per_page: int | None = None) -> dict[str, Any]:
        """The campaign's members and enrollees, a page at a time (``per_page`` default: 100)."""
        from . import views

        if campaign not in self.plan.workspace.files and not self.store.campaign_number(campaign):
            raise UnknownName(f"unknown campaign '{campaign}'{did_you_mean(campaign, list(self.plan.workspace.files))}")
        return views.members(self.store, self.plan, campaign, status, page, per_page or views.PER_PAGE)

    def skip(self, campaign: str, step: str, partner: str, *, user: str | None = None,
             at: datetime | str | None = None) -> Enrollment:
        from . import operations

        return operations.skip(self._operator(user, at), campaign, step, partner)

    def rerun(self, campaign: str, step: str, partner: str, *, user: str | None = None,
              at: datetime | str | None = None) -> str:
        from . import operations

        return operations.rerun(self._operator(user, at), campaign, step, partner)

    def respond(self, target: str, response: str, *, answers: Mapping[str, str] | None = None,
                duration: timedelta | str | None = None, user: str | None = None,
                at: datetime | str | None = None) -> operations.Answered:
        """Answer an activity (or a mailing: a sent email or SMS) with one of its step's
        responses; its follow-up campaign starts at once."""
        from . import operations

        length = parse_every(duration) if isinstance(duration, str) else duration
        return operations.respond(self._operator(user, at), target, response, answers, length)

    def complete(self, activity: str, result: str, *, user: str | None = None,
                 at: datetime | str | None = None) -> dict:
        """Complete an activity that has no responses with a free result."""
        from . import operations

        return operations.complete(self._operator(user, at), activity, result)

    def group(self, campaign: str, action: str, argument: str | None = None, *, dry_run: bool = False,
              user: str | None = None, at: datetime | str | None = None) -> "groups.GroupChange":
        """Change a campaign's target group (see engine.groups.ACTIONS); the next tick enrolls
        new members."""
        from . import groups

        return groups.change(self._operator(user, at), campaign, action, argument, dry_run=dry_run)

    def draft(self, campaign: str, *, user: str | None = None, at: datetime | str | None = None) -> None:
        """Return a scheduled one-shot campaign to draft (until its file is edited)."""
        from . import operations

        operations.draft(self._operator(user, at), campaign)

    def read_popup(self, popup_id: str, partner: str, *, user: str | None = None,
                   at: datetime | str | None = None) -> dict:
        """The pop-up was read: it no longer shows on the partner's pages (it stays in the
        message center). Reading it again changes nothing.

        ``user``: who marks it read for the partner, refused unless they have the ``marketing``
        or ``events`` role when engine.yaml lists users, and written to the audit log. Without
        one, it is the partner's own action (the partner portal's signed link), logged as
        ``partner:P``; the command line always names a user."""
        from . import operations

        who = operations.resolve_user(self.plan, user, "popup.read") if user is not None else f"partner:{partner}"
        when = self.time(at)
        popup = self.store.popup(popup_id)
        if popup is None or popup["partner"] != partner:
            raise UnknownName(f"partner {partner} has no pop-up '{popup_id}' (see engine popups --partner {partner})")
        with self.store.transaction():
            if self.store.mark_popup_read(popup_id, partner, when):
                self.store.log(when, who, "popup.read", popup["campaign"], partner, popup=popup_id)
        found = self.store.popup(popup_id)
        assert found is not None
        return found

    # --- what happened -----------------------------------------------------------------------------

    def status(self, *, partner: str | None = None, campaign: str | None = None) -> dict[str, Any]:
        from . import groups, operations, views

        if partner is not None:
            found = views.partner_campaigns(self.store, self.plan, partner)
            if campaign is not None:
                found["enrollments"] = [e for e in found["enrollments"] if e["campaign"] == campaign]
            return found
        if campaign is not None:
            summary = views.campaign_summary(self.store, self.plan, campaign)
            if campaign in self.plan.campaigns:
                reader = operations.Operator(self.store, self.plan, self.read_partners(), "", self.time(None))
                summary["target_group"] = groups.summary(reader, campaign)
            return summary
        return views.all_campaigns(self.store, self.plan)

    def steps(self, campaign: str, partner: str, number: int | None = None) -> dict[str, Any] | None:
        from . import views

        return views.enrollment_steps(self.store, self.plan, campaign, partner, number)

    def log(self, campaign: str | None = None) -> list[dict]:
        return self.store.log_entries(campaign)

    def outbox(self, channel: str | None = None, *, campaign: str | None = None,
               partner: str | None = None) -> list[dict]:
        """Messages committed by steps (email, sms, letter), with ``delivered_at``."""
        return self.store.messages(channel, campaign, partner)

    def sent(self, channel: str) -> list[dict]:
        """What the file transport wrote: the lines of .engine/outbox/<channel>.jsonl."""
        from .channels.file import read_lines

        return read_lines(self.root / ".engine" / "outbox" / f"{channel}.jsonl")

    def letters(self, campaign: str, step: str) -> list[dict[str, str]]:
        from .channels.file import read_rows

        return read_rows(self.root / ".engine" / "letters" / campaign / f"{step}.csv")

    def activities(self, campaign: str | None = None, partner: str | None = None, *, assignee: str | None = None,
                   status: str | None = None) -> list[dict]:
        return self.store.activities(campaign, partner, assignee, status)

    def responses(self, partner: str | None = None, campaign: str | None = None) -> list[dict]:
        return self.store.responses(partner, campaign)

    def consent(self, partner: str, at: datetime | str | None = None) -> dict[str, Any]:
        """The consent ledger of a partner (proof of consent) and what it means now per channel."""
        from . import views

        return views.consent(self.store, self.plan, self.read_partners(at), partner, self.time(at))

    def popups(self, partner: str | None = None, *, page: str | None = None, unread: bool = False) -> list[dict]:
        """The partner's message center (every pop-up, read or not); with ``page``, what shows
        on that portal page now: the unread pop-ups that name it."""
        found = self.store.popups(partner)
        if page is not None:
            found = [p for p in found if page in p["pages"] and p["read_at"] is None]
        if unread:
            found = [p for p in found if p["read_at"] is None]
        return found

    def explain(self, campaign: str, partner: str, at: datetime | str | None = None) -> dict[str, Any]:
        """Why the partner is or is not in the campaign's audience, sub-expression by sub-expression."""
        from .explain import explain_partner

        return explain_partner(self.store, self.plan, self.read_partners(at), campaign, partner, self.time(at))

    def alerts(self, campaign: str | None = None, *, open_only: bool = False) -> list[dict]:
        """In-Campaign % alerts: raised (and when cleared)."""
        return self.store.alerts(campaign, open_only)

    def stats(self, campaign: str, at: datetime | str | None = None, *, measure: bool = True) -> dict[str, Any]:
        """``engine stats``; without ``measure``, the In-Campaign % as the last tick measured it."""
        from . import stats

        if campaign not in self.plan.workspace.files and self.store.campaign_number(campaign) is None:
            raise UnknownName(f"unknown campaign '{campaign}'{did_you_mean(campaign, list(self.plan.workspace.files))}")
        return stats.campaign_stats(self.store, self.plan, self.read_partners(at), campaign, self.time(at),
                                    measure=measure)


def load_plan(root: Path) -> CompiledWorkspace:
    if not (root / "engine.yaml").is_file():
        raise SourceError([error(Span(str(root / "engine.yaml"), 1, 1), f"no engine.yaml in {root}: not a workspace")])
    return cached_plan(root, _load_plan)


def _load_plan(root: Path) -> CompiledWorkspace:
    from campaigns.workspace import load_workspace

    workspace = load_workspace(root, check_partners=False)
    settings_errors = [d for d in workspace.errors if Path(d.span.path).name == "engine.yaml"]
    if settings_errors:
        raise SourceError(settings_errors)
    return compile_workspace(workspace)


def _many(partners: str | Sequence[str]) -> list[str]:
    return [partners] if isinstance(partners, str) else list(partners)



