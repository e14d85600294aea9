"""Monitors and stats (issue 12): In-Campaign % for every trigger, `engine check` where a monitor
cannot measure anything, In-Campaign % in the `engine status` list, alerts that say what dropped
and what to do, and activities and responses per step in `engine stats`.

Everything goes through the real argument parser (``engine.cli.main``), on workspaces built with
the helpers of test_tick.py (UTC, consent ``partner.ok``, no users: operations need no ``--as``).
Read commands run at the wall clock; ticks and operations say ``--at``. Expected numbers are
worked out by hand in the comments beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.testing import rewrite
from tests.engine.test_engagement import run, run_json, tick
from tests.engine.test_tick import partner, partners_csv, workspace

T0 = "2026-07-01T00:00Z"  # a Wednesday
MONDAY = "2026-07-06T09:00:00Z"  # the first occurrence of "0 9 * * MON" (UTC) after T0

FLOW = """\
steps:
  - id: hello
    email: {subject: "Hi", body: "Welcome {{ unsubscribe_url }}"}
  - wait: 30d
  - id: again
    email: {subject: "Hi again", body: "Still here? {{ unsubscribe_url }}"}
"""
MONITOR = "monitor: {in_campaign_min: 90%, alert: [ops@example.com]}\n"


def campaign(trigger: str | None, *, audience: str = "{rulesets: {all: partner.active == true}}", extra: str = "") -> str:
    return (f"name: Test\ndescription: A test campaign.\naudience: {audience}\n"
            + (f"trigger: {trigger}\n" if trigger else "") + extra + FLOW + MONITOR)


def ok(capsys, root: Path, *argv: str) -> str:
    code, out, err = run(capsys, root, *argv)
    assert code == 0, err
    return out


def alert_emails(root: Path) -> list[dict]:
    path = root / ".engine" / "outbox" / "email.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [m for m in map(json.loads, lines) if m["step"] == "monitor"]


def ids(n: int, first: int = 1) -> list[str]:
    return [f"p{i}" for i in range(first, first + n)]


PAUSED = ("resume them (engine resume {cid} --partner p1) or remove them: a paused enrollment does not advance")


# --- 1. every trigger ------------------------------------------------------------------------------


def test_a_cron_campaign_alerts_when_pauses_drop_it_below_the_minimum_and_partners_waiting_for_monday_do_not(
        capsys, tmp_path: Path):
    root = workspace(tmp_path, {"weekly": campaign('{cron: "0 9 * * MON"}')},
                     partners_csv(*(partner(p) for p in ids(10))))
    assert tick(capsys, root, T0)["enrolled"] == 0  # Wednesday: the cron waits for Monday
    report = tick(capsys, root, "2026-07-06T10:00Z")
    assert (report["enrolled"], report["alerts"]) == (10, [])

    # p11 and p12 join: they wait for next Monday's occurrence, which is no drop (still 10 of 10)
    rewrite(root / "partners.csv", partners_csv(*(partner(p) for p in ids(12))))
    assert tick(capsys, root, "2026-07-07T00:00Z")["alerts"] == []
    stats = run_json(capsys, root, "stats", "weekly")
    assert (stats["in_campaign_pct"], stats["in_campaign"]) == (
        100.0, {"active": 10, "of": 10, "waiting": 2, "dropped": [], "suggestion": None})

    # two paused: 8 of 10 = 80% < 90%
    ok(capsys, root, "pause", "weekly", "--partner", "p1", "--partner", "p2", "--at", "2026-07-07T01:00Z")
    code, out, err = run(capsys, root, "tick", "--at", "2026-07-07T02:00Z", "--json")
    assert code == 0, err
    paused = {"reason": "paused", "partners": 2, "examples": ["p1", "p2"], "suggestion": PAUSED.format(cid="weekly")}
    assert json.loads(out)["alerts"] == [{
        "campaign": "weekly", "state": "raised", "in_campaign_pct": 80.0, "minimum": 90.0, "active": 8, "of": 10,
        "at": "2026-07-07T02:00:00Z", "waiting": 2, "dropped": [paused], "suggestion": PAUSED.format(cid="weekly")}]

    [alert] = run_json(capsys, root, "alerts")
    assert {k: v for k, v in alert.items() if k != "seq"} == {
        "campaign": "weekly", "raised_at": "2026-07-07T02:00:00Z", "pct": 80.0, "minimum": 90.0, "cleared_at": None,
        "cleared_pct": None, "active": 8, "of": 10, "waiting": 2, "dropped": [paused],
        "suggestion": PAUSED.format(cid="weekly")}
    text = ok(capsys, root, "alerts")
    assert "2 paused (p1, p2)" in text.splitlines()[1]
    assert text.splitlines()[-1] == "weekly: " + PAUSED.format(cid="weekly")

    [email] = alert_emails(root)
    assert email["to"] == "ops@example.com" and email["subject"] == "In-Campaign alert: Test at 80.0% (expected 90%)"
    assert "Not active: 2 paused (p1, p2).\n- paused: " + PAUSED.format(cid="weekly") + "\n" in email["body"]

    ok(capsys, root, "resume", "weekly", "--partner", "p1", "--partner", "p2", "--at", "2026-07-07T03:00Z")
    [cleared] = tick(capsys, root, "2026-07-07T04:00Z")["alerts"]
    assert (cleared["state"], cleared["in_campaign_pct"], cleared["dropped"]) == ("cleared", 100.0, [])


def _enroll_four_at(capsys, root: Path, kind: str) -> None:
    """p1..p4 in the campaign ``c`` by its trigger (at, event) or by hand (no trigger), at 09:00."""
    tick(capsys, root, T0)
    if kind == "event":
        events = root / "events.jsonl"
        events.write_text("".join(json.dumps({"type": "invoice.overdue", "at": "2026-07-01T09:00:00Z", "partner": p})
                                  + "\n" for p in ids(4)), encoding="utf-8")
        ok(capsys, root, "events", "import", str(events), "--at", "2026-07-01T09:00Z")
    if kind == "manual":
        for p in ids(4):
            ok(capsys, root, "start", "c", "--partner", p, "--at", "2026-07-01T09:00Z")
    assert tick(capsys, root, "2026-07-01T10:00Z")["alerts"] == []


@pytest.mark.parametrize("kind, trigger", [("at", "{at: 2026-07-01T09:00Z}"), ("event", "{event: invoice.overdue}"),
                                           ("manual", None)])
def test_at_event_and_manual_campaigns_alert_too(capsys, tmp_path: Path, kind: str, trigger: str | None):
    """Eight partners match the audience; four are in the campaign. The four outside it are not
    missing (the one-shot fired, no event came for them, nobody started them), so one of four
    paused is 75%."""
    root = workspace(tmp_path, {"c": campaign(trigger)}, partners_csv(*(partner(p) for p in ids(4))))
    _enroll_four_at(capsys, root, kind)
    rewrite(root / "partners.csv", partners_csv(*(partner(p) for p in ids(8))))
    assert tick(capsys, root, "2026-07-01T11:00Z")["alerts"] == []
    ok(capsys, root, "pause", "c", "--partner", "p1", "--at", "2026-07-01T12:00Z")
    [alert] = tick(capsys, root, "2026-07-01T13:00Z")["alerts"]
    assert (alert["state"], alert["in_campaign_pct"], alert["active"], alert["of"], alert["waiting"]) == (
        "raised", 75.0, 3, 4, None)
    assert [(d["reason"], d["partners"], d["examples"]) for d in alert["dropped"]] == [("paused", 1, ["p1"])]


# --- `engine check`: a monitor that cannot measure anything ----------------------------------------


NO_AUDIENCE = """\
name: Follow-ups
description: Partners arrive as follow-ups.
active: false
steps:
  - id: hello
    email: {subject: "Hi", body: "Welcome {{ unsubscribe_url }}"}
monitor:
  in_campaign_min: 80%
"""
MONITOR_WARNING = ("this monitor never measures anything: In-Campaign % counts the partners of the campaign's "
                   "audience, and it has none (no ruleset or group); add an audience, or remove `monitor:`")


def test_check_warns_at_the_monitor_key_of_a_campaign_without_an_audience(capsys, tmp_path: Path):
    root = workspace(tmp_path, {"followups": NO_AUDIENCE, "weekly": campaign('{cron: "0 9 * * MON"}'),
                                "plain": NO_AUDIENCE.replace("monitor:\n  in_campaign_min: 80%\n", "")},
                     partners_csv(partner("p1")))
    report = run_json(capsys, root, "check")
    monitors = [(d["path"], d["line"], d["col"], d["severity"], d["message"]) for d in report["errors"]
                if "monitor" in d["message"]]
    assert monitors == [(str(root / "campaigns" / "followups.yaml"), 7, 1, "warning", MONITOR_WARNING)]  # only there
    assert report["ok"] is True

    code, out, err = run(capsys, root, "check", str(root / "campaigns" / "followups.yaml"))
    assert code == 0
    assert f"campaigns/followups.yaml:7:1: warning: {MONITOR_WARNING}\n  monitor:\n  ^~~~~~~\n" in out + err
    code, out, err = run(capsys, root, "check", "--strict", str(root / "campaigns" / "followups.yaml"))
    assert code == 1 and f"followups.yaml:7:1: error: {MONITOR_WARNING}" in out + err


# --- 2. In-Campaign % in the `engine status` list ---------------------------------------------------


def test_the_status_list_shows_each_campaigns_in_campaign_pct(capsys, tmp_path: Path):
    root = workspace(tmp_path, {
        "always": campaign("{audience: true}"),
        "weekly": campaign('{cron: "0 9 * * MON"}'),  # has not fired: nobody in it, nobody counts
        "draft": campaign("{audience: true}", extra="active: false\n"),  # does not run
    }, partners_csv(*(partner(p) for p in ids(5))))
    tick(capsys, root, T0)
    ok(capsys, root, "pause", "always", "--partner", "p1", "--at", "2026-07-01T01:00Z")  # 4 of 5 = 80%

    found = run_json(capsys, root, "status")
    assert [(c["campaign"], c["enrollments"]["active"], c["in_campaign_pct"]) for c in found["campaigns"]] == [
        ("always", 4, 80.0), ("draft", 0, None), ("weekly", 0, None)]
    lines = ok(capsys, root, "status").splitlines()
    assert lines[0].split() == ["number", "campaign", "on", "scheduled", "active", "paused", "finished", "removed",
                                "in-campaign"]
    assert [line.split()[1:] for line in lines[1:]] == [
        ["always", "yes", "0", "4", "1", "0", "0", "80.0%"],
        ["draft", "no", "0", "0", "0", "0", "0", "-"],
        ["weekly", "yes", "0", "0", "0", "0", "0", "-"]]


# --- 3. what dropped, and what to do ---------------------------------------------------------------


EXITING = campaign("{audience: true}", extra="reenroll: after_exit\nexit_when: partner.paid == true\n")
EXIT_HINT = ("exit_when (partner.paid == true) ended their enrollment but they still match the audience, so the "
             "trigger enrolls them again: add the same condition to audience.exclude")


def test_an_alert_names_the_reasons_most_first_with_examples_and_a_suggestion_for_each(capsys, tmp_path: Path):
    root = workspace(tmp_path, {"drip": EXITING}, partners_csv(*(partner(p) for p in ids(10))))
    assert tick(capsys, root, T0)["enrolled"] == 10
    ok(capsys, root, "pause", "drip", "--partner", "p10", "--at", "2026-07-01T01:00Z")  # 9 of 10: not below
    assert tick(capsys, root, "2026-07-01T02:00Z")["alerts"] == []

    # p3 and p4 pay: the import ends their enrollments (exit) at the tick, which cannot enroll them
    # again at that same instant; they still match the audience, and after_exit lets the trigger
    # take them again, so they count: 7 active of 10 = 70%
    rewrite(root / "partners.csv", partners_csv(*(partner(p, paid=p in ("p3", "p4")) for p in ids(10))))
    [alert] = tick(capsys, root, "2026-07-01T03:00Z")["alerts"]
    assert (alert["state"], alert["in_campaign_pct"], alert["active"], alert["of"], alert["waiting"]) == (
        "raised", 70.0, 7, 10, None)
    assert alert["dropped"] == [
        {"reason": "exit", "partners": 2, "examples": ["p3", "p4"], "suggestion": EXIT_HINT},
        {"reason": "paused", "partners": 1, "examples": ["p10"], "suggestion": PAUSED.format(cid="drip").replace(
            "--partner p1)", "--partner p10)")}]
    assert alert["suggestion"] == EXIT_HINT  # the dominant reason's

    # next tick: enrolled again, they exit again at their first step: the alert stays open, raised once
    report = tick(capsys, root, "2026-07-01T04:00Z")
    assert (report["enrolled"], report["alerts"]) == (2, [])
    text = ok(capsys, root, "alerts", "--open")
    assert "2 exit (p3, p4), 1 paused (p10)" in text and text.splitlines()[-1] == f"drip: {EXIT_HINT}"
    stats = run_json(capsys, root, "stats", "drip")["in_campaign"]
    assert [(d["reason"], d["partners"]) for d in stats["dropped"]] == [("exit", 2), ("paused", 1)]
    assert ok(capsys, root, "stats", "drip").splitlines()[:2] == [
        "drip: In-Campaign 70.0% (7 of 10 active; not active: 2 exit (p3, p4), 1 paused (p10))",
        f"what to do: {EXIT_HINT}"]

    # what the suggestions say: paid partners leave the audience (they no longer count), p10 is
    # resumed: 8 of the 8 partners left in the audience are active
    rewrite(root / "campaigns" / "drip.yaml", EXITING.replace(
        "audience: {rulesets: {all: partner.active == true}}",
        "audience: {rulesets: {all: partner.active == true}, exclude: partner.paid == true}"))
    ok(capsys, root, "resume", "drip", "--partner", "p10", "--at", "2026-07-01T05:00Z")
    [cleared] = tick(capsys, root, "2026-07-01T06:00Z")["alerts"]
    assert (cleared["state"], cleared["in_campaign_pct"], cleared["active"], cleared["of"], cleared["dropped"]) == (
        "cleared", 100.0, 8, 8, [])


# --- 4. activities and responses per step in `engine stats` -----------------------------------------


CALLS = """\
name: Calls
description: A call, then an email that takes a reply.
audience: {rulesets: {all: partner.active == true}}
trigger: {audience: true}
steps:
  - id: call
    activity:
      kind: call
      subject: "Call {{ partner.name }}"
      responses:
        interested: {result: successful}
        later: {result: postponed}
        declined: {result: unsuccessful}
  - id: mail
    email:
      subject: "Shall we talk?"
      body: "Reply yes or no. {{ unsubscribe_url }}"
      responses:
        "yes": {result: successful}
        "no": {result: unsuccessful}
  - wait: 30d
"""
SPEC_ROW_KEYS = ["step", "channel", "language", "sent", "opens", "unique_opens", "clicks", "unique_clicks", "bounces",
                 "read", "unread"]


def test_stats_count_activities_and_responses_per_step_beside_the_spec_keys(capsys, tmp_path: Path):
    root = workspace(tmp_path, {"calls": CALLS}, partners_csv(*(partner(p) for p in ids(4))))
    assert tick(capsys, root, T0)["enrolled"] == 4  # 4 calls created, 4 emails sent
    answered = "2026-07-02T00:00Z"
    for pid, response in (("p1", "interested"), ("p2", "interested"), ("p3", "declined")):
        ok(capsys, root, "respond", f"calls:{pid}:1:call:1", response, "--at", answered)
    ok(capsys, root, "respond", "calls:p1:1:mail:1", "yes", "--at", answered)

    stats = run_json(capsys, root, "stats", "calls")
    assert list(stats) == ["campaign", "in_campaign_pct", "steps", "goal", "in_campaign", "activities",
                           "mailing_responses"]
    assert [list(row) for row in stats["steps"]] == [SPEC_ROW_KEYS + ["variant"]]
    assert (stats["steps"][0]["step"], stats["steps"][0]["sent"]) == ("mail", 4)
    # created 4 = completed 3 (interested 2, declined 1) + open 1 (p4); later listed with 0
    assert stats["activities"] == [{"step": "call", "kind": "call", "created": 4, "completed": 3, "open": 1,
                                    "responses": {"interested": 2, "later": 0, "declined": 1},
                                    "results": {"successful": 2, "unsuccessful": 1}}]
    assert stats["mailing_responses"] == [{"step": "mail", "channel": "email", "responded": 1,
                                           "responses": {"yes": 1, "no": 0}, "results": {"successful": 1}}]

    lines = ok(capsys, root, "stats", "calls").splitlines()
    assert lines[0] == "calls: In-Campaign 100.0% (4 of 4 active)"
    assert lines[lines.index("") + 1].split() == ["activity", "kind", "created", "completed", "open", "responses",
                                                  "results"]
    assert lines[lines.index("") + 2].split() == ["call", "call", "4", "3", "1", "interested", "2,", "later", "0,",
                                                  "declined", "1", "successful", "2,", "unsuccessful", "1"]
    assert lines[-2].split() == ["mailing", "channel", "responded", "responses", "results"]
    assert lines[-1].split() == ["mail", "email", "1", "yes", "1,", "no", "0", "successful", "1"]
