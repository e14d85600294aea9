"""The state commands through the real argument parser: outputs, --json shapes, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.testing import copy_workspace, dump_store

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return copy_workspace(EXAMPLES, tmp_path / "ws")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_tick_json_has_the_keys_of_spec(capsys, ws):
    code, out, err = run(capsys, "-w", str(ws), "tick", "--at", "2026-07-01T00:00", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert {"at", "enrolled", "executed", "skipped", "finished", "failed", "alerts", "warnings"} <= set(report)
    assert report["at"] == "2026-06-30T21:00:00Z"
    assert (report["enrolled"], report["executed"], report["alerts"]) == (21, 21, [])
    code, out, _ = run(capsys, "-w", str(ws), "tick", "--at", "2026-07-01T00:00", "--json")
    assert json.loads(out)["executed"] == 0  # idempotent


def test_workspace_option_after_the_command(capsys, ws):
    code, out, _ = run(capsys, "tick", "-w", str(ws), "--at", "2026-07-01")
    assert code == 0 and out.startswith("2026-06-30T21:00:00Z: enrolled 21, executed 21")


@pytest.mark.parametrize("argv, message", [
    (["tick", "--at", "yesterday-ish"], "--at: 'yesterday-ish' is not a time"),
    (["run", "--until", "2026-08-01", "--every", "0h"], "--every: '0h' is not a positive duration"),
    (["tick", "--store", "mysql://x"], "unsupported store URL 'mysql://x'"),
])
def test_usage_errors_exit_2_in_one_line(capsys, ws, argv, message):
    code, out, err = run(capsys, "-w", str(ws), *argv)
    assert code == 2
    assert err.startswith("engine: error: ") and message in err and err.count("\n") == 1
    assert not (ws / ".engine" / "state.db").exists() or argv[0] != "tick" or "--store" in argv


def test_status_steps_and_log(capsys, ws):
    run(capsys, "-w", str(ws), "events", "import", str(ws / "events.jsonl"), "--as", "alice", "--at", "2026-07-01")
    run(capsys, "-w", str(ws), "run", "--from", "2026-07-01", "--until", "2026-07-05", "--every", "6h")
    code, out, _ = run(capsys, "-w", str(ws), "status", "--partner", "p001", "--json")
    assert code == 0
    [enrollment] = json.loads(out)["enrollments"]
    assert enrollment["campaign"] == "partner-onboarding" and enrollment["status"] == "active"
    assert enrollment["started"] == "automatic" and enrollment["started_at"] == "2026-06-30T21:00:00Z"
    assert enrollment["next_step"] == "portal-note" and enrollment["due_at"] == "2026-07-11T06:00:00Z"

    code, out, _ = run(capsys, "-w", str(ws), "status", "--campaign", "partner-onboarding", "--json")
    summary = json.loads(out)
    assert summary["enrollments"]["active"] == 21 and summary["total"] == 21

    code, out, _ = run(capsys, "-w", str(ws), "steps", "partner-onboarding", "--partner", "p001", "--json")
    steps = {s["step"]: s for s in json.loads(out)["steps"]}
    assert steps["welcome"]["status"] == "executed" and steps["welcome"]["at"] == "2026-06-30T21:00:00Z"
    assert (steps["welcome-nudge"]["status"], steps["welcome-nudge"]["reason"]) == ("skipped", "condition")
    assert steps["intro-call"]["at"] == "2026-07-04T06:00:00Z"
    assert steps["portal-note"]["status"] == "pending" and steps["portal-note"]["due_at"] == "2026-07-11T06:00:00Z"
    assert steps["welcome-letter"]["status"] == "pending"

    code, out, _ = run(capsys, "-w", str(ws), "steps", "partner-onboarding", "--partner", "p001")
    assert "welcome-nudge" in out and "condition" in out

    code, out, _ = run(capsys, "-w", str(ws), "log", "--campaign", "partner-onboarding", "--json")
    actions = [e["action"] for e in json.loads(out)]
    assert actions[0] == "enrolled" and "step.executed" in actions and "step.skipped" in actions


def test_operations_need_a_marketing_user_and_refusals_exit_3(capsys, ws):
    run(capsys, "-w", str(ws), "tick", "--at", "2026-07-01")
    code, _, err = run(capsys, "-w", str(ws), "start", "demo-invite", "--partner", "p003", "--at", "2026-07-01T01:00")
    assert code == 3 and "--as USER" in err
    code, _, err = run(capsys, "-w", str(ws), "start", "demo-invite", "--partner", "p003", "--as", "bob")
    assert code == 3 and "marketing role" in err
    code, out, _ = run(capsys, "-w", str(ws), "start", "demo-invite", "--partner", "p003", "--as", "alice",
                       "--at", "2026-07-01T01:00")
    assert code == 0 and out.startswith("active: partner p003 in demo-invite")
    code, _, err = run(capsys, "-w", str(ws), "start", "demo-invite", "--partner", "p003", "--as", "alice",
                       "--at", "2026-07-01T02:00")
    assert code == 3 and err == ("engine: refused: partner p003 already has an active enrollment in demo-invite; "
                                 "remove it first or wait until it finishes\n")
    code, _, err = run(capsys, "-w", str(ws), "pause", "demo-invite", "--partner", "p003", "--partner", "p004",
                       "--as", "alice", "--at", "2026-07-01T03:00")
    assert code == 3 and "p004" in err  # all or nothing: p003 stays active
    code, out, _ = run(capsys, "-w", str(ws), "status", "--partner", "p003", "--json")
    assert [e["status"] for e in json.loads(out)["enrollments"]] == ["active"]
    code, out, _ = run(capsys, "-w", str(ws), "log", "--json")
    start = [e for e in json.loads(out) if e["action"] == "start"]
    assert [(e["user"], e["partner"], e["at"]) for e in start] == [("alice", "p003", "2026-06-30T22:00:00Z")]


def test_unknown_names_exit_1(capsys, ws):
    run(capsys, "-w", str(ws), "tick", "--at", "2026-07-01")
    code, _, err = run(capsys, "-w", str(ws), "start", "demo-invit", "--partner", "p003", "--as", "alice")
    assert code == 1 and "unknown campaign 'demo-invit'; did you mean 'demo-invite'?" in err
    code, _, err = run(capsys, "-w", str(ws), "start", "demo-invite", "--partner", "p999", "--as", "alice")
    assert code == 1 and "unknown partner 'p999'" in err
    code, _, err = run(capsys, "-w", str(ws), "skip", "partner-onboarding", "nope", "--partner", "p001", "--as", "alice")
    assert code == 1 and "has no step 'nope'" in err


def test_events_import_reports_bad_lines_and_keeps_good_ones(capsys, ws, tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "invoice.payment_failed", "at": "2026-07-02T10:00:00Z", "partner": "p007", "data": {"amount": 500}}\n'
                      '{"type": "opened", "at": "not a time", "partner": "p001", "campaign": "c", "step": "s"}\n',
                      encoding="utf-8")
    code, out, err = run(capsys, "-w", str(ws), "events", "import", str(events), "--as", "alice", "--at", "2026-07-01")
    assert code == 1
    assert out.startswith("imported 1 events, 0 already known, 1 bad lines skipped")
    assert f"{events}:2:" in err and "error:" in err
    code, out, _ = run(capsys, "-w", str(ws), "events", "import", str(events), "--as", "alice", "--json")
    assert json.loads(out)["imported"] == 0 and json.loads(out)["duplicates"] == 1
    code, out, _ = run(capsys, "-w", str(ws), "run", "--from", "2026-07-01", "--until", "2026-07-03", "--every", "1d")
    code, out, _ = run(capsys, "-w", str(ws), "steps", "payment-failed", "--partner", "p007", "--json")
    notice = json.loads(out)["steps"][0]
    assert (notice["step"], notice["status"], notice["at"]) == ("notice", "executed", "2026-07-02T10:00:00Z")


def test_a_broken_campaign_does_not_stop_the_others(capsys, ws):
    path = ws / "campaigns" / "nurture.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("partner.active != false", "partner.actve != false"),
                    encoding="utf-8")
    code, out, err = run(capsys, "-w", str(ws), "tick", "--at", "2026-07-01")
    assert code == 1
    assert "enrolled 21, executed 21" in out
    assert "nurture.yaml:" in err and "unknown field 'actve'" in err


def test_simulate_leaves_the_workspace_untouched(capsys, ws):
    code, out, _ = run(capsys, "-w", str(ws), "simulate", "--from", "2026-07-01", "--until", "2026-07-05",
                       "--events", str(ws / "events.jsonl"))
    assert code == 0
    assert "welcome" in out and "totals: enrolled 21" in out
    assert not (ws / ".engine").exists()


def test_python_dash_m_engine_runs_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "engine", "-w", str(tmp_path), "tick"], capture_output=True,
                          text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "no engine.yaml" in done.stderr


def _dump(ws: Path) -> dict[str, list]:
    return dump_store(ws)


REFUSED = [
    # (command line after the workspace, what the message says)
    (["start", "partner-onboarding", "--partner", "p001"], "already has an active enrollment"),
    (["start", "demo-invite", "--partner", "p038"], "excluded from every campaign"),
    (["pause", "partner-onboarding", "--partner", "p003"], "has no enrollment in partner-onboarding to pause"),
    (["resume", "partner-onboarding", "--partner", "p001"], "cannot resume the enrollment of partner p001"),
    (["remove", "demo-invite", "--partner", "p001"], "has no enrollment in demo-invite to remove"),
    (["remove", "partner-onboarding", "--partner", "p001", "--partner", "p003"], "p003"),
    (["skip", "partner-onboarding", "welcome", "--partner", "p001"], "only a pending step can be skipped"),
    (["rerun", "partner-onboarding", "intro-call", "--partner", "p001"], "only an executed step can be run again"),
    (["respond", "partner-onboarding:p001:1:welcome:1", "yes"], "takes no responses"),
    (["group", "nurture", "add", "p001", "--as", "bob"], "needs the marketing role"),
]


@pytest.mark.parametrize("argv, message", REFUSED, ids=[" ".join(a[:2]) for a, _ in REFUSED])
def test_every_refused_operation_exits_3_and_changes_nothing(capsys, ws, argv, message):
    run(capsys, "-w", str(ws), "tick", "--at", "2026-07-01")
    before = _dump(ws)
    user = [] if "--as" in argv else ["--as", "alice"]
    code, out, err = run(capsys, "-w", str(ws), *argv, *user, "--at", "2026-07-01T01:00")
    assert code == 3, err
    assert err.startswith("engine: refused: ") and message in err and err.count("\n") == 1
    assert _dump(ws) == before


def test_a_command_that_opens_the_store_keeps_the_compiled_workspace_for_the_next(capsys, ws, monkeypatch):
    """On either store (PostgreSQL's lives elsewhere), the first command that opens the store
    makes .engine/; the next process then reads the compiled workspace from its cache."""
    from engine import api

    assert not (ws / ".engine").exists()
    code, _, err = run(capsys, "-w", str(ws), "status", "--json")
    assert code == 0, err
    assert (ws / ".engine").is_dir()
    run(capsys, "-w", str(ws), "status", "--json")  # loads the files (a miss), keeps the plan
    loads: list[Path] = []
    monkeypatch.setattr(api, "_load_plan", lambda root: loads.append(root) or pytest.fail("loaded again"))
    code, _, err = run(capsys, "-w", str(ws), "status", "--json")
    assert code == 0, err
    assert loads == []
