"""The review commands through the real CLI on a copy of the example workspace: explain, test
and diff (the libraries have their own tests; these check the wiring and the JSON shapes)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from engine.cli import main
from engine.testing import copy_workspace

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return copy_workspace(EXAMPLES, tmp_path / "ws")


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_explain_json(capsys, ws):
    assert main(["-w", str(ws), "tick", "--at", "2026-07-01"]) == 0
    capsys.readouterr()
    code, result = run_json(capsys, "-w", str(ws), "explain", "partner-onboarding", "--partner", "p038", "--json",
                            "--at", "2026-07-01T01:00")
    assert code == 0
    assert {"campaign", "partner", "eligible", "rulesets", "groups", "exclude", "consent", "trigger"} <= set(result)
    assert result["eligible"] is False
    gold_fi = next(r for r in result["rulesets"] if r["name"] == "gold-fi")
    assert gold_fi["match"] is True and set(gold_fi) >= {"name", "expression", "match", "trace"}
    assert all(set(step) == {"expression", "value", "line", "col"} for step in gold_fi["trace"])
    assert {"expression": "partner.tier", "value": "gold", "line": 12, "col": 14} in gold_fi["trace"]
    assert result["exclude"]["match"] is True and result["exclude"]["by"] == "exclude (engine.yaml)"
    for part in ("groups", "exclude", "consent", "trigger"):
        assert {"match", "trace"} <= set(result[part])


def test_test_json_and_the_pass_it_records(capsys, ws):
    code, result = run_json(capsys, "-w", str(ws), "test", "partner-onboarding", "--partner", "p001",
                            "--at", "2026-07-01", "--json")
    assert code == 0 and result["passed"] is True
    [p001] = result["partners"]
    assert p001["enrolls"] is True and p001["rulesets"] == ["gold-fi", "big-spenders"]
    welcome = p001["steps"][0]
    assert (welcome["step"], welcome["at"], welcome["status"]) == ("welcome", "2026-06-30T21:00:00Z", "would_execute")
    assert welcome["message"]["subject"] == "Tervetuloa kumppaniohjelmaan, Aino Korhonen"
    assert not (ws / ".engine" / "state.db").exists()  # a dry run never touches the store
    code = main(["check", str(ws), "--json"])
    warnings = [e["message"] for e in json.loads(capsys.readouterr().out)["errors"]]
    assert not any("partner-onboarding was never run" in w for w in warnings)
    assert any("nurture was never run" in w for w in warnings)


def test_diff_of_two_git_revisions(capsys, ws):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull}

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=ws, env=env, check=True, capture_output=True)

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "one")
    path = ws / "campaigns" / "nurture.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("reenroll: 90d", "reenroll: 120d").replace("partner.active != false", "partner.active == true")
    path.write_text(text, encoding="utf-8")
    git("commit", "-qam", "two")
    code, result = run_json(capsys, "-w", str(ws), "diff", "HEAD~1:campaigns/nurture.yaml", "HEAD:campaigns/nurture.yaml",
                            "--json")
    assert code == 0
    assert [(c["path"], c["kind"], c["old"], c["new"]) for c in result["changes"]] == [
        ("audience.rulesets.still-active", "changed", "partner.active != false", "partner.active == true"),
        ("reenroll", "changed", "90d", "120d"),
    ]
    assert main(["-w", str(ws), "diff", "HEAD~9:campaigns/nurture.yaml", "HEAD:campaigns/nurture.yaml"]) == 2


def test_fmt_check_then_write_and_a_file_and_its_fmt_output_have_no_semantic_changes(capsys, ws, tmp_path):
    original = ws / "campaigns" / "renewal-reminder.yaml"
    messy = original.read_text(encoding="utf-8").replace("exit_on_audience_loss: true", "exit_on_audience_loss:   true")
    messy = messy.replace('partner.paid == true or partner.active == false', 'partner.paid==true or partner.active==false')
    original.write_text(messy, encoding="utf-8")
    kept = tmp_path / "before.yaml"
    kept.write_text(messy, encoding="utf-8")
    assert main(["fmt", "--check", str(ws)]) == 1
    assert capsys.readouterr().out == f"would reformat {original}\n"
    assert original.read_text(encoding="utf-8") == messy  # --check changes nothing
    assert main(["fmt", str(ws)]) == 0
    formatted = original.read_text(encoding="utf-8")
    assert "partner.paid == true or partner.active == false" in formatted
    assert formatted.count("#") == messy.count("#")  # every comment kept
    capsys.readouterr()
    assert main(["fmt", "--check", str(ws)]) == 0  # idempotent
    capsys.readouterr()
    code, result = run_json(capsys, "-w", str(ws), "diff", str(kept), str(original), "--json")
    assert (code, result) == (0, {"changes": []})
