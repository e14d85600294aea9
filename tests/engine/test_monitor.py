"""In-Campaign % monitors: an alert is raised once when the level drops below the minimum, and
cleared when it recovers (SPEC §1; engine/monitor.py)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.cli import main

from tests.engine.test_tick import partner, partners_csv, workspace

CAMPAIGN = """\
name: Onboarding
audience: {rulesets: {all: partner.active == true}}
trigger: {audience: true}
steps:
  - id: hello
    email: {subject: "Hi", body: "Welcome"}
  - wait: 30d
  - id: again
    email: {subject: "Hi again", body: "Still here?"}
monitor: {in_campaign_min: 90%, alert: [ops@example.com]}
"""


def test_an_alert_is_raised_once_below_the_minimum_and_cleared_on_recovery(tmp_path: Path, make_engine, capsys):
    ids = [f"p{i}" for i in range(1, 11)]
    root = workspace(tmp_path, {"onboarding": CAMPAIGN}, partners_csv(*(partner(p) for p in ids)))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    report = engine.tick()
    assert report.enrolled == 10 and report.alerts == []
    assert engine.stats("onboarding")["in_campaign_pct"] == 100.0

    engine.pause("onboarding", ["p1"], at="2026-07-01T01:00Z")
    assert engine.tick("2026-07-01T02:00Z").alerts == []  # 9 of 10 = 90%: not below

    engine.pause("onboarding", ["p2"], at="2026-07-01T03:00Z")
    report = engine.tick("2026-07-01T04:00Z")  # 8 of 10 = 80%
    paused = "resume them (engine resume onboarding --partner p1) or remove them: a paused enrollment does not advance"
    assert report.alerts == [{"campaign": "onboarding", "state": "raised", "in_campaign_pct": 80.0, "minimum": 90.0,
                              "active": 8, "of": 10, "at": "2026-07-01T04:00:00Z", "waiting": None,
                              "dropped": [{"reason": "paused", "partners": 2, "examples": ["p1", "p2"],
                                           "suggestion": paused}], "suggestion": paused}]
    assert engine.tick("2026-07-01T05:00Z").alerts == []  # raised once, not at every tick
    [alert] = engine.alerts()
    assert (alert["raised_at"], alert["pct"], alert["cleared_at"]) == ("2026-07-01T04:00:00Z", 80.0, None)
    [email] = [m for m in engine.sent("email") if m["to"] == "ops@example.com"]
    assert email["subject"] == "In-Campaign alert: Onboarding at 80.0% (expected 90%)"
    assert email["id"] == f"alert:onboarding:{alert['seq']}:ops@example.com"

    code = main(["-w", str(engine.root), "tick", "--at", "2026-07-01T05:30Z", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["alerts"] == []

    engine.resume("onboarding", ["p1", "p2"], at="2026-07-01T06:00Z")
    report = engine.tick("2026-07-01T07:00Z")
    assert [(a["state"], a["in_campaign_pct"]) for a in report.alerts] == [("cleared", 100.0)]
    [alert] = engine.alerts()
    assert (alert["cleared_at"], alert["cleared_pct"]) == ("2026-07-01T07:00:00Z", 100.0)
    assert engine.alerts(open_only=True) == []

    engine.remove("onboarding", ["p3", "p4"], at="2026-07-01T08:00Z")  # removal: the trigger re-enrolls them
    report = engine.tick("2026-07-01T09:00Z")
    assert report.enrolled == 2 and report.alerts == []


def test_partners_who_may_not_be_enrolled_do_not_count(tmp_path: Path, make_engine):
    ids = [f"p{i}" for i in range(1, 6)]
    root = workspace(tmp_path, {"onboarding": CAMPAIGN.replace("  - wait: 30d\n  - id: again\n    email: {subject: \"Hi again\", body: \"Still here?\"}\n", "")},
                     partners_csv(*(partner(p) for p in ids)))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick()  # enrolled and finished at once: reenroll never, so nobody is eligible any more
    assert engine.stats("onboarding")["in_campaign_pct"] is None
    assert engine.tick("2026-07-02T00:00Z").alerts == []
