"""`engine explain` and `engine test` on a campaign with flow control: every case of a branch and
the condition of a wait-for traced sub-expression by sub-expression, the case that wins and where
it goes, what the tick recorded for a partner past them, and the path each sample partner takes
in a dry run, through the API and the CLI."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest

from dsl.runtime import Context
from engine.api import Engine
from engine.cli import main
from engine.clock import parse_time
from engine.dryrun import dry_run
from engine.explain import CURRENT_STATUSES, explain_partner, render_text
from engine.facts import StoreFacts
from tests.engine.test_tick import campaign, email, partner, partners_csv, set_partners, workspace

TEMPLATES = {"letter.txt.j2": "Dear {{ partner.name }}"}
DISPUTED = 'response("collector-call") == "disputed"'
RICH_GOLD = 'partner.revenue > 5000 and partner.tier == "gold"'
OPENED_OR_PAID = 'opened("welcome") or partner.paid'

STEPS = f"""\
  - id: collector-call
    activity:
      kind: call
      subject: Call
      responses: {{disputed: {{result: unsuccessful}}, promised: {{result: successful}}}}
{email("welcome")}\
  - id: wait-open
    wait: {{for: '{OPENED_OR_PAID}', at_most: 3d}}
  - id: route
    branch:
      - {{when: '{DISPUTED}', goto: dispute-letter}}
      - {{when: '{RICH_GOLD}', goto: upsell}}
{email("basic")}\
  - id: basic-done
    branch:
      - {{else: end}}
{email("upsell")}\
  - id: upsell-done
    branch:
      - {{else: end}}
  - id: dispute-letter
    letter: {{template: letter.txt.j2}}
"""
FILE = "campaigns/j.yaml"
START = "2026-07-01T10:00Z"


def partners() -> str:
    """rich: a gold partner over 5000 (route: case 2); small: paid, so the wait ends at once, and
    under 5000 (route: no case); disp: disputes the call (route: case 1)."""
    return partners_csv(partner("rich", revenue=9000), partner("small", paid=True), partner("disp"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return workspace(tmp_path, {"j": campaign(steps=STEPS), "plain": campaign(steps=email("hello"))}, partners(),
                     templates=TEMPLATES)


@pytest.fixture
def engine(root: Path, make_engine) -> Engine:
    engine = make_engine(root, at=START)
    engine.tick(START)  # enrolls all three: the call, welcome; small passes the wait and the branch
    return engine


def explained(engine: Engine, pid: str, at: str) -> dict:
    return explain_partner(engine.store, engine.plan, engine.book, "j", pid, engine.time(at))


def flow_part(result: dict, step: str) -> dict:
    [part] = [p for p in result["flow"] if p["step"] == step]
    return part


def position(engine: Engine, marker: str, token: str) -> tuple[int, int]:
    text = (engine.root / FILE).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        if marker in line:
            return number, line.index(token) + 1
    raise AssertionError(f"{marker!r} not in {FILE}")


def step(expression: str, value: object, at: tuple[int, int]) -> dict:
    return {"expression": expression, "value": value, "line": at[0], "col": at[1]}


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


# --- engine explain ------------------------------------------------------------------------------


def test_each_case_is_traced_and_the_first_that_holds_wins(engine: Engine) -> None:
    result = explained(engine, "rich", "2026-07-01T12:00Z")
    assert [(p["step"], p["kind"]) for p in result["flow"]] == [
        ("wait-open", "wait_for"), ("route", "branch"), ("basic-done", "branch"), ("upsell-done", "branch")]
    response = position(engine, DISPUTED, "response")
    revenue = position(engine, RICH_GOLD, "partner.revenue")
    tier = position(engine, RICH_GOLD, "partner.tier")
    case_1 = [step('response("collector-call")', None, response), step(DISPUTED, False, response)]
    case_2 = [step("partner.revenue", 9000, revenue), step("partner.revenue > 5000", True, revenue),
              step("partner.tier", "gold", tier), step('partner.tier == "gold"', True, tier),
              step(RICH_GOLD, True, revenue)]
    assert flow_part(result, "route") == {
        "step": "route", "kind": "branch", "file": FILE, "match": True, "case": 2, "goto": "upsell",
        "next": "basic",
        "cases": [{"case": 1, "when": DISPUTED, "goto": "dispute-letter", "match": False, "trace": case_1},
                  {"case": 2, "when": RICH_GOLD, "goto": "upsell", "match": True, "trace": case_2}],
        "trace": case_1 + case_2,
        "enrollment": 1, "due_at": None, "run": None,  # still waiting at wait-open
    }
    # an else case always holds; it has no expression
    assert flow_part(result, "basic-done")["cases"] == [
        {"case": 1, "when": None, "goto": "end", "match": True, "trace": []}]
    assert (flow_part(result, "basic-done")["case"], flow_part(result, "basic-done")["goto"]) == (1, "end")
    json.dumps(result)

    text = render_text(result)
    assert "flow (each branch and wait-for, as a tick at this time would take it):" in text
    assert "  route (branch): case 2 holds → upsell" in text
    assert f"    ✗ case 1: {DISPUTED} → dispute-letter" in text
    assert f"    ✓ case 2: {RICH_GOLD} → upsell" in text
    assert f'          {response[0]}:{response[1]}  response("collector-call") = null' in text
    assert f"          {tier[0]}:{tier[1]}  partner.tier == \"gold\" = true" in text
    assert "  basic-done (branch): else → end\n    ✓ else → end\n    enrollment 1 has not reached it" in text


def test_the_wait_for_the_partner_is_waiting_at_now(engine: Engine) -> None:
    result = explained(engine, "rich", "2026-07-01T12:00Z")
    opened = position(engine, "wait: {for:", "opened")
    paid = position(engine, "wait: {for:", "partner.paid")
    assert flow_part(result, "wait-open") == {
        "step": "wait-open", "kind": "wait_for", "file": FILE, "expression": OPENED_OR_PAID, "at_most": "3d",
        "match": False,
        "trace": [step('opened("welcome")', False, opened), step("partner.paid", False, paid),
                  step(OPENED_OR_PAID, False, opened)],
        "enrollment": 1, "due_at": "2026-07-04T10:00:00Z",  # the at_most deadline
        "waiting": {"since": "2026-07-01T10:00:00Z", "until": "2026-07-04T10:00:00Z"}, "run": None,
    }
    text = render_text(result)
    assert ("  wait-open (wait for, at most 3d): ✗ the condition is false: a wait reached now lasts until it "
            "holds, 3d at most") in text
    assert f"          {paid[0]}:{paid[1]}  partner.paid = false" in text
    assert ("    enrollment 1 is waiting here since 2026-07-01T10:00:00Z, until 2026-07-04T10:00:00Z at most"
            in text)
    # small was paid: its wait ended at once, and the branch sent it on to the next step
    small = explained(engine, "small", "2026-07-01T12:00Z")
    wait = flow_part(small, "wait-open")
    assert (wait["match"], wait["waiting"], wait["due_at"]) == (True, None, None)
    assert wait["run"] == {"at": "2026-07-01T10:00:00Z", "status": "executed", "reason": None,
                           "began": "2026-07-01T10:00:00Z", "ended_by": "condition"}
    text = render_text(small)
    assert "    enrollment 1 passed it at once at 2026-07-01T10:00:00Z: its condition held" in text


def test_a_response_makes_the_first_case_hold(engine: Engine) -> None:
    call = next(a["id"] for a in engine.activities(campaign="j") if a["partner"] == "disp")
    engine.respond(call, "disputed", at="2026-07-02T09:00Z")
    route = flow_part(explained(engine, "disp", "2026-07-02T10:00Z"), "route")
    response = position(engine, DISPUTED, "response")
    revenue = position(engine, RICH_GOLD, "partner.revenue")
    assert (route["match"], route["case"], route["goto"]) == (True, 1, "dispute-letter")
    assert route["cases"][0]["trace"] == [step('response("collector-call")', "disputed", response),
                                          step(DISPUTED, True, response)]
    # every case is evaluated (and `and` stops at its first false operand)
    assert route["cases"][1]["match"] is False
    assert route["cases"][1]["trace"] == [step("partner.revenue", 1000, revenue),
                                          step("partner.revenue > 5000", False, revenue),
                                          step(RICH_GOLD, False, revenue)]
    # before the response, nothing held for disp: on to the next step
    before = flow_part(explained(engine, "disp", "2026-07-02T08:00Z"), "route")
    assert (before["match"], before["case"], before["goto"], before["next"]) == (False, None, None, "basic")
    assert "  route (branch): no case holds → next step (basic)" in render_text(
        explained(engine, "disp", "2026-07-02T08:00Z"))


def test_past_the_branch_the_case_the_tick_chose_is_shown(engine: Engine) -> None:
    predicted = flow_part(explained(engine, "rich", "2026-07-04T10:00Z"), "route")
    assert (predicted["case"], predicted["goto"]) == (2, "upsell")
    engine.tick("2026-07-05T00:00Z")  # the wait ends at its at_most (07-04T10:00), the branch runs then
    set_partners(engine, partner("rich", revenue=100), partner("small", paid=True), partner("disp"))
    engine.tick("2026-07-06T00:00Z")  # imports the change
    result = explained(engine, "rich", "2026-07-06T00:00Z")
    route = flow_part(result, "route")
    # as of now no case holds; the tick chose case 2 when it passed the branch
    assert (route["match"], route["case"], route["goto"], route["next"]) == (False, None, None, "basic")
    assert route["run"] == {"at": "2026-07-04T10:00:00Z", "status": "executed", "reason": None, "case": 2,
                            "goto": "upsell"}
    assert (route["enrollment"], route["due_at"]) == (1, None)
    assert flow_part(result, "wait-open")["run"] == {
        "at": "2026-07-04T10:00:00Z", "status": "executed", "reason": None, "began": "2026-07-01T10:00:00Z",
        "ended_by": "at_most"}
    assert flow_part(result, "wait-open")["waiting"] is None
    assert flow_part(result, "basic-done")["run"] == {"at": "2026-07-04T10:00:00Z", "status": "skipped",
                                                      "reason": "branch", "case": None, "goto": None}
    assert flow_part(result, "upsell-done")["run"]["goto"] == "end"
    text = render_text(result)
    assert "  route (branch): no case holds → next step (basic)" in text
    assert "    enrollment 1 passed it at 2026-07-04T10:00:00Z, the tick chose: case 2 held → upsell" in text
    assert ("    enrollment 1 waited here from 2026-07-01T10:00:00Z to 2026-07-04T10:00:00Z: its at_most (3d) "
            "passed") in text
    assert "  basic-done (branch): else → end\n    ✓ else → end\n    enrollment 1: skipped at " \
           "2026-07-04T10:00:00Z (jumped over by a branch)" in text
    assert "    enrollment 1 passed it at 2026-07-04T10:00:00Z, the tick chose: else → end" in text


@pytest.mark.parametrize("at", ["2026-07-01T12:00Z", "2026-07-02T10:00Z", "2026-07-05T00:00Z"])
def test_the_winning_case_is_the_one_the_engine_computes(engine: Engine, at: str) -> None:
    call = next(a["id"] for a in engine.activities(campaign="j") if a["partner"] == "disp")
    engine.respond(call, "disputed", at="2026-07-02T09:00Z")
    compiled, when = engine.plan.campaigns["j"], engine.time(at)
    for pid in ("rich", "small", "disp"):
        current = [e for e in engine.store.enrollments_of(pid, "j") if e.status in CURRENT_STATUSES]
        ctx = Context(now=when, tz=compiled.tz,
                      facts=StoreFacts(engine.store, engine.plan, "j", current[-1] if current else None, when))
        partner_record = engine.book.get(pid)
        for part in explained(engine, pid, at)["flow"]:
            if part["kind"] == "branch":
                chosen = compiled.branch_target(part["step"], partner_record, ctx)
                assert (part["case"], part["goto"]) == (chosen or (None, None)), (pid, part["step"])
            else:
                assert part["match"] is compiled.wait_for[part["step"]].test(partner_record, ctx), pid


def test_explain_through_the_cli(capsys, engine: Engine) -> None:
    code, out = run_cli(capsys, "-w", str(engine.root), "explain", "j", "--partner", "small", "--at",
                        "2026-07-01T12:00Z")
    assert code == 0
    assert "  route (branch): no case holds → next step (basic)" in out
    assert ("    enrollment 1 passed it at 2026-07-01T10:00:00Z, the tick chose: no case held → next step "
            "(basic)") in out
    assert "  wait-open (wait for, at most 3d): ✓ the condition holds: a wait reached now ends at once" in out
    code, out = run_cli(capsys, "-w", str(engine.root), "explain", "j", "--partner", "small", "--at",
                        "2026-07-01T12:00Z", "--json")
    result = json.loads(out)
    assert set(result) == {"campaign", "partner", "eligible", "rulesets", "groups", "exclude", "consent", "trigger",
                           "flow"}
    assert [(p["step"], p["match"], p["run"]["status"]) for p in result["flow"]] == [
        ("wait-open", True, "executed"), ("route", False, "executed"), ("basic-done", True, "executed"),
        ("upsell-done", True, "skipped")]
    # a campaign without branches or waits-for: the JSON is as it always was
    code, out = run_cli(capsys, "-w", str(engine.root), "explain", "plain", "--partner", "small", "--json")
    assert set(json.loads(out)) == {"campaign", "partner", "eligible", "rulesets", "groups", "exclude", "consent",
                                    "trigger"}
    code, out = run_cli(capsys, "-w", str(engine.root), "explain", "plain", "--partner", "small")
    assert "flow" not in out


# --- engine test ---------------------------------------------------------------------------------


def path(partner_result: dict) -> list[tuple]:
    """(step, at, status, where it went) of each entry of a dry run's path."""
    out = []
    for entry in partner_result["steps"]:
        if entry["status"] != "would_execute":
            went = entry["reason"]
        elif entry["kind"] == "branch":
            went = (entry["case"], entry["goto"])
        elif entry["kind"] == "wait_for":
            went = (entry["ended_by"], entry["until"])
        else:
            went = None
        out.append((entry["step"], entry["at"], entry["status"], went))
    return out


RICH_PATH = [
    ("collector-call", "2026-07-01T10:00:00Z", "would_execute", None),
    ("welcome", "2026-07-01T10:00:00Z", "would_execute", None),
    ("wait-open", "2026-07-01T10:00:00Z", "would_execute", ("at_most", "2026-07-04T10:00:00Z")),
    ("route", "2026-07-04T10:00:00Z", "would_execute", (2, "upsell")),
    ("basic", "2026-07-04T10:00:00Z", "skipped", "branch"),
    ("basic-done", "2026-07-04T10:00:00Z", "skipped", "branch"),
    ("upsell", "2026-07-04T10:00:00Z", "would_execute", None),
    ("upsell-done", "2026-07-04T10:00:00Z", "would_execute", (1, "end")),
    ("dispute-letter", "2026-07-04T10:00:00Z", "skipped", "branch"),
]
SMALL_PATH = [
    ("collector-call", "2026-07-01T10:00:00Z", "would_execute", None),
    ("welcome", "2026-07-01T10:00:00Z", "would_execute", None),
    ("wait-open", "2026-07-01T10:00:00Z", "would_execute", ("condition", "2026-07-01T10:00:00Z")),
    ("route", "2026-07-01T10:00:00Z", "would_execute", (None, None)),
    ("basic", "2026-07-01T10:00:00Z", "would_execute", None),
    ("basic-done", "2026-07-01T10:00:00Z", "would_execute", (1, "end")),
    ("upsell", "2026-07-01T10:00:00Z", "skipped", "branch"),
    ("upsell-done", "2026-07-01T10:00:00Z", "skipped", "branch"),
    ("dispute-letter", "2026-07-01T10:00:00Z", "skipped", "branch"),
]


def test_engine_test_json_shows_the_path_of_each_partner(capsys, root: Path) -> None:
    code, out = run_cli(capsys, "-w", str(root), "test", "j", "--partner", "rich", "--partner", "small",
                        "--at", START, "--json")
    assert code == 0
    result = json.loads(out)
    assert result == dry_run(root, "j", ["rich", "small"], None, parse_time(START, UTC))  # as dryrun returns it
    rich, small = result["partners"]
    assert path(rich) == RICH_PATH
    assert path(small) == SMALL_PATH
    assert rich["finished"] == {"reason": "completed", "at": "2026-07-04T10:00:00Z"}
    assert small["finished"] == {"reason": "completed", "at": "2026-07-01T10:00:00Z"}


def test_engine_test_text_shows_where_each_branch_sends_each_partner(capsys, root: Path) -> None:
    code, out = run_cli(capsys, "-w", str(root), "test", "j", "--partner", "rich", "--partner", "small",
                        "--at", START)
    assert code == 0
    rich = out[out.index("partner rich"):out.index("partner small")].splitlines()
    small = out[out.index("partner small"):].splitlines()
    assert rich == [
        "partner rich: all; enrolls",
        "  2026-07-01T10:00:00Z  collector-call       would_execute  Call",
        "  2026-07-01T10:00:00Z  welcome              would_execute  S RICH",
        "  2026-07-01T10:00:00Z  wait-open            waits 3d until 2026-07-04T10:00:00Z (condition false)",
        "  2026-07-04T10:00:00Z  route                → upsell (case 2)",
        "  2026-07-04T10:00:00Z  basic                skipped        jumped over by a branch",
        "  2026-07-04T10:00:00Z  basic-done           skipped        jumped over by a branch",
        "  2026-07-04T10:00:00Z  upsell               would_execute  S RICH",
        "  2026-07-04T10:00:00Z  upsell-done          → end (case 1)",
        "  2026-07-04T10:00:00Z  dispute-letter       skipped        jumped over by a branch",
        "  2026-07-04T10:00:00Z  finished: completed",
        "",
    ]
    assert small == [
        "partner small: all; enrolls",
        "  2026-07-01T10:00:00Z  collector-call       would_execute  Call",
        "  2026-07-01T10:00:00Z  welcome              would_execute  S SMALL",
        "  2026-07-01T10:00:00Z  wait-open            ends at once (condition holds)",
        "  2026-07-01T10:00:00Z  route                → next step (no case held)",
        "  2026-07-01T10:00:00Z  basic                would_execute  S SMALL",
        "  2026-07-01T10:00:00Z  basic-done           → end (case 1)",
        "  2026-07-01T10:00:00Z  upsell               skipped        jumped over by a branch",
        "  2026-07-01T10:00:00Z  upsell-done          skipped        jumped over by a branch",
        "  2026-07-01T10:00:00Z  dispute-letter       skipped        jumped over by a branch",
        "  2026-07-01T10:00:00Z  finished: completed",
    ]
