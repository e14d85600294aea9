"""Exactly-once and kill-safety of journeys (SPEC §6, §10, §11): branches, waits-for, response
gotos and `end`, with real processes, on both stores.

One journey workspace (:data:`JOURNEY`, 24 partners) is driven by one script (:data:`SCRIPT`):
five ticks over ten days, partners.csv rewritten between ticks so that a wait-for's condition
(``partner.paid``) turns true for some partners while they wait and before others reach it,
and call activities answered between ticks with responses that jump (``goto`` a later step, or
``end``), do not jump, or come too late to jump (a note). The uninterrupted run of that script in
this process, on SQLite (:func:`control`), is what every other way of running it must leave
behind: the message files, the store (enrollments, step runs with their details: which case of
a branch won, how a wait-for ended; messages, activities, responses, partners) and the audit
log's count of each step's runs.

1. Two `engine tick` processes started at the same instant for each tick of the script.
2. The script run by tests/engine/_journey_worker.py, SIGKILLed at random instants (inside
   step batches, the waits-for's transaction, a response, the partner import, deliveries) and
   started again until it finishes.
3. `engine respond` with a goto and `engine tick` started together on the same enrollment (and
   with either one held inside its transaction, or the tick between its batches, while the
   other starts): the enrollment ends in one of the states a serial order gives (the goto
   applied before the tick, between two of its batches, or refused with a note after it), each
   step recorded once, executed or skipped.
4. A tick killed after its partner import committed, before its exit checks (fails: the run
   again sees no change and never checks `exit_when` for an enrollment waiting at a wait-for).
5. `engine respond` delivers what its catch-up committed, as the other operations do (fails).

The processes use the test's store (``ENGINE_STORE``); the control runs always use SQLite, so on
PostgreSQL the comparison is across stores too.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from engine.api import Engine
from engine.cli import main
from engine.clock import from_iso
from engine.testing import rewrite
from tests.engine._journey_worker import run_script
from tests.engine.test_exactly_once import (
    REFERENCE_STORE,
    Kill,
    Worker,
    assert_same_messages,
    run_attempts,
    opened_store,
    outputs,
    processes,  # noqa: F401 (a fixture)
    store_state,
)
from tests.engine.test_journeys import TEMPLATES, branch, call, letter, wait_for
from tests.engine.test_tick import campaign, email, partner, partners_csv, sms, wait, workspace

JOURNEY_WORKER = Path(__file__).with_name("_journey_worker.py")
COUNTS = ("enrolled", "executed", "skipped", "finished", "failed", "delivered")
SLOW = 0.02  # the kill test's widened windows (seconds; see _journey_worker.py)

# --- the journey ---------------------------------------------------------------------------------

RESPONSES = ("        disputed: {result: unsuccessful, goto: dispute-letter}\n"
             "        closed: {result: unsuccessful, goto: end}\n"
             "        promised: {result: successful}\n")
JOURNEY = campaign(
    steps=(email("welcome")
           + branch("route", "{when: 'partner.tier == \"platinum\"', goto: vip}",
                    "{when: 'partner.revenue > 5000', goto: collect}", "{when: 'partner.role == \"gone\"', goto: end}")
           + wait("1d") + wait_for("partner.paid", "3d", "wait-paid")
           + branch("after-wait", "{when: 'partner.paid', goto: thanks}")
           + email("reminder") + call("collect", RESPONSES) + wait("2d") + email("check") + letter("dispute-letter")
           + email("vip") + branch("last", "{when: 'partner.active', goto: thanks}", "{else: end}") + sms("thanks")),
    extra="description: Journey with branches, a wait-for and response gotos\n",
).replace("audience:\n", "audience:\n  include_inactive: true\n", 1)  # plat2 starts inactive: enrolled all the same
BRANCHES, WAITS_FOR = ("route", "after-wait", "last"), ("wait-paid",)

# platinum: route → vip; rich: route → collect (a call at once); gone: route → end; u*: wait a day,
# then wait-for paid (at most 3 days), paid → thanks, else reminder → collect → ... → last.
PARTNERS = ([partner("plat1", tier="platinum"), partner("plat2", tier="platinum", active=False)]
            + [partner(f"r{i}", revenue=9000) for i in range(1, 7)]
            + [partner("gone1", role="gone"), partner("gone2", role="gone", tier="platinum")]
            + [partner(f"u{i:02d}") for i in range(1, 15)])


def partners_version(paid: set[str] = frozenset(), inactive: set[str] = frozenset()) -> str:
    rows = [dict(row, paid="true" if row["id"] in paid else row["paid"],
                 active="false" if row["id"] in inactive else row["active"]) for row in PARTNERS]
    return partners_csv(*rows)


def activity(pid: str) -> str:
    return f"journey:{pid}:1:collect:1"


T = ["2026-07-01T10:00Z", "2026-07-02T12:00Z", "2026-07-03T12:00Z", "2026-07-06T00:00Z", "2026-07-10T00:00Z"]
SCRIPT = [
    {"partners": partners_version()},
    {"tick": T[0]},  # enrolls everyone: branches at once; r* get their call
    {"respond": activity("r1"), "key": "disputed", "at": "2026-07-01T12:00Z"},  # check skipped, letter now
    {"respond": activity("r2"), "key": "closed", "at": "2026-07-01T12:00Z"},  # → end
    {"respond": activity("r3"), "key": "promised", "at": "2026-07-01T13:00Z"},  # no goto
    {"partners": partners_version(paid={"u01", "u02", "u03"})},  # paid before they reach the wait-for
    {"tick": T[1]},  # u* reach wait-paid (due 07-02T10:00): u01-03 pass it, the others wait
    {"respond": activity("r4"), "key": "disputed", "at": "2026-07-02T18:00Z"},  # waiting for check: skipped
    {"partners": partners_version(paid={"u01", "u02", "u03", "u04", "u05", "u06"},
                                  inactive={"u07", "u08", "plat1"})},  # u04-06 paid while they wait
    {"tick": T[2]},  # u04-06's waits end by their condition; r5, r6 reach check
    {"respond": activity("r5"), "key": "disputed", "at": "2026-07-04T00:00Z"},  # r5 finished: a note
    {"tick": T[3]},  # the other waits end at at_most (07-05T10:00): reminder, then the call
    {"respond": activity("u09"), "key": "closed", "at": "2026-07-06T06:00Z"},  # → end
    {"respond": activity("u10"), "key": "disputed", "at": "2026-07-06T06:00Z"},
    {"respond": activity("u11"), "key": "disputed", "at": "2026-07-08T00:00Z"},  # catches up first: a note
    {"partners": partners_version(paid={"u01", "u02", "u03", "u04", "u05", "u06", "u12"},
                                  inactive={"u07", "u08", "plat1"})},  # u12 paid after its wait ended
    {"tick": T[4]},  # everyone has finished
]


def journey_workspace(tmp_path: Path, name: str = "src") -> Path:
    root = workspace(tmp_path, {"journey": JOURNEY}, partners_version(), templates=TEMPLATES, name=name)
    (root / "partners.csv").unlink()  # the script writes it
    return root


# --- what a run left behind ----------------------------------------------------------------------


def journey_state(root: Path, store: str | None = None) -> dict[str, list]:
    """test_exactly_once's store state (every step run once, every message delivered), and what
    journeys add: where each enrollment waits, the responses, and how many runs of each step the
    audit log counted (one line per batch: a step run twice would be counted twice)."""
    state = store_state(root, store)
    with opened_store(root, store) as (db, _):
        def rows(sql: str) -> list:
            return sorted(db.execute(sql).fetchall(), key=repr)

        state["positions"] = rows("SELECT campaign, partner, number, status, waiting_since, next_step, due_at "
                                  "FROM enrollments")
        state["answers"] = rows("SELECT id, status, response, result, responded_at FROM activities")
        state["responses"] = rows("SELECT target, kind, campaign, step, partner, response, result, at FROM responses")
        state["gotos"] = sorted((partner, detail["goto"], detail["goto_note"]) for partner, detail in (
            (p, json.loads(d)) for p, d in db.execute("SELECT partner, detail FROM log WHERE action = 'respond'")))
        logged: Counter = Counter()
        for action, step_detail in db.execute("SELECT action, detail FROM log WHERE action LIKE 'step.%'").fetchall():
            detail = json.loads(step_detail)
            logged[(action, detail["step"])] += detail["count"]
        state["logged"] = sorted(logged.items())
        ran = Counter((f"step.{status}", step) for _, _, _, step, run, status, *_ in state["step_runs"]
                      if status == "executed")
        for key, n in logged.items():
            if key[0] == "step.executed":
                assert ran[key] == n, f"the log counts {n} runs of {key[1]}, the store {ran[key]}"
    return state


def assert_same_state(got: dict[str, list], want: dict[str, list]) -> None:
    for table, rows in want.items():
        assert got[table] == rows, f"{table} differs from the control run"


def journey_runs(state: dict[str, list], steps: tuple[str, ...]) -> list[tuple]:
    """(partner, step, status, reason, at, detail) of the runs of these steps."""
    return sorted((p, step, status, reason, at, detail)
                  for _, p, _, step, _, status, reason, _, at, detail in state["step_runs"] if step in steps)


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    """The script run once, uninterrupted, in this process, on SQLite: (messages, state, ticks)."""
    root = journey_workspace(tmp_path_factory.mktemp("control"))
    ticks = run_script(root, SCRIPT, store=REFERENCE_STORE, progress=lambda line: None)
    return outputs(root), journey_state(root, REFERENCE_STORE), ticks


@pytest.mark.no_store
def test_the_control_run_takes_every_path_of_the_journey(control):
    """What the other tests compare with does what the script says (so that they compare
    something): each kind of branch case, waits-for ended both ways, jumps to a step and to the
    end by branches and by responses, and responses whose goto comes too late."""
    messages, state, ticks = control
    branches = Counter((step, json.loads(detail)["goto"]) for _, step, status, _, _, detail
                       in journey_runs(state, BRANCHES) if status == "executed")
    assert branches == {("route", "vip"): 3, ("route", "collect"): 6, ("route", "end"): 1, ("route", None): 14,
                        ("after-wait", "thanks"): 6, ("after-wait", None): 8, ("last", "thanks"): 12,
                        ("last", "end"): 3}
    waits = Counter((json.loads(detail)["ended_by"], at) for _, _, status, _, at, detail
                    in journey_runs(state, WAITS_FOR) if status == "executed")
    assert waits == {("condition", "2026-07-02T12:00:00Z"): 3, ("condition", "2026-07-03T12:00:00Z"): 3,
                     ("at_most", "2026-07-05T10:00:00Z"): 8}
    assert Counter(row[5:7] for row in state["step_runs"]) == {
        ("executed", None): 167, ("skipped", "branch"): 84, ("skipped", "response"): 13}
    assert state["gotos"] == [
        ("r1", "dispute-letter", None), ("r2", "end", None), ("r3", None, None), ("r4", "dispute-letter", None),
        ("r5", "dispute-letter", "the enrollment has ended"), ("u09", "end", None), ("u10", "dispute-letter", None),
        ("u11", "dispute-letter", "the enrollment has ended")]
    assert {row[3] for row in state["enrollments"]} == {"finished"}
    assert len(messages) == len(state["outbox"]) == 86
    # the ticks hand over what they commit; `engine respond` what its catch-up committed (4 here)
    assert sum(counts["delivered"] for _, counts in ticks) == 82


# --- 1. two ticks at once --------------------------------------------------------------------------


def cli_worker(root: Path, args: list[str], name: str, barrier: Path | None = None, slow: float | str = 0) -> Worker:
    """A _journey_worker.py process that runs one `engine` command (``-w ROOT`` added)."""
    plan = root.parent / f"{name}.json"
    plan.write_text(json.dumps(["-w", str(root), *args]), encoding="utf-8")
    return Worker(root, str(plan), "cli", slow, barrier=barrier, name=name, script=JOURNEY_WORKER)


def finished(worker: Worker, timeout: float = 120) -> list[str]:
    """The command's output lines (and the markers of SLOW), once it exited 0 without a traceback."""
    code, lines, stderr = worker.finish(timeout)
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert (code, lines[-2:]) == (0, ["done", json.dumps({"exit": 0})]), (code, lines[-5:], stderr)
    return lines[lines.index("ready") + 1:-2]


def test_two_engine_ticks_at_once_run_each_branch_wait_and_jump_once(tmp_path, control, processes):
    """Each tick of the script is two `engine tick --at T` processes started at the same instant
    on one workspace and store; between ticks partners.csv is rewritten and `engine respond`
    answers calls, as in the script. Each round's work is split between the two (their counts
    add up to the control's), and the end is the control's: files, store, log counts."""
    want_messages, want_state, want_ticks = control
    root = journey_workspace(tmp_path, name="ws")
    times = [action["tick"] for action in SCRIPT if "tick" in action]

    def pair(n: int) -> list[Worker]:
        return [processes(cli_worker(root, ["tick", "--at", times[n], "--json"], f"tick-{n}-{i}", tmp_path / f"go-{n}"))
                for i in range(2)]

    n, upcoming = 0, pair(0)
    for action in SCRIPT:
        if "partners" in action:
            if not (root / "partners.csv").exists() or (root / "partners.csv").read_text() != action["partners"]:
                rewrite(root / "partners.csv", action["partners"])
        elif "respond" in action:
            assert main(["-w", str(root), "respond", action["respond"], action["key"], "--at", action["at"],
                         "--as", "tester"]) == 0
        else:
            workers = upcoming
            for worker in workers:
                worker.ready()
            (tmp_path / f"go-{n}").touch()
            upcoming = pair(n + 1) if n + 1 < len(times) else []  # importing while these two tick
            reports = [json.loads("\n".join(finished(worker))) for worker in workers]
            at, want = want_ticks[n]
            for count in COUNTS:
                assert sum(r[count] for r in reports) == want[count], (at, count, reports, want)
            n += 1

    assert_same_messages(outputs(root), want_messages)
    assert_same_state(journey_state(root), want_state)


# --- 2. SIGKILL at random instants -----------------------------------------------------------------

IN_A_TICK = ("partners", "enroll", "steps", "waits", "append", "appended", "mark")  # in the order they come
# what a kill should land in at least once, the rarest first (a round that can, does)
GROUPS = (("enroll",), ("waits",), ("rewrite", "partners"), ("append", "appended", "mark"), ("steps",))


def journey_kill_plan(rng: random.Random, ticks: list[tuple[str, dict[str, int]]], state: dict[str, list]) -> list[Kill]:
    """Kills in every round of the script (what happens after one tick, up to the end of the
    next), two each, at what that round does: the rewrite of partners.csv and its import, a
    response (always, when the round has one), enrolling, step batches (branches, jumps,
    waits-for), a wait-for's condition asked, the deliveries, each of them in some round; and
    three anywhere (a random instant after the start), never just before a response's kill."""
    condition_ends = {at for _, _, status, _, at, detail in journey_runs(state, WAITS_FOR)
                      if status == "executed" and json.loads(detail)["ended_by"] == "condition"}
    plan: list[Kill] = []
    previous, seen_partners, before_tick = None, None, []  # the phases of the round before its tick
    uncovered = list(GROUPS)
    rounds = iter(ticks)
    for action in SCRIPT:
        if "partners" in action:
            if action["partners"] != seen_partners:
                before_tick.append("rewrite")
                seen_partners = action["partners"]
            continue
        if "respond" in action:
            before_tick.append("respond")
            continue
        at, counts = next(rounds)
        when = from_iso(at)
        order = list(dict.fromkeys(before_tick)) + list(IN_A_TICK)
        possible = set(before_tick) | ({"partners"} if "rewrite" in before_tick else set())
        possible |= {"enroll"} if counts["enrolled"] else set()
        possible |= {"steps"} if counts["executed"] + counts["skipped"] else set()
        possible |= {"waits"} if at in condition_ends else set()
        possible |= {"append", "appended", "mark"} if counts["delivered"] else set()
        chosen = {"respond"} & possible
        for group in list(uncovered):
            if len(chosen) < 2 and possible & set(group):
                chosen.add(rng.choice(sorted(possible & set(group))))
                uncovered.remove(group)
        chosen |= set(rng.sample(sorted(possible - chosen), 2 - len(chosen)))
        within = {"enroll": counts["enrolled"] * SLOW / 4}
        plan += [Kill("resume", within.get(phase, SLOW), after=previous, by=when, phase=phase)
                 for phase in sorted(chosen, key=order.index)]
        previous, before_tick = when, []
    assert not uncovered, uncovered
    for _ in range(3):
        places = [n for n in range(1, len(plan) + 1) if n == len(plan) or plan[n].phase != "respond"]
        plan.insert(rng.choice(places), Kill("resume", 0.3))
    return plan


def test_sigkill_at_random_instants_of_a_journey_repeats_and_loses_nothing(tmp_path, control, processes):
    """The script, SIGKILLed about thirteen times (inside its step batches, a wait-for's
    transaction, a response, the partner import, the deliveries, and anywhere) and started
    again each time from the last tick it completed, until it finishes: the files and the
    store are the control's. No message twice or lost, no branch evaluated twice (the case
    that won is the control's and the log counts one evaluation), no wait-for ended twice or
    another way, no response lost or applied twice."""
    want_messages, want_state, want_ticks = control
    root = journey_workspace(tmp_path, name="ws")
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT), encoding="utf-8")
    rng = random.Random(20260711)
    plan = journey_kill_plan(rng, want_ticks, want_state)

    def start(n: int) -> Worker:
        worker = Worker(root, str(script), "resume", SLOW if n < len(plan) else 0, barrier=tmp_path / f"go-{n}",
                        name=f"attempt-{n}", script=JOURNEY_WORKER)
        return processes(worker)

    landings = run_attempts(root, plan, start, rng)

    summary = "\n".join(f"{l.kind():32} target {l.kill.phase or '-':8} last marker {l.last_marker or '-':8} "
                        f"missed={l.missed!s:5} last tick {l.last_tick} committed {l.committed}" for l in landings)
    print(f"\n{summary}")
    assert sum(landing.killed for landing in landings) >= len(plan) - 4, summary
    doing = Counter(landing.last_marker for landing in landings if landing.killed and not landing.missed)
    for during in (("respond",), ("steps", "waits", "enroll"), ("append", "appended", "mark")):
        assert sum(doing[m] for m in during) >= 1, f"no kill landed after {during}:\n{summary}"

    assert_same_messages(outputs(root), want_messages)
    assert_same_state(journey_state(root), want_state)


# --- 3. a response's goto racing a tick ------------------------------------------------------------

RACE = campaign(
    steps=(call("collect", "        disputed: {result: unsuccessful, goto: dispute-letter}\n"
                           "        closed: {result: unsuccessful, goto: end}\n")
           + wait("1d") + wait_for("partner.paid", "3d", "wait-paid") + email("check")
           + branch("route", "{when: 'partner.tier == \"platinum\"', goto: thanks}") + letter("dispute-letter")
           + email("thanks")),
    extra="description: A call, then a wait-for, a branch and a letter\n")
POSITIONS = ("collect", "wait-paid", "check", "route", "dispute-letter", "thanks")
RACER, OTHERS = "p1", [f"o{i:02d}" for i in range(1, 31)]  # the others keep the tick busy
RACE_AT, RACE_END = "2026-07-01T00:00Z", "2026-07-10T00:00Z"
# scenario: (partners paid from the start, ticks before the race, response)
SCENARIOS = {
    "due": (True, ["2026-06-30T00:00Z"], "disputed"),  # wait-paid falls due at the race's instant
    "waiting": (False, ["2026-06-29T00:00Z", "2026-06-30T12:00Z"], "disputed"),  # waiting; paid just before
    "end": (False, ["2026-06-29T00:00Z", "2026-06-30T12:00Z"], "closed"),
}
TARGETS = {"disputed": "dispute-letter", "closed": "end"}


def race_partners(paid: bool) -> str:
    return partners_csv(*[partner(pid, paid=paid) for pid in [RACER, *OTHERS]])


def race_workspace(tmp_path: Path, scenario: str, name: str, store: str | None = None) -> Path:
    """The race's workspace just before the race: its ticks done, partners.csv paid."""
    paid, ticks, _ = SCENARIOS[scenario]
    root = workspace(tmp_path, {"race": RACE}, race_partners(paid), templates=TEMPLATES, name=name)
    with Engine.open(root, store=store) as engine:
        for at in ticks:
            engine.tick(at)
    rewrite(root / "partners.csv", race_partners(True))
    return root


def respond_args(scenario: str) -> list[str]:
    return ["respond", f"race:{RACER}:1:collect:1", SCENARIOS[scenario][2], "--at", RACE_AT, "--as", "tester"]


def runs_of(state: dict[str, list], pid: str) -> dict[str, tuple]:
    """step → (status, reason, due_at, at, detail) of the partner's runs (run 1; each once)."""
    found = [row for row in state["step_runs"] if row[1] == pid]
    assert all(row[4] == 1 for row in found) and len({row[3] for row in found}) == len(found), found
    return {row[3]: (row[5], row[6], row[7], row[8], row[9]) for row in found}


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """``serial(scenario)``: the state, files and goto note of the two serial orders, on SQLite
    in this process: the response before the tick, and the tick before the response (cached)."""
    found: dict[str, dict] = {}

    def get(scenario: str) -> dict:
        if scenario not in found:
            found[scenario] = {}
            for order in ("respond-first", "tick-first"):
                root = race_workspace(tmp_path_factory.mktemp(f"{scenario}-{order}"), scenario, "ws", REFERENCE_STORE)
                activity_id, key = respond_args(scenario)[1:3]
                with Engine.open(root, store=REFERENCE_STORE) as engine:
                    if order == "tick-first":
                        engine.tick(RACE_AT)
                    answered = engine.respond(activity_id, key, at=RACE_AT, user="tester")
                    engine.tick(RACE_AT)  # nothing more, after the tick-first one
                    engine.tick(RACE_END)
                found[scenario][order] = (journey_state(root, REFERENCE_STORE), outputs(root), answered.goto_note)
        return found[scenario]

    return get


def allowed_runs(scenario: str, tick_first: dict[str, tuple]) -> list[dict[str, tuple]]:
    """The racer's step runs in each serial order of the response and the tick's batches: the
    tick moved the enrollment from wait-paid up to a position (cut), then the goto skipped the
    steps from there to its target (reason response, at the response's time); the steps before
    the cut and from the target on are as when the tick runs alone."""
    target = TARGETS[SCENARIOS[scenario][2]]
    end = len(POSITIONS) if target == "end" else POSITIONS.index(target)
    at = RACE_AT[:16] + ":00Z"
    return [{step: (("skipped", "response", at, at, None) if cut <= i < end else tick_first[step])
             for i, step in enumerate(POSITIONS)}
            for cut in range(POSITIONS.index("wait-paid"), end + 1)]


RACES = [("due", "together"), ("due", "respond-in-batch"), ("due", "respond-between-batches"), ("due", "tick-in-respond"),
         ("waiting", "together"), ("waiting", "respond-in-waits"), ("waiting", "tick-in-respond"),
         ("end", "together"), ("end", "respond-between-batches")]
# who is held where (a marker of _journey_worker.py, and for how long) while the other starts
HOLDS = {"respond-in-batch": ("tick", "steps", 0.3), "respond-between-batches": ("tick", "batched", 0.5),
         "respond-in-waits": ("tick", "waits", 0.03),  # each wait's condition asked: 31 of them
         "tick-in-respond": ("respond", "respond", 0.3)}


@pytest.mark.parametrize("scenario, interleaving", RACES, ids=["-".join(r) for r in RACES])
def test_a_response_goto_racing_a_tick_leaves_one_serial_outcome(tmp_path, serial, processes, scenario, interleaving):
    """`engine respond ID KEY` (a goto) and `engine tick` on the same enrollment, at the same
    logical time, started together, or with one held inside its transaction (``*-in-*``) or the
    tick held between two of its step batches while the other starts. Both succeed, and the enrollment ends as in a serial order: the goto
    before the tick, between two of its batches, or after it with a note (the enrollment has
    ended); each step recorded once, executed or skipped; no message of a skipped step, none
    lost; the other partners as if nobody had answered."""
    controls = serial(scenario)
    want_state, want_messages, note = controls["tick-first"]
    assert note == "the enrollment has ended"
    tick_first = runs_of(want_state, RACER)
    cuts = allowed_runs(scenario, tick_first)
    assert runs_of(controls["respond-first"][0], RACER) == cuts[0]  # the model of the orders, checked

    root = race_workspace(tmp_path, scenario, "ws")
    holds = HOLDS.get(interleaving)
    slow = {"tick": 0, "respond": 0}
    if holds is not None:
        slow[holds[0]] = f"{holds[1]}={holds[2]}"
    barriers = {"tick": tmp_path / "go-tick", "respond": tmp_path / "go-respond"}
    if holds is None:
        barriers["respond"] = barriers["tick"]
    tick = processes(cli_worker(root, ["tick", "--at", RACE_AT], "tick", barriers["tick"], slow["tick"]))
    respond = processes(cli_worker(root, respond_args(scenario), "respond", barriers["respond"], slow["respond"]))
    if holds is None:
        tick.ready()
        respond.go()
    else:
        first, second = (tick, respond) if holds[0] == "tick" else (respond, tick)
        second.ready()
        first.go()
        deadline = time.monotonic() + 60
        while (line := first.line()) != holds[1]:  # the first is inside its transaction now
            assert line is not None and time.monotonic() < deadline, first.finish()
        second.barrier.touch()
    said = [line for line in finished(respond) if line.startswith("goto ")]
    finished(tick)
    assert main(["-w", str(root), "tick", "--at", RACE_END]) == 0

    state = journey_state(root)
    got = runs_of(state, RACER)
    target = TARGETS[SCENARIOS[scenario][2]]
    if said == [f"goto {target}: partner {RACER} moved to it in race"]:
        assert got in cuts, f"the racer's steps are in no serial order: {got}"
    else:
        assert said in ([f"goto {target}: not moved, the enrollment has ended"],
                        [f"goto {target}: not moved, the enrollment has passed step {target}"]), said
        assert got == tick_first
    executed = {step for step, (status, *_) in got.items() if status == "executed"}
    mine = sorted(row for row in state["outbox"] if row[4] == RACER)
    assert mine == sorted(row for row in want_state["outbox"] if row[4] == RACER and row[3] in executed)
    assert_same_messages([m for m in outputs(root) if m[1]["partner"] != RACER or m[1]["step"] in executed],
                         [m for m in want_messages if m[1]["partner"] != RACER or m[1]["step"] in executed])
    assert len(outputs(root)) == len(state["outbox"])  # every message once in the files, none of a skipped step
    for pid in OTHERS:
        assert runs_of(state, pid) == runs_of(want_state, pid), pid
    assert [row[3:5] for row in state["enrollments"]] == [("finished", "completed")] * (1 + len(OTHERS))
    assert [row[:7] for row in state["responses"]] == [row[:7] for row in want_state["responses"]]
    print(f"\n{scenario}/{interleaving}: {said[0]}; racer: "
          + ", ".join(f"{step} {status}" + (f" ({reason})" if reason else "") for step, (status, reason, *_) in got.items()))


# --- 4. a kill between a tick's partner import and its exit checks -----------------------------------

EXITING = campaign(
    steps=(email("invoice") + wait_for("partner.paid", "3d", "wait-paid")
           + branch("route", "{when: 'partner.tier == \"platinum\"', goto: end}") + email("reminder")),
    extra="description: An invoice, a wait for the payment, a reminder\nexit_when: partner.active == false\n")
EXIT_SCRIPT = [
    {"partners": partners_csv(partner("p1"), partner("p2"))},
    {"tick": "2026-07-01T10:00Z"},  # invoices; both wait for their payment until 07-04T10:00
    {"partners": partners_csv(partner("p1", active=False), partner("p2"))},
    {"tick": "2026-07-02T10:00Z"},  # imports p1 inactive: p1 exits now (exit_when), though waiting
    {"partners": partners_csv(partner("p1"), partner("p2"))},  # active again: too late, p1 has exited
    {"tick": "2026-07-06T00:00Z"},  # p2's wait ends at at_most: reminder
]


def test_a_tick_killed_after_its_partner_import_still_ends_the_enrollments_the_change_exits(tmp_path, processes):
    """A tick that imports a record change checks `exit_when` for the partners it changed, also
    those waiting at a wait-for (their next step is days away). Killed after the import
    committed, before those checks, and run again: the import is done, so the second run sees
    no change; the exit must still happen at that tick, as in the run without the kill, and
    the reminder must not go to the partner who exited."""
    control_root = workspace(tmp_path, {"exiting": EXITING}, "", name="control")
    run_script(control_root, EXIT_SCRIPT, store=REFERENCE_STORE, progress=lambda line: None)
    want_messages, want_state = outputs(control_root), journey_state(control_root, REFERENCE_STORE)
    assert sorted((m["partner"], m["step"]) for _, m in want_messages) == [
        ("p1", "invoice"), ("p2", "invoice"), ("p2", "reminder")]
    assert [row[1:5] for row in want_state["enrollments"]] == [("p1", 1, "finished", "exit"),
                                                               ("p2", 1, "finished", "completed")]

    root = workspace(tmp_path, {"exiting": EXITING}, "", name="ws")
    script = tmp_path / "script.json"
    script.write_text(json.dumps(EXIT_SCRIPT), encoding="utf-8")
    # held 1.5 s before each tick's exit checks: killed in the second tick's
    victim = processes(Worker(root, str(script), "resume", "exits=1.5", name="victim", script=JOURNEY_WORKER))
    victim.ready()
    deadline = time.monotonic() + 60
    for expected in ("exits", "tick 2026-07-01T10:00:00Z", "exits"):  # the second tick's import is committed
        while (line := victim.line()) != expected:
            assert line is not None and time.monotonic() < deadline, victim.finish()
    victim.kill()
    code, lines, stderr = victim.finish()
    assert code == -signal.SIGKILL and lines[-1] == "exits", (code, lines, stderr)
    again = processes(Worker(root, str(script), "resume", 0, name="again", script=JOURNEY_WORKER))
    again.ready()
    code, lines, stderr = again.finish()
    assert (code, lines[-2:-1]) == (0, ["done"]), stderr

    state = journey_state(root)
    assert_same_messages(outputs(root), want_messages)  # fails: p1's reminder, unexpected
    assert [row[1:5] for row in state["enrollments"]] == [row[1:5] for row in want_state["enrollments"]]
    assert_same_state(state, want_state)


# --- 5. what a response's catch-up commits is handed over --------------------------------------------


def test_engine_respond_hands_over_the_messages_its_catch_up_committed_as_other_operations_do(tmp_path, capsys):
    """An operation acts on the enrollment as it is at the operation's time: it first executes
    the steps that fell due since the last tick (catch-up), then delivers what that committed
    (docs/reliability.md: "at the start and end of every tick, and after an operation"). `engine
    pause` does; `engine respond` (whose goto catches up first) must too, or the catch-up's
    messages wait in the outbox for the next tick."""
    steps = call("collect", "        disputed: {result: unsuccessful, goto: last}\n") + wait("1d") + email("check") + \
        email("last") + wait("10d") + email("final")
    root = workspace(tmp_path, {"j": campaign(steps=steps, extra="description: A call, then two emails\n")},
                     partners_csv(partner("p1"), partner("p2")), name="ws")
    cli = ["-w", str(root)]
    assert main([*cli, "tick", "--at", "2026-07-01T10:00Z"]) == 0  # the calls; both emails due 07-02T10:00
    assert main([*cli, "pause", "j", "--partner", "p2", "--at", "2026-07-03T00:00Z", "--as", "tester"]) == 0
    assert main([*cli, "respond", "j:p1:1:collect:1", "disputed", "--at", "2026-07-03T00:00Z", "--as", "tester"]) == 0
    assert "goto last: not moved, the enrollment has passed step last" in capsys.readouterr().out  # caught up
    with Engine.open(root) as engine:
        waiting = [(m["partner"], m["step"]) for m in engine.outbox() if m["delivered_at"] is None]
        in_file = sorted((m["partner"], m["step"]) for m in engine.sent("email"))
    assert ("p2", "check") in in_file, "pause delivers what its catch-up committed"
    assert waiting == [], f"respond left what its catch-up committed in the outbox: {waiting}"
    assert in_file == [("p1", "check"), ("p1", "last"), ("p2", "check"), ("p2", "last")]
