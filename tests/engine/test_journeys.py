"""Journeys (SPEC §11, first half): branches, waits-for, response gotos, `end`, renames and
per-partner local time, through the tick with a fixed clock. Every expected time below is worked
out by hand in the comment beside it."""

from __future__ import annotations

import pytest

from campaigns.enrollment import Refused
from tests.engine.test_tick import (
    campaign,
    email,
    enrollments,
    partner,
    partners_csv,
    sent,
    set_campaign,
    set_partners,
    steps_of,
    wait,
    workspace,
)

LETTER = "  - id: {id}\n    letter: {{template: letter.txt.j2}}\n"
TEMPLATES = {"letter.txt.j2": "Dear {{ partner.name }}"}


def letter(step_id: str) -> str:
    return LETTER.format(id=step_id)


def branch(step_id: str, *cases: str) -> str:
    return f"  - id: {step_id}\n    branch:\n" + "".join(f"      - {case}\n" for case in cases)


def wait_for(condition: str, at_most: str, step_id: str | None = None) -> str:
    head = f"  - id: {step_id}\n    wait:" if step_id else "  - wait:"
    return f"{head} {{for: '{condition}', at_most: {at_most}}}\n"


def call(step_id: str = "call", responses: str = "") -> str:
    return (f"  - id: {step_id}\n    activity:\n      kind: call\n      subject: Call\n"
            f"      responses:\n{responses}")


# --- branches -----------------------------------------------------------------------------------


def test_the_first_case_that_holds_wins_and_the_steps_jumped_over_are_skipped(tmp_path, make_engine):
    steps = (branch("route", "{when: 'partner.tier == \"platinum\"', goto: vip}",
                    "{when: 'partner.revenue > 5000', goto: upsell}", "{else: end}")
             + email("basic") + email("upsell") + email("vip"))
    root = workspace(tmp_path, {"j": campaign(steps=steps)},
                     partners_csv(partner("plat", tier="platinum", revenue=9000), partner("rich", revenue=9000),
                                  partner("small")))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    report = engine.tick("2026-07-01T10:00Z")

    assert sent(engine, "email") == [("plat", "vip", "2026-07-01T10:00:00Z"), ("rich", "upsell", "2026-07-01T10:00:00Z"),
                                     ("rich", "vip", "2026-07-01T10:00:00Z")]
    at = "2026-07-01T10:00:00Z"
    assert steps_of(engine, "j", "plat") == {"route": ("executed", None, at), "basic": ("skipped", "branch", at),
                                             "upsell": ("skipped", "branch", at), "vip": ("executed", None, at)}
    assert steps_of(engine, "j", "rich")["basic"] == ("skipped", "branch", at)
    # `else: end` completes the enrollment and skips every step after the branch
    assert steps_of(engine, "j", "small") == {"route": ("executed", None, at), "basic": ("skipped", "branch", at),
                                              "upsell": ("skipped", "branch", at), "vip": ("skipped", "branch", at)}
    assert [e[2:4] for e in enrollments(engine, "small")] == [("finished", "completed")]
    assert (report.executed, report.skipped, report.finished) == (3 + 3, 2 + 1 + 3, 3)


def test_no_case_holds_goes_on_with_the_next_step_and_the_branch_is_evaluated_at_its_due_time(tmp_path, make_engine):
    steps = email("first") + wait("2d") + branch("route", "{when: 'partner.paid', goto: thanks}") + \
        email("reminder") + email("thanks")
    root = workspace(tmp_path, {"j": campaign(steps=steps)}, partners_csv(partner("p1"), partner("p2")))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-01T10:00Z")
    set_partners(engine, partner("p1"), partner("p2", paid=True))  # imported by the next tick, before 07-03
    engine.tick("2026-07-02T00:00Z")
    engine.tick("2026-07-10T00:00Z")  # the branch is due 07-03T10:00
    assert sent(engine, "email", partner="p1") == [("p1", "first", "2026-07-01T10:00:00Z"),
                                                   ("p1", "reminder", "2026-07-03T10:00:00Z"),
                                                   ("p1", "thanks", "2026-07-03T10:00:00Z")]
    assert sent(engine, "email", partner="p2") == [("p2", "first", "2026-07-01T10:00:00Z"),
                                                   ("p2", "thanks", "2026-07-03T10:00:00Z")]
    route = engine.steps("j", "p2")["steps"]
    assert [s for s in route if s["step"] == "route"][0]["detail"] == {"case": 1, "goto": "thanks"}


def test_a_jump_to_an_id_d_wait_counts_the_wait_from_the_jump(tmp_path, make_engine):
    steps = (branch("route", "{when: 'true', goto: pause}") + email("skipped")
             + "  - id: pause\n    wait: 3d\n" + email("after"))
    root = workspace(tmp_path, {"j": campaign(steps=steps)}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-01T10:00Z")
    engine.tick("2026-07-10T00:00Z")
    assert sent(engine, "email") == [("p1", "after", "2026-07-04T10:00:00Z")]
    assert steps_of(engine, "j", "p1")["skipped"] == ("skipped", "branch", "2026-07-01T10:00:00Z")


# --- waits-for ----------------------------------------------------------------------------------


def test_a_wait_for_ends_at_the_first_tick_that_sees_its_condition_and_the_next_step_is_due_then(tmp_path, make_engine):
    steps = email("invoice") + wait_for("partner.paid", "7d", "wait-paid") + email("thanks")
    root = workspace(tmp_path, {"j": campaign(steps=steps)}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-01T10:00Z")
    engine.tick("2026-07-02T10:00Z")  # still unpaid: waits
    assert [m[1] for m in sent(engine, "email")] == ["invoice"]
    set_partners(engine, partner("p1", paid=True))
    engine.tick("2026-07-03T12:00Z")
    assert sent(engine, "email") == [("p1", "invoice", "2026-07-01T10:00:00Z"), ("p1", "thanks", "2026-07-03T12:00:00Z")]
    run = [s for s in engine.steps("j", "p1")["steps"] if s["step"] == "wait-paid"][0]
    assert (run["status"], run["detail"]["ended_by"], run["at"]) == ("executed", "condition", "2026-07-03T12:00:00Z")


def test_a_wait_for_ends_at_its_at_most_when_no_tick_sees_the_condition_before(tmp_path, make_engine):
    steps = email("invoice") + wait_for("partner.paid", "7d") + email("reminder")
    root = workspace(tmp_path, {"j": campaign(steps=steps)}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-01T10:00Z")
    engine.tick("2026-07-05T10:00Z")
    set_partners(engine, partner("p1", paid=True))
    engine.tick("2026-07-20T00:00Z")  # paid now, but at_most (07-08T10:00) came first
    assert sent(engine, "email") == [("p1", "invoice", "2026-07-01T10:00:00Z"), ("p1", "reminder", "2026-07-08T10:00:00Z")]
    run = [s for s in engine.steps("j", "p1")["steps"] if s["step"] == "wait@invoice"][0]
    assert run["detail"]["ended_by"] == "at_most"


def test_a_wait_for_reached_inside_a_tick_is_asked_at_the_tick_s_time(tmp_path, make_engine):
    steps = email("first") + wait("1d") + wait_for("partner.paid", "30d") + email("thanks")
    root = workspace(tmp_path, {"j": campaign(steps=steps)}, partners_csv(partner("p1", paid=True)))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-01T10:00Z")
    engine.tick("2026-07-09T00:00Z")  # the wait began 07-02T10:00; this tick is the first to see it
    assert sent(engine, "email") == [("p1", "first", "2026-07-01T10:00:00Z"), ("p1", "thanks", "2026-07-09T00:00:00Z")]


def test_a_wait_for_on_engagement_ends_when_the_open_is_imported(tmp_path, make_engine):
    steps = email("welcome") + wait_for('opened("welcome")', "3d", "wait-open") + email("next")
    root = workspace(tmp_path, {"j": campaign(steps=steps)}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-01T10:00Z")
    engine.tick("2026-07-01T12:00Z")
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "opened", "at": "2026-07-01T13:00Z", "partner": "p1", "campaign": "j", '
                      '"step": "welcome"}\n')
    engine.import_events(events, at="2026-07-01T13:30Z")
    engine.tick("2026-07-01T14:00Z")
    assert sent(engine, "email")[-1] == ("p1", "next", "2026-07-01T14:00:00Z")


# --- responses that jump ------------------------------------------------------------------------


def test_a_response_goto_moves_the_enrollment_due_at_the_response_time(tmp_path, make_engine):
    responses = ("        disputed: {result: unsuccessful, goto: dispute-letter}\n"
                 "        promised: {result: successful}\n")
    steps = call("collect", responses) + wait("7d") + email("check") + letter("dispute-letter") + email("done")
    root = workspace(tmp_path, {"j": campaign(steps=steps)}, partners_csv(partner("p1"), partner("p2")),
                     templates=TEMPLATES)
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-01T10:00Z")
    calls = {a["partner"]: a["id"] for a in engine.activities(campaign="j")}
    moved = engine.respond(calls["p1"], "disputed", at="2026-07-02T09:00Z")
    assert (moved.goto, moved.goto_note) == ("dispute-letter", None)
    engine.respond(calls["p2"], "promised", at="2026-07-02T09:00Z")
    engine.tick("2026-07-20T00:00Z")
    # p1: the check email is skipped, the letter goes out at the response's time, then done
    assert steps_of(engine, "j", "p1")["check"] == ("skipped", "response", "2026-07-02T09:00:00Z")
    assert steps_of(engine, "j", "p1")["dispute-letter"][0] == "executed"
    assert sent(engine, "email", partner="p1") == [("p1", "done", "2026-07-02T09:00:00Z")]
    # p2: no goto, the flow goes on as written
    assert sent(engine, "email", partner="p2") == [("p2", "check", "2026-07-08T10:00:00Z"),
                                                   ("p2", "done", "2026-07-08T10:00:00Z")]


def test_a_response_goto_does_not_move_an_enrollment_past_its_target(tmp_path, make_engine):
    responses = "        later: {result: postponed, goto: mid}\n"
    steps = call("collect", responses) + email("mid") + wait("5d") + email("last")
    root = workspace(tmp_path, {"j": campaign(steps=steps)}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-02T10:00Z")  # collect and mid ran; waits for last
    activity = engine.activities(campaign="j")[0]["id"]
    answered = engine.respond(activity, "later", at="2026-07-03T10:00Z")
    assert answered.goto_note == "the enrollment has passed step mid"
    engine.tick("2026-07-10T00:00Z")
    assert [m[1] for m in sent(engine, "email")] == ["mid", "last"]


# --- renames ------------------------------------------------------------------------------------


def test_a_renamed_step_keeps_the_partners_waiting_for_it_in_place(tmp_path, make_engine):
    before = email("welcome") + wait("3d") + email("tips")
    after = email("welcome") + wait("3d") + "  - id: tips-v2\n    renamed_from: tips\n" + \
        "    email: {subject: S2, body: B2}\n"
    root = workspace(tmp_path, {"j": campaign(steps=before)}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-01T10:00Z")
    set_campaign(engine, "j", campaign(steps=after))
    engine.tick("2026-07-10T00:00Z")
    assert sent(engine, "email") == [("p1", "welcome", "2026-07-01T10:00:00Z"), ("p1", "tips-v2", "2026-07-04T10:00:00Z")]
    assert steps_of(engine, "j", "p1")["tips-v2"][0] == "executed"


# --- per-partner local time ---------------------------------------------------------------------


def test_wait_until_uses_the_partner_s_own_timezone(tmp_path, make_engine):
    steps = email("first") + '  - wait: {until: "09:00"}\n' + email("morning")
    root = workspace(tmp_path, {"j": campaign(steps=steps)},
                     partners_csv(partner("hel", role="Europe/Helsinki"), partner("ny", role="America/New_York"),
                                  partner("bad", role="Mars/Base")))
    (root / "engine.yaml").write_text((root / "engine.yaml").read_text().replace(
        "  id: id\n", "  id: id\n  timezone_field: role\n"))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-01T10:00Z")
    engine.tick("2026-07-03T00:00Z")
    mornings = {p: at for p, step, at in sent(engine, "email") if step == "morning"}
    # 09:00 Helsinki (UTC+3) is 06:00Z on 07-02; 09:00 New York (UTC-4) is 13:00Z on 07-01;
    # an unknown zone falls back to the campaign's (UTC): 09:00Z on 07-02
    assert mornings == {"hel": "2026-07-02T06:00:00Z", "ny": "2026-07-01T13:00:00Z", "bad": "2026-07-02T09:00:00Z"}


# --- operations on flow steps -------------------------------------------------------------------


def test_a_branch_cannot_run_again_but_can_be_skipped_ahead(tmp_path, make_engine):
    steps = email("first") + wait("1d") + branch("route", "{when: 'true', goto: last}") + email("middle") + \
        email("last")
    root = workspace(tmp_path, {"j": campaign(steps=steps)}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-01T10:00Z")
    engine.skip("j", "route", "p1", at="2026-07-01T11:00Z")
    engine.tick("2026-07-03T00:00Z")
    assert [m[1] for m in sent(engine, "email")] == ["first", "middle", "last"]
    with pytest.raises(Refused, match="only a step that sends"):
        engine.rerun("j", "route", "p1", at="2026-07-03T00:00Z")


def test_a_renamed_step_keeps_its_history_for_expressions(tmp_path, make_engine):
    """opened("tips-v2") sees the opens of the message sent as `tips` before the rename."""
    tail = wait("1d") + branch("route", "{when: 'opened(\"%s\")', goto: engaged}") + email("nudge") + email("engaged")
    before = email("tips") + tail % "tips"
    after = "  - id: tips-v2\n    renamed_from: tips\n    email: {subject: S, body: B}\n" + tail % "tips-v2"
    root = workspace(tmp_path, {"j": campaign(steps=before)}, partners_csv(partner("p1"), partner("p2")))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-01T10:00Z")
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "opened", "at": "2026-07-01T12:00Z", "partner": "p1", "campaign": "j", '
                      '"step": "tips"}\n')
    engine.import_events(events, at="2026-07-01T12:30Z")
    set_campaign(engine, "j", campaign(steps=after))
    engine.tick("2026-07-03T00:00Z")
    assert sent(engine, "email")[2:] == [("p1", "engaged", "2026-07-02T10:00:00Z"),
                                         ("p2", "nudge", "2026-07-02T10:00:00Z"),
                                         ("p2", "engaged", "2026-07-02T10:00:00Z")]


def test_engine_steps_says_what_a_branch_chose_and_how_a_wait_for_ended(tmp_path, make_engine, capsys):
    from engine.cli import main

    steps = email("first") + wait_for("partner.paid", "2d", "wait-paid") + \
        branch("route", "{when: 'partner.paid', goto: thanks}") + email("reminder") + email("thanks")
    root = workspace(tmp_path, {"j": campaign(steps=steps)}, partners_csv(partner("p1")))
    engine = make_engine(root, at="2026-07-01T10:00Z")
    engine.tick("2026-07-01T10:00Z")
    assert main(["-w", str(engine.root), "steps", "j", "--partner", "p1"]) == 0
    assert "waiting since 2026-07-01T10:00:00Z" in capsys.readouterr().out
    set_partners(engine, partner("p1", paid=True))
    engine.tick("2026-07-02T10:00Z")
    assert main(["-w", str(engine.root), "steps", "j", "--partner", "p1"]) == 0
    out = capsys.readouterr().out
    assert "began 2026-07-01T10:00:00Z, ended: the condition held" in out and "case 1 → thanks" in out
