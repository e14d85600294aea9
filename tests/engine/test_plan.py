"""`engine plan`: what the current files would change in the store; exit 0 when nothing, 4 when
something would."""

from __future__ import annotations

import json
from pathlib import Path

from engine.cli import main
from engine.testing import rewrite
from tests.engine.test_tick import campaign, email, partner, partners_csv, sms, wait, workspace


def plan(capsys, root: Path) -> tuple[int, dict]:
    code = main(["-w", str(root), "plan", "--json"])
    return code, json.loads(capsys.readouterr().out)


def by_campaign(result: dict) -> dict[str, dict]:
    return {c["campaign"]: c for c in result["campaigns"]}


def test_plan_reports_new_audience_steps_and_switches(tmp_path: Path, make_engine, capsys):
    text = campaign(steps=email() + wait("2d") + sms(), audience='gold: partner.tier == "gold"')
    root = workspace(tmp_path, {"drip": text}, partners_csv(partner("p1"), partner("p2", tier="silver")))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    code, result = plan(capsys, engine.root)
    assert code == 4 and by_campaign(result)["drip"]["state"] == "new"

    engine.tick()
    code, result = plan(capsys, engine.root)
    assert (code, result["changes"]) == (0, 0)
    drip = by_campaign(result)["drip"]
    assert drip["audience"]["matching"] == 1 and drip["audience"]["newly_matching"] == 0

    # p2 turns gold, and the sms step the enrollment waits for is removed
    (engine.root / "partners.csv").write_text(partners_csv(partner("p1"), partner("p2")), encoding="utf-8")
    rewrite(engine.root / "campaigns" / "drip.yaml", campaign(steps=email(), audience='gold: partner.tier == "gold"'))
    code, result = plan(capsys, engine.root)
    drip = by_campaign(result)["drip"]
    assert code == 4 and result["changes"] == 1
    assert (drip["audience"]["newly_matching"], drip["audience"]["newly_sample"]) == (1, ["p2"])
    assert drip["removed_steps"] == {"enrollments": 1, "steps": {"nudge": 1}}
    assert engine.store.partners_in("drip", ("active",)) == {"p1"}  # nothing was written

    rewrite(engine.root / "campaigns" / "drip.yaml",
            campaign(steps=email(), audience='gold: partner.tier == "gold"', extra="active: false\n"))
    code, result = plan(capsys, engine.root)
    assert by_campaign(result)["drip"]["state"] == "switched_off"
    code = main(["-w", str(engine.root), "plan"])
    out = capsys.readouterr().out
    assert code == 4 and "campaign is switched off" in out and "1 partners newly match" in out
