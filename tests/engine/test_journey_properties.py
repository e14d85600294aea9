"""Property tests of journeys (SPEC §11: branches, waits-for, response gotos, renames) through
real ticks of the ``make_engine`` fixture, on both stores.

Each property draws a small campaign and a few partners (hypothesis), runs ticks at drawn
times, and compares what the store and the outbox say with an answer the test works out on
its own: a tiny reference evaluator of branch cases in plain Python over the record (not the
engine's compiler), a wait-for's end computed from the tick times, a control engine that never
saw a rename, or the same inputs ticked once at the end. Runtime is bounded like
test_tick_properties.py: a handful of partners, at most seven steps, a few dozen ticks per
example, ``max_examples`` between 20 and 40, ``deadline=None``. Every property runs on both
stores; on PostgreSQL each example takes a fresh schema (``make_engine``'s further copies).

The contract's words each property checks are quoted in its docstring.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from campaigns.enrollment import Refused
from engine.clock import iso
from tests.engine.test_tick import campaign, partner, partners_csv, set_campaign, set_partners, workspace

START = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
TIERS = ("silver", "gold", "platinum")

# Every example builds its own workspace and engine(s) inside the test's tmp_path (a
# function-scoped fixture, hence the health check), each under a name of its own.
COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}
_examples = itertools.count()


def _engine(tmp_path, make_engine, campaigns: dict[str, str], rows: list[dict[str, str]], *copies: str):
    """Fresh engines (one per name in ``copies``) on one new workspace, clocks at START."""
    n = next(_examples)
    root = workspace(tmp_path, campaigns, partners_csv(*rows), name=f"src-{n}")
    engines = [make_engine(root, at=iso(START), name=f"run-{n}-{copy}") for copy in copies or ("run",)]
    for engine in engines:
        assert set(campaigns) <= set(engine.plan.campaigns), engine.plan.workspace.errors  # no errors in the file
    return engines


# --- partner records and a reference evaluator of conditions -------------------------------------

records = st.fixed_dictionaries({
    "tier": st.sampled_from(TIERS),
    "revenue": st.sampled_from([None, 0, 999, 1000, 1001, 5000, 7500]),
    "paid": st.sampled_from([None, False, True]),
})


def row(pid: str, record: Mapping[str, Any]) -> dict[str, str]:
    """The partners.csv row of a record (None: an empty cell, a null)."""
    return partner(pid, tier=record["tier"], revenue=record["revenue"], paid=record["paid"])


@dataclass(frozen=True)
class Expr:
    """An expression's text and its meaning, written here straight from SPEC §4 / the README's
    "expression language" decisions: ``and``/``or``/``not`` take anything but true as false,
    a comparison with a null operand is false except ``==``/``!=``, null arithmetic is null."""

    text: str
    holds: Callable[[Mapping[str, Any], datetime], bool] = field(compare=False)

    def __repr__(self) -> str:
        return self.text


COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
           "!=": operator.ne}


def _compare(op: str, a: Any, b: Any) -> bool:
    if a is None or b is None:
        return op in ("==", "!=") and COMPARE[op](a, b)
    return COMPARE[op](a, b)


def _tier_is(tier: str) -> Expr:
    return Expr(f'partner.tier == "{tier}"', lambda r, now: r["tier"] == tier)


def _tier_in(tiers: list[str]) -> Expr:
    return Expr("partner.tier in [" + ", ".join(f'"{t}"' for t in tiers) + "]", lambda r, now: r["tier"] in tiers)


def _revenue(op: str, limit: int, times: int) -> Expr:
    text = "partner.revenue" if times == 1 else f"partner.revenue * {times}"
    return Expr(f"{text} {op} {limit}",
                lambda r, now: _compare(op, None if r["revenue"] is None else r["revenue"] * times, limit))


PAID = (Expr("partner.paid", lambda r, now: r["paid"] is True),
        Expr("not partner.paid", lambda r, now: r["paid"] is not True),
        Expr("partner.paid == false", lambda r, now: r["paid"] is False))


def _now_from(moment: datetime) -> Expr:
    return Expr(f"now >= {iso(moment)}", lambda r, now: now >= moment)


def _and(a: Expr, b: Expr) -> Expr:
    return Expr(f"({a.text}) and ({b.text})", lambda r, now: a.holds(r, now) and b.holds(r, now))


def _or(a: Expr, b: Expr) -> Expr:
    return Expr(f"({a.text}) or ({b.text})", lambda r, now: a.holds(r, now) or b.holds(r, now))


def _not(a: Expr) -> Expr:
    return Expr(f"not ({a.text})", lambda r, now: not a.holds(r, now))


def expressions(moments: list[datetime]) -> st.SearchStrategy[Expr]:
    """Conditions over tier, revenue, paid and (``now >= T``, T one of ``moments``) the time."""
    atoms = st.one_of(
        st.sampled_from(TIERS).map(_tier_is),
        st.lists(st.sampled_from(TIERS), min_size=1, max_size=2, unique=True).map(_tier_in),
        st.builds(_revenue, st.sampled_from(sorted(COMPARE)), st.sampled_from([1000, 5000]), st.sampled_from([1, 2])),
        st.sampled_from(PAID),
        st.sampled_from(moments).map(_now_from),
    )
    return st.recursive(atoms, lambda inner: st.one_of(st.builds(_and, inner, inner), st.builds(_or, inner, inner),
                                                       st.builds(_not, inner)), max_leaves=3)


def choose(cases: list[tuple[Expr, str]], otherwise: str | None, record: Mapping, now: datetime):
    """The reference branch: (case number, target) of the first case that holds, else None."""
    for number, (when, target) in enumerate(cases, 1):
        if when.holds(record, now):
            return number, target
    if otherwise is not None:
        return len(cases) + 1, otherwise
    return None, None


# --- campaigns drawn as a list of items -------------------------------------------------------------

ACTIONS = ("email", "activity")
POSITIONS = ("email", "activity", "branch", "wait_for")  # what an enrollment can be at (campaigns/flow.py)


@dataclass
class Item:
    kind: str  # email | activity | branch | wait | wait_for
    id: str | None
    wait: str | None = None  # a plain wait ("2h", "until"), a wait-for's at_most
    cond: Expr | None = None  # a wait-for's condition, an email's `when`
    cases: tuple[tuple[Expr, str], ...] = ()
    otherwise: str | None = None  # a branch's else
    responses: tuple[tuple[str, str | None], ...] = ()  # an activity's (key, goto)

    def lines(self, name: str | None, old: tuple[str, ...], names: Mapping[str, str]) -> list[str]:
        to = lambda target: names.get(target, target)  # a goto follows the renames
        head = ([f"id: {name}"] if name else []) + ([f"renamed_from: [{', '.join(old)}]"] if old else [])
        if self.kind == "email":
            body = ['email: {subject: "S {{ partner.name }}", body: "B {{ partner.name }}"}']
            body += [f"when: '{self.cond.text}'"] if self.cond is not None else []
        elif self.kind == "activity":
            body = ["activity:", "  kind: call", "  subject: Call", "  responses:"]
            body += [f"    {key}: {{result: successful{f', goto: {to(goto)}' if goto else ''}}}"
                     for key, goto in self.responses]
        elif self.kind == "branch":
            body = ["branch:"] + [f"  - {{when: '{when.text}', goto: {to(target)}}}" for when, target in self.cases]
            body += [f"  - {{else: {to(self.otherwise)}}}"] if self.otherwise is not None else []
        elif self.kind == "wait":
            body = ['wait: {until: "08:00"}' if self.wait == "until" else f"wait: {self.wait}"]
        else:
            body = [f"wait: {{for: '{self.cond.text}', at_most: {self.wait}}}"]
        fields = head + body
        return ["  - " + fields[0]] + ["    " + f for f in fields[1:]]


def render(items: list[Item], names: Mapping[str, str] | None = None,
           history: Mapping[str, tuple[str, ...]] | None = None) -> str:
    """The steps' YAML, each id renamed by ``names`` with its older ids in ``history``."""
    names, history = names or {}, history or {}
    return "".join(line + "\n" for it in items
                   for line in it.lines(names.get(it.id, it.id) if it.id else None, history.get(it.id, ()), names))


def keys(items: list[Item], names: Mapping[str, str] | None = None) -> list[str | None]:
    """Each item's flow key under ``names``: its id; ``wait@PREVIOUS`` (``.2``…) for a wait-for
    without one, PREVIOUS the nearest id before it, ``start`` at the top (campaigns/flow.py)."""
    names = names or {}
    last, repeats, found = "start", 0, []
    for it in items:
        name = names.get(it.id, it.id) if it.id else None
        if it.kind == "wait_for" and name is None:
            repeats += 1
            found.append(f"wait@{last}" + (f".{repeats}" if repeats > 1 else ""))
        else:
            found.append(name)
        if name is not None:
            last, repeats = name, 0
    return found


@st.composite
def flows(draw, kinds: tuple[str, ...], moments: list[datetime], *, waits: tuple[str, ...] = ("30m", "2h", "1d"),
          unnamed_waits_for: bool = True, conditions: bool = False, max_items: int = 7) -> list[Item]:
    """Two to ``max_items`` items of ``kinds`` (one more when none sends: an email, or an
    activity when ``kinds`` has them); branches and responses jump forward only, to an id of a
    later item or to end."""
    chosen = draw(st.lists(st.sampled_from(kinds), min_size=2, max_size=max_items))
    for kind in ("activity" if "activity" in kinds else "email",):  # something that sends, an activity if any
        if kind not in chosen:
            chosen.insert(draw(st.integers(0, len(chosen))), kind)
    when = expressions(moments)
    items: list[Item] = []
    for i, kind in enumerate(chosen):
        if kind in ("email", "activity", "branch"):
            cond = draw(st.one_of(st.none(), st.none(), when)) if kind == "email" and conditions else None
            items.append(Item(kind, f"{kind[0]}{i}", cond=cond))
        elif kind == "wait":
            items.append(Item(kind, f"w{i}" if draw(st.booleans()) else None, wait=draw(st.sampled_from(waits))))
        else:
            named = draw(st.booleans()) if unnamed_waits_for else True
            items.append(Item(kind, f"f{i}" if named else None, wait=draw(st.sampled_from(["2h", "1d"])),
                              cond=draw(st.sampled_from(PAID[:2]) | when)))
    for i, it in enumerate(items):
        later = st.sampled_from([x.id for x in items[i + 1:] if x.id] + ["end"])
        if it.kind == "branch":
            it.cases = tuple(draw(st.lists(st.tuples(when, later), min_size=1, max_size=3)))
            it.otherwise = draw(st.one_of(st.none(), st.none(), later))
        elif it.kind == "activity":
            it.responses = tuple((f"r{n}", draw(later if n == 1 else st.none() | later))  # r1 always jumps
                                 for n in range(1, draw(st.integers(1, 3)) + 1))
    return items


def step_table(engine, cid: str, pids: list[str], rename: Callable[[str], str] = lambda s: s) -> dict:
    """partner → enrollment status and every step's (step, run, status, reason, due, at, detail),
    the step ids (and a branch's goto) read through ``rename``."""
    table = {}
    for pid in pids:
        found = engine.steps(cid, pid)
        if found is None:
            table[pid] = None
            continue
        runs = []
        for s in found["steps"]:
            detail = dict(s.get("detail") or {})
            if detail.get("goto"):
                detail["goto"] = rename(detail["goto"])
            runs.append((rename(s["step"]), s["run"], s["status"], s["reason"], s["due_at"], s["at"],
                         tuple(sorted(detail.items()))))
        table[pid] = (found["status"], found["reason"], found["finished_at"], sorted(runs, key=repr))
    return table


def sends(engine, rename: Callable[[str], str] = lambda s: s) -> list[tuple[str, str, str]]:
    return sorted((m["partner"], rename(m["step"]), m["at"]) for m in engine.outbox("email"))


# --- 1. branches --------------------------------------------------------------------------------------


BRANCH_MOMENTS = [START, START + HOUR, START + 6 * HOUR, START + 24 * HOUR, START + 48 * HOUR]


@settings(max_examples=30, **COMMON)
@given(data=st.data())
def test_a_branch_takes_the_case_a_reference_evaluation_of_the_record_chooses(tmp_path, make_engine, data):
    """"A branch is evaluated at its due time. The first case whose `when` holds wins; none:
    next step; `else: X` always holds; target `end` finishes (reason completed). Steps jumped
    over are recorded `skipped` with reason `branch`."

    The branch is due a drawn pause after the first email; the partner records change (drawn)
    before the tick that runs it, which comes a drawn lag after its due time: the cases must see
    the new records and ``now`` = the due time, not the tick's."""
    after = [f"s{i}" for i in range(1, data.draw(st.integers(2, 4), label="steps after") + 1)]
    targets = st.sampled_from(after + ["end"])
    cases = data.draw(st.lists(st.tuples(expressions(BRANCH_MOMENTS), targets), min_size=2, max_size=4), label="cases")
    otherwise = data.draw(st.one_of(st.none(), st.none(), targets), label="else")
    pause = data.draw(st.sampled_from([1, 6, 24]), label="pause (h)")
    lag = data.draw(st.sampled_from([0, 1, 30]), label="tick lag (h)")
    pids = ["p1", "p2", "p3"]
    before = data.draw(st.lists(records, min_size=3, max_size=3), label="records at the start")
    later = data.draw(st.lists(records, min_size=3, max_size=3), label="records at the branch")

    branch = Item("branch", "route", cases=tuple(cases), otherwise=otherwise)
    steps = render([Item("email", "first"), Item("wait", None, wait=f"{pause}h"), branch]
                   + [Item("email", s) for s in after])
    (engine,) = _engine(tmp_path, make_engine, {"j": campaign(steps=steps)},
                        [row(p, r) for p, r in zip(pids, before)])
    try:
        engine.tick(START)
        set_partners(engine, *[row(p, r) for p, r in zip(pids, later)])
        due = START + pause * HOUR
        engine.tick(due + lag * HOUR)

        expected_sends = []
        for pid, record in zip(pids, later):
            number, target = choose(cases, otherwise, record, due)
            event("branch: " + ("no case" if number is None else "else" if number > len(cases) else "a case")
                  + (" to end" if target == "end" else ""))
            ran = after if target is None else [] if target == "end" else after[after.index(target):]
            expected_sends += [(pid, "first", iso(START))] + [(pid, s, iso(due)) for s in ran]
            runs = {s["step"]: s for s in engine.steps("j", pid)["steps"]}
            assert runs["route"]["status"] == "executed" and runs["route"]["at"] == iso(due)
            assert runs["route"]["detail"] == {"case": number, "goto": target}, (pid, record)
            assert {s: (runs[s]["status"], runs[s]["reason"], runs[s]["at"]) for s in after} == \
                {s: ("executed", None, iso(due)) if s in ran else ("skipped", "branch", iso(due)) for s in after}
            enrollment = engine.steps("j", pid)
            assert (enrollment["status"], enrollment["reason"], enrollment["finished_at"]) == \
                ("finished", "completed", iso(due))
        assert sends(engine) == sorted(expected_sends)
    finally:
        engine.close()


# --- 2. waits-for ------------------------------------------------------------------------------------


@settings(max_examples=30, **COMMON)
@given(pre=st.sampled_from([0, 3, 24]), at_most=st.sampled_from([6, 24, 50]), data=st.data())
def test_a_wait_for_ends_at_the_first_tick_that_sees_its_condition_and_never_after_at_most(
        tmp_path, make_engine, pre, at_most, data):
    """"`wait: {for: EXPR, at_most: D}` ends at the first tick at which EXPR holds (the next
    step is due at that tick's time) or at the previous step's due time plus D, whichever comes
    first."

    The wait is reached ``pre`` hours after the invoice (a plain wait before it); the ticks fall
    on drawn hours, and before each tick each partner's ``paid`` is rewritten to a drawn value
    (it may turn true and back). The thanks email must go out at the first tick at or after the
    wait began, before its deadline, whose records say paid, else exactly at the deadline."""
    horizon = pre + at_most + 6
    offsets = data.draw(st.lists(st.integers(1, horizon), unique=True, max_size=12), label="tick hours")
    times = [START] + [START + h * HOUR for h in sorted(offsets)] + [START + (horizon + 24) * HOUR]
    pids = ["p1", "p2", "p3"]
    mostly_unpaid = st.sampled_from([False, False, False, True])
    paid = {p: data.draw(st.lists(mostly_unpaid, min_size=len(times), max_size=len(times)), label=f"{p} paid")
            for p in pids}
    rows = lambda i: [partner(p, paid=paid[p][i]) for p in pids]
    steps = render([Item("email", "invoice")] + ([Item("wait", None, wait=f"{pre}h")] if pre else [])
                   + [Item("wait_for", "wait-paid", wait=f"{at_most}h", cond=PAID[0]), Item("email", "thanks")])
    (engine,) = _engine(tmp_path, make_engine, {"j": campaign(steps=steps)}, rows(0))
    try:
        for i, moment in enumerate(times):
            if i and rows(i) != rows(i - 1):
                set_partners(engine, *rows(i))
            engine.tick(moment)

        began = START + pre * HOUR
        deadline = began + at_most * HOUR
        expected = []
        for pid in pids:
            ended = next((t for i, t in enumerate(times) if paid[pid][i] and began <= t < deadline), deadline)
            expected += [(pid, "invoice", iso(START)), (pid, "thanks", iso(ended))]
            event("wait-for: " + ("at_most" if ended == deadline else "condition at began" if ended == began
                                  else "condition"))
            run = [s for s in engine.steps("j", pid)["steps"] if s["step"] == "wait-paid"]
            assert [(r["status"], r["at"], r["detail"]) for r in run] == [
                ("executed", iso(ended), {"began": iso(began), "ended_by": "condition" if ended < deadline else "at_most"})]
        assert sends(engine) == sorted(expected)
    finally:
        engine.close()


# --- 3. renames ----------------------------------------------------------------------------------------


RENAME_MOMENTS = [START + h * HOUR for h in (0, 6, 24, 48, 72)]


@settings(max_examples=20, **COMMON)
@given(data=st.data())
def test_a_rename_never_changes_any_partner_s_future_sends(tmp_path, make_engine, data):
    """"A step (or an id'd wait) may say `renamed_from: old-id`: enrollments positioned at or
    past `old-id` continue at the new id as if nothing happened."

    Two engines on the same workspace get the same ticks and the same record changes; before
    one or two drawn ticks, one of them gets the file with a drawn set of steps, branches and
    id'd waits renamed (``renamed_from`` lists every older id; gotos name the new ids). Mapped
    back to the first ids, the messages and every step run (status, reason, due, time, the
    branch's case and the wait's end) must be exactly those of the engine that never renamed.

    A wait-for may have no id: its key ``wait@STEP`` then follows a rename of the step before
    it, and those waiting there stay (docs/journeys.md; the next test is the smallest case)."""
    items = data.draw(flows(("email", "email", "branch", "wait", "wait_for"), RENAME_MOMENTS, conditions=True),
                      label="steps")
    offsets = data.draw(st.lists(st.integers(1, 96), unique=True, min_size=1, max_size=8), label="tick hours")
    times = [START] + [START + h * HOUR for h in sorted(offsets)] + [START + 20 * 24 * HOUR]
    pids = ["p1", "p2", "p3"]
    changes = {i: data.draw(st.none() | st.lists(records, min_size=3, max_size=3), label=f"records at tick {i}")
               for i in range(len(times))}
    initial = changes[0] or [{"tier": "gold", "revenue": 1000, "paid": False}] * 3
    ided = [it.id for it in items if it.id]
    rounds = data.draw(st.lists(st.tuples(st.integers(1, len(times) - 1),
                                          st.lists(st.sampled_from(ided), min_size=1, unique=True)),
                                min_size=1, max_size=2), label="renames (before tick, ids)")

    control, renamed = _engine(tmp_path, make_engine, {"j": campaign(steps=render(items))},
                               [row(p, r) for p, r in zip(pids, initial)], "control", "renamed")
    names: dict[str, str] = {}  # first id → id now
    history: dict[str, tuple[str, ...]] = {}  # first id → the ids it had, newest first
    first_of: dict[str, str] = {}  # a key it had (an id, a wait@ key) → the first one
    try:
        for i, moment in enumerate(times):
            if i and changes[i] is not None:
                for engine in (control, renamed):
                    set_partners(engine, *[row(p, r) for p, r in zip(pids, changes[i])])
            for number, (before, chosen) in enumerate(rounds, 1):
                if before != i:
                    continue
                for old in chosen:
                    history[old] = (names.get(old, old),) + history.get(old, ())
                    names[old] = f"{old}-v{number}"
                set_campaign(renamed, "j", campaign(steps=render(items, names, history)))
                assert "j" in renamed.plan.campaigns, renamed.plan.workspace.errors
                first_of.update({key: first for key, first in zip(keys(items, names), keys(items)) if key})
            for engine in (control, renamed):
                engine.tick(moment)

        back = lambda key: first_of.get(key, key)
        event(f"renamed steps: {len(names)}")
        assert sends(renamed, back) == sends(control)
        assert step_table(renamed, "j", pids, back) == step_table(control, "j", pids)
    finally:
        control.close()
        renamed.close()


def test_renaming_the_step_before_a_wait_for_without_an_id_keeps_its_waiting_partners_in_place(tmp_path, make_engine):
    """The smallest case of the property above. p1 waits at the wait-for after ``invoice``
    (key ``wait@invoice``); ``invoice`` is renamed ``invoice-v2`` (``renamed_from: invoice``),
    so the wait-for's key becomes ``wait@invoice-v2``. p1 pays, and the next tick (07-02T10:00)
    ends the wait as it does without the rename. (Before wait@ keys followed renames, the
    position no longer resolved: no tick asked p1's condition, it was closed ``step_removed`` at
    the at_most and the wait-for, reached again as of the invoice's time, ended ``at_most``:
    thanks went out at 07-04T10:00, two days late.)"""
    steps = [Item("email", "invoice"), Item("wait_for", None, wait="3d", cond=PAID[0]), Item("email", "thanks")]
    control, renamed = _engine(tmp_path, make_engine, {"j": campaign(steps=render(steps))}, [partner("p1")],
                               "control", "renamed")
    for engine in (control, renamed):
        engine.tick("2026-07-01T10:00Z")
    set_campaign(renamed, "j", campaign(steps=render(steps, {"invoice": "invoice-v2"}, {"invoice": ("invoice",)})))
    for engine in (control, renamed):
        set_partners(engine, partner("p1", paid=True))
        engine.tick("2026-07-02T10:00Z")
        engine.tick("2026-07-10T00:00Z")
    assert sends(control) == [("p1", "invoice", "2026-07-01T10:00:00Z"), ("p1", "thanks", "2026-07-02T10:00:00Z")]
    assert sends(renamed) == sends(control)
    assert [(s["step"], s["status"], s["reason"]) for s in renamed.steps("j", "p1")["steps"]] == [
        ("invoice-v2", "executed", None), ("wait@invoice-v2", "executed", None), ("thanks", "executed", None)]


# --- 4. jumps ------------------------------------------------------------------------------------------


JUMP_MOMENTS = [START + h * HOUR for h in (0, 2, 12, 24, 36)]


@dataclass
class _Jump:
    at: datetime
    target: str
    why: str  # branch | response
    origin: str | None = None  # the branch; None for a response (wherever the enrollment was)


@settings(max_examples=40, **COMMON)
@given(data=st.data())
def test_a_jump_never_runs_a_step_before_its_target_nor_before_its_own_time(tmp_path, make_engine, data):
    """"A response may carry `goto: STEP`: when it is recorded and the enrollment is still
    active or paused in this campaign and has not passed STEP, the enrollment moves to STEP,
    due at the response's time." Branches jump forward too.

    A drawn flow of emails, activities (responses with or without a goto), branches and waits
    (with or without ids, jump targets) runs through ticks at drawn times, with responses to
    the open activities recorded between them, also at drawn times, and partners paused and
    resumed at drawn times (a paused enrollment moves too: the goto's target is due when it is
    resumed). After a last tick that ends every enrollment, for each partner: every position
    ran once (executed or skipped), at times that never go back in flow order; no position
    strictly between a jump's origin and its target was executed, each was skipped with the
    jump's reason at the jump's time; nothing at or after a target ran before the jump; every
    skip has such a jump; a goto refused because the enrollment had passed its target or had
    ended really had."""
    items = data.draw(flows(("email", "activity", "activity", "branch", "wait", "wait_for"), JUMP_MOMENTS,
                            waits=("1d", "3d", "2h")), label="steps")
    pids = ["p1", "p2", "p3"]
    rows = data.draw(st.lists(records, min_size=3, max_size=3), label="records")
    (engine,) = _engine(tmp_path, make_engine, {"j": campaign(steps=render(items))},
                        [row(p, r) for p, r in zip(pids, rows)])
    index = {it.id: i for i, it in enumerate(items) if it.id}
    index["end"] = len(items)
    order = [(i, k) for i, (it, k) in enumerate(zip(items, keys(items))) if it.kind in POSITIONS]
    responses = {it.id: dict(it.responses) for it in items if it.kind == "activity"}
    answered: list[tuple[str, datetime, str, Any]] = []  # (partner, time, goto, Answered)
    try:
        now = START
        for _ in range(data.draw(st.integers(2, 6), label="ticks")):
            engine.tick(now)
            for activity in sorted(engine.activities(campaign="j", status="open"), key=lambda a: a["id"]):
                if not data.draw(st.sampled_from([True, True, False]), label=f"respond to {activity['id']}"):
                    continue
                now += timedelta(minutes=data.draw(st.sampled_from([30, 0, 120, 600, 1440]), label="after (min)"))
                key = data.draw(st.sampled_from(sorted(responses[activity["step"]])), label="response")
                result = engine.respond(activity["id"], key, at=now)
                goto = responses[activity["step"]][key]
                assert result.goto == goto
                if goto is not None:
                    answered.append((activity["partner"], now, goto, result))
            toggle = data.draw(st.sampled_from([None, None, *pids]), label="pause or resume")
            if toggle is not None:  # a paused enrollment moves too (and stays paused)
                status = engine.steps("j", toggle)["status"]  # as of the last operation or tick
                try:
                    if status in ("active", "paused"):
                        (engine.pause if status == "active" else engine.resume)("j", toggle, at=now)
                        event(f"{'paused' if status == 'active' else 'resumed'}")
                except Refused as refused:  # as of `now` its last steps had run: it ended (a refusal changes nothing)
                    assert "it is finished" in str(refused)
            now += timedelta(minutes=data.draw(st.sampled_from([30, 120, 600, 1440, 4320]), label="next tick (min)"))
        for pid in pids:
            if engine.steps("j", pid)["status"] == "paused":
                engine.resume("j", pid, at=now)
        engine.tick(now + 30 * 24 * HOUR)
        event(f"responses with a goto: {len(answered)}")

        for pid in pids:
            found = engine.steps("j", pid)
            assert (found["status"], found["reason"]) == ("finished", "completed")
            runs = {}
            for s in found["steps"]:
                assert s["run"] == 1 and s["status"] in ("executed", "skipped"), s
                assert s["step"] not in runs, f"{s['step']} ran twice"
                runs[s["step"]] = s
            assert sorted(runs) == sorted(k for _, k in order)
            at = {k: datetime.fromisoformat(runs[k]["at"]) for _, k in order}
            # in flow order, times never go back
            assert [at[k] for _, k in order] == sorted(at[k] for _, k in order)

            jumps = [_Jump(at[k], runs[k]["detail"]["goto"], "branch", k) for i, k in order
                     if items[i].kind == "branch" and runs[k]["status"] == "executed" and runs[k]["detail"]["goto"]]
            for p, moment, goto, result in answered:
                if p != pid:
                    continue
                target = index[goto]
                event("goto: " + (result.goto_note or "moved").split(" step")[0])
                if result.goto_note is None:
                    jumps.append(_Jump(moment, goto, "response"))
                elif "passed" in result.goto_note:  # every position before the target was behind it then
                    assert all(at[k] <= moment for i, k in order if i < target), (goto, result.goto_note)
                    assert all(at[k] <= moment for i, k in order if i == target)
                else:
                    assert result.goto_note == "the enrollment has ended", result.goto_note
                    assert datetime.fromisoformat(found["finished_at"]) <= moment
            event(f"jumps: {len(jumps)}")
            for jump in jumps:
                target = index[jump.target]
                if jump.origin is not None:  # a branch: what lies between is skipped at its time
                    between = [k for i, k in order if index[jump.origin] < i < target]
                    assert {k: (runs[k]["status"], runs[k]["reason"], at[k]) for k in between} == \
                        {k: ("skipped", "branch", jump.at) for k in between}, jump
                else:  # a response: nothing before the target runs after it, nothing from there on before it
                    assert all(at[k] <= jump.at for i, k in order if i < target), jump
                assert all(at[k] >= jump.at for i, k in order if i >= target), jump
            for i, k in order:  # every skip has a jump that explains it
                if runs[k]["status"] == "skipped":
                    why = runs[k]["reason"]
                    assert any(j.why == why and j.at == at[k] and i < index[j.target]
                               and (j.origin is None or index[j.origin] < i) for j in jumps), (k, runs[k], jumps)
    finally:
        engine.close()


# --- 5. granularity ------------------------------------------------------------------------------------


GRANULARITY_MOMENTS = [START + h * HOUR for h in (10, 16, 34, 58, 82)]
AT = "at: 2026-07-01T09:30"  # fires at its own time however late the tick: no audience sampling
UNTIL = START + 7 * 24 * HOUR


@settings(max_examples=20, **COMMON)
@given(data=st.data())
def test_branches_and_plain_waits_give_the_same_journeys_whatever_the_ticks(tmp_path, make_engine, data):
    """Granularity invariance (SPEC §6): "the same inputs give the same sends with the same
    timestamps whether the clock was advanced by one tick or by a thousand, except for audience
    sampling" — which holds for everything but `wait: {for}`.

    A drawn flow of emails (some with a `when`), branches (over the record and ``now``) and
    plain waits (durations, ``until``) of an ``at`` campaign, run once with a tick before the
    ``at`` time and one at the end, and once with hourly, six-hourly, daily or drawn ticks:
    the same messages at the same times, and the same step runs."""
    items = data.draw(flows(("email", "email", "branch", "wait", "wait"), GRANULARITY_MOMENTS,
                            waits=("30m", "2h", "9h", "1d", "until"), conditions=True, max_items=6), label="steps")
    pids = ["p1", "p2", "p3"]
    rows = data.draw(st.lists(records, min_size=3, max_size=3), label="records")
    schedule = data.draw(st.sampled_from(["1h", "6h", "1d", "drawn"]), label="ticks")
    once, often = _engine(tmp_path, make_engine, {"j": campaign(AT, render(items))},
                          [row(p, r) for p, r in zip(pids, rows)], "once", "often")
    try:
        once.tick(START)
        once.tick(UNTIL)
        if schedule == "drawn":
            minutes = data.draw(st.lists(st.integers(1, 7 * 24 * 60 - 1), unique=True, max_size=15), label="tick minutes")
            for moment in [START] + [START + timedelta(minutes=m) for m in sorted(minutes)] + [UNTIL]:
                often.tick(moment)
        else:
            often.run(until=UNTIL, every=schedule, start=START)
        table = step_table(once, "j", pids)
        event("branch jumps: " + str(sum(1 for _, _, _, runs in table.values() for run in runs
                                         if ("goto", None) not in run[6] and any(k == "goto" for k, _ in run[6]))))
        assert sends(often) == sends(once)
        assert step_table(often, "j", pids) == table
    finally:
        once.close()
        often.close()


def test_a_wait_for_is_defined_by_the_tick_that_sees_it_so_its_end_depends_on_the_ticks(tmp_path, make_engine):
    """The documented exception to granularity invariance: a wait-for ends at the first *tick*
    whose records make its condition hold. The campaign starts 07-01T10:00 (an ``at``), the
    wait-for begins a day later (07-02T10:00, at most 3 days: until 07-05T10:00); p1's record
    says paid from 07-02T15:30 on (rewritten before the first tick after that). Hourly ticks see
    it at 16:00, six-hourly at 18:00, daily at 07-03T00:00; a single tick on 07-06 comes after
    the at_most, so the wait ends at its deadline. The plain wait before it is not affected:
    ``first`` goes out at 10:00 whatever the ticks."""
    steps = render([Item("email", "first"), Item("wait", None, wait="1d"),
                    Item("wait_for", "wait-paid", wait="3d", cond=PAID[0]), Item("email", "thanks")])
    flip, until = datetime(2026, 7, 2, 15, 30, tzinfo=UTC), datetime(2026, 7, 6, tzinfo=UTC)

    def every(step: timedelta) -> list[datetime]:
        moments, moment = [], START
        while moment < datetime(2026, 7, 3, 1, tzinfo=UTC):
            moments.append(moment)
            moment += step
        return moments + [until]

    schedules = {"hourly": every(HOUR), "six-hourly": every(6 * HOUR), "daily": every(24 * HOUR),
                 "once": [START, until]}
    expected = {"hourly": ("2026-07-02T16:00:00Z", "condition"), "six-hourly": ("2026-07-02T18:00:00Z", "condition"),
                "daily": ("2026-07-03T00:00:00Z", "condition"), "once": ("2026-07-05T10:00:00Z", "at_most")}
    engines = _engine(tmp_path, make_engine, {"j": campaign(AT.replace("09:30", "10:00"), steps)}, [partner("p1")],
                      *schedules)
    try:
        found = {}
        for (name, moments), engine in zip(schedules.items(), engines):
            flipped = False
            for moment in moments:
                if moment > flip and not flipped:
                    set_partners(engine, partner("p1", paid=True))
                    flipped = True
                engine.tick(moment)
            run = next(s for s in engine.steps("j", "p1")["steps"] if s["step"] == "wait-paid")
            assert sends(engine)[0] == ("p1", "first", "2026-07-01T10:00:00Z")
            found[name] = (sends(engine)[1][2], run["detail"]["ended_by"])
            assert sends(engine)[1] == ("p1", "thanks", run["at"])
        assert found == expected
    finally:
        for engine in engines:
            engine.close()
