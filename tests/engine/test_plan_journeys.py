"""`engine plan` and the flow keys: renames keep enrollments in place, new branches, waits-for
and steps are new before or after an enrollment's position, positions at a branch or a
wait-for are no removed steps. Each test runs on both stores (see conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.cli import main
from engine.plan import journey_lines
from tests.engine.test_tick import (campaign, email, partner, partners_csv, sent, set_campaign, set_partners, sms,
                                    steps_of, wait, workspace)


def plan(capsys, root: Path) -> tuple[int, dict]:
    code = main(["-w", str(root), "plan", "--json"])
    return code, json.loads(capsys.readouterr().out)


def entry(result: dict, cid: str = "drip") -> dict:
    [found] = [c for c in result["campaigns"] if c["campaign"] == cid]
    return found


def branch(step_id: str, *cases: str) -> str:
    return f"  - id: {step_id}\n    branch:\n" + "".join(f"      - {case}\n" for case in cases)


def renamed(step_id: str, old: str) -> str:
    """An sms step that was ``old``."""
    return f"  - id: {step_id}\n    renamed_from: {old}\n    sms: {{text: \"T {{{{ partner.name }}}}\"}}\n"


ROUTE = branch("route", "{when: 'opened(\"hello\")', goto: bye}")


def two_apart(tmp_path: Path, make_engine):
    """hello, 2d, nudge, 2d, bye: p1 enrolled on July 1st is at bye (it ran hello and nudge), p2
    enrolled on July 4th is at nudge (it ran hello)."""
    text = campaign(steps=email("hello") + wait("2d") + sms("nudge") + wait("2d") + email("bye"))
    root = workspace(tmp_path, {"drip": text}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick("2026-07-01T00:00Z")
    set_partners(engine, partner("p1"), partner("p2"))
    engine.tick("2026-07-04T00:00Z")
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-03T00:00:00Z")]
    return engine


def test_a_rename_keeps_the_enrollments_at_the_old_id_in_place(tmp_path: Path, make_engine, capsys):
    engine = two_apart(tmp_path, make_engine)
    code, result = plan(capsys, engine.root)
    assert (code, result["changes"]) == (0, 0)
    assert entry(result)["renamed_steps"] == {"enrollments": 0, "steps": {}}
    assert entry(result)["new_steps"] == {"enrollments": 0, "steps": {}}

    set_campaign(engine, "drip", campaign(steps=email("hello") + wait("2d") + renamed("reminder", "nudge")
                                          + wait("2d") + email("bye")))
    code, result = plan(capsys, engine.root)
    drip = entry(result)
    assert (code, result["changes"]) == (4, 1)
    assert drip["renamed_steps"] == {"enrollments": 1, "steps": {"nudge": {"to": "reminder", "enrollments": 1}}}
    assert drip["removed_steps"] == {"enrollments": 0, "steps": {}}  # not step_removed
    assert drip["new_steps"] == {"enrollments": 0, "steps": {}}  # p1 ran it as nudge
    assert journey_lines(drip) == [
        "1 enrollments wait for step nudge, renamed reminder: they continue there as if nothing happened"]

    # and the tick does as the plan said: p2 gets the sms under its new id, nothing is removed
    engine.tick("2026-07-06T00:00Z")
    assert sent(engine, "sms") == [("p1", "nudge", "2026-07-03T00:00:00Z"), ("p2", "reminder", "2026-07-06T00:00:00Z")]
    assert steps_of(engine, "drip", "p2")["reminder"] == ("executed", None, "2026-07-06T00:00:00Z")
    assert "nudge" not in steps_of(engine, "drip", "p2")


def test_a_new_branch_before_and_after_the_positions(tmp_path: Path, make_engine, capsys):
    engine = two_apart(tmp_path, make_engine)
    # after nudge: p1 (at bye) is past it, p2 (at nudge) reaches it and it is evaluated for p2
    set_campaign(engine, "drip", campaign(steps=email("hello") + wait("2d") + sms("nudge") + ROUTE
                                          + wait("2d") + email("bye")))
    code, result = plan(capsys, engine.root)
    drip = entry(result)
    assert (code, result["changes"]) == (4, 1)
    assert drip["new_steps"] == {"enrollments": 2,
                                 "steps": {"route": {"kind": "branch", "will_run": 1, "will_not_run": 1}}}
    assert drip["removed_steps"]["enrollments"] == 0 and drip["renamed_steps"]["enrollments"] == 0
    assert journey_lines(drip) == [
        "branch route is new before the position of 1 enrollments: it will not run for them",
        "branch route is new after the position of 1 enrollments: it will be evaluated for them when they reach it",
    ]

    # right after hello: both are past it
    set_campaign(engine, "drip", campaign(steps=email("hello") + ROUTE + wait("2d") + sms("nudge")
                                          + wait("2d") + email("bye")))
    code, result = plan(capsys, engine.root)
    assert entry(result)["new_steps"]["steps"] == {"route": {"kind": "branch", "will_run": 0, "will_not_run": 2}}

    # a changed goto of a branch nobody reached is no change in the store
    set_campaign(engine, "drip", campaign(steps=email("hello") + wait("2d") + sms("nudge") + wait("2d")
                                          + email("bye")))
    engine.tick("2026-07-06T00:00Z")  # p1 finishes, p2 is at bye
    with_branch = campaign(steps=email("hello") + wait("2d") + sms("nudge") + wait("2d") + email("bye")
                           + wait("1d") + branch("last", "{when: 'opened(\"hello\")', goto: end}") + sms("after"))
    assert plan(capsys, engine.root)[0] == 0
    set_campaign(engine, "drip", with_branch)
    code, result = plan(capsys, engine.root)
    assert code == 0 and entry(result)["new_steps"]["steps"] == {}  # beyond p2's position: not told apart
    set_campaign(engine, "drip", with_branch.replace("goto: end", "goto: after"))
    assert plan(capsys, engine.root)[0] == 0


def test_steps_added_after_the_end_run_for_enrollments_past_the_last_step(tmp_path: Path, make_engine, capsys):
    root = workspace(tmp_path, {"drip": campaign(steps=email("hello") + wait("5d"))}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick("2026-07-01T00:00Z")  # p1 ran hello, and waits out the 5 days
    assert plan(capsys, engine.root)[0] == 0

    set_campaign(engine, "drip", campaign(steps=email("hello") + wait("5d") + ROUTE + sms("nudge") + email("bye")))
    code, result = plan(capsys, engine.root)
    assert code == 4
    assert entry(result)["new_steps"] == {"enrollments": 1, "steps": {
        "route": {"kind": "branch", "will_run": 1, "will_not_run": 0},
        "nudge": {"kind": "sms", "will_run": 1, "will_not_run": 0},
        "bye": {"kind": "email", "will_run": 1, "will_not_run": 0}}}
    assert journey_lines(entry(result))[:2] == [
        "branch route is new after the position of 1 enrollments: it will be evaluated for them when they reach it",
        "step nudge is new after the position of 1 enrollments: it will run for them when they reach it"]


def test_waiting_at_a_branch_or_a_wait_for_is_no_removed_step(tmp_path: Path, make_engine, capsys):
    wait_open = "  - id: wait-open\n    wait: {for: 'clicked(\"hello\")', at_most: 3d}\n"
    text = campaign(steps=email("hello") + wait_open + sms("nudge"))
    root = workspace(tmp_path, {"drip": text}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick("2026-07-01T00:00Z")
    code, result = plan(capsys, engine.root)
    assert (code, entry(result)["removed_steps"]) == (0, {"enrollments": 0, "steps": {}})

    # renamed, the wait-for keeps p1 waiting at it
    set_campaign(engine, "drip",
                 text.replace("  - id: wait-open\n", "  - id: wait-click\n    renamed_from: [wait-open]\n"))
    code, result = plan(capsys, engine.root)
    assert code == 4
    assert entry(result)["renamed_steps"]["steps"] == {"wait-open": {"to": "wait-click", "enrollments": 1}}
    assert entry(result)["removed_steps"]["enrollments"] == 0

    # without renamed_from it is a removal (p1 then goes on after hello: it waits at wait-click)
    set_campaign(engine, "drip", text.replace("  - id: wait-open\n", "  - id: wait-click\n"))
    code, result = plan(capsys, engine.root)
    assert code == 4
    assert entry(result)["removed_steps"] == {"enrollments": 1, "steps": {"wait-open": 1}}
    assert entry(result)["renamed_steps"]["enrollments"] == 0
